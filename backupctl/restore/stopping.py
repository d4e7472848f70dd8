"""Cooperative interruption of a restore, a verify or a drill (:class:`StopRequest`).

A signal handler that raised could land between ``mkdtemp`` creating a temp folder and the
``try`` that removes it, between starting litestream and the ``try`` that kills it, or in the
middle of an ``rmtree``. So the CLI's SIGTERM/SIGINT handlers only call
:data:`stop_request` ``.request()``: it kills the running ``litestream restore`` (its whole
process group) and makes the next :meth:`StopRequest.check` raise, always from a place whose
cleanup is already armed.
"""

from __future__ import annotations

import os
import subprocess
import time

from backupctl.errors import LitestreamError
from backupctl.host import processes
from backupctl.litestream.runner import Litestream, Result, kill_group


class StopRequest:
    """A stop asked for by a signal, honoured at safe points.

    ``request(error)`` is all a signal handler does (it never raises): it records ``error`` and
    SIGKILLs the process group of the litestream started by :meth:`run` (then reaped by the
    ``communicate`` it interrupts). ``check()`` raises the recorded error; restore and verify call
    it between steps, never between acquiring something and the ``try`` that releases it. The
    commit (move aside + rename) has no check inside it: it completes or is rolled back.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def requested(self) -> bool:
        return self.error is not None

    def reset(self) -> None:
        self.error = None

    def request(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        for proc in list(self._children.values()):
            _kill_unreaped(proc)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def sleep(self, seconds: float) -> None:
        """Sleep, but return early (and raise) when a stop is requested."""
        end = time.monotonic() + seconds
        while not self.requested and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        self.check()

    def run(self, ls: Litestream, command: str, *args: str, timeout: float, what: str) -> Result:
        """``ls.run`` whose child a stop request kills at once (and which is always reaped)."""

        self.check()
        spawned: list[int] = []
        recorded: list[processes.ProcessRecord | None] = []

        def register(proc: subprocess.Popen[bytes]) -> None:
            self._children[proc.pid] = proc
            spawned.append(proc.pid)
            if self.requested:  # the signal came while it was starting
                _kill_unreaped(proc)
                return
            try:
                recorded.append(
                    processes.register(
                        processes.RESTORE,
                        proc.pid,
                        project=ls.settings.project_dir,
                        databases=[args[-1]] if args else [],
                        parent_pid=os.getpid(),
                        pdeathsig=processes.use_parent_death_signal(),
                    )  # fmt: skip
                )
            except OSError:
                pass  # the record only helps other commands describe it; the restore itself goes on

        try:
            result = ls.run(command, *args, timeout=timeout, what=what, on_spawn=register, die_with_parent=True)
        except LitestreamError:
            self.check()  # killed by a stop request: say so, not "litestream failed"
            raise
        finally:
            for pid in spawned:
                self._children.pop(pid, None)
            for record in recorded:
                processes.unregister(record)
        self.check()
        return result


def _kill_unreaped(proc: subprocess.Popen[bytes]) -> None:
    # Only a child not yet reaped: once reaped, its pid (= its group id) may belong to someone else.
    if proc.returncode is None:
        kill_group(proc)


# The one stop request of this process: the CLI's SIGTERM/SIGINT handlers feed it during
# restore and verify (library callers that install no handler never see it set).
stop_request = StopRequest()
