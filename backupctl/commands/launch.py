"""What `start` and `stop` do around the supervisor.

:func:`prepare_litestream` keeps the rendered litestream.yml in step with the settings and
installs the pinned binary; :func:`run_foreground` runs the supervisor in this process;
:func:`launch_background` starts a detached one (through ``background.py``) and, when it fails,
puts litestream's own last error first (:func:`explain_failed_start`); :func:`stop_project`
stops this project's supervisor unless a service manager runs it. Before either start, refuses
when anything else replicates these databases (``processes.check_free``); a `start --background`
that finds this project's own supervisor replicating with the same settings has nothing to do
(:func:`already_running`). Messages go to the ``log`` callables the command passes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backupctl import paths
from backupctl.checks.preflight import litestream_errors
from backupctl.commands.project import explicit_config
from backupctl.config.render import fingerprint, sync_config
from backupctl.config.settings import Settings
from backupctl.errors import ConflictError, ExitCode, RefusedError, SupervisorError
from backupctl.host import processes, state
from backupctl.host.logfiles import RotatingLog
from backupctl.host.processes import check_free
from backupctl.host.service_managers import manager_stop_hint
from backupctl.litestream.binary import ensure_binary
from backupctl.litestream.runner import Litestream
from backupctl.owned import secure_dir
from backupctl.supervise.supervisor import Supervisor, stop_timeout_seconds

if TYPE_CHECKING:
    from backupctl.host.processes import ProcessRecord
    from backupctl.litestream.runner import Litestream
    from backupctl.supervise.background import StopResult

Log = Callable[[str], None]


def prepare_litestream(settings: Settings, config: Path | None, log: Log) -> Litestream:
    """Keep the default litestream.yml in sync with the settings (an explicit --config is used as it
    is, never rendered over), make sure the pinned binary is there, pass on notices."""

    config_path = explicit_config(config)
    if config_path is None:
        synced = sync_config(settings)
        config_path = synced.path
        if synced.action != "unchanged":
            log(f"backupctl: {synced.action} {synced.path} from the settings")
    binary = ensure_binary(settings.version, notify=lambda m: log(f"backupctl: {m}"))
    litestream = Litestream(binary.path, settings, config_path)
    for message in litestream.environment.notices:
        log(f"backupctl: note: {message}")
    return litestream


@dataclass(frozen=True)
class Launched:
    pid: int
    litestream_pid: int | None
    log_path: Path
    log_offset: int  # where this start's lines begin in the log


@dataclass(frozen=True)
class Running:
    record: ProcessRecord
    litestream_pid: int | None
    log_path: Path


def already_running(settings: Settings, config: Path | None, *, timeout: float = 120.0, poll: float = 0.2) -> Running | None:
    """`start --background` when this project's supervisor runs already: what runs, when it replicates
    with the settings this start would use (so there is nothing to do: exit 0, as people expect of
    "make sure it runs"), else None when none runs.

    Raises ConflictError (exit 6, as before) when it runs with other settings (a restart applies them:
    saying "running" would hide that the new ones are not in use) or is not replicating (backoff, fatal,
    stopping). One still starting is waited for, as a start of our own would be, up to ``timeout``."""

    record = processes.supervisor_of(settings.project_dir)
    if record is None:
        return None
    state_dir = paths.project_state_dir(settings.project_dir)
    wanted = explicit_config(config) or settings.config_path
    deadline = time.monotonic() + timeout
    while True:
        doc = state.read_supervisor_state_of(state_dir, record.pid, record.create_time)
        if doc is not None:  # None: it has only just started and written nothing yet
            same = (
                doc.config_source is not None
                and Path(doc.config_source) == wanted
                and doc.config_input == fingerprint(settings, wanted)
            )
            if not same:
                raise ConflictError(
                    f"replication is already running for this project, with other settings: {record.describe()}",
                    f"it runs with {doc.config_source or 'an unknown config'}; to apply the current settings, restart "
                    "it: `backupctl stop`, then `backupctl start --background`",
                )
            if doc.state == state.RUNNING:
                return Running(record, doc.litestream_pid, state_dir / state.LOGFILE)
            if doc.state != state.STARTING:
                why = f" ({doc.last_error})" if doc.last_error else ""
                raise ConflictError(
                    f"this project's supervisor is already running but {doc.state}{why}: {record.describe()}",
                    "`backupctl status` and `backupctl logs` say why; `backupctl stop`, then start again",
                )
        if not record.alive():  # it stopped meanwhile: this start can go ahead
            return None
        if time.monotonic() > deadline:
            raise ConflictError(
                f"this project's supervisor is already running but has not confirmed replication in {timeout:g}s: "
                f"{record.describe()}",
                "`backupctl status` and `backupctl logs` say why",
            )
        time.sleep(poll)


def launch_background(settings: Settings, config: Path | None, *, restore_if_missing: bool, log: Log) -> Launched:
    """`start --background`: launch `start --foreground-child` detached; return once it replicates."""
    # lazy: only `start --background` needs it
    from backupctl.supervise.background import start_background

    state_dir = secure_dir(paths.project_state_dir(settings.project_dir))  # 0700: its logs hold litestream output
    check_free(settings, project=settings.project_dir, log=log)  # early and clear; the child's locks decide
    prepare_litestream(settings, config, log)
    argv = [sys.executable, "-m", "backupctl", "start", "--foreground-child"]
    if settings.env_file:
        argv += ["--env-file", str(settings.env_file)]
    if config:
        argv += ["--config", str(config.expanduser().absolute())]
    if restore_if_missing:
        argv.append("--restore-if-missing")
    log("starting the background supervisor; waiting until every replica holds its database as litestream found it ...")
    launched_at = time.time()
    offset = _log_size(state_dir)
    try:
        started = start_background(argv, state_dir, settings, cwd=Path.cwd())
    except SupervisorError as exc:
        raise explain_failed_start(exc, state_dir, launched_at) from None
    return Launched(started.pid, started.litestream_pid, started.log_path, offset)


def run_foreground(
    settings: Settings,
    config: Path | None,
    *,
    restore_if_missing: bool,
    background_child: bool,
    log: Log,
    report: Log | None,
    exit_zero_on_clean_stop: bool = False,
) -> int:
    """`start` in the foreground (or as the detached child of `start --background`, logging to the
    project's rotating log): run the supervisor until it stops; its exit code.

    ``exit_zero_on_clean_stop``: a stop by SIGINT or SIGTERM whose final sync completed is 0, not
    130/143. Task runners (just) call any non-zero exit a failure, and a recipe's shell cannot tell a
    clean stop from one whose final sync was not confirmed; the supervisor can."""

    state_dir = secure_dir(paths.project_state_dir(settings.project_dir))  # 0700: its logs hold litestream output
    if background_child:
        log = RotatingLog(state_dir / state.LOGFILE, redirect_std=True)
    else:
        check_free(settings, project=settings.project_dir, log=log)  # early and clear; the locks decide
    litestream = prepare_litestream(settings, config, log)
    supervisor = Supervisor(
        settings=settings,
        litestream=litestream,
        state_dir=state_dir,
        log=log,
        stop_timeout=stop_timeout_seconds(settings),
        restore_if_missing=restore_if_missing,
        background=background_child,
        source_config=litestream.config_path,
        config_input=fingerprint(settings, litestream.config_path),
        report=None if background_child else report,
    )
    code = supervisor.run()
    if exit_zero_on_clean_stop and code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED) and supervisor.status.final_sync:
        return int(ExitCode.OK)
    return code


def _log_size(state_dir: Path) -> int:
    """Where the supervisor log ends now: what a background start writes comes after."""

    try:
        return (state_dir / state.LOGFILE).stat().st_size
    except OSError:
        return 0


def explain_failed_start(exc: SupervisorError, state_dir: Path, since: float) -> SupervisorError:
    """Put litestream's own last error first in a failed background start, rather than backupctl's
    restart lines: the supervisor records it in its state file; its log lines are the fallback."""

    recorded = state.read_supervisor_state(state_dir)
    this_run = recorded is not None and (recorded.started_at or 0) >= since - 1  # never a previous run's error
    cause = recorded.last_error if this_run and recorded.last_error else None
    if cause is None:
        errors = litestream_errors(exc.details)
        cause = errors[-1] if errors else None
    if cause:
        exc.message = f"{exc.message}: litestream said: {cause}"
    return exc


def stop_project(settings: Settings, timeout: float | None, *, force: bool) -> StopResult:
    """`stop`: stop this project's supervisor gracefully; refuse one a service manager runs (unless
    ``force``): it would start it again, or count it as failed. ``timeout`` None: the stop timeout + 15 s."""
    # lazy: only `stop` needs it
    from backupctl.supervise.background import stop_supervisor

    state_dir = paths.project_state_dir(settings.project_dir)
    wait = timeout if timeout is not None else stop_timeout_seconds(settings) + 15
    record = processes.supervisor_of(settings.project_dir)
    if record is not None and record.manager and not force:
        raise RefusedError(
            f"the supervisor (pid {record.pid}) runs under {record.manager}, which would start it again or consider it failed",
            f"stop it there: {manager_stop_hint(record.manager)} (or `backupctl stop --force`)",
        )
    return stop_supervisor(record, state_dir, wait)
