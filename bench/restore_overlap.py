"""The best a reordered `backupctl restore` could do, for the restore benchmark: litestream starts first,
and everything backupctl does before it today runs while it restores.

It starts the interpreter, runs litestream's restore into a temporary file at once (os.posix_spawn),
then, while litestream runs on the other core, does backupctl's own work: loading the settings (with the
replica's databases), the pinned binary's check, the plan, the config litestream would be handed, the
imports of typer and the command modules, and the command tree typer builds. Then it waits, runs the
integrity check backupctl runs, renames and fsyncs. Nothing is parsed from the command line: it is a
measurement of overlap, not a restore to use.

    python bench/restore_overlap.py LITESTREAM CONFIG DB OUTPUT     (run in the project's folder)
"""

import sys

from restore_floor import put_in_place, restore, start  # this folder: the floor's steps, shared


def main() -> int:
    exe, config, db, out = sys.argv[1:5]
    temporary = out + ".tmp"
    pid = start(exe, config, db, temporary)

    from pathlib import Path

    from typer.main import get_command

    from backupctl import restore as core
    from backupctl.cli.app import app
    from backupctl.cli.wiring import binary_for, load_for_recovery

    get_command(app)  # typer, click, rich, the command modules and the command tree, as a restore builds them
    settings = load_for_recovery(None)
    binary = binary_for(settings)
    (database, target), *_ = core.select_targets(settings, None, Path(out), output_is_dir=False)
    core.plan_restore(settings, binary, core.RestoreRequest(database, target), details=False)
    core.litestream_for(settings, binary)

    if not restore(exe, config, db, temporary, pid):
        return 1
    core.check_database(Path(temporary))  # backupctl's own check (it raises on a bad copy)
    put_in_place(temporary, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
