"""Recovery drill against a real replica: passes when healthy (with RPO, RTO and row counts),
fails with exit 22 when the objects a restore starts from are deleted or corrupted, leaves
nothing behind, and runs on a schedule from the supervisor."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from backupctl.errors import ExitCode
from backupctl.host import state
from tests.conftest import count_rows, run_cli, wait_for
from tests.restore.test_restore import wait_replicated

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# The objects a restore starts from: 0.5 LTX files beginning at txid 1 (every level; a file replica
# keeps them under ltx/<level>/, S3 under <level as 4 hex digits>/), 0.3 snapshots.
BASE_OBJECT = re.compile(r"/(?:ltx/\d+|[0-9a-f]{4})/0{15}1-[0-9a-f]{16}\.ltx$|/snapshots/[^/]+$")


def base_files(replica_dir: Path) -> list[Path]:
    return sorted(p for p in replica_dir.rglob("*") if p.is_file() and BASE_OBJECT.search(p.as_posix()))


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, min(middle + 64, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def insert(db: Path, n: int) -> None:
    con = sqlite3.connect(db, timeout=10)
    for i in range(n):
        con.execute("INSERT INTO items (body) VALUES (?)", (f"drill {i}",))
        con.commit()
    con.close()


def drill(project, tmp: Path) -> tuple[int, dict]:
    proc = run_cli("drill", "--json", cwd=project.dir, env={"TMPDIR": str(tmp)}, timeout=180)
    assert proc.stderr == "" or "Traceback" not in proc.stderr
    assert list(tmp.iterdir()) == []  # nothing left behind
    return proc.returncode, json.loads(proc.stdout)


def test_drill_passes_on_a_healthy_replica_and_fails_on_a_damaged_one(project, version, tmp_path) -> None:
    project.write_env(
        BACKUP_DATABASES="db/app.db",
        BACKUP_LOCAL_DIR=str(project.replica_dir),
        BACKUP_SYNC_INTERVAL="1s",
        BACKUP_DRILL_INTERVAL="2s",
        LITESTREAM_VERSION=version,
    )
    insert(project.db, 25)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    started = run_cli("start", "--background", cwd=project.dir, env={"TMPDIR": str(tmp)}, timeout=150)
    assert started.returncode == 0, started.stderr
    try:
        insert(project.db, 5)
        wait_for(lambda: run_cli("status", cwd=project.dir, timeout=90).returncode == 0, timeout=120, what="status ok")
        # ok allows some lag (the stale threshold): wait until a restore really holds the last rows
        wait_replicated(project, 30)
        # healthy, while replicating: restored, checked, rows equal to the live database's
        # its own TMPDIR: the supervisor's scheduled drills (every 2 s) use `tmp` meanwhile
        own_tmp = tmp_path / "tmp-manual"
        own_tmp.mkdir()
        code, doc = drill(project, own_tmp)
        assert code == 0 and doc["ok"] is True and doc["status"] == "passed", doc
        (db,) = doc["databases"]
        assert db["integrity"] == "ok" and db["tables"] == [{"name": "items", "rows": 30, "live_rows": 30}]
        assert 0 < doc["rto_seconds"] < 60 and doc["rpo_seconds"] is not None and 0 <= doc["rpo_seconds"] < 120
        assert db["state_at"] and doc["size"] > 0
        recorded = state.last_drill(project.dir / ".backupctl")
        assert recorded is not None and recorded["status"] in ("passed", "failed")
        # the supervisor runs one on its schedule (BACKUP_DRILL_INTERVAL=2s) and records it
        scheduled = wait_for(
            lambda: (r := state.last_drill(project.dir / ".backupctl")) and r["checked_at"] > doc["checked_at"] and r,
            timeout=60,
            what="a scheduled drill",
        )
        assert scheduled["status"] == "passed" and scheduled["rto_seconds"] > 0
        assert "drill passed" in (project.dir / ".backupctl" / "supervisor.log").read_text()
    finally:
        stopped = run_cli("stop", cwd=project.dir, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert list(tmp.iterdir()) == []  # the scheduled drills left nothing either

    replica = project.replica_dir / "app.db"
    bases = base_files(replica)
    assert bases, sorted(p.relative_to(replica).as_posix() for p in replica.rglob("*") if p.is_file())
    originals = {p: p.read_bytes() for p in bases}

    # corrupted: every object a restore can start from has damaged bytes
    for p in bases:
        corrupt(p)
    code, doc = drill(project, tmp)
    assert code == ExitCode.DRILL_FAILED and doc["ok"] is False and doc["status"] == "failed", doc
    assert doc["databases"][0]["status"] == "failed" and doc["databases"][0]["reason"]
    assert "rto_seconds" in doc and "rpo_seconds" in doc
    assert state.last_drill(project.dir / ".backupctl")["status"] == "failed"

    # deleted: those objects are gone
    for p in bases:
        p.unlink()
    code, doc = drill(project, tmp)
    assert code == ExitCode.DRILL_FAILED and doc["databases"][0]["status"] == "failed", doc
    human = run_cli("drill", cwd=project.dir, timeout=180)
    assert human.returncode == ExitCode.DRILL_FAILED and "drill failed" in human.stderr and "Traceback" not in human.stderr

    # put back: healthy again, and the live database was never touched
    for p, data in originals.items():
        p.write_bytes(data)
    code, doc = drill(project, tmp)
    assert code == 0, doc
    assert count_rows(project.db) == 30
