"""Disaster recovery on a new machine, as a user does it: a Rails app of four databases matched
by a glob is replicated, the whole project folder is deleted, and a new folder holding only the
`.env` gets everything back (`restore`, then `start`), and again through
`start --restore-if-missing` (the container boot). Real litestream (both pins), real SeaweedFS
on loopback and a file replica, real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from backupctl.errors import ExitCode
from tests.conftest import S3_KEY, S3_SECRET, count_rows, make_db, run_cli, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

RAILS = ("production.sqlite3", "production_cable.sqlite3", "production_cache.sqlite3", "production_queue.sqlite3")


def rails_env(tmp_path: Path, version: str, replica: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Campfire's .env conventions, with the Rails 8 four-database layout behind one glob."""
    env = {
        "BACKUP_DATABASES": "storage/production*.sqlite3",
        "BACKUP_PATH": "campfire-db/{name}",
        "BACKUP_SYNC_INTERVAL": "1s",
        "LITESTREAM_VERSION": version,
    }
    if replica == "file":
        env["BACKUP_LOCAL_DIR"] = str(tmp_path / "replicas")
    else:
        server = request.getfixturevalue("s3_server")
        env.update(
            AWS_ACCESS_KEY_ID=S3_KEY,
            AWS_SECRET_ACCESS_KEY=S3_SECRET,
            AWS_DEFAULT_REGION="us-east-1",
            LITESTREAM_REPLICA_BUCKET=request.getfixturevalue("s3_bucket"),
            LITESTREAM_REPLICA_ENDPOINT=server.endpoint,
        )
    return env


def machine(folder: Path, env: dict[str, str]) -> Path:
    """A project folder holding only the .env (what a new machine has)."""
    folder.mkdir(parents=True)
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return folder


def insert(db: Path, n: int, table: str = "items") -> None:
    con = sqlite3.connect(db, timeout=10)
    con.execute("PRAGMA busy_timeout=10000")
    for i in range(n):
        con.execute(f"INSERT INTO {table} (body) VALUES (?)", (f"row {i}",))
        con.commit()
    con.close()


def integrity(db: Path) -> str:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def counts(folder: Path) -> dict[str, int]:
    return {name: count_rows(folder / name) for name in RAILS}


def start_stop(proj: Path, write: dict[str, int], *extra: str) -> subprocess.CompletedProcess[str]:
    """`start --background`, commit rows, `stop` (final sync): every committed row is in the replica."""
    started = run_cli("start", "--background", *extra, cwd=proj, timeout=150)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        for name, n in write.items():
            insert(proj / "storage" / name, n)
        # caught up before the stop: 0.3 can log a canceled upload while stopping right after a write
        wait_for(lambda: run_cli("status", cwd=proj, timeout=90).returncode == 0, timeout=120, what="status ok")
    finally:
        stopped = run_cli("stop", cwd=proj, timeout=120)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    return started


