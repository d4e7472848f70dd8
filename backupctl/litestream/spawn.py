"""Starting one litestream command and collecting it: the process handling under every one-shot call.

``runner.run_command`` (every one-shot litestream call, with its errors and masking) and the fast
listing (``cli.quick_listing``, which loads no settings) both start litestream here: argv as a
list, no shell, stdin closed, in a session of its own so that a timeout kills the whole group, and
always reaped. Light on purpose: ``subprocess`` and ``os`` only.
"""

from __future__ import annotations

import os
import signal
import subprocess

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any


def run_once(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float,
    cwd: str | None = None,
    on_spawn: Callable[[subprocess.Popen[bytes]], None] | None = None,
    **popen: Any,
) -> tuple[int, bytes, bytes]:
    """Run argv to its end: (exit code, stdout, stderr). Past ``timeout`` the process group is killed
    and ``subprocess.TimeoutExpired`` raised, carrying what it printed; OSError when it cannot start.
    ``on_spawn`` sees the child as soon as it exists (so a signal handler can kill it)."""
    proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
        list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True, **popen,
    )  # fmt: skip
    try:
        if on_spawn is not None:
            on_spawn(proc)
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        kill_group(proc)
        exc.output, exc.stderr = proc.communicate()
        raise
    except BaseException:
        kill_group(proc)
        proc.wait()
        raise
    return proc.returncode, out, err


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child started in its own session, with everything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
