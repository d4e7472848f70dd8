"""Advisory file locks (flock) with the holder's pid written inside, for error messages.

A lock is held as long as the holder's file descriptor is open, so it vanishes when the
holder dies, even by SIGKILL: there is never a stale lock to clean up.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backupctl import paths
from backupctl.errors import ConfigError
from backupctl.owned import open_lock, read_private

if TYPE_CHECKING:
    from backupctl.config.settings import Database, Replica

# try_lock's retries: holder() probes hold the lock for microseconds, 5 x 20 ms is plenty.
LOCK_RETRIES = 5
LOCK_RETRY_SECONDS = 0.02


@dataclass(slots=True)
class HeldLock:
    """A lock taken: ``fd`` is the open lock file (a bare descriptor, no Python buffers: a supervisor
    holds two per database, and buffered files cost 10 MB at 1,000 databases), ``path`` its path as a
    string (slots, no pathlib object kept: 1 MB less at 1,000 databases)."""

    path: str
    fd: int

    def release(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)


def try_lock(path: Path, owner_pid: int | None = None) -> HeldLock | None:
    """Take the lock without waiting for a holder; None if another process holds it.

    A few quick retries cover the instant in which `holder()` (status, restore, doctor)
    takes and releases the lock to look at it: that must not read as "already running".
    """
    try:
        fd = open_lock(path)  # kept open while held; never through a planted link
    except OSError as exc:
        raise _unusable(path, exc) from None
    for attempt in range(LOCK_RETRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt == LOCK_RETRIES - 1:
                os.close(fd)
                return None
            time.sleep(LOCK_RETRY_SECONDS)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(owner_pid or os.getpid()).encode(), 0)
    return HeldLock(str(path), fd)


def _unusable(path: Path, exc: OSError) -> ConfigError:
    import errno

    if exc.errno in (errno.EMFILE, errno.ENFILE):  # a lock per database and per replica: many databases, many files
        hint = "raise the open-files limit (ulimit -n; the hard limit, e.g. LimitNOFILE= in systemd) above 2 per database"
    else:
        hint = "make its folder writable, or point BACKUPCTL_HOME at a writable folder"
    return ConfigError(f"cannot use the lock file {path}: {exc.strerror}", hint)


def holder(path: Path) -> int | None:
    """The pid written by the process holding the lock, or None when nobody holds it."""
    if not path.exists():
        return None
    probe = try_lock_probe(path)
    if probe:
        return None
    try:
        return int((read_private(path) or "").strip() or 0) or -1
    except ValueError:
        return -1


def try_lock_probe(path: Path) -> bool:
    """True if the lock is free right now (takes and releases it at once)."""
    try:
        fd = open_lock(path)
    except OSError as exc:
        raise _unusable(path, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def database_lock_path(db_path: Path) -> Path:
    """The lock of one database, keyed by its real path (a symlink or `..` spelling gets the same lock)."""
    return paths.lock_path("db", os.path.realpath(db_path))


def replica_lock_path(replica: Replica) -> Path:
    """The lock of one replica location, keyed by its normalised form (settings.Replica.lock_key)."""
    return paths.lock_path("replica", replica.lock_key)


def replication_lock_paths(databases: Iterable[Database]) -> list[tuple[Path, str]]:
    """Every lock a replicator of these databases holds: one per database and one per replica."""
    wanted: list[tuple[Path, str]] = []
    for db in databases:
        wanted.append((database_lock_path(db.path), f"database {db.path}"))
        wanted += [(replica_lock_path(r), f"replica {r.destination}") for r in db.replicas]
    return wanted


def take_replication_locks(databases: Iterable[Database], owner_pid: int | None = None) -> list[HeldLock] | None:
    """All of them or none: None when another process holds any (what it holds is released again)."""
    held: list[HeldLock] = []
    try:
        for path, _ in replication_lock_paths(databases):
            lock = try_lock(path, owner_pid)
            if lock is None:
                for h in held:
                    h.release()
                return None
            held.append(lock)
    except BaseException:
        for h in held:
            h.release()
        raise
    return held
