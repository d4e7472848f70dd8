"""Users' journeys, end to end, each from an empty HOME (conftest's autouse fixture gives every test its own).

Each test plays one user the whole way through with the real tools they would use, reusing the suite's
own fixtures rather than rebuilding them:

1. a Rails developer on a laptop: backupctl from an offline `uv tool install`, the chora `just backup-*`
   recipes imported into the app's own justfile, a local-folder replica;
2. a Go server: a systemd system unit carrying the pinned binary, accepted by systemd-analyze;
3. Campfire in docker compose: the generated compose service run as written (without Docker), replicating
   to a real S3 on loopback, then a point-in-time restore in litestream's own spelling;
4. the README as written: its first command (the demo), and its local-folder quickstart, both extracted from
   README.md rather than copied here, so the test follows the README when it changes.

One replicated project per journey, so the file stays fast; waits poll for a state, nothing asserts a duration.
The order is for `-n 2`: xdist hands each worker two consecutive tests, so the two slow ones (Rails, whose setup
builds the wheelhouse, and Campfire) go to different workers, each with a quick one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.commands.test_justfile import APP_JUSTFILE, JUST
from tests.commands.test_service_files import _compose_schema
from tests.conftest import ROOT, S3_KEY, S3_SECRET, S3Server, count_rows, insert_rows, make_db, run_cli, wait_for
from tests.litestream.test_install_without_pip import Kit, _find_tool, kit  # noqa: F401 - kit is a fixture, used by name

pytestmark = pytest.mark.timeout(300)

V5 = "0.5.17"


def run(argv: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A command as the user types it: their environment, their folder, no terminal to wait on."""
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


# --------------------------------------------------------------------------- 1. a Rails laptop with just


@pytest.fixture
def uv_tool_backupctl(kit: Kit, tmp_path: Path) -> Path:  # noqa: F811 - the imported fixture, by name
    """backupctl as the README installs it: `uv tool install`, offline from the session's wheelhouse
    (test_install_without_pip's `kit`, built once per run). Returns the folder holding the `backupctl` link."""
    uv = _find_tool("uv")
    if uv is None:
        pytest.skip("uv is not installed here (not on PATH, not in the test venv); the test never downloads it")
    bin_dir = tmp_path / "uv-bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    env.update(UV_NO_CONFIG="1", UV_TOOL_DIR=str(tmp_path / "uv-tools"), UV_TOOL_BIN_DIR=str(bin_dir))
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never")
    base_python = getattr(sys, "_base_executable", sys.executable)
    argv = [uv, "tool", "install", "--offline", "--no-index", "--find-links", kit.wheelhouse, "--python", base_python,
            kit.backupctl_wheel]  # fmt: skip
    installed = run(argv, tmp_path, env, timeout=300)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (bin_dir / "backupctl").exists()
    return bin_dir


