"""One litestream run under the supervisor: spawning it, reading its output, signalling it.

``default_spawn`` starts `litestream replicate` writing to a file (``litestream.out``, mode 0600),
never a pipe: a Go program dies of SIGPIPE when it logs to a closed pipe, so a pipe would kill
it (without its final sync) right after its supervisor died. ``Output`` tails that file in the
calling thread (the supervisor stays single-threaded; see ``supervisor``), or, for an injected
spawn with a pipe (tests), reads it in a thread. ``ChildRun`` is everything one run tracks,
``ChildOutcome`` what the supervisor learns when it ended.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from backupctl.config.settings import Settings
from backupctl.errors import LitestreamError
from backupctl.host import processes
from backupctl.host.logfiles import OutputTail
from backupctl.litestream import positions
from backupctl.litestream.runner import Litestream
from backupctl.owned import open_private, secure_dir

LITESTREAM_OUTPUT = "litestream.out"  # litestream's raw (unmasked) output, mode 0600, relayed line by line into the log
# How often the main loop looks at litestream's output when it is quiet: from 0.1 s after a
# line up to 1 s when idle, so an idle supervisor wakes about once a second.
IDLE_POLL_MIN = 0.1
IDLE_POLL_MAX = 1.0


class ChildProcess(Protocol):
    """What the supervisor needs from a spawned litestream (subprocess.Popen fits)."""

    pid: int
    stdout: Any
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


def default_spawn(litestream: Litestream, output: Path) -> Callable[[], ChildProcess]:
    """A spawn that runs `litestream replicate` with its output appended to ``output``."""

    def spawn() -> ChildProcess:
        secure_dir(output.parent, what="state folder")
        # Emptied, then appended to (O_APPEND: the reader may truncate it when it grows), 0600 and
        # never through a link: it receives litestream's raw output.
        with os.fdopen(open_private(output, truncate=True), "ab") as handle:
            kwargs: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": handle, "stderr": subprocess.STDOUT}
            kwargs.update(processes.child_kwargs())  # PR_SET_PDEATHSIG on Linux
            try:
                return litestream.popen("replicate", **kwargs)
            except OSError as exc:
                raise LitestreamError(
                    f"cannot run {litestream.binary}: {exc.strerror}",
                    "run `backupctl install --force` to reinstall the pinned binary",
                ) from None

    return spawn


@dataclass
class ChildRun:
    """Everything one litestream run tracks, in one place."""

    proc: ChildProcess
    started: float
    targets: dict[str, positions.LocalPosition]
    pending: set[str]  # databases whose replica does not hold the target position yet
    next_check: float = 0.0
    confirmed: bool = False
    errors_seen: int = 0
    failed_start: str | None = None
    term_sent_at: float | None = None
    kill_at: float | None = None
    killed: bool = False
    errors_after_term: int = 0
    sync_skipped: bool = False
    eof: bool = False
    exited_at: float | None = None
    # Stopped to take up new databases: the settings the next run uses (its config is written).
    reload: Settings | None = None
    # Stopped on purpose to start again with the same settings: why (litestream made no progress,
    # or a broken chain is healed by a fresh snapshot).
    restart: str | None = None
    next_guard_check: float = 0.0  # when to look again whether litestream has read past the WAL guard


@dataclass
class ChildOutcome:
    returncode: int | None
    runtime: float
    confirmed: bool
    stopped: bool  # we stopped it because of a stop request
    failed_start: str | None = None  # why we stopped it during its start
    final_sync: bool | None = None
    killed: bool = False
    reload: Settings | None = None  # stopped to restart with these settings
    restart: str | None = None  # stopped to start again with the same settings (why)


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)


class Output:
    """litestream's output, line by line: the output file tailed in this (the only) thread, or,
    for an injected spawn with a pipe (tests), a reader thread (no parent-death signal there)."""

    def __init__(self, proc: ChildProcess, path: Path) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader: threading.Thread | None = None
        self.tail: OutputTail | None = None
        self.idle = IDLE_POLL_MIN
        if proc.stdout is not None:
            self.reader = threading.Thread(target=_pump, args=(proc.stdout, self.lines), daemon=True)
            self.reader.start()
        else:
            self.tail = OutputTail(path)

    def next_line(self, quick: bool) -> str | None:
        """A line; "" when none came (after a short wait); None at the end of the output."""
        if self.tail is None:
            try:
                return self.lines.get(timeout=0.2)
            except queue.Empty:
                return ""
        raw = self.tail.next_line(finished=self.proc.poll() is not None)
        if raw == "":
            # Back off while litestream is quiet (idle CPU), but stay quick while stopping.
            time.sleep(IDLE_POLL_MIN if quick else self.idle)
            self.idle = min(self.idle * 2, IDLE_POLL_MAX)
        else:
            self.idle = IDLE_POLL_MIN
        return raw

    def reader_done(self) -> bool:
        return self.reader is not None and not self.reader.is_alive()

    def close(self) -> None:
        if self.reader is not None:
            self.reader.join(timeout=1)
        if self.tail is not None:
            self.tail.close()


def send_signal(proc: ChildProcess, signum: int) -> None:
    try:
        os.kill(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def describe_exit(code: int | None) -> str:
    """An exit code for people: ``-9, killed by SIGKILL``."""
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"{code}, killed by {signal.Signals(-code).name}"
        except ValueError:
            return str(code)
    return str(code)
