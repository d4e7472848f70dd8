"""`backupctl doctor` against real parts: SeaweedFS with an admin and a read-only identity, real
SQLite databases, the real pinned litestream, the real CLI in a subprocess."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from backupctl.checks.doctor import run_doctor, wal_command
from backupctl.errors import ExitCode
from backupctl.host.foreign_litestreams import config_database_paths
from tests.conftest import S3_KEY, S3_RO_KEY, S3_RO_SECRET, S3_SECRET, make_db, run_cli

CHECK_KEYS = {"name", "status", "found", "fix", "subject", "finding"}


def s3_env(project, server, bucket: str, key: str = S3_KEY, secret: str = S3_SECRET, **extra: str) -> None:
    project.write_env(
        BACKUP_DATABASES="db/app.db",
        BACKUP_REPLICA="s3",
        BACKUP_BUCKET=bucket,
        BACKUP_ENDPOINT=server.endpoint,
        BACKUP_ACCESS_KEY_ID=key,
        BACKUP_SECRET_ACCESS_KEY=secret,
        BACKUP_SYNC_INTERVAL="1s",
        **extra,
    )


def doctor_json(project, *args: str) -> tuple[int, dict]:
    proc = run_cli("doctor", "--json", *args, cwd=project.dir, timeout=90)
    for secret in (S3_SECRET, S3_RO_SECRET):
        assert secret not in proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_name(doc: dict, name: str) -> list[dict]:
    return [c for c in doc["checks"] if c["name"] == name]


def findings(doc: dict) -> set[str]:
    return {c["finding"] for c in doc["checks"] if c["finding"]}


def bucket_keys(server, bucket: str) -> list[str]:
    resp = server.client().list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in resp.get("Contents", [])]


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_healthy_s3_project_is_all_ok_and_probe_leaves_nothing(project, s3_server, s3_bucket, litestream_bins):
    s3_env(project, s3_server, s3_bucket)
    assert run_cli("setup", cwd=project.dir).returncode == 0
    code, doc = doctor_json(project)
    bad = [c for c in doc["checks"] if c["status"] in ("warn", "fail")]
    assert code == 0, bad
    assert doc["ok"] is True and doc["exit_code"] == 0 and doc["worst"] in ("ok", "info")
    assert set(doc) >= {"ok", "exit_code", "worst", "counts", "checks"}
    assert all(set(c) == CHECK_KEYS for c in doc["checks"])
    access = by_name(doc, "replica access")
    assert [c["status"] for c in access] == ["ok"]
    assert "PutObject" in access[0]["found"]
    assert by_name(doc, "clock")[0]["status"] == "ok"  # compared with the server's Date header
    assert bucket_keys(s3_server, s3_bucket) == []  # the probe object was deleted


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_missing_bucket(project, s3_server, litestream_bins):
    s3_env(project, s3_server, "no-such-bucket-here")
    code, doc = doctor_json(project)
    assert code == ExitCode.DOCTOR_FAIL
    (access,) = by_name(doc, "replica access")
    assert access["finding"] == "no-such-bucket"
    assert "create the bucket" in access["fix"]


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_wrong_secret(project, s3_server, s3_bucket, litestream_bins):
    wrong = "wrong-secret-Do-Not-Leak-99"
    s3_env(project, s3_server, s3_bucket, secret=wrong)
    proc = run_cli("doctor", "--json", cwd=project.dir, timeout=90)
    assert wrong not in proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    (access,) = by_name(doc, "replica access")
    assert access["finding"] == "signature-mismatch"
    assert "BACKUP_SECRET_ACCESS_KEY" in access["fix"]
    assert proc.returncode == ExitCode.DOCTOR_FAIL


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_unknown_access_key(project, s3_server, s3_bucket, litestream_bins):
    s3_env(project, s3_server, s3_bucket, key="nobodyknowsthiskey")
    code, doc = doctor_json(project)
    (access,) = by_name(doc, "replica access")
    assert access["finding"] == "unknown-access-key"
    assert "nobodyknowsthiskey" not in json.dumps(doc)  # the key id is shown masked
    assert code == ExitCode.DOCTOR_FAIL


@pytest.mark.s3
@pytest.mark.timeout(120)
def test_read_only_credentials(project, s3_server, s3_bucket, litestream_bins):
    s3_server.client().put_object(Bucket=s3_bucket, Key="app.db/existing", Body=b"x")
    s3_env(project, s3_server, s3_bucket, key=S3_RO_KEY, secret=S3_RO_SECRET)
    code, doc = doctor_json(project)
    (access,) = by_name(doc, "replica access")
    assert access["finding"] == "read-only"
    assert "Read & Write" in access["fix"] and "s3:PutObject" in access["fix"]
    assert code == ExitCode.DOCTOR_FAIL
    assert bucket_keys(s3_server, s3_bucket) == ["app.db/existing"]


@pytest.mark.timeout(60)
def test_unreachable_endpoint_is_quick_and_distinct(project, litestream_bins):
    from tests.conftest import free_port_base

    port = free_port_base(1)  # nothing listens there
    project.write_env(
        BACKUP_DATABASES="db/app.db",
        BACKUP_REPLICA="s3",
        BACKUP_BUCKET="b",
        BACKUP_ENDPOINT=f"http://127.0.0.1:{port}",
        BACKUP_ACCESS_KEY_ID=S3_KEY,
        BACKUP_SECRET_ACCESS_KEY=S3_SECRET,
    )
    code, doc = doctor_json(project)
    (access,) = by_name(doc, "replica access")
    assert access["finding"] == "endpoint-unreachable"
    assert "BACKUP_ENDPOINT" in access["fix"]
    assert code == ExitCode.DOCTOR_FAIL
    assert by_name(doc, "clock")[0]["status"] == "info"


@pytest.mark.timeout(60)
def test_database_not_in_wal_mode_offers_the_command(project, litestream_bins):
    con = sqlite3.connect(project.db)
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    code, doc = doctor_json(project)
    (wal,) = by_name(doc, "wal mode")
    assert wal["status"] == "fail" and wal["finding"] == "db-not-wal"
    assert wal_command(project.db) in wal["fix"]
    assert code == ExitCode.DOCTOR_FAIL
    # The offered command really works (sqlite3 CLI may be absent: run the same PRAGMA).
    con = sqlite3.connect(project.db)
    con.execute("PRAGMA journal_mode=WAL;")
    con.close()
    code, doc = doctor_json(project)
    assert by_name(doc, "wal mode")[0]["status"] == "ok"


@pytest.mark.timeout(60)
def test_file_replica_project_ok_and_warnings_exit_30(project, litestream_bins):
    assert run_cli("setup", cwd=project.dir).returncode == 0
    code, doc = doctor_json(project)
    assert code == 0, [c for c in doc["checks"] if c["status"] in ("warn", "fail")]
    assert by_name(doc, "replica access")[0]["status"] == "ok"
    assert not list(project.replica_dir.rglob(".backupctl-doctor-probe-*"))
    # A stale litestream.yml is a warning only: exit 30.
    (project.dir / "litestream.yml").write_text("dbs: []\n")
    code, doc = doctor_json(project)
    assert code == ExitCode.DOCTOR_WARN
    assert findings(doc) == {"config-outdated"}


@pytest.mark.timeout(60)
def test_file_replica_not_writable(project, tmp_path, litestream_bins):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(in_the_way / "backups"))
    code, doc = doctor_json(project)
    (access,) = by_name(doc, "replica access")
    assert access["finding"] == "replica-not-writable"
    assert "BACKUP_LOCAL_DIR" in access["fix"]
    assert code == ExitCode.DOCTOR_FAIL


@pytest.mark.timeout(60)
def test_broken_settings_are_a_failed_check_not_a_crash(project):
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_SYNC_INTERVAL="10", BACKUP_REPLICA="ftp")
    code, doc = doctor_json(project)
    assert code == ExitCode.DOCTOR_FAIL
    (check,) = doc["checks"]
    assert check["name"] == "settings" and check["finding"] == "settings-invalid"
    assert "BACKUP_SYNC_INTERVAL" in check["found"] and "BACKUP_REPLICA" in check["found"]
    human = run_cli("doctor", cwd=project.dir)
    assert human.returncode == ExitCode.DOCTOR_FAIL
    assert "\nfail\tsettings\t" in human.stdout and "Traceback" not in human.stderr


@pytest.mark.timeout(60)
def test_missing_and_non_sqlite_databases(project, litestream_bins):
    (project.dir / "db" / "notes.txt").write_text("not a database, but long enough " * 10)
    project.write_env(BACKUP_DATABASES="db/gone.db,db/notes.txt", BACKUP_LOCAL_DIR=str(project.replica_dir))
    code, doc = doctor_json(project)
    assert {"db-missing", "db-not-sqlite"} <= findings(doc)
    assert code == ExitCode.DOCTOR_FAIL


@pytest.mark.s3
@pytest.mark.timeout(180)
def test_second_replicator_on_the_same_database(project, s3_server, s3_bucket, litestream_bins, version, tmp_path):
    """A litestream started outside backupctl (a Procfile, a sidecar) on the same database is found."""
    from backupctl.config.render import render
    from backupctl.config.settings import load_settings
    from backupctl.litestream.binary import ensure_binary
    from backupctl.litestream.runner import Litestream

    s3_env(project, s3_server, s3_bucket, LITESTREAM_VERSION=version)
    settings = load_settings(project.env_file)
    other_config = tmp_path / "procfile-litestream.yml"
    other_config.write_text(render(settings).text)
    proc = Litestream(ensure_binary(version).path, settings, config_path=other_config).popen(
        "replicate", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            code, doc = doctor_json(project)
            (check,) = by_name(doc, "replicators")
            if check["status"] == "fail":
                break
            time.sleep(0.3)
        assert check["finding"] == "second-replicator", check
        assert str(proc.pid) in check["found"] and str(proc.pid) in check["fix"]
        assert code == ExitCode.DOCTOR_FAIL
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    code, doc = doctor_json(project)
    assert by_name(doc, "replicators")[0]["status"] == "ok"


def test_backupctl_lock_holder_counts_as_one_replicator(project, litestream_bins):
    """backupctl's own lock on the database is the one allowed replicator, not a second."""
    from backupctl.host import locks, processes
    from tests.host.test_processes import backupctl_lookalike

    supervisor = backupctl_lookalike(project.dir.parent)  # a process whose command line is `backupctl`
    held = locks.try_lock(locks.database_lock_path(project.db), owner_pid=supervisor.pid)
    assert held is not None
    record = processes.register(processes.SUPERVISOR, supervisor.pid, project=project.dir, databases=[project.db])
    try:
        report = run_doctor(project.env_file)
        (check,) = [c for c in report.checks if c.name == "replicators"]
        assert check.status == "ok" and "backupctl" in check.found
    finally:
        processes.unregister(record)
        held.release()
        supervisor.kill()
        supervisor.wait()


