"""`verify` end to end against real replicas: verified, failed, and nothing left behind."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from backupctl import paths
from backupctl.checks import sentinel, verify
from backupctl.checks.verify import SENTINEL_TABLE, VERIFIED, verify_database
from backupctl.errors import ConfigError, ConflictError, ExitCode
from backupctl.host import locks, processes, state
from tests.conftest import S3_RO_KEY, S3_RO_SECRET, Project, count_rows, make_db, processes_mentioning, run_cli, wait_for
from tests.restore.test_restore import cli_json, configure, insert, replicating, settings_of, wait_replicated

pytestmark = pytest.mark.timeout(240)


def schema(db: Path) -> list[tuple[str, ...]]:
    """sqlite_master, less litestream's own bookkeeping tables (_litestream_seq/_lock, made by replicate)."""
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE '\\_litestream\\_%' ESCAPE '\\' "
            "ORDER BY type, name"
        ).fetchall()
    finally:
        con.close()


def sentinel_rows(db: Path) -> int:
    """Sentinel rows left behind; the table itself must be gone too (verify drops it)."""
    assert SENTINEL_TABLE not in [row[1] for row in schema(db)], f"{SENTINEL_TABLE} left in {db}"
    return 0


def temp_files(project: Project) -> list[str]:
    found = [p.name for p in project.db.parent.iterdir() if p.name.startswith(".backupctl") or ".tmp" in p.name]
    tmp = paths.project_state_dir(project.dir) / "tmp"
    if tmp.exists():
        found += [f"tmp/{p.name}" for p in tmp.iterdir()]
    return found


@pytest.mark.parametrize("replica", ["file", "s3"])
def test_verify_passes_without_a_running_replicator(
    project: Project, version: str, litestream_bins: dict[str, Path], replica: str, request: pytest.FixtureRequest
) -> None:
    """No supervisor: verify runs a temporary replicator itself, and stops it."""
    s3 = request.getfixturevalue("s3_server") if replica == "s3" else None
    bucket = request.getfixturevalue("s3_bucket") if replica == "s3" else None
    configure(project, version, replica, s3, bucket)
    insert(project.db, 3)
    proc = run_cli("verify", "--json", cwd=project.dir)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = cli_json(proc)["results"][0]
    assert result["status"] == "verified", result
    assert "temporary" in result["replicator"]
    assert set(result["timings"]) >= {"write", "restore"}
    assert sentinel_rows(project.db) == 0 and count_rows(project.db) == 3
    assert temp_files(project) == []
    recorded = state.last_verify(paths.project_state_dir(project.dir), str(project.db))
    assert recorded and recorded["status"] == "verified"
    # the removal of the sentinel reached the replica too (the temporary replicator's final sync)
    out = project.dir / "after.db"
    assert run_cli("restore", "-o", str(out), cwd=project.dir).returncode == 0
    assert sentinel_rows(out) == 0 and count_rows(out) == 3


def test_twenty_verifies_leave_nothing_behind(project: Project, version: str, litestream_bins: dict[str, Path]) -> None:
    """With backupctl's replicator running (the database lock held), verify relies on it."""
    configure(project, version, "file")
    settings = settings_of(project)
    db = settings.databases[0]
    before = schema(project.db)
    with replicating(settings, litestream_bins[version]) as proc:
        insert(project.db, 2)
        for _ in range(20):
            result = verify_database(settings, litestream_bins[version], db)
            assert result.status == VERIFIED, result
            assert f"pid {proc.pid}" in result.replicator
        assert sentinel_rows(project.db) == 0
        wait_replicated(project, 2)
    assert temp_files(project) == []
    assert sentinel_rows(project.db) == 0 and count_rows(project.db) == 2
    assert schema(project.db) == before  # sqlite_master exactly as before: no stray table


