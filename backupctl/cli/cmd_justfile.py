"""justfile: the `just backup-*` recipes for an app, as a file its justfile imports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from backupctl.cli.app import app
from backupctl.cli.common import EnvFileOpt
from backupctl.cli.output import notice, out, say, success


@app.command("justfile")
def justfile_command(
    env_file: EnvFileOpt = None,
    write: Annotated[
        bool, typer.Option("--write", help="Write backup.just into the project folder (beside the .env) instead of printing it.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="With --write: replace a backup.just that differs (a copy is kept beside it).")
    ] = False,
) -> int:
    """Print (or --write) backup.just: the chora `just backup-*` recipes for your app's justfile.

    Only backup-* recipes (no default recipe, no settings), each running `backupctl` from PATH in the
    folder of backup.just, so a bare `just` and your own recipes stay as they are. Add the one line it
    prints, `import 'backup.just'`, to your justfile.

    \b
    Examples:
      backupctl justfile --write      # writes ./backup.just beside .env, prints the import line
      backupctl justfile | less       # what it would write
    """
    # lazy: each command loads only what it runs
    from backupctl.commands import just_recipes
    from backupctl.config.settings import find_env_file

    found = find_env_file(env_file, Path.cwd())
    project_dir = found.parent if found is not None else Path.cwd().resolve()
    just_version = just_recipes.installed_just()
    text = just_recipes.render_backup_just(just_version)
    target = project_dir / just_recipes.BACKUP_JUST
    justfile = just_recipes.app_justfile(project_dir)
    line = just_recipes.import_line(target, justfile)
    if not write:
        out(text)
        say(f"`backupctl justfile --write` writes it to {target}; then add to your justfile: {line}")
        return 0
    if found is None:
        notice(f"no .env in {project_dir} or above: backup.just goes here, where the recipes will look for one")
    elif found.name != ".env":
        # The recipes find the settings as a plain `backupctl` does from that folder: the nearest .env.
        notice(
            f"the recipes run backupctl in {project_dir}, which reads the nearest .env, not {found.name}: "
            "rename it .env, or set BACKUPCTL_ENV_FILE where just runs"
        )
    done = just_recipes.write_backup_just(target, text, force=force)
    if done.kept is not None:
        notice(f"kept your previous {target.name} as {done.kept}")
    success(f"{target} {done.action}" if done.action == "unchanged" else f"{done.action} {target}")
    if just_version is None:
        notice("no `just` on PATH: these recipes need just 1.54 or newer (https://just.systems)")
    elif just_version < just_recipes.NEEDS:
        notice(f"just {just_recipes.shown_version(just_version)} is too old for these recipes: they need 1.29 or newer")
    elif just_version < just_recipes.CONTINUE_SINCE:
        notice(
            f"just {just_recipes.shown_version(just_version)} is older than 1.54: a Ctrl-C on `just backup-start` "
            'ends with just\'s "interrupted" (upgrade just, then run this again with --force)'
        )
    if justfile is not None and just_recipes.imports_it(justfile, line):
        say(f"{justfile} already imports it")
        return 0
    say(f"add this line to {justfile or project_dir / 'justfile'}:")
    out(line)
    return 0