def test_config_database_paths_reads_rendered_and_hand_written_configs(tmp_path):
    text = (
        'dbs:\n  - path: "/srv/a\\x24b.db"\n    replica:\n      path: "a.db"\n'
        "  - path: storage/db/production.sqlite3  # main\n  - path: '/x/y.db'\n"
    )
    assert config_database_paths(text) == ["/srv/a$b.db", "a.db", "storage/db/production.sqlite3", "/x/y.db"]


def test_human_output_has_fixes(project, litestream_bins):
    con = sqlite3.connect(project.db)
    con.execute("PRAGMA journal_mode=DELETE")
    con.close()
    proc = run_cli("doctor", cwd=project.dir, env={"COLUMNS": "200"})
    assert proc.returncode == ExitCode.DOCTOR_FAIL
    # piped: the fix is the last column of the failed check's line
    failed = [line.split("\t") for line in proc.stdout.splitlines() if line.startswith("fail\t")]
    assert any("PRAGMA journal_mode=WAL;" in cells[-1] for cells in failed), proc.stdout
    # on a terminal: the box, with the fix under what was found
    from tests.cli.test_words_and_output import run_tty

    shown = run_tty("doctor", cwd=project.dir)[1]
    assert "fix:" in shown and "journal_mode=WAL;" in shown, shown  # words wrap at 80 columns, never break


