"""Listings against real replicas (local folder and SeaweedFS), both pinned versions.

What the listings report is checked against what a real restore returns.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from backupctl.config.render import sync_config
from backupctl.config.settings import Settings, load_settings
from backupctl.errors import LitestreamError
from backupctl.litestream import adapter, listings, rows
from backupctl.litestream.runner import Litestream
from tests.conftest import S3_KEY, S3_SECRET, count_rows, free_port_base, make_db, run_cli

pytestmark = pytest.mark.timeout(240)


def write_env(proj: Path, version: str, replica: str, **extra: str) -> Path:
    values = {"BACKUP_DATABASES": "db/app.db", "BACKUP_SYNC_INTERVAL": "1s", "LITESTREAM_VERSION": version}
    if replica == "file":
        values["BACKUP_LOCAL_DIR"] = str(proj.parent / "replicas")
    else:
        values.update(
            BACKUP_REPLICA="s3",
            BACKUP_BUCKET=extra.pop("bucket"),
            BACKUP_ENDPOINT=extra.pop("endpoint"),
            BACKUP_ACCESS_KEY_ID=S3_KEY,
            BACKUP_SECRET_ACCESS_KEY=S3_SECRET,
        )
    values.update(extra)
    proj.mkdir(parents=True, exist_ok=True)
    env = proj / ".env"
    env.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return env


def insert(db: Path, start: int, n: int) -> None:
    con = sqlite3.connect(db)
    con.executemany("INSERT INTO items (body) VALUES (?)", [(f"row {i}",) for i in range(start, start + n)])
    con.commit()
    con.close()


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM (final sync), then SIGKILL the group if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            import os

            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def replicate_two_batches(settings: Settings, binary: Path, db: Path) -> None:
    """Real `litestream replicate` (1s sync): 10 rows, a pause, 10 more rows, then SIGTERM."""
    config = sync_config(settings).path
    proc = Litestream(binary, settings, config).popen("replicate", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        insert(db, 0, 10)
        time.sleep(2.5)
        insert(db, 10, 10)
        time.sleep(2.5)
    finally:
        stop(proc)
    assert proc.returncode == 0


def restore(settings: Settings, binary: Path, db: Path, out: Path, *args: str) -> int:
    Litestream(binary, settings).run("restore", "-o", str(out), *args, str(db), timeout=60)
    return count_rows(out)


@pytest.mark.parametrize("replica", ["file", "s3"])
def test_listings_match_what_restore_returns(
    replica: str, version: str, litestream_bins: dict[str, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    extra = {}
    if replica == "s3":
        server = request.getfixturevalue("s3_server")
        extra = {"bucket": request.getfixturevalue("s3_bucket"), "endpoint": server.endpoint}
    proj = tmp_path / "app"
    db = make_db(proj / "db" / "app.db")
    settings = load_settings(write_env(proj, version, replica, **extra))
    binary = litestream_bins[version]
    dbrec = settings.databases[0]

    empty = adapter.restorable_window(settings, binary, dbrec)
    assert empty.empty and empty.oldest is None and empty.snapshot_count == 0

    replicate_two_batches(settings, binary, db)
    window = adapter.restorable_window(settings, binary, dbrec)
    snaps = listings.snapshots(settings, binary, dbrec)
    segments = listings.wal_segments(settings, binary, dbrec)
    assert window.oldest is not None and window.newest is not None
    assert window.oldest.tzinfo is not None and window.oldest <= window.newest
    assert window.newest - window.oldest >= timedelta(seconds=2)  # the two batches are 2.5s apart
    assert snaps and window.snapshot_count == len(snaps)
    assert window.newest_snapshot == snaps[-1].created
    assert segments and segments[-1].created <= window.newest
    assert window.destinations == (dbrec.replicas[0].destination,)

    # The latest restore holds everything; the listed window brackets what timestamp restores give.
    assert restore(settings, binary, db, tmp_path / "latest.db") == 20
    oldest = listings.iso(window.oldest + timedelta(seconds=1))
    first = restore(settings, binary, db, tmp_path / "oldest.db", "-timestamp", oldest)
    assert first < 20  # the oldest point predates the second batch
    if version.startswith("0.5"):
        assert window.max_txid is not None and window.min_txid == 1
        assert restore(settings, binary, db, tmp_path / "txid.db", "-txid", listings.txid_hex(window.max_txid)) == 20
        stamp = listings.iso(window.newest + timedelta(seconds=1))
        assert restore(settings, binary, db, tmp_path / "newest.db", "-timestamp", stamp) == 20
        levels = {f.level for f in listings.ltx_files(settings, binary, dbrec, "all")}
        assert {listings.WAL_LEVEL, listings.SNAPSHOT_LEVEL} <= levels
    else:
        gen = window.latest_generation
        assert gen is not None and len(window.generations) == 1
        assert restore(settings, binary, db, tmp_path / "gen.db", "-generation", gen.generation) == 20
        # 0.3 times are truncated to the second: at `newest` the first batch (2.5s older) is in.
        assert restore(settings, binary, db, tmp_path / "newest.db", "-timestamp", listings.iso(window.newest)) >= 10
        assert all(s.generation == gen.generation for s in snaps)

    # The CLI's JSON carries the same facts under documented keys.
    env: dict[str, str] = {}
    res = run_cli("generations", "--json", cwd=proj, env=env)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] is True and doc["litestream_version"] == version
    entry = doc["databases"][0]
    assert set(entry) >= {"name", "path", "destinations"}
    if version.startswith("0.5"):
        assert "note" in doc
        (w,) = entry["window"]
        assert set(w) == {"database", "destinations", "oldest", "newest", "snapshot_count", "newest_snapshot",
                          "file_count", "generations", "min_txid", "max_txid"}  # fmt: skip
        assert w["newest"] == listings.iso(window.newest) and w["max_txid"] == listings.txid_hex(window.max_txid)
    else:
        (g,) = entry["generations"]
        assert set(g) == {"replica", "generation", "lag", "start", "end"}
    res = run_cli("snapshots", "--json", "app.db", cwd=proj, env=env)
    assert res.returncode == 0, res.stderr
    snap = json.loads(res.stdout)["databases"][0]["snapshots"][-1]
    assert set(snap) == {"replica", "created", "size", "generation", "index", "min_txid", "max_txid"}
    assert snap["created"] == listings.iso(snaps[-1].created)
    res = run_cli("wal", "--json", cwd=proj, env=env)
    assert res.returncode == 0, res.stderr
    seg = json.loads(res.stdout)["databases"][0]["wal"][0]
    assert set(seg) == {"replica", "created", "size", "generation", "index", "offset", "level", "min_txid", "max_txid"}
    res = run_cli("databases", "--json", cwd=proj, env=env)
    assert res.returncode == 0, res.stderr
    (d,) = json.loads(res.stdout)["databases"]
    assert d["in_litestream_config"] is True and d["path"] == str(db)
    assert set(d) == {"name", "path", "exists", "size", "replicas", "in_litestream_config"}
    res = run_cli("snapshots", cwd=proj, env=env)
    assert res.returncode == 0, res.stderr
    header, *rows = res.stdout.splitlines()  # piped: tab-separated with a header, like gh
    assert header.split("\t")[:2] == ["database", "created"] and rows and rows[0].startswith("app.db\t")


def test_unreachable_replica_is_an_error_not_an_empty_listing(
    version: str, litestream_bins: dict[str, Path], tmp_path: Path
) -> None:
    closed = free_port_base(1)  # nothing listens there
    proj = tmp_path / "app"
    make_db(proj / "db" / "app.db")
    settings = load_settings(write_env(proj, version, "s3", bucket="nobucket", endpoint=f"http://127.0.0.1:{closed}"))
    destination = settings.databases[0].replicas[0].destination
    with pytest.raises(LitestreamError) as err:
        adapter.restorable_window(settings, litestream_bins[version], settings.databases[0])
    assert destination in err.value.message and "refused" in err.value.message.lower()

    res = run_cli("snapshots", "--json", cwd=proj)
    assert res.returncode == 5
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and destination in doc["error"]["message"]
    assert S3_SECRET not in res.stdout + res.stderr


def test_03_logged_errors_on_stdout_are_raised(litestream_bins: dict[str, Path], tmp_path: Path, s3_server) -> None:
    """0.3 logs a failed listing on stdout and exits 0: a missing bucket must still be an error."""
    proj = tmp_path / "app"
    make_db(proj / "db" / "app.db")
    settings = load_settings(write_env(proj, "0.3.13", "s3", bucket="no-such-bucket-here", endpoint=s3_server.endpoint))
    with pytest.raises(LitestreamError) as err:
        listings.generations(settings, litestream_bins["0.3.13"], settings.databases[0])
    assert settings.databases[0].replicas[0].destination in err.value.message
    assert "NoSuchBucket" in err.value.message or "bucket" in err.value.message.lower()


def test_05_missing_bucket_is_an_error_within_the_timeout(litestream_bins: dict[str, Path], tmp_path: Path, s3_server) -> None:
    proj = tmp_path / "app"
    make_db(proj / "db" / "app.db")
    settings = load_settings(write_env(proj, "0.5.17", "s3", bucket="no-such-bucket-here", endpoint=s3_server.endpoint))
    try:
        files = listings.ltx_files(settings, litestream_bins["0.5.17"], settings.databases[0], timeout=15)
    except LitestreamError as exc:
        assert settings.databases[0].replicas[0].destination in exc.message
    else:
        pytest.fail(f"a missing bucket was listed as {files!r}")


def test_parsers_are_robust() -> None:
    assert listings.parse_time("2026-01-02T03:04:05Z").isoformat() == "2026-01-02T03:04:05+00:00"
    assert listings.parse_time("2026-01-02T03:04:05.123456789Z").microsecond == 123456
    errs = listings._error_lines(
        'time=2026 level=ERROR msg="cannot list generations" db=/x replica=s3 error="RequestError: send\\ncaused by"\n'
        "name  generation  lag  start  end\n"
    )
    assert errs == [{"time": "2026", "level": "ERROR", "msg": "cannot list generations", "db": "/x", "replica": "s3",
                     "error": "RequestError: send caused by"}]  # fmt: skip
    assert rows.table("name  generation\nfile  abc\n", "name") == [["file", "abc"]]
    # 0.3's tables: rows without a time are skipped, a path with spaces is matched whole
    assert rows.snapshot_rows("replica generation index size created\nfile abc 0 10 -\n") == []
    listed = rows.listed_databases("path replicas\n/a b/app.db file\n/a/app.db file,s3\n", ["/a b/app.db", "/a/app.db", "/c.db"])
    assert listed == {"/a b/app.db": "file", "/a/app.db": "file,s3"}
    # 0.5: a window starts at a snapshot or at txid 1; files after a removed replica start nowhere
    t = listings.parse_time("2026-01-02T03:04:05Z")
    assert rows.window_fields([(0, 1, 3, 10, t), (0, 4, 4, 10, t)])["oldest"] == t
    assert rows.window_fields([(9, 1, 9, 10, t), (0, 10, 10, 10, t)])["oldest"] == t
    assert rows.window_fields([(0, 5, 5, 10, t), (1, 5, 5, 10, t)])["oldest"] is None
    assert rows.window_fields([(0, 5, 5, 10, t)])["newest"] == t


def test_sizes_have_one_formatter() -> None:
    """The CLI's sizes (status, databases, listings, restore) and doctor's come from one function."""
    from backupctl.units import human_size

    assert human_size(None) == "-"
    for n, text in [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KB"), (5 * 1024**3, "5.0 GB"), (3 * 1024**4, "3.0 TB")]:
        assert human_size(n) == text
