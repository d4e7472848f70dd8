"""Atomic file writes: readers see the old content or the new, never a mix or a torn file."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int = 0o600) -> None:
    """Write a file so that readers see the old or the new content, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_private(path: Path, *, append: bool = True, truncate: bool = False) -> int:
    """Open (create) a state or log file for writing, mode 0600, never through a symlink.

    A symlink planted at the path (say `supervisor.log -> ~/.bashrc`) must not get its target
    chmod'ed and appended to: O_NOFOLLOW makes the open fail (ELOOP) instead. Returns the fd."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    if append:
        flags |= os.O_APPEND
    if truncate:
        flags |= os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file may have been created with a looser mode
    except BaseException:
        os.close(fd)
        raise
    return fd
