"""`start --background` and `stop`: launch a detached supervisor, and stop one through its process record."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from backupctl.config.settings import Settings
from backupctl.errors import ConflictError, ExitCode, SupervisorError
from backupctl.host import processes, state
from backupctl.host.logfiles import collapse_repeats, log_tail
from backupctl.owned import open_private, secure_dir
from backupctl.supervise.supervisor import DEFAULT_STOP_TIMEOUT


@dataclass(frozen=True)
class BackgroundStart:
    pid: int
    log_path: Path
    litestream_pid: int | None


def start_background(
    argv: list[str],
    state_dir: Path,
    settings: Settings,
    *,
    cwd: Path | None = None,
    timeout: float = 120.0,
    poll: float = 0.2,
) -> BackgroundStart:
    """Launch ``argv`` (a `start --foreground-child`) detached; return once it confirms replication.

    Fails fast, with the log's tail, when the supervisor exits or goes FATAL first. A supervisor
    that lost a race with another start (exit 6) is answered by asking the process records who won.
    """
    log_path = state_dir / state.LOGFILE
    secure_dir(state_dir, what="state folder")
    offset = log_path.stat().st_size if log_path.exists() else 0
    with os.fdopen(open_private(log_path), "ab") as log_handle:  # 0600, never through a symlink
        proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=log_handle,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        current = state.read_supervisor_state(state_dir)
        if code is None and current and current.pid == proc.pid and current.state == state.RUNNING:
            return BackgroundStart(proc.pid, log_path, current.litestream_pid)
        if code == ExitCode.CONFLICT:
            processes.check_free(settings, project=settings.project_dir)  # raises, naming the winner
            raise ConflictError(
                "another supervisor started on these databases at the same moment",
                "stop it first (`backupctl stop`), or look at it with `backupctl status`",
            )
        if code is not None:
            raise SupervisorError(
                f"the background supervisor exited (code {code}) before replication started",
                f"see the log: backupctl logs ({log_path})",
                details=collapse_repeats(log_tail(log_path, 40, since=offset))[-15:],
            )
        if time.monotonic() > deadline:
            _terminate_quietly(proc)
            raise SupervisorError(
                f"replication was not confirmed within {timeout:g}s; stopped the background supervisor",
                f"see the log: backupctl logs ({log_path}); `backupctl doctor` checks the replica",
                details=collapse_repeats(log_tail(log_path, 40, since=offset))[-15:],
            )
        time.sleep(poll)


def _terminate_quietly(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(DEFAULT_STOP_TIMEOUT + 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class StopResult:
    was_running: bool
    pid: int | None = None
    final_sync: bool | None = None
    stopped: bool = True


def stop_supervisor(record: processes.ProcessRecord | None, state_dir: Path, timeout: float) -> StopResult:
    """SIGTERM the supervisor of this record and wait until it and its litestream are gone.

    The record is re-checked (pid + start time + argv) right before the signal, so a pid reused
    by another process is never signalled; the final sync is read from that process's own state
    document (supervisor.json naming the same pid and start time), never from an older one.
    """
    import psutil

    if record is None or not record.alive():
        return StopResult(was_running=False)
    before = state.read_supervisor_state_of(state_dir, record.pid, record.create_time)
    children = [r for r in processes.records(role=processes.LITESTREAM) if r.parent_pid == record.pid]
    try:
        proc = psutil.Process(record.pid)
        if not record.alive():
            return StopResult(was_running=False)
        proc.terminate()
    except psutil.NoSuchProcess:
        pass
    if not _wait_gone(record.pid, timeout):
        raise SupervisorError(
            f"the supervisor (pid {record.pid}) did not stop within {timeout:g}s",
            "it may still be waiting for litestream's final sync; run `backupctl stop` again or check `backupctl logs`",
        ) from None
    for child in children:
        _wait_gone(child.pid, 10.0)
    if before is not None and before.litestream_pid:
        _wait_gone(before.litestream_pid, 10.0)
    after = state.read_supervisor_state_of(state_dir, record.pid, record.create_time)
    return StopResult(was_running=True, pid=record.pid, final_sync=after.final_sync if after else None)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until pid has exited: gone, or a zombie (a foreground supervisor's parent, a shell or a
    service manager, reaps it whenever it likes). False on timeout."""
    import psutil

    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
