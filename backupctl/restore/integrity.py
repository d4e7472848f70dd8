"""The check every restored copy passes before it is used: non-empty, SQLite, integrity ok."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from backupctl.errors import LitestreamError

SQLITE_HEADER = b"SQLite format 3\x00"


def check_database(path: Path, *, count_rows: bool = False) -> list[dict[str, Any]] | None:
    """Non-empty, SQLite, ``PRAGMA integrity_check`` ok; with ``count_rows`` returns each table's
    name and row count (else None).

    The file is private to this restore and nothing writes it while it is checked, so SQLite reads
    it through a memory map: the check reads every page, and a 200 MB file is checked ~1/3 faster
    (and counted ~10x faster) than through read() calls into SQLite's page cache."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = -1
    if size <= 0:
        raise LitestreamError(
            f"litestream restore reported success but produced {'no file' if size < 0 else 'an empty file'}",
            "the replica may be empty or unreachable; `backupctl ltx`/`generations` lists what it holds",
        )
    with path.open("rb") as handle:
        if handle.read(16) != SQLITE_HEADER:
            raise LitestreamError("the restored file is not an SQLite database", "the replica may be damaged")
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            con.execute(f"PRAGMA mmap_size = {max(size, 1)}")
            rows = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
            if rows != ["ok"]:
                raise LitestreamError(
                    "the restored database fails PRAGMA integrity_check",
                    "the replica may be damaged; try an earlier --timestamp",
                    details=[str(r) for r in rows[:10]],
                )
            if not count_rows:
                return None
            names = [
                r[0]
                for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            tables = []
            for name in names:
                quoted = '"' + name.replace('"', '""') + '"'
                tables.append({"name": name, "rows": con.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]})  # noqa: S608
            return tables
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise LitestreamError(f"the restored database does not open: {exc}", "the replica may be damaged") from None