@pytest.mark.skipif(JUST is None, reason="no `just` binary (scripts/bootstrap.py installs it into .venv/bin)")
def test_rails_laptop_with_just_recipes(uv_tool_backupctl: Path, tmp_path: Path, litestream_bins, nothing_left_running) -> None:
    # PATH holds the uv tool's backupctl and just, and not this venv's bin: the recipes must run the installed
    # tool, not the checkout. (litestream comes from the shared test cache conftest points BACKUPCTL_CACHE_DIR at.)
    just_only = tmp_path / "just-only"
    just_only.mkdir()
    (just_only / "just").symlink_to(JUST)
    path = os.pathsep.join([str(uv_tool_backupctl), str(just_only), "/usr/bin", "/bin"])
    env = {**{k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}, "PATH": path}
    assert shutil.which("backupctl", path=path) == str(uv_tool_backupctl / "backupctl")

    # A Rails 8 app: databases in storage/, its own justfile with its own default and test recipes.
    app = tmp_path / "blog"
    db = make_db(app / "storage" / "development.sqlite3")
    (app / "justfile").write_text(APP_JUSTFILE)
    replicas = tmp_path / "replicas"
    (app / ".env").write_text(
        f"BACKUP_DATABASES=storage/development.sqlite3\nBACKUP_LOCAL_DIR={replicas}\nBACKUP_SYNC_INTERVAL=1s\n"
    )

    written = run(["backupctl", "justfile", "--write"], app, env)
    assert written.returncode == 0, written.stderr
    import_line = written.stdout.strip()
    assert import_line == "import 'backup.just'", written.stdout
    with (app / "justfile").open("a") as handle:  # what the printed hint tells the user to do
        handle.write(f"\n{import_line}\n")

    def just(*args: str) -> subprocess.CompletedProcess[str]:
        return run(["just", *args], app, env)

    assert just("backup-setup").returncode == 0
    assert (app / "litestream.yml").is_file()
    started = just("backup-start-bg")
    assert started.returncode == 0, started.stderr
    try:
        insert_rows(db, 40)
        plain = just("backup-status")  # as the chora guide types it: a table, exit 0 only when backed up
        assert plain.returncode == 0 and "development.sqlite3" in plain.stdout, plain.stdout + plain.stderr
        status = just("backup-status", "--json")
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["supervisor"]["running"], status.stdout
        insert_rows(db, 2)
    finally:
        stopped = just("backup-stop")
    # The stop's final sync is what carries the last rows to the replica.
    assert stopped.returncode == 0 and "final sync completed" in stopped.stderr, stopped.stderr
    # The app's own recipes are untouched by the import.
    assert just().stdout.strip() == "app default" and just("test").stdout.strip() == "app tests"

    # The recipe takes backupctl restore's own arguments (`*ARGS`): a database name and -o.
    restored = tmp_path / "restored.sqlite3"
    done = just("backup-restore", "storage/development.sqlite3", "-o", str(restored))
    assert done.returncode == 0, done.stderr
    assert count_rows(restored) == count_rows(db) == 42


# --------------------------------------------------------------------------- 2. a Go server under systemd


def test_go_server_system_unit_pins_the_binary_and_verifies(tmp_path: Path, litestream_bins) -> None:
    # A Go service keeps its SQLite file wherever it likes; the unit runs as an account that exists here. Not
    # `nobody`: systemd-analyze itself flags "Special user nobody configured, this is not safe!" (backupctl refuses it).
    app = tmp_path / "gosrv"
    make_db(app / "data" / "app.db")
    (app / ".env").write_text(f"BACKUP_DATABASES=data/app.db\nBACKUP_LOCAL_DIR={tmp_path / 'replicas'}\n")
    binary = litestream_bins[V5]
    env = {"BACKUPCTL_LITESTREAM_BIN": str(binary)}
    rendered = run_cli("service", "systemd", "--system", "--user-name", "root", cwd=app, env=env)
    assert rendered.returncode == 0, rendered.stderr
    unit_text = rendered.stdout
    environment = " ".join(ln.split("=", 1)[1] for ln in unit_text.splitlines() if ln.startswith("Environment="))
    assert f'"BACKUPCTL_LITESTREAM_BIN={binary}"' in environment or f"BACKUPCTL_LITESTREAM_BIN={binary}" in environment
    assert f"LITESTREAM_VERSION={V5}" in environment
    assert "User=root" in unit_text.splitlines() and "WantedBy=multi-user.target" in unit_text

    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed here (Debian: systemd); the unit's text was checked above")
    unit = tmp_path / "units" / "backupctl-gosrv.service"
    unit.parent.mkdir()
    unit.write_text(unit_text)
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 even when it warns about a unit: any line naming ours fails too (as in test_service_files)
    ours = [ln for ln in (res.stdout + res.stderr).splitlines() if unit.name in ln]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr


# --------------------------------------------------------------------------- 3. Campfire in docker compose


