"""Safe restore against real replicas (local folder and the local S3 server), both versions."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backupctl.config.render import sync_config
from backupctl.config.settings import Settings, load_settings
from backupctl.errors import ExitCode
from backupctl.host import locks
from backupctl.litestream.runner import Litestream
from tests.conftest import S3_KEY, S3_SECRET, Project, S3Server, count_rows, make_db, run_cli

pytestmark = pytest.mark.timeout(240)


# --------------------------------------------------------------------------- helpers (used by test_verify)


def configure(
    project: Project, version: str, replica: str, s3: S3Server | None = None, bucket: str | None = None
) -> dict[str, str]:
    values = {"BACKUP_DATABASES": "db/app.db", "BACKUP_SYNC_INTERVAL": "1s", "LITESTREAM_VERSION": version}
    if replica == "file":
        values["BACKUP_LOCAL_DIR"] = str(project.replica_dir)
    else:
        assert s3 is not None and bucket is not None
        values.update(
            BACKUP_REPLICA="s3",
            BACKUP_BUCKET=bucket,
            BACKUP_ENDPOINT=s3.endpoint,
            BACKUP_REGION="us-east-1",
            BACKUP_FORCE_PATH_STYLE="true",
            BACKUP_PATH="backups/{name}",
            BACKUP_ACCESS_KEY_ID=S3_KEY,
            BACKUP_SECRET_ACCESS_KEY=S3_SECRET,
        )
    project.write_env(**values)
    return values


def settings_of(project: Project) -> Settings:
    return load_settings(project.env_file, cwd=project.dir)


@contextmanager
def replicating(settings: Settings, binary: Path, *, hold_lock: bool = True) -> Iterator[subprocess.Popen[bytes]]:
    """A real `litestream replicate` (1s sync), registered like backupctl's replicator; stopped by SIGTERM."""
    sync_config(settings)
    log = open(settings.project_dir / "replicate.log", "ab")  # noqa: SIM115
    proc = Litestream(binary, settings).popen("replicate", stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    held = []
    record = None
    try:
        if hold_lock:
            from backupctl.host import processes

            record = processes.register(
                processes.LITESTREAM, proc.pid, project=settings.project_dir, databases=[d.path for d in settings.databases]
            )
            for db in settings.databases:
                lock = locks.try_lock(locks.database_lock_path(db.path), owner_pid=proc.pid)
                assert lock is not None
                held.append(lock)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for lock in held:
            lock.release()
        if record is not None:
            processes.unregister(record)
        log.close()


def insert(db: Path, n: int, prefix: str = "row") -> None:
    con = sqlite3.connect(db, timeout=30)
    with con:
        for i in range(n):
            con.execute("INSERT INTO items (body) VALUES (?)", (f"{prefix} {i}",))
    con.close()


def wait_replicated(project: Project, rows: int, deadline: float = 60, name: str | None = None) -> None:
    """Poll real restores until the replica holds `rows` rows (of database `name`, when several are configured)."""
    out = project.dir / "probe.db"
    end = time.monotonic() + deadline
    seen = None
    while time.monotonic() < end:
        for f in project.dir.glob("probe.db*"):
            f.unlink()
        proc = run_cli("restore", *([name] if name else []), "-o", str(out), "--json", cwd=project.dir)
        if proc.returncode == 0:
            seen = count_rows(out)
            if seen == rows:
                for f in project.dir.glob("probe.db*"):
                    f.unlink()
                return
        time.sleep(0.5)
    raise AssertionError(f"replica never reached {rows} rows (last seen {seen}); {proc.stderr[-500:]}")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".backupctl-restore-" in p.name or ".tmp" in p.name)


