"""setup, env, templates: turning a .env into a litestream.yml."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backupctl.cli.app import app
from backupctl.cli.common import EnvFileOpt, JsonOpt, SkipChecksOpt, load, preflight

templates_app = typer.Typer(help="Copy the default templates into the project to edit them.", no_args_is_help=True)
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
    from backupctl.atomic import write_atomic
    from backupctl.cli.output import out, say, success
    from backupctl.render import render

    settings = load(env_file, force_local=local)
    rendered = render(settings)
    if print_:
        out(rendered.text)
    else:
        target = (output or settings.config_path).expanduser().absolute()
        if not skip_checks:
            # Before writing: a database that is not SQLite fails here, in a second, not after minutes of start.
            preflight(settings, missing_database="note", unreachable_is_error=False)
        _keep_a_foreign_config(settings, target, force)
    if check:
        from backupctl.cli.cmd_binary import check_config

        # Check exactly the rendered text before anything is written: a failed check leaves an existing
        # litestream.yml byte-identical (and --print is never judged by an older file on disk).
        check_config(settings, None, text=rendered.text)
    if not print_:
        write_atomic(target, rendered.text)
        _set_local_mode(settings, local)
        origin = "your templates" if rendered.user_templates else "the default templates"
        success(f"wrote {target} for Litestream {settings.version} from {origin}")
        for db in settings.databases:
            for replica in db.replicas:
                say(f"  {db.path} -> {replica.destination}")
    return 0


def _keep_a_foreign_config(settings, target: Path, force: bool) -> None:  # noqa: ANN001 - Settings, imported lazily
    """A litestream.yml backupctl did not write is refused, or with --force kept as a copy first."""
    import shutil
    import time

    from backupctl.cli.output import notice
    from backupctl.render import guard_foreign_config

    try:
        current = target.read_bytes()
    except FileNotFoundError:
        return
    if not force:
        guard_foreign_config(settings, target, current)
        return
    from backupctl.render import written_by_backupctl

    if not written_by_backupctl(settings, target, current):
        kept = target.with_name(f"{target.name}.bak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        shutil.copy2(target, kept)
        notice(f"kept your previous {target.name} as {kept}")


def _set_local_mode(settings, local: bool) -> None:  # noqa: ANN001 - Settings, imported lazily
    from backupctl.cli.output import notice
    from backupctl.settings import local_mode_marker

    marker = local_mode_marker(settings.project_dir)
    if local:
        from backupctl.paths import private_dir

        private_dir(marker.parent)
        marker.write_text("set by `backupctl setup --local`; removed by a plain `backupctl setup`\n", "utf-8")
        notice("local mode: start, status and restore use the local folder until you run `backupctl setup` again")
    elif marker.exists():
        marker.unlink()
        notice("left local mode: the .env's replica is used again")


@app.command("env")
def env_command(env_file: EnvFileOpt = None, json_: JsonOpt = False) -> int:
    """Show the effective settings, where each came from, secrets masked."""
    from backupctl.cli.output import emit_json
    from backupctl.settings import CHAINS, MASKED_SETTINGS, mask

    settings = load(env_file)
    rows = []
    for setting in CHAINS:
        value = settings.values.get(setting)
        origin = settings.origins.get(setting)
        shown = mask(value) if setting in MASKED_SETTINGS and value else value
        rows.append(
            {
                "setting": setting,
                "value": shown,
                "variable": origin.variable if origin else None,
                "source": origin.source if origin else None,
            }
        )
    databases = [{"path": str(db.path), "replicas": [r.destination for r in db.replicas]} for db in settings.databases]
    if json_:
        emit_json(
            {
                "env_file": str(settings.env_file) if settings.env_file else None,
                "litestream_version": settings.version,
                "settings": rows,
                "databases": databases,
            }
        )
        return 0
    from backupctl.cli.output import print_table, say

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
    from backupctl.cli.output import success
    from backupctl.render import eject_templates
    from backupctl.settings import find_env_file

    found = find_env_file(env_file, Path.cwd())
    target = eject_templates(found.parent if found else Path.cwd(), force=force)
    success(f"copied the default templates to {target}; `backupctl setup` now renders with them")
    return 0
