"""The one place that runs litestream: an argv list, a deliberately built environment, timeouts.

Nothing else in backupctl calls ``subprocess`` on the litestream binary (``spawn`` starts and
reaps each one-shot call; the fast listing, which loads no settings, calls it too). Errors show the
command, its exit code and the tail of its output, with every secret value masked.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backupctl import kinds as replica_kinds
from backupctl.config import secondary as secondary_replica
from backupctl.config.settings import Settings
from backupctl.errors import LitestreamError
from backupctl.host.processes import child_kwargs
from backupctl.litestream import spawn
from backupctl.redact import scrub
from backupctl.versions import Capabilities, capabilities

# Variables never passed through from backupctl's own environment, and why (each replica kind
# drops its own credential variables too: backupctl/kinds/).
_DROPPED_ALWAYS = {
    "LITESTREAM_CONFIG": "backupctl passes -config explicitly",
}


@dataclass
class ChildEnvironment:
    env: dict[str, str]
    notices: list[str] = field(default_factory=list)


def build_environment(settings: Settings, base: Mapping[str, str] | None = None) -> ChildEnvironment:
    """litestream's environment: ours minus what breaks it, plus the credentials from the settings."""
    caps = capabilities(settings.version)
    env = dict(os.environ if base is None else base)
    notices: list[str] = []
    for name, why in _DROPPED_ALWAYS.items():
        if env.pop(name, None) is not None:
            notices.append(f"not passing {name} to litestream: {why}")
    # Each kind drops backupctl's own variables for its credentials; they are set below, under the names litestream reads.
    notices += replica_kinds.drop_own_variables(env)
    for name in secondary_replica.WITHHELD:  # the secondary's secrets reach it under BACKUPCTL_SECONDARY_* only
        env.pop(name, None)
    dropped = spawn.clean_environment(caps, env)
    if replica_kinds.uses_s3_client(settings):
        notices += dropped  # only worth saying where an S3 client runs (not for a local folder)
    replica_kinds.set_credentials(settings, env)
    return ChildEnvironment(env=env, notices=notices)


def plain_environment(settings: Settings) -> list[str] | None:
    """For settings whose litestream needs nothing of theirs in its environment (every replica a local
    folder: no credentials, no S3 client), the variables ``build_environment`` removes from the
    caller's, whatever their values: with those removed (and ``spawn.move_ca_bundle`` applied where
    the version drops AWS_CA_BUNDLE), the caller's environment is litestream's. None for other settings.
    The fast listing (``cli.quick_listing``) builds litestream's environment from this, published in
    the supervisor's frame; ``tests/kinds/test_kinds.py`` checks the two agree."""
    added: dict[str, str] = {}
    replica_kinds.set_credentials(settings, added)
    if added or not all(r.spec.local_folder for db in settings.databases for r in db.replicas):
        return None
    return sorted({*_DROPPED_ALWAYS, *replica_kinds.own_variable_names(), *secondary_replica.WITHHELD})


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def tail(text: str, lines: int = 12) -> list[str]:
    return [line for line in text.strip().splitlines() if line.strip()][-lines:]


