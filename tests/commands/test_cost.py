"""`backupctl cost` from real replicas written by the real litestream (a folder and SeaweedFS)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from backupctl.commands.cost import DEFAULT_PRICES, GB, MONTH_SECONDS, parse_price_overrides
from backupctl.errors import ConfigError, ExitCode
from tests.conftest import S3_KEY, S3_SECRET, run_cli

USAGE_KEYS = {
    "stored_bytes",
    "stored_gb",
    "objects",
    "retention_days",
    "sync_interval_seconds",
    "writes_per_month",
    "writes_per_month_if_busy",
    "bytes_written_per_month",
    "verifies_per_month",
    "drills_per_month",
    "reads_per_month",
    "egress_bytes_per_month",
    "restore_bytes",
    "restore_reads",
    "projected_stored_bytes",
}
ESTIMATE_KEYS = {
    "storage",
    "writes",
    "reads",
    "egress",
    "monthly_total",
    "monthly_total_if_busy",
    "storage_at_retention",
    "restore_egress",
    "restore_once",
    "currency",
}


def replicate_some(project, version: str, has_objects) -> None:
    """Run the real litestream on the project's database with writes until the replica holds data."""
    from backupctl.config.render import sync_config
    from backupctl.config.settings import load_settings
    from backupctl.litestream.binary import ensure_binary
    from backupctl.litestream.runner import Litestream

    settings = load_settings(project.env_file)
    assert settings.version == version
    sync_config(settings)
    proc = Litestream(ensure_binary(version).path, settings).popen(
        "replicate", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        con = sqlite3.connect(project.db)
        deadline = time.monotonic() + 60
        i = 0
        while time.monotonic() < deadline:
            con.execute("INSERT INTO items (body) VALUES (?)", ("x" * 4000 + str(i),))
            con.commit()
            i += 1
            if i > 20 and has_objects():
                break
            time.sleep(0.2)
        con.close()
        assert has_objects(), "litestream wrote nothing to the replica within 60s"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cost_json(project, *args: str, env: dict[str, str] | None = None) -> dict:
    proc = run_cli("cost", "--json", *args, cwd=project.dir, env=env, timeout=90)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert S3_SECRET not in proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def check_arithmetic(doc: dict, stored_bytes: int) -> None:
    """The report's numbers follow from the measured size and rate, line by line."""
    assert set(doc) >= {"ok", "prices", "replicas", "usage", "estimates", "assumptions", "notes"}
    usage, est = doc["usage"], doc["estimates"]
    assert set(usage) == USAGE_KEYS
    assert set(est) == {"r2", "s3"} and set(est["r2"]) == ESTIMATE_KEYS == set(est["s3"])
    assert usage["stored_bytes"] == stored_bytes > 0
    gb = stored_bytes / GB
    assert usage["stored_gb"] == pytest.approx(gb)
    s3, r2 = est["s3"], est["r2"]
    assert s3["storage"] == pytest.approx(gb * 0.023)
    assert r2["storage"] == 0  # under R2's 10 GB free tier
    assert s3["restore_egress"] == pytest.approx(gb * 0.09)
    assert r2["restore_egress"] == 0  # R2 egress is free
    assert s3["restore_once"] == pytest.approx(gb * 0.09 + usage["restore_reads"] / 1e6 * 0.40)
    per_day = sum(r["objects_per_day"] for r in doc["replicas"])
    assert usage["writes_per_month"] == pytest.approx(per_day * 30)
    assert s3["writes"] == pytest.approx(usage["writes_per_month"] / 1e6 * 5.0)
    assert r2["writes"] == pytest.approx(max(0.0, usage["writes_per_month"] / 1e6 - 1.0) * 4.50)
    assert usage["writes_per_month_if_busy"] == pytest.approx(MONTH_SECONDS / usage["sync_interval_seconds"])
    assert s3["monthly_total"] == pytest.approx(s3["storage"] + s3["writes"] + s3["reads"] + s3["egress"])
    assert usage["retention_days"] == pytest.approx(7.0)  # the 168h default
    assert usage["objects"] == sum(r["objects"] for r in doc["replicas"])
    for r in doc["replicas"]:
        assert 0 < r["objects_in_window"] <= r["objects"]
        assert r["window_days"] <= usage["retention_days"]


@pytest.mark.timeout(180)
def test_cost_of_a_file_replica(project, litestream_bins):
    def replica_files() -> list[Path]:
        return [p for p in project.replica_dir.rglob("*") if p.is_file()]

    project.write_env(
        BACKUP_DATABASES="db/app.db",
        BACKUP_LOCAL_DIR=str(project.replica_dir),
        BACKUP_SYNC_INTERVAL="1s",
        LITESTREAM_VERSION="0.3.13",
    )
    replicate_some(project, "0.3.13", lambda: len(replica_files()) >= 2)
    doc = cost_json(project)
    check_arithmetic(doc, sum(p.stat().st_size for p in replica_files()))
    (replica,) = doc["replicas"]
    assert replica["kind"] == "file" and replica["objects"] == len(replica_files())
    assert any("minutes old" in n for n in doc["notes"])  # a young replica is flagged
    assert doc["usage"]["projected_stored_bytes"] is None

    # Overrides: by option and by environment; free tier off makes R2 storage linear in size too.
    doc = cost_json(
        project, "--price", "r2.free_storage_gb=0", "--price", "s3.storage_gb_month=1", env={"BACKUPCTL_PRICES": "s3.egress_gb=2"}
    )
    gb = doc["usage"]["stored_gb"]
    assert doc["estimates"]["r2"]["storage"] == pytest.approx(gb * 0.015)
    assert doc["estimates"]["s3"]["storage"] == pytest.approx(gb * 1.0)
    assert doc["estimates"]["s3"]["restore_egress"] == pytest.approx(gb * 2.0)
    assert doc["prices"]["r2"]["free_storage_gb"] == 0

    human = run_cli("cost", cwd=project.dir, env={"COLUMNS": "200"})
    assert human.returncode == 0 and "R2" in human.stdout and "S3" in human.stdout


@pytest.mark.s3
@pytest.mark.timeout(180)
def test_cost_of_an_s3_replica(project, s3_server, s3_bucket, litestream_bins):
    project.write_env(
        BACKUP_DATABASES="db/app.db",
        BACKUP_REPLICA="s3",
        BACKUP_BUCKET=s3_bucket,
        BACKUP_ENDPOINT=s3_server.endpoint,
        BACKUP_ACCESS_KEY_ID=S3_KEY,
        BACKUP_SECRET_ACCESS_KEY=S3_SECRET,
        BACKUP_SYNC_INTERVAL="1s",
        BACKUP_VERIFY_INTERVAL="24h",
    )
    client = s3_server.client()

    def listing() -> list[dict]:
        return client.list_objects_v2(Bucket=s3_bucket, Prefix="app.db/").get("Contents", [])

    replicate_some(project, "0.5.17", lambda: len(listing()) >= 2)
    stored = sum(o["Size"] for o in listing())
    doc = cost_json(project)
    check_arithmetic(doc, stored)
    usage = doc["usage"]
    # A daily verify is a full restore a day: 30 downloads of the replica a month, egress on S3 only.
    assert usage["verifies_per_month"] == pytest.approx(30)
    assert usage["egress_bytes_per_month"] == pytest.approx(30 * stored)
    assert doc["estimates"]["s3"]["egress"] == pytest.approx(30 * stored / GB * 0.09)
    assert doc["estimates"]["r2"]["egress"] == 0
    assert usage["reads_per_month"] == pytest.approx(30 * usage["objects"])


def test_cost_with_an_unreachable_replica_is_a_clean_error(project):
    from tests.conftest import free_port_base

    port = free_port_base(1)
    project.write_env(
        BACKUP_DATABASES="db/app.db",
        BACKUP_REPLICA="s3",
        BACKUP_BUCKET="b",
        BACKUP_ENDPOINT=f"http://127.0.0.1:{port}",
        BACKUP_ACCESS_KEY_ID=S3_KEY,
        BACKUP_SECRET_ACCESS_KEY=S3_SECRET,
    )
    proc = run_cli("cost", "--json", cwd=project.dir, timeout=120)
    assert proc.returncode == ExitCode.LITESTREAM
    doc = json.loads(proc.stdout)
    assert doc["ok"] is False and "backupctl doctor" in doc["error"]["hint"]
    assert S3_SECRET not in proc.stdout + proc.stderr


def test_empty_replica_costs_nothing_but_storage_minimums(project):
    doc = cost_json(project)
    assert doc["usage"]["stored_bytes"] == 0 and doc["replicas"][0]["objects"] == 0
    assert doc["estimates"]["s3"]["monthly_total"] == 0
    assert any("holds nothing yet" in n for n in doc["notes"])


def test_price_overrides_are_validated(project):
    assert parse_price_overrides(["s3.egress_gb=0.05"])["s3"].egress_gb == 0.05
    assert parse_price_overrides([])["r2"] == DEFAULT_PRICES["r2"]
    for bad in ("s3.egress=1", "gcs.storage_gb_month=1", "r2.storage_gb_month=-1", "r2.storage_gb_month=nan", "x"):
        with pytest.raises(ConfigError):
            parse_price_overrides([bad])
    proc = run_cli("cost", "--price", "r2.nope=1", cwd=project.dir)
    assert proc.returncode == ExitCode.CONFIG and "storage_gb_month" in proc.stderr
