"""The supervisor's log files: a size-rotated log, litestream's raw output file and following them.

Every file here is opened without following a symlink (O_NOFOLLOW), mode 0600: they hold
litestream's output, which can quote endpoints and paths.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from backupctl.display import shown
from backupctl.owned import open_private, secure_dir

LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3


class RotatingLog:
    """Append-only log file rotated by size (`supervisor.log.1` .. `.N`), one timestamped line per call."""

    def __init__(
        self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS, redirect_std: bool = False
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.redirect_std = redirect_std  # keep fd 1/2 (tracebacks) pointing at the current file
        self._lock = threading.Lock()
        secure_dir(path.parent, what="log folder")
        self._handle = self._open()

    def _open(self) -> IO[str]:
        # 0600, never through a symlink (its target would be appended to)
        handle = os.fdopen(open_private(self.path), "a", encoding="utf-8", errors="replace")
        if self.redirect_std:
            for fd in (1, 2):
                os.dup2(handle.fileno(), fd)
        return handle

    def __call__(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with self._lock:  # escaped: a newline in a database's name must not fake a line of the log
            self._handle.write(f"{stamp} {shown(line)}\n")
            self._handle.flush()
            if self._handle.tell() >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        self._handle.close()
        for n in range(self.backups, 0, -1):
            src = self.path if n == 1 else self.path.with_name(f"{self.path.name}.{n - 1}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{n}"))
        self._handle = self._open()

    def close(self) -> None:
        with self._lock:
            self._handle.close()


class OutputTail:
    """Follows litestream's output file from the supervisor's main thread (no reader thread: see the
    module docstring on PR_SET_PDEATHSIG). Reading a regular file never blocks; keeps the file small."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = b""
        try:
            self.handle: IO[bytes] | None = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError:
            self.handle = None

    def next_line(self, finished: bool) -> str | None:
        """The next complete line; "" when none is there yet; None once ``finished`` and all was read."""
        if self.handle is None:
            return None if finished else ""
        chunk = self.handle.readline()
        if chunk:
            if not chunk.endswith(b"\n"):
                self.partial += chunk
                return self.next_line(finished) if finished else ""
            line, self.partial = (self.partial + chunk).decode("utf-8", "replace"), b""
            return line
        if finished:
            if self.partial:
                line, self.partial = self.partial.decode("utf-8", "replace"), b""
                return line
            return None
        try:
            size = os.stat(self.path).st_size
            if size >= LOG_MAX_BYTES:  # everything up to here is relayed: start the file over
                os.truncate(self.path, 0)
                size = 0
            if size < self.handle.tell():
                self.handle.seek(0)
        except OSError:
            pass
        return ""

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


def log_tail(path: Path, lines: int, since: int = 0) -> list[str]:
    """The last ``lines`` lines of a log (only what was written after byte ``since``)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(since, size - 256 * 1024)
            handle.seek(start)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:] if lines > 0 else []


_STAMP = re.compile(r"^\S*\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d\S*\s+|\btime=\S+\s*")


_REQUEST_IDS = re.compile(r"\b(RequestID|HostID|request id|host id):\s*[^,)\s]*", re.IGNORECASE)


def collapse_repeats(lines: list[str]) -> list[str]:
    """Lines that repeat but for their time stamps, request ids and numbers (litestream retrying one
    failing request every second, at each compaction level) shown once, with how many times: fifteen
    `SignatureDoesNotMatch` lines say one thing."""
    out: list[str] = []
    counts: list[int] = []
    keys: list[str] = []
    for line in lines:
        key = re.sub(r"\d+", "#", _REQUEST_IDS.sub("", _STAMP.sub("", line)))  # L1, L2...: one failure
        if key in keys:
            counts[keys.index(key)] += 1
            continue
        keys.append(key)
        counts.append(1)
        out.append(line)
    return [line if n == 1 else f"{line}  (×{n})" for line, n in zip(out, counts, strict=True)]


def follow(path: Path, lines: int, poll: float = 0.25, stop: Callable[[], bool] | None = None) -> Iterator[str]:
    """The last ``lines`` lines, then every new line as it is written, across rotation (like tail -F)."""
    yield from log_tail(path, lines)
    handle = None
    inode = None
    try:
        while stop is None or not stop():
            if handle is None:
                try:
                    handle = open(path, "rb")  # noqa: SIM115 - closed in finally / on rotation
                    inode = os.fstat(handle.fileno()).st_ino
                    if lines >= 0:
                        handle.seek(0, os.SEEK_END)
                    lines = -1  # only the first open skips what was already shown
                except FileNotFoundError:
                    time.sleep(poll)
                    continue
            chunk = handle.readline()
            if chunk:
                yield chunk.decode("utf-8", "replace").rstrip("\n")
                continue
            try:
                current = os.stat(path)
                rotated = current.st_ino != inode or current.st_size < handle.tell()
            except FileNotFoundError:
                rotated = True
            if rotated:
                rest = handle.read()
                yield from rest.decode("utf-8", "replace").splitlines()
                handle.close()
                handle = None
                continue
            time.sleep(poll)
    finally:
        if handle is not None:
            handle.close()