@pytest.mark.parametrize("replica", ["file", "s3"])
def test_verify_fails_when_the_replica_objects_are_deleted(
    project: Project, version: str, litestream_bins: dict[str, Path], replica: str, request: pytest.FixtureRequest
) -> None:
    """Objects deleted (and the replica kept from healing itself: a running 0.5 re-uploads a
    snapshot into an emptied replica, which verify then rightly reports as verified)."""
    s3 = request.getfixturevalue("s3_server") if replica == "s3" else None
    bucket = request.getfixturevalue("s3_bucket") if replica == "s3" else None
    configure(project, version, replica, s3, bucket)
    settings = settings_of(project)
    with replicating(settings, litestream_bins[version]):
        insert(project.db, 2)
        wait_replicated(project, 2)
    if replica == "file":
        shutil.rmtree(project.replica_dir)
        project.replica_dir.write_text("not a folder any more\n")
    else:
        client = s3.client()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        assert keys
        for key in keys:
            client.delete_object(Bucket=bucket, Key=key)
    # a read-only identity for this run: the temporary replicator cannot re-upload a snapshot
    env = {"BACKUP_ACCESS_KEY_ID": S3_RO_KEY, "BACKUP_SECRET_ACCESS_KEY": S3_RO_SECRET} if replica == "s3" else {}
    probe = project.dir / "probe.db"
    for _ in range(40):  # the object store may list deleted objects for a moment
        if replica == "s3":  # delete again whatever the store still lists
            for obj in client.list_objects_v2(Bucket=bucket).get("Contents", []):
                client.delete_object(Bucket=bucket, Key=obj["Key"])
        if run_cli("restore", "-o", str(probe), cwd=project.dir, env=env).returncode != 0:
            break
        probe.unlink(missing_ok=True)
        time.sleep(0.25)
    else:
        raise AssertionError("the replica still restores after its objects were deleted")
    # A generous deadline: the verdict must not depend on load. It stays fast because a refused
    # write (S3: the read-only identity's AccessDenied) or a replica that does not restore is
    # decided as soon as it is seen, not at the deadline.
    proc = run_cli("verify", "--json", "--timeout", "90", cwd=project.dir, env=env, timeout=200)
    assert proc.returncode == 20, proc.stderr + proc.stdout
    result = cli_json(proc)["results"][0]
    assert result["status"] == "failed" and result["reason"]
    print("verify failed after", result["seconds"], "s:", result["reason"])
    assert S3_RO_SECRET not in proc.stdout + proc.stderr
    assert sentinel_rows(project.db) == 0 and temp_files(project) == []