def cli_json(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.stdout.strip(), proc.stderr
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("replica", ["file", "s3"])
def test_point_in_time_restore_returns_exactly_the_rows_before(
    project: Project, version: str, litestream_bins: dict[str, Path], replica: str, request: pytest.FixtureRequest
) -> None:
    s3 = request.getfixturevalue("s3_server") if replica == "s3" else None
    bucket = request.getfixturevalue("s3_bucket") if replica == "s3" else None
    configure(project, version, replica, s3, bucket)
    settings = settings_of(project)
    with replicating(settings, litestream_bins[version], hold_lock=False):
        insert(project.db, 5, "before")
        wait_replicated(project, 5)
        time.sleep(1.2)
        point = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        time.sleep(1.2)
        insert(project.db, 7, "after")
        wait_replicated(project, 12)
    out = project.dir / "pit" / "restore.db"
    out.parent.mkdir()
    proc = run_cli("restore", "-o", str(out), "--timestamp", point, "--json", cwd=project.dir)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    doc = cli_json(proc)["restores"][0]
    assert doc["output"] == str(out) and doc["integrity"] == "ok"
    assert {"name": "items", "rows": 5} in doc["tables"]
    assert count_rows(out) == 5
    con = sqlite3.connect(out)
    assert {r[0] for r in con.execute("SELECT body FROM items")} == {f"before {i}" for i in range(5)}
    con.close()
    assert leftovers(out.parent) == []  # no 0.3 .tmp-wal/.tmp-shm, no temp folder
    # the friendly form works as well, and a point before the window names the window
    proc = run_cli("restore", "-o", str(out.parent / "old.db"), "--timestamp", "2001-01-01 00:00", cwd=project.dir)
    assert proc.returncode == 8, proc.stderr
    assert "restorable window is" in proc.stderr and "2001-01-01T00:00:00Z" in proc.stderr
    assert not (out.parent / "old.db").exists() and leftovers(out.parent) == []


def test_litestream_spellings_several_databases_and_the_if_flags(
    project: Project, version: str, litestream_bins: dict[str, Path], tmp_path: Path
) -> None:
    """Restore steps as litestream guides write them, on one replicated project of three databases."""
    for name in ("b.db", "c.db"):
        make_db(project.db.parent / name, rows=1)
    project.write_env(**{**configure(project, version, "file"), "BACKUP_DATABASES": "db/app.db,db/b.db,db/c.db"})
    with replicating(settings_of(project), litestream_bins[version]):
        insert(project.db, 5, "before")
        wait_replicated(project, 5, name="app.db")
        time.sleep(1.2)
        point = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(1.2)
        insert(project.db, 7, "after")
        wait_replicated(project, 12, name="app.db")

    # three databases and none named: refused (exit 2) naming them, nothing written
    before = sorted(p.name for p in project.db.parent.iterdir())
    for argv in (["restore"], ["restore", "--dry-run"], ["restore", "-o", f"{tmp_path / 'all'}/"]):
        refused = run_cli(*argv, cwd=project.dir)
        assert refused.returncode == 2, refused.stderr
        assert "configured: app.db, b.db, c.db" in refused.stderr and "--all" in refused.stderr, refused.stderr
    assert sorted(p.name for p in project.db.parent.iterdir()) == before and not (tmp_path / "all").exists()
    everything = cli_json(run_cli("restore", "--all", "-o", f"{tmp_path / 'all'}/", "--json", cwd=project.dir))
    assert sorted(r["name"] for r in everything["restores"]) == ["app.db", "b.db", "c.db"] and everything["skipped"] == []

    # litestream's spellings: -timestamp with a space or an =, -o=PATH as Go reads it
    spelled = run_cli("restore", "app.db", "-timestamp", point, f"-o={tmp_path / 'pit.db'}", cwd=project.dir)
    assert spelled.returncode == 0, spelled.stderr
    assert count_rows(tmp_path / "pit.db") == 5 and not (project.dir / f"={tmp_path / 'pit.db'}").exists()
    glued = cli_json(run_cli("restore", "app.db", f"-timestamp={point}", "-o", str(tmp_path / "pit2.db"), "--json",
                             cwd=project.dir))  # fmt: skip
    assert glued["restores"][0]["point_in_time"] == point and count_rows(tmp_path / "pit2.db") == 5
    if version.startswith("0.5"):
        by_txid = run_cli("restore", "app.db", "-txid", "1", "-o", str(tmp_path / "txid.db"), cwd=project.dir)
        assert by_txid.returncode == 0, by_txid.stderr
        wrong = run_cli("restore", "app.db", "-generation", "0123456789abcdef", cwd=project.dir)
        assert wrong.returncode == 3 and "--generation is a Litestream 0.3 option" in wrong.stderr, wrong.stderr
    else:
        listing = Litestream(litestream_bins[version], settings_of(project)).run("generations", str(project.db))
        generation = listing.stdout.splitlines()[1].split()[1]
        by_generation = run_cli("restore", "app.db", f"-generation={generation}", "-o", str(tmp_path / "g.db"), cwd=project.dir)
        assert by_generation.returncode == 0, by_generation.stderr
        assert count_rows(tmp_path / "g.db") == 12

    # -if-db-not-exists: every database is there, so nothing is done (exit 0); a free output is restored
    skipped = cli_json(run_cli("restore", "--all", "-if-db-not-exists", "--json", cwd=project.dir))
    assert skipped["restores"] == [] and [s["name"] for s in skipped["skipped"]] == ["app.db", "b.db", "c.db"]
    assert sorted(p.name for p in project.db.parent.iterdir()) == before
    again = run_cli("restore", "app.db", "--if-db-not-exists", "-o", str(tmp_path / "pit.db"), cwd=project.dir)
    assert again.returncode == 0 and "already holds a database" in again.stderr and count_rows(tmp_path / "pit.db") == 5
    fresh = run_cli("restore", "app.db", "-if-db-not-exists", "-o", str(tmp_path / "fresh.db"), cwd=project.dir)
    assert fresh.returncode == 0 and count_rows(tmp_path / "fresh.db") == 12, fresh.stderr

    # -if-replica-exists: a database never replicated has no backup; exit 0 with a note instead of 8
    make_db(project.db.parent / "new.db", rows=1)
    new = {"BACKUP_DATABASES": "db/app.db,db/new.db"}  # the environment overrides the .env
    empty = run_cli("restore", "new.db", "-o", str(tmp_path / "new.db"), cwd=project.dir, env=new)
    assert empty.returncode == 8, empty.stderr
    passed = run_cli("restore", "--all", "-if-replica-exists", "-o", f"{tmp_path / 'boot'}/", "--json", cwd=project.dir, env=new)
    doc = cli_json(passed)
    assert [r["name"] for r in doc["restores"]] == ["app.db"] and [s["name"] for s in doc["skipped"]] == ["new.db"]
    assert "no backup" in doc["skipped"][0]["reason"] and not (tmp_path / "boot" / "new.db").exists()
    assert leftovers(project.db.parent) == [] and leftovers(tmp_path / "boot") == []


def test_open_database_is_refused_and_force_keeps_the_old_copy(
    project: Project, version: str, litestream_bins: dict[str, Path]
) -> None:
    configure(project, version, "file")
    settings = settings_of(project)
    with replicating(settings, litestream_bins[version]) as proc:
        insert(project.db, 3)
        wait_replicated(project, 3)
        # backupctl's replicator holds the database: --force is refused, naming it
        refused = run_cli("restore", "app.db", "--force", cwd=project.dir)
        assert refused.returncode == 6, refused.stderr
        assert f"pid {proc.pid}" in refused.stderr
        # the live database spelled through a symlink or `..` is still the live database
        (project.dir / "link").symlink_to(project.db.parent)
        for spelled in (project.dir / "link" / project.db.name, project.db.parent / ".." / "db" / project.db.name):
            refused = run_cli("restore", "-o", str(spelled), "--force", cwd=project.dir)
            assert refused.returncode == 6 and "backupctl is replicating" in refused.stderr, refused.stderr
            assert f"pid {proc.pid}" in refused.stderr
    insert(project.db, 2, "local only")  # the live database now differs from the replica

    # without --force the live path is never the output
    proc = run_cli("restore", "-o", str(project.db), cwd=project.dir)
    assert proc.returncode == 7, proc.stderr
    assert "--force" in proc.stderr

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sqlite3,sys,time; c=sqlite3.connect(sys.argv[1]); "
         "c.execute('select count(*) from items').fetchone(); print('open', flush=True); time.sleep(120)", str(project.db)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "open"
        before = sorted(p.name for p in project.db.parent.iterdir())
        proc = run_cli("restore", "app.db", "--force", cwd=project.dir)
        assert proc.returncode == 6, proc.stderr
        assert f"pid {holder.pid}" in proc.stderr
        assert sorted(p.name for p in project.db.parent.iterdir()) == before
        assert count_rows(project.db) == 5
    finally:
        holder.kill()
        holder.wait()

    os.chmod(project.db, 0o600)  # a restore that replaces a database keeps its mode (never loosens it)
    proc = run_cli("restore", "app.db", "--force", "--json", cwd=project.dir)
    assert proc.returncode == 0, proc.stderr
    doc = cli_json(proc)["restores"][0]
    assert doc["output"] == str(project.db)
    assert project.db.stat().st_mode & 0o777 == 0o600
    assert count_rows(project.db) == 3
    kept = [Path(k) for k in doc["kept"]]
    assert kept and kept[0].name.startswith("app.db.pre-restore-")
    assert count_rows(kept[0]) == 5  # the old copy, with its -wal, is kept and opens
    assert leftovers(project.db.parent) == []


def test_default_location_and_the_positional_path_rule(project: Project, version: str, litestream_bins: dict[str, Path]) -> None:
    configure(project, version, "file")
    settings = settings_of(project)
    with replicating(settings, litestream_bins[version]):
        insert(project.db, 4)
        wait_replicated(project, 4)

    # a database is there: the default output is a side file, the live file untouched
    proc = run_cli("restore", "--json", cwd=project.dir)
    assert proc.returncode == 0, proc.stderr
    side = Path(cli_json(proc)["restores"][0]["output"])
    assert side.parent == project.db.parent and side.name.startswith("app.db.restored-")
    assert count_rows(side) == 4

    # `just backup-restore /path/to/restore.db`: a path that is not a database is the output
    target = project.dir / "elsewhere" / "restore.db"
    target.parent.mkdir()
    proc = run_cli("restore", str(target), cwd=project.dir)
    assert proc.returncode == 0, proc.stderr
    assert count_rows(target) == 4

    # dry run writes nothing
    proc = run_cli("restore", "--dry-run", "--json", cwd=project.dir)
    plan = cli_json(proc)["plans"][0]
    assert plan["output"].startswith(str(project.db) + ".restored-") and not Path(plan["output"]).exists()
    assert plan["source"] == [f"file://{project.replica_dir / 'app.db'}"]

    # a new machine: no database file, so the restore goes into place
    for f in project.db.parent.glob("app.db*"):
        f.unlink()
    from backupctl.restore import restore_if_missing

    restored = restore_if_missing(settings_of(project), litestream_bins[version], settings.databases[0])
    assert restored is not None and restored.output == project.db and count_rows(project.db) == 4
    assert restore_if_missing(settings_of(project), litestream_bins[version], settings.databases[0]) is None
    project.db.unlink()
    proc = run_cli("restore", cwd=project.dir)
    assert proc.returncode == 0, proc.stderr
    assert count_rows(project.db) == 4
    assert leftovers(project.db.parent) == []


def test_a_plain_restore_runs_only_the_download_and_verbose_adds_the_listing_and_counts(
    project: Project, version: str, litestream_bins: dict[str, Path], tmp_path: Path
) -> None:
    """The report's extras (state time, row counts) cost a listing and a pass per table: only on request."""
    configure(project, version, "file")
    with replicating(settings_of(project), litestream_bins[version]):
        insert(project.db, 4)
        wait_replicated(project, 4)
    # The real binary behind a shim that notes each litestream command backupctl runs.
    calls = tmp_path / "calls.txt"
    shim = tmp_path / "litestream"
    shim.write_text(f'#!/bin/sh\necho "$1" >> {calls}\nexec {litestream_bins[version]} "$@"\n')
    shim.chmod(0o755)
    env = {"BACKUPCTL_LITESTREAM_BIN": str(shim)}

    plain = run_cli("restore", "-o", str(tmp_path / "plain.db"), cwd=project.dir, env=env)
    assert plain.returncode == 0, plain.stderr
    # (`version`: backupctl asks a binary of the user's own which version it is)
    assert [c for c in calls.read_text().split() if c != "version"] == ["restore"]  # the download, nothing else
    assert "integrity: ok" in plain.stderr and "state as of: the newest backup (-v lists its time)" in plain.stderr
    assert "rows" not in plain.stderr and "rows" not in plain.stdout
    assert count_rows(tmp_path / "plain.db") == 4

    calls.unlink()
    verbose = run_cli("restore", "-o", str(tmp_path / "verbose.db"), "-v", cwd=project.dir, env=env)
    assert verbose.returncode == 0, verbose.stderr
    commands = [c for c in calls.read_text().split() if c != "version"]
    assert commands.count("restore") == 1 and len(commands) > 1  # plus the listing of the window
    shown = verbose.stderr + verbose.stdout
    assert "state as of: 20" in shown  # an RFC 3339 time, listed
    assert "items" in shown and "rows" in shown  # the table of row counts

    doc = cli_json(run_cli("restore", "-o", str(tmp_path / "json.db"), "--json", cwd=project.dir, env=env))["restores"][0]
    assert {"name": "items", "rows": 4} in doc["tables"] and doc["state_at"]


def test_restore_replicate_write_restore_again(project: Project, version: str, litestream_bins: dict[str, Path]) -> None:
    configure(project, version, "file")
    settings = settings_of(project)
    with replicating(settings, litestream_bins[version]):
        insert(project.db, 3)
        wait_replicated(project, 3)
    for f in project.db.parent.glob("app.db*"):
        f.unlink()
    assert run_cli("restore", cwd=project.dir).returncode == 0
    assert count_rows(project.db) == 3
    with replicating(settings, litestream_bins[version]):
        insert(project.db, 2, "later")
        wait_replicated(project, 5)
    out = project.dir / "again.db"
    proc = run_cli("restore", "-o", str(out), cwd=project.dir)
    assert proc.returncode == 0, proc.stderr
    assert count_rows(out) == 5


def test_txid_and_generation_belong_to_one_version(project: Project, version: str, litestream_bins: dict[str, Path]) -> None:
    configure(project, version, "file")
    settings = settings_of(project)
    with replicating(settings, litestream_bins[version]):
        insert(project.db, 2)
        wait_replicated(project, 2)
    if version.startswith("0.5"):
        proc = run_cli("restore", "--generation", "0123456789abcdef", cwd=project.dir)
        assert proc.returncode == 3 and "0.3" in proc.stderr
        out = project.dir / "t.db"
        proc = run_cli("restore", "-o", str(out), "--txid", "1", "--json", cwd=project.dir)  # decimal is converted
        assert proc.returncode == 0, proc.stderr
        assert cli_json(proc)["restores"][0]["position"]["txid"] == "0000000000000001"
        # past the newest txid: the replica is fine, the point is not in it; the hint says where the points are
        past = run_cli("restore", "-o", str(project.dir / "p.db"), "--txid", "00000000000fffff", cwd=project.dir)
        assert past.returncode == ExitCode.NOT_FOUND, past.stderr
        assert "matching" in past.stderr and "restorable window" in past.stderr and "backupctl ltx" in past.stderr
        assert "that replication ran" not in past.stderr and not (project.dir / "p.db").exists()
    else:
        proc = run_cli("restore", "--txid", "0000000000000001", cwd=project.dir)
        assert proc.returncode == 3 and "0.5" in proc.stderr
        listing = Litestream(litestream_bins[version], settings).run("generations", str(project.db))
        generation = listing.stdout.splitlines()[1].split()[1]
        out = project.dir / "g.db"
        proc = run_cli("restore", "-o", str(out), "--generation", generation, "--json", cwd=project.dir)
        assert proc.returncode == 0, proc.stderr
        assert cli_json(proc)["restores"][0]["position"]["generation"] == generation
        assert count_rows(out) == 2


FAKE_SLOW_LITESTREAM = """#!/bin/sh
# A litestream that starts writing its output, then hangs: to interrupt a restore midway.
if [ "$1" = "version" ]; then echo "{version}"; exit 0; fi
if [ "$1" = "restore" ]; then
  out=""
  prev=""
  for a in "$@"; do [ "$prev" = "-o" ] && out="$a"; prev="$a"; done
  printf 'SQLite format 3\\000partial' > "$out.tmp"
  : > "$out.tmp-wal"; : > "$out.tmp-shm"
  echo $$ > "{pidfile}"
  exec sleep 120
fi
echo "[]"
exit 0
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_restore_leaves_original_and_nothing_else(project: Project, tmp_path: Path, sig: signal.Signals) -> None:
    """Fake slow binary: the rare path of a signal while litestream is mid-download."""
    configure(project, "0.5.17", "file")
    insert(project.db, 3)
    pidfile = tmp_path / "fake.pid"
    fake = tmp_path / "litestream"
    fake.write_text(FAKE_SLOW_LITESTREAM.format(version="0.5.17", pidfile=pidfile))
    fake.chmod(0o755)
    before = {p.name: p.read_bytes() for p in project.db.parent.iterdir() if p.is_file()}
    env = dict(os.environ, BACKUPCTL_LITESTREAM_BIN=str(fake), BACKUPCTL_ALLOW_VERSION_MISMATCH="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "backupctl", "restore", "app.db", "-o", str(project.db), "--force"],
        cwd=project.dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pidfile.exists(), "the fake restore never started"
        assert any(p.name.startswith(".backupctl-restore-") for p in project.db.parent.iterdir())
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    after = {p.name: p.read_bytes() for p in project.db.parent.iterdir() if p.is_file()}
    assert after == before
    assert [p.name for p in project.db.parent.iterdir() if p.name.startswith(".backupctl")] == []
    fake_pid = int(pidfile.read_text())
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(fake_pid, 0)  # the child was killed with its group


def test_sigterm_during_a_real_restore(project: Project, litestream_bins: dict[str, Path]) -> None:
    """A real restore of a ~60 MB database, SIGTERM'd as soon as its temp folder appears.

    If the kill lands before the rename, nothing may be left; if the restore won the race, the
    side file must be complete. Either way the original is untouched.
    """
    version = "0.5.17"
    configure(project, version, "file")
    con = sqlite3.connect(project.db)
    with con:
        con.execute("CREATE TABLE blobs (b BLOB)")
        con.executemany("INSERT INTO blobs VALUES (randomblob(65536))", [()] * 900)
    con.close()
    settings = settings_of(project)
    with replicating(settings, litestream_bins[version]):
        insert(project.db, 1)
        wait_replicated(project, 1, deadline=120)
    original = project.db.read_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-m", "backupctl", "restore", "--json"], cwd=project.dir,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if any(p.name.startswith(".backupctl-restore-") for p in project.db.parent.iterdir()):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert project.db.read_bytes() == original
    assert [p.name for p in project.db.parent.iterdir() if p.name.startswith(".backupctl")] == []
    sides = list(project.db.parent.glob("app.db.restored-*"))
    print("real restore exit:", proc.returncode)
    if proc.returncode == 143:
        assert sides == [], err
    else:
        assert proc.returncode == 0, err
        assert len(sides) == 1 and count_rows(sides[0], "blobs") == 900


@pytest.mark.parametrize("moment", ["folder created", "litestream started", "cleanup"])
def test_sigterm_at_the_worst_instants_leaves_no_temp_folder(
    project: Project, litestream_bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """A real SIGTERM delivered (under the CLI's handler) exactly when mkdtemp has created the
    folder, right as litestream starts, and in the middle of removing the folder."""
    import shutil
    import tempfile

    from backupctl import restore as core
    from backupctl.cli.cmd_restore import Terminated, _signals_stop

    configure(project, "0.5.17", "file")
    settings = settings_of(project)
    with replicating(settings, litestream_bins["0.5.17"]):
        insert(project.db, 2)
        wait_replicated(project, 2)
    ls = core.litestream_for(settings, litestream_bins["0.5.17"])
    folder = project.dir / "out"

    def signal_after(real):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            value = real(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode
            return value

        return wrapper

    if moment == "folder created":
        monkeypatch.setattr(tempfile, "mkdtemp", signal_after(tempfile.mkdtemp))
    elif moment == "litestream started":
        monkeypatch.setattr(subprocess, "Popen", signal_after(subprocess.Popen))
    else:
        real_rmtree = shutil.rmtree
        calls = []

        def rmtree(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
            if not calls:
                calls.append(path)
                os.kill(os.getpid(), signal.SIGTERM)
            return real_rmtree(path, *args, **kwargs)

        monkeypatch.setattr(shutil, "rmtree", rmtree)
    with _signals_stop("restore"):
        if moment == "cleanup":  # the restore itself completes; the signal lands while cleaning up
            with core.staged_restore(ls, settings.databases[0], folder, []) as staged:
                assert count_rows(staged.path) == 2
        else:
            with pytest.raises(Terminated), core.staged_restore(ls, settings.databases[0], folder, []):
                raise AssertionError("the restore went on after SIGTERM")
    assert [p.name for p in folder.iterdir()] == []
    assert not any("litestream" in name for _, name in core.open_holders([project.db]))


def _unused_make_db_helper_is_wal(tmp_path: Path) -> None:
    db = make_db(tmp_path / "x.db", 1)
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
