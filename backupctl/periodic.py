"""Jobs the supervisor runs every so often, each in a forked child process.

`BACKUP_VERIFY_INTERVAL` (verify) and `BACKUP_DRILL_INTERVAL` (recovery drill) start here. A job
runs in a forked child, never in a thread: the supervisor must stay single-threaded while
litestream runs (PR_SET_PDEATHSIG fires once per dying thread; see ``supervisor``). The child
gets default SIGINT/SIGTERM handling, so a stopping supervisor ends it with SIGTERM (a job that
must clean up installs its own handler). A job is only started once replication is confirmed,
never twice at once, and its finished child is reaped on the next tick.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class PeriodicJob:
    name: str
    interval: float  # seconds between two starts
    work: Callable[[], None]  # runs in the forked child
    clock: Callable[[], float]
    pid: int | None = field(default=None, init=False)
    next_at: float | None = field(default=None, init=False)

    def tick(self, ready: bool) -> None:
        """Called from the supervisor's loop: start the job when it is due and ``ready`` (confirmed)."""
        if not ready:
            return
        if not self.running():
            self.pid = None  # reaped: never signal that pid again (it may be reused)
        now = self.clock()
        if self.next_at is None:
            self.next_at = now + self.interval
            return
        if now < self.next_at or self.pid is not None:
            return
        self.next_at = now + self.interval
        self.pid = _fork(self.work)

    def running(self) -> bool:
        """The job's child has not exited yet (it is reaped here when it has)."""
        if self.pid is None:
            return False
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return done == 0

    def end(self) -> None:
        """A job still running when the supervisor stops is ended (SIGTERM) and reaped: it holds
        copies of the supervisor's lock files."""
        if self.running() and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pid = None


def _fork(work: Callable[[], None]) -> int | None:
    if not hasattr(os, "fork"):
        work()
        return None
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        work()
        code = 0
    finally:
        os._exit(code)
