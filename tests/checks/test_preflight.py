"""Fail fast with the real cause: setup and start check the database and the replica first.

Every test runs the real CLI; the starts that pass the checks run the real litestream.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from backupctl.errors import ExitCode
from tests.conftest import S3_KEY, make_db, processes_mentioning, run_cli

# litestream itself takes 120 s (backupctl's confirmation timeout) to give up on these: anything
# far below that is the fast path. Generous, so a busy CI machine never flakes.
FAST = 30.0


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _timed(*args: str, **kwargs) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = run_cli(*args, **kwargs)
    return result, time.monotonic() - started


def test_a_typo_in_the_database_path_fails_a_background_start_in_seconds(project) -> None:
    project.write_env(BACKUP_DATABASES="db/ap.db", BACKUP_LOCAL_DIR=str(project.replica_dir))
    result, seconds = _timed("start", "--background", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert seconds < FAST
    assert str(project.dir / "db" / "ap.db") in result.stderr and "no such file" in result.stderr
    assert "--restore-if-missing" in result.stderr and "Traceback" not in result.stderr
    assert not processes_mentioning(str(project.dir))  # no supervisor, no litestream left waiting


def test_a_text_file_given_as_the_database_fails_start_and_setup(project) -> None:
    text = project.dir / "db" / "notes.txt"
    text.write_text("not a database\n" * 20)
    project.write_env(BACKUP_DATABASES="db/notes.txt", BACKUP_LOCAL_DIR=str(project.replica_dir))
    config = project.dir / "litestream.yml"
    for args in (("start", "--background"), ("start",), ("setup",)):
        result, seconds = _timed(*args, cwd=project.dir)
        assert result.returncode == ExitCode.CONFIG, (args, result.stderr)
        assert seconds < FAST and "is not an SQLite database" in result.stderr and str(text) in result.stderr
    assert not config.exists()  # setup failed before writing anything


def test_an_unreachable_replica_fails_a_background_start_naming_the_error(project) -> None:
    port = _closed_port()
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_REPLICA="s3", BACKUP_BUCKET="b", BACKUP_ENDPOINT=f"http://127.0.0.1:{port}",
        BACKUP_ACCESS_KEY_ID=S3_KEY, BACKUP_SECRET_ACCESS_KEY="not-used-secret",
    )  # fmt: skip
    result, seconds = _timed("start", "--background", cwd=project.dir)
    assert result.returncode == ExitCode.LITESTREAM, result.stderr
    assert seconds < FAST
    assert f"127.0.0.1:{port}" in result.stderr and "connection refused" in result.stderr
    assert not processes_mentioning(str(project.dir))
    # setup still writes the file (a build machine may have no network) and says what start will hit
    setup = run_cli("setup", cwd=project.dir)
    assert setup.returncode == 0, setup.stderr
    assert "connection refused" in setup.stderr and "start fails until it is reachable" in setup.stderr


def test_a_replica_folder_that_cannot_be_written_fails_start(project, tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(blocker / "backups"))
    result, seconds = _timed("start", "--background", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert seconds < FAST and str(blocker) in result.stderr and "cannot be created" in result.stderr


def test_a_database_not_created_yet_is_said_plainly_in_the_foreground(project, litestream_bins) -> None:
    project.write_env(BACKUP_DATABASES="db/later.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="1s")
    setup = run_cli("setup", cwd=project.dir)
    assert setup.returncode == 0 and "waiting for later.db to be created" in setup.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "backupctl", "start"],
        cwd=project.dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + FAST
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "waiting for later.db to be created" in line or not line:
                break
        text = "".join(lines)
        assert "waiting for later.db to be created" in text and "--restore-if-missing" in text, text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_start_says_once_that_it_switches_a_rollback_journal_database_to_wal(project, litestream_bins) -> None:
    import sqlite3

    rollback = project.dir / "db" / "journal.db"
    con = sqlite3.connect(rollback)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)")
    con.commit()
    con.close()
    project.write_env(BACKUP_DATABASES="db/journal.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="1s")
    first = run_cli("start", "--background", cwd=project.dir)
    try:
        assert first.returncode == 0, first.stderr
        assert "journal.db uses a rollback journal: litestream switches it to WAL mode" in first.stderr
    finally:
        assert run_cli("stop", cwd=project.dir).returncode == 0
    second = run_cli("start", "--background", cwd=project.dir)
    try:
        assert second.returncode == 0, second.stderr
        assert "rollback journal" not in second.stderr  # said once: the switch is for good
    finally:
        assert run_cli("stop", cwd=project.dir).returncode == 0


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.timeout(150)
def test_wrong_credentials_fail_start_in_a_second_and_litestreams_own_error_shows_past_the_checks(
    project, s3_server, s3_bucket
) -> None:
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_REPLICA="s3", BACKUP_BUCKET=s3_bucket, BACKUP_ENDPOINT=s3_server.endpoint,
        BACKUP_ACCESS_KEY_ID=S3_KEY, BACKUP_SECRET_ACCESS_KEY="definitely-the-wrong-secret", BACKUP_SYNC_INTERVAL="1s",
    )  # fmt: skip
    # start probes the replica the way doctor does: one diagnosis, no litestream run, no raw error lines
    for args in (["start", "--background"], ["start"]):
        checked = run_cli(*args, cwd=project.dir, timeout=60)
        assert checked.returncode == ExitCode.CONFIG, checked.stderr
        assert "the secret does not match" in checked.stderr and "SignatureDoesNotMatch" not in checked.stderr, checked.stderr
        assert "definitely-the-wrong-secret" not in checked.stderr + checked.stdout
        assert not (project.dir / ".backupctl" / "supervisor.log").exists()
    # past the checks (--skip-checks), litestream's own error is what the failed start shows
    result = run_cli("start", "--background", "--skip-checks", cwd=project.dir, timeout=140)
    try:
        assert result.returncode == ExitCode.SUPERVISOR, result.stderr
        error_line = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
        assert "litestream said:" in error_line and "SignatureDoesNotMatch" in error_line, result.stderr
        # litestream's retries, one line a second at each level, are collapsed into one line with a count
        for kind in ("litestream: ERROR compaction failed", "litestream: ERROR sync error"):
            assert sum(kind in line for line in result.stderr.splitlines()) <= 1, result.stderr
        assert "definitely-the-wrong-secret" not in result.stderr
    finally:
        run_cli("stop", cwd=project.dir)


def test_setup_check_that_fails_leaves_the_existing_config_byte_identical(project, litestream_bins) -> None:
    assert run_cli("setup", cwd=project.dir).returncode == 0
    config = project.dir / "litestream.yml"
    before = config.read_bytes()
    assert run_cli("templates", "eject", cwd=project.dir).returncode == 0
    main = project.dir / "backupctl-templates" / "litestream.yml.j2"
    main.write_text("dbs: []\n")  # a template litestream reads as "nothing to replicate"
    result = run_cli("setup", "--check", cwd=project.dir)
    assert result.returncode == ExitCode.LITESTREAM, result.stderr
    assert "does not read" in result.stderr
    assert config.read_bytes() == before


def test_doctor_still_reports_a_missing_database(project) -> None:
    project.write_env(BACKUP_DATABASES="db/gone.db", BACKUP_LOCAL_DIR=str(project.replica_dir))
    make_db(project.dir / "db" / "other.db")
    result = run_cli("doctor", "--json", cwd=project.dir)
    assert result.returncode == ExitCode.DOCTOR_FAIL and "db-missing" in result.stdout


@pytest.mark.slow
def test_background_restore_if_missing_says_it_restored(project, litestream_bins) -> None:
    first = run_cli("start", "--background", cwd=project.dir)
    assert first.returncode == 0, first.stderr
    assert run_cli("stop", cwd=project.dir).returncode == 0
    for suffix in ("", "-wal", "-shm"):
        project.db.with_name(project.db.name + suffix).unlink(missing_ok=True)
    again = run_cli("start", "--background", "--restore-if-missing", cwd=project.dir)
    try:
        assert again.returncode == 0, again.stderr
        assert f"restored {project.db.name} to {project.db}:" in again.stdout  # with size, time, rows and source
    finally:
        assert run_cli("stop", cwd=project.dir).returncode == 0