def test_make_db_is_wal(tmp_path: Path):
    """Guard for the fixture the tests above rely on."""
    db = make_db(tmp_path / "x.db")
    assert db.read_bytes()[18:20] == b"\x02\x02"


@pytest.mark.timeout(120)
def test_a_replica_last_found_broken_fails_doctor_as_status_says(project, litestream_bins):
    """doctor checks the setup; it must not say "0 failed" beside a replica that `status` calls broken."""
    from backupctl import paths
    from backupctl.checks import continuity

    assert run_cli("setup", cwd=project.dir).returncode == 0
    code, doc = doctor_json(project)
    assert code == 0 and [c["status"] for c in by_name(doc, "backups")] == ["info"], by_name(doc, "backups")
    assert "no continuity check or verify has proven" in by_name(doc, "backups")[0]["found"]
    state_dir = paths.project_state_dir(project.dir)
    reason = "the replica's newest state matches no committed state of the live database: 3 page(s) differ"
    continuity.record(state_dir, continuity.Proof(str(project.db), "app.db", continuity.BROKEN, reason, time.time()))
    code, doc = doctor_json(project)
    assert code == ExitCode.DOCTOR_FAIL and findings(doc) == {"replica-broken"}, doc
    [check] = by_name(doc, "backups")
    assert check["subject"] == str(project.db) and "NOT whole" in check["found"] and "3 page(s) differ" in check["found"]
    human = run_cli("doctor", cwd=project.dir, timeout=90)
    assert human.returncode == ExitCode.DOCTOR_FAIL and "NOT whole" in human.stdout + human.stderr
    continuity.record(state_dir, continuity.Proof(str(project.db), "app.db", continuity.WHOLE, "equal", time.time()))
    code, doc = doctor_json(project)
    assert code == 0 and "proven whole" in by_name(doc, "backups")[0]["found"], doc
