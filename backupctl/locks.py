"""Advisory file locks (flock) with the holder's pid written inside, for error messages.

A lock is held as long as the holder's file descriptor is open, so it vanishes when the
holder dies, even by SIGKILL: there is never a stale lock to clean up.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from backupctl import paths


@dataclass
class HeldLock:
    path: Path
    handle: IO[str]

    def release(self) -> None:
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
        finally:
            self.handle.close()


def try_lock(path: Path, owner_pid: int | None = None) -> HeldLock | None:
    """Take the lock without waiting; None if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while held
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(str(owner_pid or os.getpid()))
    handle.flush()
    return HeldLock(path, handle)


def holder(path: Path) -> int | None:
    """The pid written by the process holding the lock, or None when nobody holds it."""
    if not path.exists():
        return None
    probe = try_lock_probe(path)
    if probe:
        return None
    try:
        return int(path.read_text("utf-8").strip() or 0) or -1
    except (OSError, ValueError):
        return -1


def try_lock_probe(path: Path) -> bool:
    """True if the lock is free right now (takes and releases it at once)."""
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return True


def database_lock_path(db_path: Path) -> Path:
    return paths.lock_path("db", str(db_path))


def replica_lock_path(destination: str) -> Path:
    return paths.lock_path("replica", destination)
