"""The best a reordered `backupctl restore` could do, for the restore benchmark: litestream starts first,
and everything backupctl does before it today runs while it restores.

It starts the interpreter, runs litestream's restore into a temporary file at once (os.posix_spawn),
then, while litestream runs on the other core, does backupctl's own work: loading the settings (with the
replica's databases), the pinned binary's check, the plan, the config litestream would be handed, and
the imports of typer and the command modules. Then it waits, runs the integrity check backupctl runs,
renames and fsyncs. Nothing is parsed from the command line: it is a measurement of overlap, not a
restore to use.

    python bench/restore_overlap.py LITESTREAM CONFIG DB OUTPUT     (run in the project's folder)
"""

import os
import sys


def main() -> int:
    exe, config, db, out = sys.argv[1:5]
    temporary = out + ".tmp"
    pid = os.posix_spawn(exe, [exe, "restore", "-config", config, "-o", temporary, db], os.environ)

    from pathlib import Path

    import backupctl.cli.app  # noqa: F401  (typer, click, rich and the command tree, as a restore loads them)
    from backupctl import restore as core
    from backupctl.cli.wiring import binary_for, load_for_recovery

    settings = load_for_recovery(None)
    binary = binary_for(settings)
    (database, target), *_ = core.select_targets(settings, None, Path(out), output_is_dir=False)
    core.plan_restore(settings, binary, core.RestoreRequest(database, target), details=False)
    core.litestream_for(settings, binary)

    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return 1
    core.check_database(Path(temporary))
    os.rename(temporary, out)
    folder = os.open(os.path.dirname(os.path.abspath(out)), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    print(f"restored {out}: integrity ok")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
