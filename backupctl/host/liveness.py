"""Whether a process is the one that was recorded, read straight from Linux's /proc: what psutil
reads, without importing it (`status --json` asks this on every call and must stay light). Only the
standard library's ``os`` is imported here. ``processes.is_alive`` is the liveness test; this is
its Linux half."""

from __future__ import annotations


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        return fh.read().decode("utf-8", "replace").rsplit(")", 1)[1].split()


def start_ticks(pid: int) -> int | None:
    """Linux: when the process started, in clock ticks since boot (/proc/PID/stat, field 22).

    Unlike an epoch start time this never moves: psutil derives create_time from the boot time
    each process reads from /proc/stat, which shifts when the wall clock is stepped (NTP, a VM
    resumed), so two processes can disagree about one start time by a second or more.
    """
    try:
        return int(_stat_fields(pid)[19])
    except (OSError, ValueError, IndexError):
        return None


PF_EXITING = 0x4  # the kernel's flag of a process tearing itself down (/proc/PID/stat, field 9)
SIGKILL_PENDING = 1 << 8  # SIGKILL in the pending set (field 31): set on every thread when kill() returns


def alive_from_proc(pid: int, ticks: int, argv: list[str] | None = None) -> bool | None:
    """Whether ``pid`` runs, started at ``ticks``, runs ``argv`` (when given) and is neither a
    zombie nor dying: a process sent SIGKILL, or already exiting, is not alive, although its
    /proc entry says "running" until its memory is torn down (a litestream of 400 MB on a busy
    machine: long enough for a `status` right after a reboot's kills to believe it). None where
    there is no /proc to read."""
    try:
        fields = _stat_fields(pid)
        state, started = fields[0], int(fields[19])
        if started != ticks or state in ("Z", "X"):
            return False
        if int(fields[6]) & PF_EXITING or int(fields[28]) & SIGKILL_PENDING:
            return False
        if argv:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                current = fh.read().decode("utf-8", "surrogateescape").split("\0")
            if current and current[-1] == "":
                current.pop()
            # An empty command line is the kernel not answering for a moment (a process being exec'd).
            if current and current != list(argv):
                return False
        return True
    except FileNotFoundError:
        return None if not _has_proc() else False
    except (OSError, ValueError, IndexError):
        return None


def exited(pid: int | None, ticks: int | None) -> bool:
    """A recorded process (its pid and start ticks) known to have exited or to be dying: the supervisor's
    litestream killed a moment ago, which supervisor.json names until the supervisor's next tick.
    False when nothing was recorded, or where there is no /proc to tell."""
    return pid is not None and ticks is not None and alive_from_proc(int(pid), int(ticks)) is False


def _has_proc() -> bool:
    try:
        open("/proc/self/stat", "rb").close()  # noqa: SIM115 - only whether it opens
    except OSError:
        return False
    return True