@pytest.mark.parametrize("replica", ["file", "s3"])
def test_whole_app_comes_back_on_a_new_machine(tmp_path: Path, version: str, replica: str, request) -> None:
    env = rails_env(tmp_path, version, replica, request)
    old = machine(tmp_path / "old", env)
    for i, name in enumerate(RAILS):
        make_db(old / "storage" / name, rows=5 + i)
    start_stop(old, {name: 10 * (i + 1) for i, name in enumerate(RAILS)})
    expected = counts(old / "storage")
    shutil.rmtree(old)  # the machine is gone

    # 1. restore on a new machine: only the .env; the folder's mode decides the new files' modes
    new = machine(tmp_path / "new", env)
    os.chmod(new, 0o750)
    owner = (1000, 1000) if os.geteuid() == 0 else (os.getuid(), os.getgid())  # as root: the app's uid, not root's
    os.chown(new, *owner)
    # four databases and none named: refused, naming them, before anything is read or written
    unnamed = run_cli("restore", "--dry-run", cwd=new, timeout=120)
    assert unnamed.returncode == ExitCode.USAGE, unnamed.stdout + unnamed.stderr
    assert f"configured: {', '.join(sorted(RAILS))}" in unnamed.stderr and "--all" in unnamed.stderr
    planned = run_cli("restore", "--all", "--dry-run", "--json", cwd=new, timeout=120)
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert sorted(p["name"] for p in json.loads(planned.stdout)["plans"]) == list(RAILS)
    assert not (new / "storage").exists()  # a dry run writes no database and no folder
    restored = run_cli("restore", "--all", "--json", cwd=new, timeout=240)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    doc = json.loads(restored.stdout)
    assert sorted(r["name"] for r in doc["restores"]) == list(RAILS)
    for r in doc["restores"]:
        assert r["output"] == str(new / "storage" / r["name"])
        assert r["size"] > 0 and r["integrity"] == "ok" and r["state_at"]
    assert doc["restores"][0]["created_folders"] == [str(new / "storage")]
    assert counts(new / "storage") == expected
    assert all(integrity(new / "storage" / name) == "ok" for name in RAILS)
    assert stat.S_IMODE((new / "storage").stat().st_mode) == 0o750
    assert {stat.S_IMODE((new / "storage" / n).stat().st_mode) for n in RAILS} == {0o640}
    for path in (new / "storage", *(new / "storage" / n for n in RAILS)):
        assert (path.stat().st_uid, path.stat().st_gid) == owner, path
    left = {n.removesuffix("-wal").removesuffix("-shm") for n in os.listdir(new / "storage")}
    assert sorted(left) == list(RAILS)  # nothing else left behind (the -wal/-shm are our reads')
    assert S3_SECRET not in restored.stdout + restored.stderr

    # 2. `start` replicates the restored databases again; with one database lost meanwhile,
    # `start --background --restore-if-missing` brings back that one only and says so on stdout;
    # `-o DIR/` restores all four into DIR
    for suffix in ("", "-wal", "-shm"):
        Path(f"{new / 'storage' / 'production_cable.sqlite3'}{suffix}").unlink(missing_ok=True)
    started = start_stop(new, {"production.sqlite3": 7, "production_queue.sqlite3": 3}, "--restore-if-missing")
    assert [ln.split()[1] for ln in started.stdout.splitlines()] == ["production_cable.sqlite3"], started.stdout
    expected = counts(new / "storage")
    check = run_cli("restore", "--all", "-o", f"{tmp_path / 'check'}/", cwd=new, timeout=240)
    assert check.returncode == 0, check.stdout + check.stderr
    assert counts(tmp_path / "check") == expected
    assert "restored 4 databases" in check.stderr

    # 2b. a recovery drill on this machine passes: four databases, rows equal to the live ones
    drilled = run_cli("drill", "--json", cwd=new, timeout=240)
    assert drilled.returncode == 0, drilled.stdout + drilled.stderr
    doc = json.loads(drilled.stdout)
    assert doc["status"] == "passed" and sorted(d["name"] for d in doc["databases"]) == list(RAILS)
    assert all(t["rows"] == t["live_rows"] for d in doc["databases"] for t in d["tables"])
    assert doc["rto_seconds"] > 0 and doc["rpo_seconds"] is not None

    # 3. the container boot: `start --restore-if-missing` on an empty folder, then it replicates
    shutil.rmtree(new)
    boot = machine(tmp_path / "boot", env)
    out = boot.parent / "boot.stdout"
    with out.open("w") as stdout, (boot.parent / "boot.stderr").open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "backupctl", "start", "--restore-if-missing"],
            cwd=boot,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    try:

        def restored_lines() -> list[str] | None:
            lines = [ln for ln in out.read_text().splitlines() if ln.startswith("restored ")]
            return lines if len(lines) >= len(RAILS) else None

        lines = wait_for(restored_lines, timeout=240, what="four 'restored' lines on stdout")
        assert sorted(ln.split()[1] for ln in lines) == list(RAILS)
        assert all("state as of" in ln for ln in lines)
        assert counts(boot / "storage") == expected
        status = wait_for(
            lambda: (r := run_cli("status", "--json", cwd=boot, timeout=90)).returncode == 0 and r,
            timeout=120,
            what="status ok after the boot restore",
        )
        assert sorted(d["name"] for d in json.loads(status.stdout)["databases"]) == list(RAILS)
        insert(boot / "storage" / "production_cable.sqlite3", 4)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(120)
    assert code == ExitCode.TERMINATED, (boot.parent / "boot.stderr").read_text()
    expected = counts(boot / "storage")
    final = run_cli("restore", "--all", "-o", f"{tmp_path / 'final'}/", cwd=boot, timeout=240)
    assert final.returncode == 0, final.stdout + final.stderr
    assert counts(tmp_path / "final") == expected

    # 4. objects the restore of production.sqlite3 starts from are deleted from the replica: the drill fails
    deleted = delete_base_objects(env, replica, request, "production.sqlite3")
    assert deleted
    drilled = run_cli("drill", "--json", cwd=boot, timeout=240)
    assert drilled.returncode == ExitCode.DRILL_FAILED, drilled.stdout + drilled.stderr
    doc = json.loads(drilled.stdout)
    assert [d["name"] for d in doc["databases"] if d["status"] == "failed"] == ["production.sqlite3"]


