"""What is at a path the user named, found with stat alone, never by opening it.

Opening a FIFO for reading blocks until some writer comes (setup hung on one); reading a device
like /dev/zero never ends; files under /proc and /sys look regular but are the kernel's, made up
on each read (/proc/self/environ holds the secrets of whoever reads it). None of them is a
database or a `.env`, so the settings refuse them by what ``stat`` says, before anything opens them.
"""

from __future__ import annotations

import os
import stat

# Kernel file systems: every file there is generated on read, none is a user's data.
KERNEL_FOLDERS = ("/proc", "/sys")


def kind_of(mode: int) -> str | None:
    """What a ``st_mode`` is in words when it is not a regular file ("a FIFO (named pipe)"); None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def not_regular(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is (symbolic links followed) when it exists and is not a regular file; None when
    it is a regular file, or when stat cannot see it (missing, no permission): callers that care say why."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # ValueError: a NUL byte, refused by the settings on its own
        return None
    return kind_of(mode)


def kernel_folder(path: str | os.PathLike[str], resolved: bool = False) -> str | None:
    """``/proc`` or ``/sys`` when ``path`` lies in one, else None. Symbolic links are resolved first
    (``/proc/self`` is one) unless the caller says ``path`` already is (a glob's 1,000 matches)."""
    from pathlib import Path  # lazy: `status --json` imports this module, not pathlib

    real = Path(path if resolved else os.path.realpath(path))
    for folder in KERNEL_FOLDERS:
        if real == Path(folder) or Path(folder) in real.parents:
            return folder
    return None
