"""Starting one litestream command and collecting it: the process handling under every one-shot call,
and the environment rule every litestream gets (AWS_CA_BUNDLE).

``runner.run_command`` (every one-shot litestream call, with its errors and masking) and the fast
listing (``cli.quick_listing``, which loads no settings) both start litestream here: argv as a
list, no shell, stdin closed, in a session of its own so that a timeout kills the whole group, and
always reaped. Light on purpose: on Linux a plain call (a program given by its path, no hook, no
working folder, no other Popen option: the fast listing's and most litestream reads) is started
with ``os.posix_spawn`` and read with ``select.poll``, without importing ``subprocess`` (which
imports locale, re and enum: 7-12 ms, a fifth of what a listing adds to litestream's own time);
every other call goes through ``subprocess.Popen``.
"""

from __future__ import annotations

import _signal  # signal's C module: signal.py imports enum (4 ms of every fast listing)
import os
import select
import sys
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any


# --------------------------------------------------------------------------- AWS_CA_BUNDLE
# Litestream 0.5's S3 client fails at start with AWS_CA_BUNDLE set (docs/litestream-facts.md). The rule of
# what litestream's environment gets instead, in one place: the versions that cannot run with it
# (``Capabilities.drop_aws_ca_bundle``) never see it, and its file becomes SSL_CERT_FILE unless that is set.

CA_BUNDLE = "AWS_CA_BUNDLE"


def move_ca_bundle(env: dict[str, str]) -> str | None:
    """Take AWS_CA_BUNDLE out of ``env``, passing its file on as SSL_CERT_FILE when that is unset; the
    notice to give, or None when it was not there."""
    if CA_BUNDLE not in env:
        return None
    bundle = env.pop(CA_BUNDLE)
    msg = "not passing AWS_CA_BUNDLE to litestream: Litestream {version}'s S3 client fails at start with it"
    if bundle and "SSL_CERT_FILE" not in env and os.path.isfile(bundle):
        env["SSL_CERT_FILE"] = bundle
        msg += " (using it as SSL_CERT_FILE instead)"
    return msg


def clean_environment(caps: Any, env: dict[str, str]) -> list[str]:
    """Drop from ``env`` what the version ``caps`` describes cannot run with; say what was dropped and why.
    (Every litestream backupctl starts gets its environment through here or ``move_ca_bundle``.)"""
    said = move_ca_bundle(env) if caps.drop_aws_ca_bundle else None
    return [said.format(version=caps.version)] if said else []


# --------------------------------------------------------------------------- running


class CannotStart(Exception):  # noqa: N818 - what happened, as OSError says it
    """The system would not start the program (``error``: its OSError)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


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
    and ``subprocess.TimeoutExpired`` raised, carrying what it printed; ``CannotStart`` when the system
    would not start it (an error of ``on_spawn``, which sees the child as soon as it exists so that a
    signal handler can kill it, is its own)."""
    if on_spawn is None and cwd is None and not popen and sys.platform.startswith("linux") and os.sep in argv[0]:
        # (a bare program name is Popen's to look up in PATH: posix_spawn would not)
        done = _run_spawned(list(argv), dict(env), timeout)
        if done is not None:
            return done
    import subprocess  # lazy: see the module docstring

    try:
        proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, **popen,
        )  # fmt: skip
    except OSError as exc:
        raise CannotStart(exc) from None
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


def _run_spawned(argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, bytes, bytes] | None:
    """``run_once`` for a plain call, as ``subprocess.Popen(..., start_new_session=True).communicate``
    does it: the same session, standard streams and exit code (minus the signal's number when killed).
    None when this Python's posix_spawn cannot start a session (Popen's turn)."""
    out_r, out_w = os.pipe()  # not inherited: Python's descriptors are close-on-exec, and dup2 clears it on 0-2 only
    err_r, err_w = os.pipe()
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(argv[0], argv, env, setsid=True, file_actions=[
            (os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)])  # fmt: skip
    except (OSError, NotImplementedError) as exc:
        os.close(out_r)
        os.close(err_r)
        if isinstance(exc, NotImplementedError):
            return None
        raise CannotStart(exc) from None
    finally:
        for fd in (out_w, err_w, devnull):
            os.close(fd)
    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    poller = select.poll()
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    streams = set(chunks)
    deadline, timed_out = time.monotonic() + timeout, False
    try:
        while streams:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill_pid_group(pid)
                deadline, timed_out = float("inf"), True  # killed: what it printed so far comes out, then EOF
                continue
            for fd, _events in poller.poll(min(left, 3600.0) * 1000):
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    streams.discard(fd)
        _, status = os.waitpid(pid, 0)
    except BaseException:
        _kill_pid_group(pid)
        os.waitpid(pid, 0)
        raise
    finally:
        os.close(out_r)
        os.close(err_r)
    out, err = b"".join(chunks[out_r]), b"".join(chunks[err_r])
    if timed_out:
        import subprocess  # lazy: the exception callers catch, as Popen raises it

        raise subprocess.TimeoutExpired(argv, timeout, output=out, stderr=err)
    return os.waitstatus_to_exitcode(status), out, err


def _kill_pid_group(pid: int) -> None:
    try:
        os.killpg(pid, _signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a child started in its own session, with everything it started."""
    _kill_pid_group(proc.pid)
