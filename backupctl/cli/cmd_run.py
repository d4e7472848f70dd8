"""start, stop, logs, service: running litestream under supervision."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from backupctl import paths
from backupctl.cli.app import app
from backupctl.cli.common import (
    DURATION,
    ConfigOpt,
    EnvFileOpt,
    JsonOpt,
    RestoreIfMissingOpt,
    SkipChecksOpt,
    load,
    load_for_recovery,
    preflight,
    restored_lines,
)
from backupctl.cli.output import UsageError, emit_json, log_line, notice, out, say, success
from backupctl.errors import ConflictError, RefusedError


@app.command()
def start(
    env_file: EnvFileOpt = None,
    config: ConfigOpt = None,
    background: Annotated[
        bool,
        typer.Option(
            "--background", "-b", help="Detach; return once every replica holds its database as litestream found it at start."
        ),
    ] = False,
    restore_if_missing: RestoreIfMissingOpt = False,
    skip_checks: SkipChecksOpt = False,
    exit_zero_on_clean_stop: Annotated[
        bool,
        typer.Option(
            "--exit-zero-on-clean-stop",
            help="Foreground: exit 0, not 130/143, when Ctrl-C or SIGTERM stopped it and the final sync completed "
            "(for task runners such as just, which call any non-zero exit a failure).",
        ),
    ] = False,
) -> int:
    """Replicate continuously: run litestream under supervision (foreground unless --background).

    Restarts litestream with backoff if it dies, stops it gracefully (final sync) on Ctrl-C or
    SIGTERM, and refuses to run twice on one database. Fast checks first (database file, replica
    folder or endpoint): a mistake fails in seconds with its cause. --background when this
    project's supervisor already replicates with the same settings says so and exits 0 (with other
    settings, exit 6).

    \b
    Examples:
      backupctl start                            # foreground (Procfile, systemd, Kamal, docker)
      backupctl start --background               # returns once every replica holds its database
      backupctl start -b --restore-if-missing    # a new machine: restore first, then replicate
      backupctl start --exit-zero-on-clean-stop  # what `just backup-start` runs (backupctl justfile)
    """
    # lazy: each command loads only what it runs
    from backupctl.commands import launch

    # A new machine: the databases (and their folders) may exist only in the replica.
    settings = load_for_recovery(env_file, lenient=True) if restore_if_missing else load(env_file)
    if background:
        # "Make sure it replicates": this project's supervisor, replicating with these settings, is a yes.
        running = launch.already_running(settings, config)
        if running is not None:
            return _already_running(running)
    if not skip_checks:  # seconds, not litestream's minutes of quiet retrying
        preflight(settings, missing_database="error" if background else "note", restore_if_missing=restore_if_missing)

    if background:
        try:
            started = launch.launch_background(settings, config, restore_if_missing=restore_if_missing, log=say)
        except ConflictError:
            # Lost a race with another start of this project (both found none running): the same answer
            # as when the other one had been first, once it replicates. Anything else stays refused.
            running = launch.already_running(settings, config)
            if running is None:
                raise
            return _already_running(running)
        for line in restored_lines(started.log_path, started.log_offset):  # on stdout as in the foreground, not only in the log
            out(line)
        success(
            f"replicating in the background: supervisor pid {started.pid}"
            + (f", litestream pid {started.litestream_pid}" if started.litestream_pid else "")
        )
        say(f"log: {started.log_path}  (backupctl logs -f)")
        say("stop it with: backupctl stop")
        return 0

    code = launch.run_foreground(
        settings,
        config,
        restore_if_missing=restore_if_missing,
        background_child=False,
        log=log_line,
        report=out,
        exit_zero_on_clean_stop=exit_zero_on_clean_stop,
    )
    if code:
        raise typer.Exit(code)
    return 0


def _already_running(running: Any) -> int:  # launch.Running (imported lazily with launch)
    pids = f"{running.record.describe()}" + (f", litestream pid {running.litestream_pid}" if running.litestream_pid else "")
    success(f"already running: {pids}")
    say(f"log: {running.log_path}  (backupctl logs -f)")
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
    # lazy: each command loads only what it runs
    from backupctl.checks.continuity import whole_summary
    from backupctl.commands.launch import stop_project

    settings = load(env_file)
    result = stop_project(settings, timeout, force=force)
    proven = whole_summary(settings)
    if json_:
        emit_json({"was_running": result.was_running, "pid": result.pid, "final_sync": result.final_sync,
                   "continuity": proven.to_json()})  # fmt: skip
        return 0
    if not result.was_running:
        say("nothing to stop: no supervisor is running for this project")
        return 0
    if result.final_sync:
        # Positions prove litestream shipped what it had read; only the continuity check proves the
        # chain has no hole (docs/faults.md), so that is said apart, as it stands.
        line = f"stopped (supervisor pid {result.pid}); final sync completed: the replica holds what litestream had read"
        (success if proven.all_whole else notice)(f"{line}; {proven.text}")
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
    # lazy: each command loads only what it runs
    from backupctl.cli import Interrupted
    from backupctl.host import state
    from backupctl.host.logfiles import follow as follow_log
    from backupctl.host.logfiles import log_tail

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
        bool,
        typer.Option(
            "--install",
            help="systemd only: write the unit to ~/.config/systemd/user/ (with --system: /etc/systemd/system/, as root).",
        ),
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
    system: Annotated[
        bool,
        typer.Option("--system", help="systemd only: a system unit run as --user-name (multi-user.target), not a user unit."),
    ] = False,
    user_name: Annotated[
        str | None,
        typer.Option("--user-name", metavar="NAME", help="With --system: the account the unit runs as.", show_default=False),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            metavar="VOLUME|PATH",
            help="compose only: the named volume (a name; default: storage) or host folder (a path, like ./storage) "
            "holding the databases, mounted at /data/storage.",
            show_default=False,
        ),
    ] = None,
    container_user: Annotated[
        str | None,
        typer.Option(
            "--container-user",
            metavar="UID:GID",
            help="compose only: UID:GID the container runs as and the image is built for (default: 1000:1000).",
            show_default=False,
        ),
    ] = None,
) -> int:
    """Print a service definition that runs `backupctl start` in the foreground (unit, plist, compose, Procfile).

    With --serve, one for `backupctl serve` to run next to it (a unit/service of its own).

    \b
    Examples:
      backupctl service systemd --install                              # a user unit
      backupctl service systemd --system --user-name deploy --install  # a system unit (as root)
      backupctl service compose > compose.backupctl.yml                # beside the .env
      backupctl service compose --data campfire_storage                # the app's named volume
      backupctl service procfile >> Procfile                           # backupctl from PATH, ./.env
    """
    # lazy: each command loads only what it runs
    from backupctl.commands.service import install_systemd_unit, render_service

    misplaced = [
        option
        for option, given, allowed in (
            ("--system", system, kind is ServiceKind.systemd),
            ("--user-name", user_name is not None, system),
            ("--image", image is not None, kind is ServiceKind.compose),
            ("--data", data is not None, kind is ServiceKind.compose),
            ("--container-user", container_user is not None, kind is ServiceKind.compose),
        )
        if given and not allowed
    ]
    if misplaced:
        raise UsageError(
            f"{', '.join(misplaced)} does not apply to `service {kind.value}`"
            + (" without --system" if misplaced == ["--user-name"] else ""),
            "see `backupctl service --help`: --system and --user-name are for systemd, --image, --data and "
            "--container-user for compose",
        )
    if system and not user_name:
        raise UsageError(
            "--system needs --user-name: the account the unit runs as",
            "name the user who owns the project and its .env, like --user-name deploy (root would work, and should not)",
        )
    if install and kind is not ServiceKind.systemd:
        raise RefusedError("--install only installs systemd units", "redirect the output to a file instead")

    settings = load(env_file)
    rendered = render_service(
        kind.value,
        settings,
        image=image,
        command="serve" if serve else "start",
        system_user=user_name if system else None,
        data=data,
        container_user=container_user,
    )
    if not install:
        out(rendered.text)
        return 0
    # lazy: each command loads only what it runs
    from backupctl.commands.service import backupctl_command

    # Who is not root is told to render the unit as themselves (their environment) and write it with sudo.
    printing = [*backupctl_command(), "service", "systemd", "--system", "--user-name", str(user_name)]
    printing += ["--serve"] if serve else []
    printing += ["--env-file", str(settings.env_file)] if settings.env_file else []
    path = install_systemd_unit(rendered, print_command=printing)
    success(f"wrote {path}")
    if rendered.system:
        say(f"enable it with: systemctl daemon-reload && systemctl enable --now {path.name}")
        return 0
    say(f"enable it with: systemctl --user daemon-reload && systemctl --user enable --now {path.name}")
    say("keep it running after logout with: loginctl enable-linger $USER")
    return 0
