"""The verify's sentinel table in a live database: written by `verify`, always dropped after it, and
dropped by the next `start`, `verify` or `doctor` when a verify was killed before it could.

Kept apart from ``checks.verify``, which restores and so loads the restore code and a thread pool:
the supervisor calls ``clean_up_after_killed_verify`` once at start and keeps what it imports.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from backupctl import paths
from backupctl.config.settings import Database, Settings
from backupctl.errors import BackupctlError, ConfigError, ConflictError
from backupctl.host import locks, processes

SENTINEL_TABLE = "_backupctl_verify"
BUSY_TIMEOUT_MS = 30_000


def verify_lock_path(db: Database) -> Path:
    return paths.lock_path("verify", str(db.path))


def connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000)
    con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    return con


def sqlite_error(exc: sqlite3.Error, path: Path, doing: str) -> BackupctlError:
    """sqlite3's error as backupctl's: locked/busy is a conflict, anything else a database problem."""
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return ConflictError(
            f"{path} stayed locked for {BUSY_TIMEOUT_MS // 1000}s while {doing} ({text})",
            "a long write transaction holds it; run verify again when the application is quieter",
            details=[f"sqlite3.{type(exc).__name__}: {text}"],
        )
    return ConfigError(
        f"{path} could not be written while {doing}: {text}",
        "check that it is an SQLite database this user can write (`backupctl doctor` checks it)",
        details=[f"sqlite3.{type(exc).__name__}: {text}"],
    )


def write_sentinel(path: Path, token: str) -> None:
    try:
        _insert_sentinel(path, token)
    except sqlite3.Error as exc:
        raise sqlite_error(exc, path, "writing the verify sentinel row") from exc


def _insert_sentinel(path: Path, token: str) -> None:
    con = connect(path)
    try:
        with con:
            con.execute(
                f"CREATE TABLE IF NOT EXISTS {SENTINEL_TABLE} "
                "(id INTEGER PRIMARY KEY, token TEXT NOT NULL, created_at TEXT NOT NULL)"
            )
            con.execute(
                f"INSERT INTO {SENTINEL_TABLE} (token, created_at) VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",  # noqa: S608
                (token,),
            )
    finally:
        con.close()


def clear_sentinels(path: Path) -> bool:
    """Drop the sentinel table, rows and all (the verify lock guarantees no other verify is using
    it), so the live database's schema is what it was before the verify. True if there was one."""
    if not path.exists():
        return False
    try:
        con = connect(path)
        try:
            exists = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (SENTINEL_TABLE,)).fetchone()
            if exists:
                with con:
                    con.execute(f"DROP TABLE IF EXISTS {SENTINEL_TABLE}")
            return bool(exists)
        finally:
            con.close()
    except sqlite3.Error as exc:
        raise sqlite_error(exc, path, f"dropping the verify table {SENTINEL_TABLE} (it is left behind)") from exc


def clean_up_after_killed_verify(settings: Settings, log: Callable[[str], None] | None = None) -> None:
    """What a SIGKILLed verify leaves: its temporary litestream (stopped, with its final sync), its
    sentinel table (dropped) and its temporary files. Called by `start`, `verify` and `doctor`.

    Only a verify that really died is cleaned up after (its process record says so): opening the
    database otherwise would be harmless for the data, but closing the last connection of a WAL
    database deletes its -wal, which litestream 0.3 starting right then trips over.
    """
    dbs = list(settings.databases)
    processes.reap_orphans(databases=[db.path for db in dbs], replicas=[r.lock_key for db in dbs for r in db.replicas], log=log)
    tmp_root = paths.project_state_dir(settings.project_dir) / "tmp"
    for dead in processes.leftovers(processes.VERIFY, settings.project_dir):
        for leftover in tmp_root.glob(f"verify-{dead.pid}-*"):
            leftover.unlink(missing_ok=True)
        for db in dbs:
            if os.path.realpath(db.path) not in dead.databases or not db.path.exists():
                continue
            lock = locks.try_lock(verify_lock_path(db))
            if lock is None:
                continue  # another verify runs on it now: the table is in use
            try:
                if clear_sentinels(db.path) and log:
                    log(f"backupctl: dropped the table {SENTINEL_TABLE} a killed verify (pid {dead.pid}) left in {db.path}")
            except BackupctlError as exc:
                if log:
                    log(f"backupctl: could not drop {SENTINEL_TABLE} from {db.path}: {exc.message}")
            finally:
                lock.release()
