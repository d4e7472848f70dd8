"""End to end, as a user runs it: setup -> start --background -> writes -> status -> verify
-> stop -> restore, against the real SeaweedFS S3 server on loopback, for both pinned
versions, driven by the two seed conventions (chora's R2 .env and Campfire's .env).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.conftest import S3_KEY, S3_SECRET, count_rows, make_db, run_cli

pytestmark = [pytest.mark.s3, pytest.mark.slow, pytest.mark.timeout(420)]


def chora_env(endpoint: str, bucket: str, version: str) -> dict[str, str]:
    return {
        "R2_ACCOUNT_ID": "0123456789abcdef0123456789abcdef",
        "R2_BUCKET": bucket,
        "R2_ACCESS_KEY_ID": S3_KEY,
        "R2_SECRET_ACCESS_KEY": S3_SECRET,
        "BACKUP_DATABASES": "chora.db",
        # The only lines a test adds to the chora .env: point the R2 replica at loopback.
        "BACKUP_ENDPOINT": endpoint,
        "BACKUP_FORCE_PATH_STYLE": "true",
        "BACKUP_SYNC_INTERVAL": "1s",
        "LITESTREAM_VERSION": version,
    }


def campfire_env(endpoint: str, bucket: str, version: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "LITESTREAM_REPLICA_BUCKET": bucket,
        "LITESTREAM_REPLICA_ENDPOINT": endpoint,
        "BACKUP_DATABASES": "storage/db/production.sqlite3",
        "BACKUP_PATH": "campfire-db",
        "BACKUP_SYNC_INTERVAL": "1s",
        "LITESTREAM_VERSION": version,
    }


def write_rows(db: Path, start: int, count: int) -> None:
    con = sqlite3.connect(db, timeout=10)
    con.execute("PRAGMA busy_timeout=10000")
    for i in range(start, start + count):
        con.execute("INSERT INTO items (body) VALUES (?)", (f"row {i}",))
        con.commit()
    con.close()


@pytest.mark.parametrize("convention", ["chora", "campfire"])
def test_full_loop_against_local_s3(tmp_path: Path, s3_server, s3_bucket, version, convention) -> None:
    proj = tmp_path / "app"
    proj.mkdir()
    make_env = chora_env if convention == "chora" else campfire_env
    env = make_env(s3_server.endpoint, s3_bucket, version)
    (proj / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    db = make_db(proj / env["BACKUP_DATABASES"], rows=10)

    setup = run_cli("setup", cwd=proj)
    assert setup.returncode == 0, setup.stderr
    assert S3_SECRET not in (proj / "litestream.yml").read_text()

    start = run_cli("start", "--background", cwd=proj, timeout=120)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        write_rows(db, 10, 40)
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            status = run_cli("status", "--json", cwd=proj, timeout=90)
            if status.returncode == 0:
                break
            time.sleep(1)
        assert status is not None and status.returncode == 0, status.stdout + status.stderr
        doc = json.loads(status.stdout)
        assert doc["ok"] is True
        assert S3_SECRET not in status.stdout

        verify = run_cli("verify", "--json", cwd=proj, timeout=180)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert json.loads(verify.stdout)["results"][0]["status"] == "verified"

        write_rows(db, 50, 25)
    finally:
        stop = run_cli("stop", cwd=proj, timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr

    out = tmp_path / "restored.db"
    restore = run_cli("restore", "-o", str(out), cwd=proj, timeout=180)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert count_rows(out) == count_rows(db) == 75
    for result in (setup, start, status, verify, stop, restore):
        assert S3_SECRET not in result.stdout + result.stderr
