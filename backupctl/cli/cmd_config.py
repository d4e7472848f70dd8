"""setup, env, templates: turning a .env into a litestream.yml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backupctl.cli.app import Typer, app
from backupctl.cli.common import EnvFileOpt, JsonOpt, SkipChecksOpt, load
from backupctl.cli.output import emit_json, notice, out, print_table, say, success
from backupctl.errors import BackupctlError

templates_app = Typer(help="Copy the default templates into the project to edit them.", no_args_is_help=True)
app.add_typer(templates_app, name="templates")


@app.command()
def setup(
    env_file: EnvFileOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write (default: litestream.yml beside the .env).")
    ] = None,
    print_: Annotated[bool, typer.Option("--print", help="Print the config to stdout instead of writing it.")] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Replicate to a local folder (BACKUP_LOCAL_DIR), whatever BACKUP_REPLICA says.")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Also validate the config with the pinned litestream and list what it replicates.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace a litestream.yml backupctl did not write (a copy is kept beside it)."),
    ] = False,
    skip_checks: SkipChecksOpt = False,
) -> int:
    """Render litestream.yml from .env (atomically, mode 0600, no secrets in it).

    --local switches the project to a local-folder replica until the next plain `setup`:
    start, status and restore then all use it.

    \b
    Examples:
      backupctl setup                 # litestream.yml beside the project's .env
      backupctl setup --check         # and prove the pinned litestream reads it as meant
      backupctl setup --print         # show it, write nothing
      backupctl setup --local         # replicate to BACKUP_LOCAL_DIR until a plain setup
    """
    # lazy: each command loads only what it runs
    from backupctl.commands.configure import setup as configure

    settings = load(env_file, force_local=local)
    done = configure(
        settings,
        output=output,
        print_only=print_,
        local=local,
        check=check,
        force=force,
        skip_checks=skip_checks,
        note=notice,
    )
    if print_:
        out(done.rendered.text)
    if done.check is not None:
        success(f"Litestream {done.check.version} accepts {done.check.label}; it will replicate:")
        _say_destinations(settings)
    if done.target is not None:
        origin = "your templates" if done.rendered.user_templates else "the default templates"
        success(f"wrote {done.target} for Litestream {settings.version} from {origin}")
        _say_destinations(settings)
        _suggest_gitignore(settings, done.target)
    return 0


def _suggest_gitignore(settings, config: Path) -> None:  # noqa: ANN001 - Settings, imported lazily
    """Name the .gitignore lines for what backupctl writes into the app's repository (backupctl/commands/gitignore.py)."""
    # lazy: each command loads only what it runs
    from backupctl.commands.gitignore import suggestion

    try:
        found = suggestion(settings, config)
    except (OSError, BackupctlError):
        return  # advice only: a state folder it cannot write to must not fail a setup that succeeded
    if found and found[1]:
        gitignore, lines = found
        notice(f"git would offer to commit what backupctl writes here; add to {gitignore} (backupctl does not edit it):")
        for line in lines:
            say(f"  {line}")


def _say_destinations(settings) -> None:  # noqa: ANN001 - Settings, imported lazily
    for db in settings.databases:
        for replica in db.replicas:
            say(f"  {db.path} -> {replica.destination}")


@app.command("env")
def env_command(env_file: EnvFileOpt = None, json_: JsonOpt = False) -> int:
    """Show the effective settings, where each came from, secrets masked."""
    # lazy: each command loads only what it runs
    from backupctl.commands.project import effective_settings

    settings = load(env_file)
    doc = effective_settings(settings)
    if json_:
        emit_json(doc)
        return 0
    rows, databases = doc["settings"], doc["databases"]

    shown = [r for r in rows if r["value"] is not None]
    print_table(
        ["setting", "value", "from"],
        [
            [r["setting"], str(r["value"]), r["source"] if r["variable"] is None else f"{r['variable']} ({r['source']})"]
            for r in shown
        ],
        title=f"backupctl settings ({settings.env_file or 'environment only'})",
    )
    for db in databases:
        say(f"{db['path']} -> {', '.join(db['replicas'])}")
    return 0


@templates_app.command("eject")
def templates_eject(
    env_file: EnvFileOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite templates already ejected.")] = False,
) -> int:
    """Copy the default templates to ./backupctl-templates/; setup then uses yours."""
    # lazy: each command loads only what it runs
    from backupctl.config.render import eject_templates
    from backupctl.config.settings import find_env_file

    found = find_env_file(env_file, Path.cwd())
    target = eject_templates(found.parent if found else Path.cwd(), force=force)
    success(f"copied the default templates to {target}; `backupctl setup` now renders with them")
    return 0