def _container_paths(svc: dict, app: Path, root: Path) -> dict[str, Path]:
    """Container folder -> host folder, the way the compose file maps them: a bind's ./source is beside the
    compose file (the app folder), a named volume becomes a folder of its own. The `storage` volume is the
    one Campfire's own container mounts at /rails/storage, so here it is the app's storage folder."""
    mapping: dict[str, Path] = {}
    for mount in svc["volumes"]:
        if mount["type"] == "bind":
            mapping[mount["target"]] = (app / mount["source"]).resolve()
        elif mount["source"] == "storage":
            mapping[mount["target"]] = app / "storage"
        else:
            mapping[mount["target"]] = root / "volumes" / mount["source"]
            mapping[mount["target"]].mkdir(parents=True, exist_ok=True)
    return mapping


def _to_host(value: str, mapping: dict[str, Path], workdir: Path) -> str:
    """A container path (or comma list of them) on the host: the longest mount prefix wins, the rest of
    /data (the working dir, which the compose file does not mount) is a folder of the test's own."""

    def one(part: str) -> str:
        for target in sorted(mapping, key=len, reverse=True):
            if part == target or part.startswith(target + "/"):
                return str(mapping[target]) + part[len(target) :]
        if part.startswith("/data/") or part == "/data":
            return str(workdir) + part[len("/data") :]
        return part

    return ",".join(one(p) for p in value.split(","))