def test_locked_or_foreign_database_is_a_clean_error_and_cleanup_never_masks_it(
    project: Project, litestream_bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """'database is locked' is a ConflictError (exit 6), 'not a database' a ConfigError (exit 3),
    never an internal error; and a cleanup that fails too does not replace the first error."""
    configure(project, "0.5.17", "file")
    settings = settings_of(project)
    db = settings.databases[0]
    monkeypatch.setattr(sentinel, "BUSY_TIMEOUT_MS", 200)
    # an old verify's leftover table, so the cleanup has something to drop (and fails on the lock)
    con = sqlite3.connect(project.db)
    con.execute(f"CREATE TABLE {SENTINEL_TABLE} (id INTEGER PRIMARY KEY, token TEXT, created_at TEXT)")
    con.commit()
    holder = sqlite3.connect(project.db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(ConflictError, match="locked"):
            sentinel.write_sentinel(project.db, "t")
        with pytest.raises(ConflictError, match="locked"):
            sentinel.clear_sentinels(project.db)
        # end to end (a replicator "is running", so none is started): the write's error wins
        monkeypatch.setattr(verify, "_running_replicator", lambda db: "a replicator")
        with pytest.raises(ConflictError, match="writing the verify sentinel") as caught:
            verify_database(settings, litestream_bins["0.5.17"], db)
        assert any(d.startswith("cleanup:") for d in caught.value.details), caught.value.details
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    sentinel.clear_sentinels(project.db)  # once the lock is gone, the leftover table is dropped
    assert sentinel_rows(project.db) == 0
    not_db = project.dir / "not.db"
    not_db.write_bytes(b"this is not an SQLite database, just text long enough" * 100)
    with pytest.raises(ConfigError, match="not a database"):
        sentinel.write_sentinel(not_db, "t")


# --------------------------------------------------------------------------- several databases at once

NAMES = ("a.db", "b.db", "c.db")


def three_databases(project: Project) -> list[Path]:
    """The project with three databases (app.db's folder), replicated to a local folder every second."""
    dbs = [make_db(project.db.parent / name, rows=2) for name in NAMES]
    project.write_env(BACKUP_DATABASES=",".join(f"db/{n}" for n in NAMES), BACKUP_LOCAL_DIR=str(project.replica_dir),
                      BACKUP_SYNC_INTERVAL="1s", LITESTREAM_VERSION="0.5.17")  # fmt: skip
    return dbs


def progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("verify ") and "/3: " in line]


def test_verify_piped_says_each_database_as_it_finishes(project: Project, litestream_bins: dict[str, Path]) -> None:
    """Piped (nobody sees a spinner), a line per database on stderr when it is done; the summary stays."""
    three_databases(project)
    proc = run_cli("verify", cwd=project.dir, timeout=180)
    assert proc.returncode == 0, proc.stderr
    lines = progress_lines(proc.stderr)
    assert len(lines) == 3, proc.stderr
    assert sorted(line.split(": ", 1)[1].split(" ")[0] for line in lines) == sorted(NAMES)
    assert all(" verified (" in line and line.endswith("s)") for line in lines), lines
    assert [line.split(" ")[1] for line in lines] == ["1/3:", "2/3:", "3/3:"]
    for name in NAMES:  # the summary after it, as before
        assert f"{name}: verified (" in proc.stderr
    assert proc.stdout == ""


def test_databases_are_verified_at_the_same_time(project: Project, litestream_bins: dict[str, Path]) -> None:
    """Each result's checked_at..finished_at: all three runs were under way at one moment. --json stays one
    object on stdout, and verify.json keeps all three results (recorded concurrently)."""
    dbs = three_databases(project)
    proc = run_cli("verify", "--json", cwd=project.dir, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1
    results = json.loads(proc.stdout)["results"]
    assert [r["name"] for r in results] == list(NAMES)  # in the configured order, whatever finished first
    assert all(r["status"] == "verified" for r in results), results
    assert max(r["checked_at"] for r in results) < min(r["finished_at"] for r in results), results
    assert len(progress_lines(proc.stderr)) == 3
    recorded = state.verify_records(paths.project_state_dir(project.dir))
    assert {k: v["status"] for k, v in recorded.items()} == {str(db): "verified" for db in dbs}
    assert all(sentinel_rows(db) == 0 for db in dbs) and temp_files(project) == []


def test_one_database_failing_to_start_does_not_stop_the_others(project: Project, litestream_bins: dict[str, Path]) -> None:
    """b.db is being verified elsewhere (its verify lock held): a and c are still verified and recorded, and
    the conflict (exit 6) says what became of them."""
    dbs = three_databases(project)
    settings = settings_of(project)
    held = locks.try_lock(sentinel.verify_lock_path(settings.databases[1]))
    assert held is not None
    try:
        proc = run_cli("verify", "--json", cwd=project.dir, timeout=180)
    finally:
        held.release()
    assert proc.returncode == ExitCode.CONFLICT, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert "another verify of b.db" in error["message"]
    assert any(d.startswith("a.db: verified") for d in error["details"]), error
    assert any(d.startswith("c.db: verified") for d in error["details"]), error
    recorded = state.verify_records(paths.project_state_dir(project.dir))
    assert set(recorded) == {str(dbs[0]), str(dbs[2])}
    assert all(sentinel_rows(db) == 0 for db in dbs) and temp_files(project) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_concurrent_verify_and_leaves_nothing(
    project: Project, litestream_bins: dict[str, Path], sig: signal.Signals
) -> None:
    """Signalled while all three run (each with its temporary replicator and its sentinel table): every run
    cleans up, then the command exits 143/130. No litestream, no sentinel table, no temp file, no record."""
    dbs = three_databases(project)
    proc = subprocess.Popen([sys.executable, "-m", "backupctl", "verify"], cwd=project.dir, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        temporaries = wait_for(lambda: len(r := processes.records(role=processes.VERIFY_REPLICATOR)) == 3 and r, 60,
                               0.05, "three temporary replicators")  # fmt: skip
        wait_for(lambda: all(SENTINEL_TABLE in [row[1] for row in schema(db)] for db in dbs), 30, 0.05, "three sentinels")
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    expected = ExitCode.TERMINATED if sig == signal.SIGTERM else ExitCode.INTERRUPTED
    assert proc.returncode == expected, stderr
    assert "Traceback" not in stderr
    assert all(not psutil.pid_exists(t.pid) or psutil.Process(t.pid).status() == psutil.STATUS_ZOMBIE for t in temporaries)
    assert processes_mentioning(str(project.dir)) == []
    assert processes.records(role=processes.VERIFY_REPLICATOR) == []
    assert processes.leftovers(processes.VERIFY, project.dir) == []  # the run's record went with it
    assert all(sentinel_rows(db) == 0 and count_rows(db) == 2 for db in dbs)
    assert temp_files(project) == []


def test_concurrent_records_keep_every_database(tmp_path: Path) -> None:
    """verify.json is read, changed and written by each run: none may write back a copy missing another's entry."""
    names = [f"db{i}" for i in range(16)]
    start = threading.Barrier(len(names))

    def record(name: str) -> None:
        start.wait()
        for _ in range(5):
            state.record_verify(tmp_path, name, state.VerifyRecord(name, name, "verified", "", time.time()))

    threads = [threading.Thread(target=record, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(state.verify_records(tmp_path)) == sorted(names)


def test_the_spinner_names_each_running_database_on_a_line_of_its_own() -> None:
    """Several databases: a line each under the count; a newline in a name is shown escaped, not obeyed."""
    from types import SimpleNamespace

    from backupctl.cli.cmd_verify import _Progress

    class Status:
        text = None

        def update(self, text) -> None:
            self.text = text

    status = Status()
    progress = _Progress(["a.db", "new\nline.db"], status, lines=False)
    progress.step(SimpleNamespace(name="a.db"), "writing the sentinel row")
    progress.step(SimpleNamespace(name="new\nline.db"), "restoring the replica")
    assert status.text.plain.splitlines() == [
        "verifying 2 databases (0 done)", "  a.db: writing the sentinel row", "  new\\nline.db: restoring the replica"
    ]
    progress.finished(SimpleNamespace(name="a.db"), SimpleNamespace(status="verified", seconds=1.0), None)
    assert status.text.plain.splitlines() == ["verifying 2 databases (1 done)", "  new\\nline.db: restoring the replica"]


@pytest.mark.slow
def test_a_03_replica_that_restores_only_up_to_a_hole_fails_verify(tmp_path: Path, litestream_bins, nothing_left_running) -> None:
    """A WAL segment taken out of the middle of 0.3's generation: the sentinel, written after it, never
    comes back from a restore, which alone would read as a lagging replica (inconclusive). The
    continuity check then tells the two apart, and verify fails loudly, naming the replica not whole."""
    from tests.journeys.test_second_replica import insert_wide_rows, segments, write_env

    app = tmp_path / "app"
    db = make_db(app / "db" / "app.db")
    replica = tmp_path / "replica"
    write_env(app, LITESTREAM_VERSION="0.3.13", BACKUP_DATABASES="db/app.db", BACKUP_SYNC_INTERVAL="1s",
              BACKUP_LOCAL_DIR=str(replica))  # fmt: skip
    try:
        assert run_cli("start", "--background", cwd=app, timeout=120).returncode == 0
        wait_for(lambda: "continuity of app.db: " in run_cli("logs", cwd=app).stdout, 60, 0.5, "the check after start")
        for _ in range(4):  # a WAL segment each
            before = len(segments(replica))
            insert_wide_rows(db, 300)
            wait_for(lambda b=before: len(segments(replica)) > b, 60, 0.2, "the replica to take the rows")
        segments(replica)[2].unlink()  # new pages of their own (wide rows): no later segment writes them again
        insert_wide_rows(db, 300)
        verified = run_cli("verify", cwd=app, timeout=180)
        said = verified.stdout + verified.stderr
        assert verified.returncode == ExitCode.VERIFY_FAILED, said
        assert "the sentinel had not reached the replica" in said and "NOT whole" in said, said
    finally:
        run_cli("stop", cwd=app, timeout=120)
