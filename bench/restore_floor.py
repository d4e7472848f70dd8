"""The floor of a safe restore in Python, for the restore benchmark: what any restore that checks its
copy before putting it in place costs over `litestream restore -o`, with none of backupctl's work.

It starts the interpreter, runs litestream's restore into a temporary file (os.posix_spawn), runs
``PRAGMA integrity_check`` on the copy, renames it into place, fsyncs its folder and prints one line:
no settings, no plan, no checks of the output or the binary, no command line parser.

    python bench/restore_floor.py LITESTREAM CONFIG DB OUTPUT
"""

import os
import sqlite3
import sys


def main() -> int:
    exe, config, db, out = sys.argv[1:5]
    temporary = out + ".tmp"
    if not restore(exe, config, db, temporary):
        return 1
    con = sqlite3.connect(temporary)
    try:
        verdict = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    if verdict != "ok":
        return 1
    put_in_place(temporary, out)
    return 0


def start(exe: str, config: str, db: str, temporary: str) -> int:
    """litestream's restore of ``db`` into ``temporary``, started: its pid."""
    return os.posix_spawn(exe, [exe, "restore", "-config", config, "-o", temporary, db], os.environ)


def restore(exe: str, config: str, db: str, temporary: str, pid: int | None = None) -> bool:
    """Wait for the restore ``start`` began (or start it now): whether litestream succeeded."""
    _, status = os.waitpid(start(exe, config, db, temporary) if pid is None else pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def put_in_place(temporary: str, out: str) -> None:
    """The checked copy renamed onto ``out``, its folder fsynced, one line printed."""
    os.rename(temporary, out)
    folder = os.open(os.path.dirname(os.path.abspath(out)), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    print(f"restored {out}: integrity ok")


if __name__ == "__main__":
    raise SystemExit(main())
