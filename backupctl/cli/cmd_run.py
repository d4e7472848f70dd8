"""start, stop, logs, service: running litestream under supervision."""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from backupctl.cli.app import app
from backupctl.cli.common import (
    DURATION,
    ConfigOpt,
    EnvFileOpt,
    JsonOpt,
    SkipChecksOpt,
    explain_failed_start,
    load,
    load_for_recovery,
    log_size,
    preflight,
    restored_lines,
)


def _stderr_log(line: str) -> None:
    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {line}\n")
    sys.stderr.flush()


def _stdout_line(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def _prepare(settings, config: Path | None, log):  # -> Litestream
    """Keep the default litestream.yml in sync with the settings (an explicit --config is used as it
    is, never rendered over), make sure the pinned binary is there, pass on notices."""
    from backupctl.binary import ensure_binary
    from backupctl.errors import ConfigError
    from backupctl.render import sync_config
    from backupctl.runner import Litestream

    if config is not None:
        config_path = config.expanduser().absolute()
        if not config_path.is_file():
            raise ConfigError(
                f"--config {config}: no such file",
                "pass the litestream.yml to run with, or drop --config to use the one rendered from the .env",
            )
    else:
        synced = sync_config(settings)
        config_path = synced.path
        if synced.action != "unchanged":
            log(f"backupctl: {synced.action} {synced.path} from the settings")
    binary = ensure_binary(settings.version, notify=lambda m: log(f"backupctl: {m}"))
    litestream = Litestream(binary.path, settings, config_path)
    for message in litestream.environment.notices:
        log(f"backupctl: note: {message}")
    return litestream


@app.command()
def start(
    env_file: EnvFileOpt = None,
    config: ConfigOpt = None,
    background: Annotated[
        bool, typer.Option("--background", "-b", help="Detach; return once a first snapshot is in the replica.")
    ] = False,
    restore_if_missing: Annotated[
        bool,
        typer.Option("--restore-if-missing", help="Restore a missing database from its replica before replicating."),
    ] = False,
    skip_checks: SkipChecksOpt = False,
    foreground_child: Annotated[bool, typer.Option("--foreground-child", hidden=True)] = False,
) -> int:
    """Replicate continuously: run litestream under supervision (foreground unless --background).

    Restarts litestream with backoff if it dies, stops it gracefully (final sync) on Ctrl-C or
    SIGTERM, and refuses to run twice on one database. Fast checks first (database file, replica
    folder or endpoint): a mistake fails in seconds with its cause.

    \b
    Examples:
      backupctl start                          # foreground (Procfile, systemd, Kamal, docker)
      backupctl start --background             # returns once the first snapshot is in the replica
      backupctl start -b --restore-if-missing  # a new machine: restore first, then replicate
    """
    from backupctl import paths, state
    from backupctl.background import start_background
    from backupctl.cli.output import say, success
    from backupctl.errors import SupervisorError
    from backupctl.logfiles import RotatingLog
    from backupctl.processes import check_free
    from backupctl.render import fingerprint
    from backupctl.supervisor import Supervisor, stop_timeout_seconds

    # A new machine: the databases (and their folders) may exist only in the replica.
    settings = load_for_recovery(env_file, lenient=True) if restore_if_missing else load(env_file)
    state_dir = paths.project_state_dir(settings.project_dir)
    if not foreground_child and not skip_checks:  # seconds, not litestream's minutes of quiet retrying
        preflight(settings, missing_database="error" if background else "note", restore_if_missing=restore_if_missing)
    paths.private_dir(state_dir)  # 0700: its logs hold litestream's raw output

    if background and not foreground_child:
        check_free(settings, project=settings.project_dir, log=say)  # early and clear; the child's locks decide
        _prepare(settings, config, say)
        argv = [sys.executable, "-m", "backupctl", "start", "--foreground-child"]
        if settings.env_file:
            argv += ["--env-file", str(settings.env_file)]
        if config:
            argv += ["--config", str(config.expanduser().absolute())]
        if restore_if_missing:
            argv.append("--restore-if-missing")
        say("starting the background supervisor; waiting until its first snapshot is in the replica ...")
        launched_at = time.time()
        log_offset = log_size(state_dir)
        try:
            started = start_background(argv, state_dir, settings, cwd=Path.cwd())
        except SupervisorError as exc:
            raise explain_failed_start(exc, state_dir, launched_at) from None
        for line in restored_lines(started.log_path, log_offset):  # on stdout as in the foreground, not only in the log
            _stdout_line(line)
        success(
            f"replicating in the background: supervisor pid {started.pid}"
            + (f", litestream pid {started.litestream_pid}" if started.litestream_pid else "")
        )
        say(f"log: {started.log_path}  (backupctl logs -f)")
        say("stop it with: backupctl stop")
        return 0

    if not foreground_child:
        check_free(settings, project=settings.project_dir, log=_stderr_log)  # early and clear; the locks decide
    log = RotatingLog(state_dir / state.LOGFILE, redirect_std=True) if foreground_child else _stderr_log
    litestream = _prepare(settings, config, log)
    supervisor = Supervisor(
        settings=settings,
        litestream=litestream,
        state_dir=state_dir,
        log=log,
        stop_timeout=stop_timeout_seconds(settings),
        restore_if_missing=restore_if_missing,
        background=foreground_child,
        source_config=litestream.config_path,
        config_input=fingerprint(settings, litestream.config_path),
        report=None if foreground_child else _stdout_line,
    )
    code = supervisor.run()
    if code:
        raise typer.Exit(code)
    return 0


@app.command()
def stop(
    env_file: EnvFileOpt = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            click_type=DURATION,
            help="How long to wait for the final sync: 30s, 2m (default: BACKUP_STOP_TIMEOUT + 15s).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Also stop a foreground supervisor that a service manager (systemd, launchd) runs."),
    ] = False,
    json_: JsonOpt = False,
) -> int:
    """Stop this project's supervisor gracefully (litestream's final sync); says so if nothing runs.

    Stops a background supervisor, or a foreground one started in a terminal. One run by a service
    manager (systemd, launchd, a container) is stopped there; `stop` names the command (or --force).
    """
    from backupctl import paths, processes
    from backupctl.background import stop_supervisor
    from backupctl.cli.output import emit_json, notice, say, success
    from backupctl.errors import RefusedError
    from backupctl.supervisor import stop_timeout_seconds

    settings = load(env_file)
    state_dir = paths.project_state_dir(settings.project_dir)
    wait = timeout if timeout is not None else stop_timeout_seconds(settings) + 15
    record = processes.supervisor_of(settings.project_dir)
    if record is not None and record.manager and not force:
        raise RefusedError(
            f"the supervisor (pid {record.pid}) runs under {record.manager}, which would start it again or "
            "consider it failed",
            f"stop it there: {processes.manager_stop_hint(record.manager)} (or `backupctl stop --force`)",
        )
    result = stop_supervisor(record, state_dir, wait)
    if json_:
        emit_json({"was_running": result.was_running, "pid": result.pid, "final_sync": result.final_sync})
        return 0
    if not result.was_running:
        say("nothing to stop: no supervisor is running for this project")
        return 0
    if result.final_sync:
        success(f"stopped (supervisor pid {result.pid}); final sync completed: the replica has every committed write")
    else:
        notice(
            f"stopped (supervisor pid {result.pid}), but the final sync was not confirmed: "
            "the newest writes may be missing from the replica (see `backupctl logs`)"
        )
    return 0