@pytest.fixture
def campfire(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> Path:
    """Campfire's folder: storage/db/production.sqlite3 and the .env of its Litestream guide, pointed at the
    loopback S3 (LITESTREAM_REPLICA_ENDPOINT, as the README says for an S3-compatible server)."""
    app = tmp_path / "campfire"
    make_db(app / "storage" / "db" / "production.sqlite3")
    (app / ".env").write_text(
        f"LITESTREAM_REPLICA_BUCKET={s3_bucket}\nAWS_ACCESS_KEY_ID={S3_KEY}\nAWS_SECRET_ACCESS_KEY={S3_SECRET}\n"
        f"AWS_DEFAULT_REGION=us-east-1\nLITESTREAM_REPLICA_ENDPOINT={s3_server.endpoint}\n"
        "BACKUP_DATABASES=storage/db/production.sqlite3\nBACKUP_PATH=campfire-db\n"
        "BACKUP_SYNC_INTERVAL=1s\n"  # not Campfire's: a short interval keeps the point-in-time step quick
    )
    return app


def test_campfire_compose_service_run_as_written_then_point_in_time_restore(
    campfire: Path, tmp_path: Path, litestream_bins, nothing_left_running
) -> None:
    import jsonschema

    generated = run_cli("service", "compose", cwd=campfire)
    assert generated.returncode == 0, generated.stderr
    doc = yaml.safe_load(generated.stdout)
    schema = _compose_schema()  # the schema `docker compose config` validates against, as test_service_files does
    jsonschema.validators.validator_for(schema)(schema).validate(doc)
    [svc] = doc["services"].values()

    # Of the app, the container sees only the .env (read-only) and the data; everything else is its own volume.
    binds = [m for m in svc["volumes"] if m["type"] == "bind"]
    assert binds == [{"type": "bind", "source": "./.env", "target": "/data/.env", "read_only": True}]
    volumes = {m["source"]: m["target"] for m in svc["volumes"] if m["type"] == "volume"}
    assert volumes["storage"] == "/data/storage" and set(volumes) == set(doc["volumes"])
    assert all(not target.startswith("/data/") or target == "/data/storage" for target in volumes.values())

    # Run the service's command as written, without Docker: its environment and working dir with the container's
    # folders translated to host folders the way the mounts map them. What the image adds (backupctl on PATH)
    # is this venv's backupctl; HOME is the test's own empty one.
    workdir = tmp_path / "container-data"
    workdir.mkdir()
    mapping = _container_paths(svc, campfire, tmp_path)
    # /data/.env is a single-file bind: on the host that is the app's .env itself, read beside the working dir.
    env_target = mapping.pop("/data/.env")
    (workdir / ".env").symlink_to(env_target)
    # /data/storage inside /data: the working dir's storage is the mounted data.
    (workdir / "storage").symlink_to(mapping["/data/storage"])
    container_env = {k: _to_host(str(v), mapping, workdir) for k, v in svc["environment"].items()}
    env = {**os.environ, **container_env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    assert svc["working_dir"] == "/data" and svc["stop_signal"] == "SIGTERM"
    command = svc.get("entrypoint", []) + svc["command"]
    log = tmp_path / "service.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    db = campfire / "storage" / "db" / "production.sqlite3"
    restored_to: list[Path] = []

    def restore(*args: str) -> subprocess.CompletedProcess[str]:
        """The user's restore, on the host from the app folder, with litestream's spelling of the options."""
        out = tmp_path / f"restore-{len(restored_to)}.sqlite3"
        restored_to.append(out)
        return run_cli("restore", "storage/db/production.sqlite3", *args, "-o", str(out), cwd=campfire)

    def replicated(rows: int) -> bool:
        done = restore()
        return done.returncode == 0 and count_rows(restored_to[-1]) == rows

    try:
        # The compose healthcheck, the way docker runs it: in the container's environment and folder.
        health = svc["healthcheck"]["test"][1:]
        wait_for(lambda: proc.poll() is not None or run(health, workdir, env).returncode == 0, timeout=120,
                 what="the compose healthcheck to pass")  # fmt: skip
        assert proc.poll() is None, log.read_text()
        insert_rows(db, 30)
        wait_for(lambda: replicated(30), timeout=60, what="the first 30 rows in the replica")
        time.sleep(1.1)  # the noted time falls strictly between the two batches' syncs, whatever their clock granularity
        noted = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=1)
        time.sleep(2.1)
        insert_rows(db, 12)
        wait_for(lambda: replicated(42), timeout=60, what="all 42 rows in the replica")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # what `docker compose stop` sends (stop_signal)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    text = log.read_text()
    assert proc.returncode in (0, 130, 143) and "final sync completed" in text, text

    stamp = noted.strftime("%Y-%m-%dT%H:%M:%SZ")
    point = restore("-timestamp", stamp)
    assert point.returncode == 0, point.stderr
    assert count_rows(restored_to[-1]) == 30, f"restored to {stamp}: {point.stderr}"


# --------------------------------------------------------------------------- 4. the README, as written


def readme_first_commands() -> list[str]:
    """The commands of README.md's first code block (indented or fenced), comments dropped."""
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    block: list[str] = []
    fenced = False
    for line in lines:
        if line.startswith("```"):
            if fenced:
                break
            fenced = True
            continue
        if fenced or line.startswith("    "):
            block.append(line.strip())
        elif block:
            break
    return [c.split(" #", 1)[0].strip() for c in block if c.strip()]


def test_readme_demo_command_runs_as_written(tmp_path: Path, kit: Kit, litestream_bins) -> None:  # noqa: F811
    """The README's demo command, as written, in a checkout whose `.venv-demo` was installed from this
    checkout's wheel (offline, from the kit's wheelhouse: a test never reaches PyPI): bootstrap.py
    finds it installed for this pyproject.toml and runs the demo in it."""
    commands = readme_first_commands()
    # The other one runs this suite: running it from here would recurse.
    [demo] = [c for c in commands if c.split()[-1] == "demo"]
    assert any(c.split()[-1] == "test" for c in commands), commands
    argv = shlex.split(demo)
    # `python3` is the user's: this suite's interpreter stands in for it.
    if argv[0].startswith("python"):
        argv[0] = sys.executable
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "scripts", checkout / "scripts")
    shutil.copy2(ROOT / "pyproject.toml", checkout / "pyproject.toml")
    demo_env = checkout / ".venv-demo"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(demo_env)], check=True, capture_output=True, timeout=120)
    offline = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1"}
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(demo_env / "bin" / "python"), "install", "--quiet",
         "--find-links", str(kit.wheelhouse), str(kit.backupctl_wheel)],
        capture_output=True, text=True, env=offline, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    (demo_env / ".backupctl-bootstrap").write_text(hashlib.sha256((checkout / "pyproject.toml").read_bytes()).hexdigest())
    # TMPDIR: the demo's default folder is a new temp folder, kept inside this test's own.
    done = run(argv, checkout, {**offline, "TMPDIR": str(tmp_path)}, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo passed" in done.stderr, done.stderr
    assert "installing backupctl" not in done.stderr  # bootstrap.py used the environment it found


def readme_block_after(heading: str) -> list[str]:
    """The indented code block that follows a README heading, its lines unindented."""
    text = (ROOT / "README.md").read_text("utf-8")
    after = text.split(f"\n{heading}\n", 1)[1]
    block: list[str] = []
    for line in after.splitlines():
        if line.startswith("    "):
            block.append(line[4:])
        elif block and line.strip():
            break
    return block


def shell_commands(block: list[str]) -> list[str]:
    """One string per command: a heredoc stays whole (its lines are data, `#` included), other lines lose
    their trailing comment."""
    commands: list[str] = []
    lines = iter(block)
    for line in lines:
        if heredoc := re.search(r"<<-?'?(\w+)'?", line):
            body = [line]
            for more in lines:
                body.append(more)
                if more.strip() == heredoc.group(1):
                    break
            commands.append("\n".join(body))
        elif line.strip():
            commands.append(line.split(" #", 1)[0].strip())
    return commands


@pytest.mark.timeout(240)
def test_readme_local_folder_quickstart_runs_as_written(tmp_path: Path, litestream_bins, nothing_left_running) -> None:
    # The README's local-folder quickstart, typed into a Rails 8 app's folder: its .env heredoc (with the inline
    # comment and ~ it shows), setup, start in the foreground, status, and Ctrl-C. `serve` is left out: it binds
    # the fixed port 9091, which another test or the developer's own serve may hold.
    commands = shell_commands(readme_block_after("### Local folder (development, no account)"))
    assert [c.split()[:2] for c in commands] == [
        ["cat", ">"], ["backupctl", "setup"], ["backupctl", "start"], ["backupctl", "status"], ["backupctl", "serve"],
    ], commands  # fmt: skip
    heredoc, setup, start, status, _serve = commands
    app = tmp_path / "shop"
    db = make_db(app / "storage" / "development.sqlite3")
    # `.venv/bin/backupctl from the bootstrap` is one of the README's install ways: that bin on PATH.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return run(["bash", "-c", command], app, env)

    assert sh(heredoc).returncode == 0
    done = sh(setup)
    assert done.returncode == 0, done.stderr
    log = tmp_path / "start.log"
    with log.open("w") as out:
        # Its own process group, so "Ctrl-C" goes to the group as a terminal sends it.
        fg = subprocess.Popen(
            ["bash", "-c", start], cwd=app, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: fg.poll() is not None or sh(status).returncode == 0, timeout=120, what="`backupctl status` to pass")
        assert fg.poll() is None, log.read_text()
        insert_rows(db, 17)
        os.killpg(fg.pid, signal.SIGINT)  # the README: "Ctrl-C stops after a final sync"
        fg.wait(timeout=60)
    finally:
        if fg.poll() is None:
            os.killpg(fg.pid, signal.SIGKILL)
            fg.wait()
    assert "final sync completed" in log.read_text(), log.read_text()
    # BACKUP_LOCAL_DIR=~/.backupctl/backups: the ~ is this test's empty HOME, not a folder named "~".
    assert (Path.home() / ".backupctl" / "backups").is_dir() and not (app / "~").exists()
    restored = tmp_path / "restored.sqlite3"
    done = run_cli("restore", "-o", str(restored), cwd=app)
    assert done.returncode == 0, done.stderr
    assert count_rows(restored) == 17
