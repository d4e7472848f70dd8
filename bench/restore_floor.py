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
    pid = os.posix_spawn(exe, [exe, "restore", "-config", config, "-o", temporary, db], os.environ)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return 1
    con = sqlite3.connect(temporary)
    try:
        verdict = con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()
    if verdict != "ok":
        return 1
    os.rename(temporary, out)
    folder = os.open(os.path.dirname(os.path.abspath(out)), os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    print(f"restored {out}: integrity {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
