"""`status`: verdicts against real replication, a real S3 server that is stopped and restarted,
and 50 databases at once."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backupctl.checks.status import stale_after_seconds
from backupctl.config.settings import load_settings
from backupctl.host import state
from backupctl.paths import project_state_dir
from tests.conftest import S3_KEY, S3_SECRET, S3Server, free_port_base, kill_pids, make_db, run_cli
from tests.litestream.test_listings import insert, write_env

DB_KEYS = {
    "name", "path", "verdict", "reason", "destinations", "size", "wal_size", "local_position", "local_updated_at",
    "replica_position", "newest_backup", "newest_backup_age_seconds", "behind", "behind_since", "lag_seconds",
    "lag_txids", "oldest_restorable", "newest_snapshot", "snapshot_count", "replica_error", "replica_read_at",
    "last_verify", "observed_at",
}  # fmt: skip
SUPERVISOR_KEYS = {"state", "running", "pid", "litestream_pid", "uptime_seconds", "restarts", "last_error", "mode",
                   "manager", "databases", "settings_changed"}  # fmt: skip
TOP_KEYS = {"ok", "exit_code", "checked_at", "litestream_version", "stale_after_seconds", "source", "observed_at",
            "supervisor", "databases"}  # fmt: skip


@pytest.fixture
def private_s3(tmp_path: Path) -> Iterator[S3Server]:
    """A second SeaweedFS, ours alone, so stopping it cannot disturb other tests."""
    root = tmp_path / "seaweed"
    (root / "data").mkdir(parents=True)
    config = root / "s3.json"
    config.write_text(json.dumps({"identities": [{"name": "admin", "credentials": [
        {"accessKey": S3_KEY, "secretKey": S3_SECRET}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))  # fmt: skip
    base = free_port_base()
    server = S3Server(f"http://127.0.0.1:{base}", base, root / "data", None, base, config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Running:
    proj: Path
    pid: int  # the supervisor
    litestream_pid: int | None


def start_replication(proj: Path, binary: Path) -> Running:
    """A real background supervisor (its litestream is the pinned ``binary``, chosen by the .env)."""
    res = run_cli("start", "--background", cwd=proj, timeout=180)
    assert res.returncode == 0, res.stderr
    doc = state.read_supervisor_state(project_state_dir(proj))
    assert doc is not None and doc.pid and Path(os.path.realpath(binary)).exists()
    return Running(proj, doc.pid, doc.litestream_pid)


def stop(running: Running) -> None:
    result = run_cli("stop", cwd=running.proj, timeout=120)
    assert result.returncode == 0, result.stderr


def kill_now(running: Running) -> None:
    kill_pids(running.pid, running.litestream_pid)


def status_json(proj: Path) -> tuple[int, dict]:
    res = run_cli("status", "--json", cwd=proj, timeout=120)
    assert res.stdout, res.stderr
    return res.returncode, json.loads(res.stdout)


def poll_status(proj: Path, want: Callable[[int, dict], bool], deadline: float = 90) -> tuple[int, dict]:
    end = time.monotonic() + deadline
    while True:
        code, doc = status_json(proj)
        if want(code, doc):
            return code, doc
        if time.monotonic() > end:
            pytest.fail(f"status never reached the wanted state; last: exit {code} {json.dumps(doc, indent=1)}")
        time.sleep(1)


def verdicts(doc: dict) -> set[str]:
    return {d["verdict"] for d in doc["databases"]}


@pytest.mark.timeout(300)
def test_status_goes_stale_when_s3_stops_and_ok_when_it_returns(
    version: str, litestream_bins: dict[str, Path], tmp_path: Path, private_s3: S3Server
) -> None:
    proj = tmp_path / "app"
    db = make_db(proj / "db" / "app.db", rows=5)
    bucket = private_s3.create_bucket("status-bkt")
    write_env(proj, version, "s3", bucket=bucket, endpoint=private_s3.endpoint, BACKUP_STALE_AFTER="3s")
    assert stale_after_seconds(load_settings(proj / ".env")) == 3.0

    code, doc = status_json(proj)  # nothing replicates yet
    assert code == 11 and verdicts(doc) == {"not-initialized"} and doc["supervisor"]["state"] == "stopped"

    proc = start_replication(proj, litestream_bins[version])
    try:
        insert(db, 100, 5)
        # ok can come a moment before 0.5 lists its first level-9 snapshot: wait for both.
        code, doc = poll_status(proj, lambda c, d: c == 0 and d["databases"][0]["snapshot_count"] >= 1)
        assert set(doc) == TOP_KEYS and set(doc["supervisor"]) == SUPERVISOR_KEYS
        (entry,) = doc["databases"]
        assert set(entry) == DB_KEYS
        assert doc["ok"] is True and entry["verdict"] == "ok" and entry["behind"] is False
        assert entry["newest_backup"] and entry["oldest_restorable"] and entry["snapshot_count"] >= 1
        assert doc["supervisor"]["running"] is True and doc["supervisor"]["pid"] == proc.pid

        # Idle is not stale: no writes, well past the 3s threshold, still ok.
        time.sleep(5)
        code, doc = status_json(proj)
        assert code == 0, doc

        private_s3.stop()
        insert(db, 200, 5)
        code, doc = poll_status(proj, lambda c, d: c == 10)
        (entry,) = doc["databases"]
        assert entry["verdict"] == "stale" and entry["replica_error"]
        assert private_s3.endpoint.split("//")[1] in entry["replica_error"]

        private_s3.start()
        code, doc = poll_status(proj, lambda c, d: c == 0, deadline=150)
        assert doc["databases"][0]["replica_error"] is None
    finally:
        if private_s3.proc:
            stop(proc)
        else:
            kill_now(proc)
    # Replication stopped: down, whatever the replica holds.
    code, doc = status_json(proj)
    assert code == 11 and verdicts(doc) == {"down"}


@pytest.mark.timeout(300)
def test_status_for_50_databases(version: str, litestream_bins: dict[str, Path], tmp_path: Path) -> None:
    proj = tmp_path / "app"
    for i in range(50):
        make_db(proj / "db" / f"db{i:02d}.db", rows=1)
    write_env(proj, version, "file", BACKUP_DATABASES="db/*.db")
    proc = start_replication(proj, litestream_bins[version])
    try:
        code, doc = poll_status(proj, lambda c, d: c == 0, deadline=120)
        assert len(doc["databases"]) == 50 and verdicts(doc) == {"ok"}
        res = run_cli("status", cwd=proj, timeout=120)
        assert res.returncode == 0 and "db49.db" in res.stdout
    finally:
        stop(proc)
