"""A Litestream 0.5 file replica read from its files, as litestream's own file client lists them.

litestream lists level N of a folder replica (``file/replica_client.go``, ``LTXFiles``) as the
entries of ``<replica>/ltx/<N>`` whose names ``ltx.ParseFilename`` takes (16 lowercase hex digits, a
dash, 16 more, ``.ltx``), each with the size and modification time its directory read gives (an
lstat: a link is not followed); `litestream ltx` shows that time to the second (RFC 3339). A level
whose folder is missing lists nothing. Reading the files here costs a few stats where litestream
costs a process that parses the whole config: the supervisor's looks at 1,000 databases
(``v05.read_directly``) and the fast listings (``cli.quick_listing``) read them so.
``tests/litestream/test_folder.py`` compares both on real replicas and odd names.

This module imports only the standard library: it is on the fast path.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from backupctl.litestream.rows import LtxRow, in_listed_order

LEVELS = tuple(range(10))  # litestream's levels, 0 to 9 (the snapshot level)
_HEX = frozenset("0123456789abcdef")


def parse_name(name: str) -> tuple[int, int] | None:
    """(min TXID, max TXID) of an LTX file's name, or None for a name litestream skips."""
    if len(name) != 37 or name[16] != "-" or not name.endswith(".ltx"):
        return None
    low, high = name[:16], name[17:33]
    if not _HEX.issuperset(low) or not _HEX.issuperset(high):
        return None
    return int(low, 16), int(high, 16)


def ltx_files(replica: str, levels: tuple[int, ...] = LEVELS) -> list[tuple[int, int, int, int, int]] | None:
    """(level, min TXID, max TXID, size, modification time in whole seconds) of every LTX file at
    ``levels`` of the folder replica ``replica``, in no order; None when a level's folder cannot be
    read (litestream fails there too, and says why)."""
    found = []
    ltx = os.path.join(replica, "ltx")
    try:
        present = set(os.listdir(ltx))  # one call where most of the ten levels have no folder
    except FileNotFoundError:
        return []
    except OSError:
        present = {str(level) for level in levels}  # litestream opens each level's folder by its path
    for level in levels:
        if str(level) not in present:
            continue
        try:
            with os.scandir(os.path.join(ltx, str(level))) as entries:
                listed = list(entries)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        for entry in listed:
            txids = parse_name(entry.name)
            if txids is None:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the folder was read (litestream's compaction): gone for it too
            except OSError:
                return None
            found.append((level, txids[0], txids[1], st.st_size, st.st_mtime_ns // 1_000_000_000))  # exact: no float
    return found


def listed(replica: str, levels: tuple[int, ...] = LEVELS) -> list[LtxRow] | None:
    """``ltx_files`` as the rows `litestream ltx -json` gives (``rows.ltx_rows``), in its order."""
    found = ltx_files(replica, levels)
    if found is None:
        return None
    return in_listed_order((level, low, high, size, datetime.fromtimestamp(at, UTC)) for level, low, high, size, at in found)