def delete_base_objects(env: dict[str, str], replica: str, request, name: str) -> list[str]:
    """Delete the replica objects a restore of ``name`` starts from (0.5: LTX files from txid 1; 0.3: snapshots)."""
    from tests.checks.test_drill import BASE_OBJECT

    if replica == "file":
        files = [p for p in (Path(env["BACKUP_LOCAL_DIR"]) / name).rglob("*") if p.is_file() and BASE_OBJECT.search(p.as_posix())]
        for p in files:
            p.unlink()
        return [str(p) for p in files]
    client = request.getfixturevalue("s3_server").client()
    bucket = env["LITESTREAM_REPLICA_BUCKET"]
    listed = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"campfire-db/{name}/")
        for o in page.get("Contents", [])
    ]
    keys = [k for k in listed if BASE_OBJECT.search("/" + k)]
    assert keys, listed
    for key in keys:
        client.delete_object(Bucket=bucket, Key=key)
    return keys


def test_a_glob_that_matches_nothing_anywhere_is_a_clear_error(tmp_path: Path, s3_server, s3_bucket) -> None:
    file_env = {"BACKUP_DATABASES": "storage/production*.sqlite3", "BACKUP_LOCAL_DIR": str(tmp_path / "empty")}
    s3_env = {
        "BACKUP_DATABASES": "storage/production*.sqlite3",
        "BACKUP_PATH": "campfire-db/{name}",
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "LITESTREAM_REPLICA_BUCKET": s3_bucket,
        "LITESTREAM_REPLICA_ENDPOINT": s3_server.endpoint,
    }
    for label, env in (("file", file_env), ("s3", s3_env)):
        proj = machine(tmp_path / label, env)
        for argv in (["restore"], ["start", "--restore-if-missing"], ["drill"]):
            proc = run_cli(*argv, cwd=proj, timeout=60)
            assert proc.returncode == ExitCode.NOT_FOUND, (argv, proc.stdout, proc.stderr)
            assert "BACKUP_DATABASES" in proc.stderr and "matches no local file and no database in the replica" in proc.stderr
            assert "Traceback" not in proc.stderr and S3_SECRET not in proc.stderr
        doc = json.loads(run_cli("restore", "--json", cwd=proj, timeout=60).stdout)
        assert doc["ok"] is False and doc["error"]["kind"] == "not-found"
        assert not (proj / "storage").exists()
        # without --restore-if-missing, start keeps refusing a glob that matches no file (no replica read)
        plain = run_cli("start", cwd=proj, timeout=60)
        assert plain.returncode == ExitCode.CONFIG and "matches no file" in plain.stderr
        assert "backupctl restore" in plain.stderr  # the way out on a new machine


def test_a_glob_that_matched_local_files_survives_a_replica_that_cannot_be_listed(tmp_path: Path) -> None:
    from backupctl.config.settings import load_settings
    from backupctl.errors import ConfigError, LitestreamError
    from backupctl.restore.recovery import resolve_databases
    from tests.conftest import free_port_base

    proj = tmp_path / "app"
    make_db(proj / "storage" / "production.sqlite3")
    closed = f"http://127.0.0.1:{free_port_base()}"  # nothing listens there

    def settings(**env: str):
        (proj / ".env").write_text(
            "".join(f"{k}={v}\n" for k, v in {"BACKUP_DATABASES": "storage/production*.sqlite3", **env}.items())
        )
        return load_settings(proj / ".env", replica_globs=True, environ={})

    # kinds (or a BACKUP_PATH) that cannot be listed by name: the local match stands, as before
    sftp = settings(BACKUP_REPLICA="sftp", BACKUP_SFTP_HOST="127.0.0.1", BACKUP_SFTP_USER="u", BACKUP_SFTP_KEY_PATH="/k")
    assert [d.name for d in resolve_databases(sftp).databases] == ["production.sqlite3"]
    one_path = settings(BACKUP_BUCKET="b", BACKUP_ENDPOINT=closed, BACKUP_PATH="db")
    assert [d.name for d in resolve_databases(one_path).databases] == ["production.sqlite3"]
    # an unreachable replica: restore (strict) says so; start (a note) goes on with the local files
    down = settings(BACKUP_BUCKET="b", BACKUP_ENDPOINT=closed, BACKUP_PATH="db/{name}")
    with pytest.raises(LitestreamError, match="unreachable"):
        resolve_databases(down)
    notes: list[str] = []
    assert [d.name for d in resolve_databases(down, note=notes.append).databases] == ["production.sqlite3"]
    assert len(notes) == 1 and "using the local files" in notes[0]
    # nothing local and a replica that cannot be listed by name: the reason, not "matches nothing"
    (proj / "storage" / "production.sqlite3").unlink()
    with pytest.raises(ConfigError, match="has no \\{name\\}"):
        resolve_databases(settings(BACKUP_BUCKET="b", BACKUP_ENDPOINT=closed, BACKUP_PATH="db"))
    with pytest.raises(ConfigError, match="sftp replica"):
        resolve_databases(settings(BACKUP_REPLICA="sftp", BACKUP_SFTP_HOST="h", BACKUP_SFTP_USER="u", BACKUP_SFTP_KEY_PATH="/k"))