class Litestream:
    """A pinned litestream binary bound to one project's settings and config file."""

    def __init__(self, binary: Path, settings: Settings, config_path: Path | None = None) -> None:
        self.binary = Path(binary)
        self.settings = settings
        self.config_path = config_path or settings.config_path
        self.caps: Capabilities = capabilities(settings.version)
        self._env: ChildEnvironment | None = None

    @property
    def environment(self) -> ChildEnvironment:
        if self._env is None:
            self._env = build_environment(self.settings)
        return self._env

    def argv(self, command: str, *args: str, config: bool = True) -> list[str]:
        argv = [str(self.binary), command]
        if config:
            argv += ["-config", str(self.config_path)]
        return argv + list(args)

    def run(
        self,
        command: str,
        *args: str,
        timeout: float = 60.0,
        check: bool = True,
        config: bool = True,
        what: str | None = None,
        on_spawn: Callable[[subprocess.Popen[bytes]], None] | None = None,
        die_with_parent: bool = False,
    ) -> Result:
        """Run a one-shot litestream command; raise LitestreamError on failure or timeout."""
        argv = self.argv(command, *args, config=config)
        return run_command(
            argv, self.environment.env, timeout=timeout, check=check, settings=self.settings, what=what, on_spawn=on_spawn,
            die_with_parent=die_with_parent,
        )  # fmt: skip

    def popen(self, command: str, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a long-running litestream in its own process group (for the supervisor)."""
        argv = self.argv(command, *args)
        try:
            return subprocess.Popen(  # noqa: S603 - argv list, no shell
                argv,
                env=self.environment.env,
                start_new_session=True,
                **kwargs,  # type: ignore[arg-type]
            )
        except OSError as exc:
            raise cannot_run(argv[0], exc) from None


def cannot_run(program: str, exc: OSError) -> LitestreamError:
    """The error for a litestream binary the system would not start."""
    return LitestreamError(
        f"cannot run {program}: {exc.strerror}", "run `backupctl install --force` to reinstall the pinned binary"
    )


def run_command(
    argv: Sequence[str],
    env: Mapping[str, str],
    *,
    timeout: float,
    check: bool = True,
    settings: Settings | None = None,
    what: str | None = None,
    cwd: Path | None = None,
    on_spawn: Callable[[subprocess.Popen[bytes]], None] | None = None,
    die_with_parent: bool = False,
) -> Result:
    """Run argv with a hard timeout that kills the whole process group.

    ``on_spawn`` sees the child as soon as it exists (so a signal handler can kill it); the
    child is always reaped, whatever interrupts the wait. ``die_with_parent``: the kernel ends
    the child if this process is SIGKILLed (Linux; see processes.child_kwargs).
    """

    started = time.monotonic()
    label = what or (f"litestream {argv[1]}" if len(argv) > 1 else str(argv[0]))
    try:
        returncode, out, err = spawn.run_once(
            argv, env, timeout=timeout, cwd=str(cwd) if cwd is not None else None, on_spawn=on_spawn,
            **(child_kwargs() if die_with_parent else {}),
        )  # fmt: skip
    except spawn.CannotStart as exc:
        raise cannot_run(argv[0], exc.error) from None
    except subprocess.TimeoutExpired as exc:
        raise LitestreamError(
            f"{label} did not finish within {timeout:g}s",
            "check that the replica is reachable (endpoint, network, credentials); `backupctl doctor` probes it",
            details=[scrub(" ".join(argv), settings)] + [scrub(x, settings) for x in tail(_text(exc.stderr) + _text(exc.output))],
        ) from None
    result = Result(list(argv), returncode, _text(out), _text(err), time.monotonic() - started)
    if check and returncode != 0:
        raise LitestreamError(
            f"{label} failed (exit {returncode})",
            "see litestream's output above; `backupctl doctor` checks the usual causes",
            details=[scrub(" ".join(argv), settings)] + [scrub(x, settings) for x in tail(result.stderr + "\n" + result.stdout)],
        )
    return result


def run_many(
    argvs: Sequence[Sequence[str]],
    env: Mapping[str, str],
    *,
    timeout: float,
    parallel: int = 16,
    settings: Settings | None = None,
) -> list[Result | LitestreamError]:
    """Run several one-shot commands, ``parallel`` at a time, each with ``timeout``; never raises for
    one of them: its place in the answer holds its LitestreamError instead (a failed exit is a Result).

    No threads: a batch is started, then each is collected (communicate polls its own pipes), so the
    supervisor, which must stay single-threaded, can ask about a thousand databases in seconds.
    """
    answers: list[Result | LitestreamError] = []
    for first in range(0, len(argvs), max(1, parallel)):
        batch: list[tuple[list[str], subprocess.Popen[bytes] | LitestreamError, float]] = []
        try:
            for argv in argvs[first : first + parallel]:
                started = time.monotonic()
                try:
                    proc: subprocess.Popen[bytes] | LitestreamError = subprocess.Popen(  # noqa: S603 - argv list
                        list(argv), env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, start_new_session=True,
                    )  # fmt: skip
                except OSError as exc:
                    proc = LitestreamError(f"cannot run {argv[0]}: {exc.strerror}", "run `backupctl install --force`")
                batch.append((list(argv), proc, started))
            deadline = time.monotonic() + timeout
            for argv, proc, started in batch:
                if isinstance(proc, LitestreamError):
                    answers.append(proc)
                    continue
                try:
                    out, err = proc.communicate(timeout=max(0.05, deadline - time.monotonic()))
                    answers.append(Result(argv, proc.returncode, _text(out), _text(err), time.monotonic() - started))
                except subprocess.TimeoutExpired:
                    kill_group(proc)
                    proc.communicate()
                    answers.append(
                        LitestreamError(
                            f"litestream {argv[1] if len(argv) > 1 else ''} did not finish within {timeout:g}s",
                            "check that the replica is reachable (endpoint, network, credentials)",
                            details=[scrub(" ".join(argv), settings)],
                        )
                    )
        except BaseException:
            for _, proc, _ in batch:
                if isinstance(proc, subprocess.Popen) and proc.poll() is None:
                    kill_group(proc)
                    proc.wait()
            raise
    return answers


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", "replace")


kill_group = spawn.kill_group
_kill_group = kill_group  # the name restore and supervisor import