@app.command()
def logs(
    env_file: EnvFileOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines (Ctrl-C to end).")] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many of the last lines to show.")] = 50,
) -> int:
    """Show the background supervisor's log (litestream's output included)."""
    from backupctl import paths, state
    from backupctl.cli import Interrupted
    from backupctl.cli.output import out, say
    from backupctl.logfiles import follow as follow_log
    from backupctl.logfiles import log_tail

    settings = load(env_file)
    path = paths.project_state_dir(settings.project_dir) / state.LOGFILE
    if not follow:
        if not path.exists():
            say(f"no log yet ({path}): `backupctl start --background` writes it")
            return 0
        for line in log_tail(path, lines):
            out(line)
        return 0
    try:
        for line in follow_log(path, lines):
            out(line)
    except Interrupted:
        return 0
    return 0


class ServiceKind(StrEnum):
    systemd = "systemd"
    launchd = "launchd"
    compose = "compose"
    procfile = "procfile"


@app.command()
def service(
    kind: Annotated[ServiceKind, typer.Argument(help="systemd, launchd, compose or procfile.")],
    env_file: EnvFileOpt = None,
    install: Annotated[
        bool, typer.Option("--install", help="systemd only: write it as a user unit to ~/.config/systemd/user/.")
    ] = False,
    image: Annotated[
        str | None,
        typer.Option(
            "--image",
            help="compose only: run this prebuilt image (default: build the repository's Dockerfile).",
            show_default=False,
        ),
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve", help="Define `backupctl serve` (health, metrics, status page) instead of the supervisor.")
    ] = False,
) -> int:
    """Print a service definition that runs `backupctl start` in the foreground (unit, plist, compose, Procfile).

    With --serve, one for `backupctl serve` to run next to it (a unit/service of its own).
    """
    from backupctl.cli.output import out, say, success
    from backupctl.errors import RefusedError
    from backupctl.service import install_systemd_user_unit, render_service

    settings = load(env_file)
    rendered = render_service(kind.value, settings, image=image, command="serve" if serve else "start")
    if not install:
        out(rendered.text)
        return 0
    if kind is not ServiceKind.systemd:
        raise RefusedError("--install only installs systemd user units", "redirect the output to a file instead")
    path = install_systemd_user_unit(rendered)
    success(f"wrote {path}")
    say(f"enable it with: systemctl --user daemon-reload && systemctl --user enable --now {path.name}")
    say("keep it running after logout with: loginctl enable-linger $USER")
    return 0
