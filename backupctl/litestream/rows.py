"""The rows of litestream's listings, as backupctl prints them: the one parser of `litestream ltx -json`
and the JSON shape of every listing entry (`ltx`, `snapshots`, `wal`, `generations`, `databases`).

``listings`` builds its typed records from these and their ``to_json`` is these shapes; the fast
listing (``cli.quick_listing``), which loads no settings, prints the same shapes straight from the
rows. So the two answers cannot differ. Light on purpose: the standard library only, nothing that
imports typing, dataclasses or pathlib (each costs milliseconds on every listing).

Times are UTC and tz-aware. Litestream lists them truncated to whole seconds: a file listed
at ``t`` was written somewhere in ``[t, t + 1s)``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from backupctl.owned import json_loads

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Container, Iterable, Sequence

LISTING_TIMEOUT = 30.0  # seconds; 0.5 against a silent endpoint would otherwise retry for minutes
SNAPSHOT_LEVEL = 9  # 0.5: snapshots are level-9 LTX files
WAL_LEVEL = 0  # 0.5: what 0.3 called WAL segments are level-0 LTX files
GENERATIONS_NOTE = (
    "Litestream 0.5 has no generations: the replica is one continuous chain of LTX files "
    "(snapshots are level 9, incremental files level 0), so this shows its restorable window."
)

UNRESTORABLE = (
    "the replica cannot be restored: it holds backup files but no snapshot to start from (it was deleted "
    "or pruned while litestream ran, which goes on writing its next files into it)"
)

# One LTX file as a row: (level, min_txid, max_txid, size, timestamp).
LtxRow = tuple[int, int, int, int, datetime]


# --------------------------------------------------------------------------- values


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def txid_hex(value: int | None) -> str | None:
    """A txid the way litestream writes it (16 hex digits; what `restore -txid` takes)."""
    return None if value is None else f"{value:016x}"


_TIME: list = []  # the compiled pattern of ``parse_time``, made at its first use: `databases` needs no re (7 ms with enum)
HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def parse_time(text: str) -> datetime:
    """A litestream timestamp (RFC 3339, any precision) as a tz-aware UTC datetime."""
    if not _TIME:
        import re  # lazy: see _TIME

        _TIME.append(re.compile(r"(.*?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)"))
    m = _TIME[0].fullmatch(text.strip())
    if not m:
        raise ValueError(text)
    base, frac, zone = m.groups()
    frac = (frac or "")[:7]  # Python takes at most microseconds
    value = datetime.fromisoformat(base + frac + ("+00:00" if zone == "Z" else zone))
    return value.astimezone(UTC)


def number(text: str) -> int:
    """A txid or index as litestream prints it: 16 hex digits, else decimal."""
    return int(text, 16) if len(text) == 16 and HEX_DIGITS.issuperset(text) else int(text)


def is_error_line(line: str) -> bool:
    """A line of a listing's output that says it failed: 0.3 logs failures on stdout (and exits 0),
    0.5 prints `Error: ...` on stderr."""
    stripped = line.strip()
    return "level=ERROR" in stripped or "level=WARN" in stripped or stripped.startswith("Error:")


# --------------------------------------------------------------------------- 0.5 LTX files


def ltx_rows(stdout: str) -> list[LtxRow]:
    """`litestream ltx -json` output as rows, oldest first. Raises ValueError, KeyError or TypeError
    on output of another shape."""
    rows = [
        (int(item["level"]), number(str(item["min_txid"])), number(str(item["max_txid"])), int(item["size"]),
         parse_time(item["timestamp"]))
        for item in (json_loads(stdout or "[]") or [])
    ]  # fmt: skip
    return in_listed_order(rows)


def in_listed_order(found: Iterable[LtxRow]) -> list[LtxRow]:
    """LTX rows oldest first, then by level and first txid: the order every listing shows them in."""
    return sorted(found, key=lambda r: (r[4], r[0], r[1]))


def ltx_json(level: int, min_txid: int, max_txid: int, size: int, timestamp: datetime) -> dict[str, object]:
    """`ltx --json`: one LTX file."""
    return {"level": level, "min_txid": txid_hex(min_txid), "max_txid": txid_hex(max_txid), "size": size,
            "timestamp": iso(timestamp)}  # fmt: skip


def snapshot_json(
    replica: str, created: datetime, size: int, generation: str | None = None, index: int | None = None,
    min_txid: int | None = None, max_txid: int | None = None,
) -> dict[str, object]:  # fmt: skip
    """`snapshots --json`: a full copy (a 0.3 snapshot, a 0.5 level-9 LTX file)."""
    return {"replica": replica, "created": iso(created), "size": size, "generation": generation, "index": index,
            "min_txid": txid_hex(min_txid), "max_txid": txid_hex(max_txid)}  # fmt: skip


def wal_json(
    replica: str, created: datetime, size: int, generation: str | None = None, index: int | None = None,
    offset: int | None = None, level: int | None = None, min_txid: int | None = None, max_txid: int | None = None,
) -> dict[str, object]:  # fmt: skip
    """`wal --json`: an incremental piece (a 0.3 WAL segment, a 0.5 LTX file below level 9)."""
    return {"replica": replica, "created": iso(created), "size": size, "generation": generation, "index": index,
            "offset": offset, "level": level, "min_txid": txid_hex(min_txid), "max_txid": txid_hex(max_txid)}  # fmt: skip


def window_fields(files: Sequence[LtxRow]) -> dict[str, object]:
    """The restorable window a 0.5 replica's LTX files make: the oldest restorable time (the oldest
    snapshot, or the oldest file that starts the chain), the newest, and the counts and txids.

    Files but no snapshot and none from txid 1 (a replica deleted or pruned while litestream ran,
    which goes on writing its next files into it): nothing restores (`litestream restore`: "no
    matching backup files available"), so ``oldest`` is None while ``newest`` is not."""
    if not files:
        return {"oldest": None, "newest": None, "snapshot_count": 0, "newest_snapshot": None, "file_count": 0,
                "min_txid": None, "max_txid": None}  # fmt: skip
    bases = [f for f in files if f[0] == SNAPSHOT_LEVEL or f[1] <= 1]
    snaps = [f for f in files if f[0] == SNAPSHOT_LEVEL]
    return {
        "oldest": min(f[4] for f in bases) if bases else None,
        "newest": max(f[4] for f in files),
        "snapshot_count": len(snaps),
        "newest_snapshot": max((f[4] for f in snaps), default=None),
        "file_count": len(files),
        "min_txid": min(f[1] for f in files),
        "max_txid": max(f[2] for f in files),
    }


def window_json(
    database: str, destinations: Iterable[str], oldest: datetime | None, newest: datetime | None, snapshot_count: int,
    newest_snapshot: datetime | None, file_count: int, generations: Iterable[dict[str, object]] = (),
    min_txid: int | None = None, max_txid: int | None = None,
) -> dict[str, object]:  # fmt: skip
    """`generations --json` on 0.5 (and ``Window.to_json``): how far back a database can be restored."""
    return {"database": database, "destinations": list(destinations), "oldest": iso(oldest), "newest": iso(newest),
            "snapshot_count": snapshot_count, "newest_snapshot": iso(newest_snapshot), "file_count": file_count,
            "generations": list(generations), "min_txid": txid_hex(min_txid), "max_txid": txid_hex(max_txid)}  # fmt: skip


# --------------------------------------------------------------------------- 0.3 text tables


def table(text: str, header_first: str) -> list[list[str]]:
    """Rows of a 0.3 tab-aligned table (whitespace-separated; no cell contains spaces)."""
    found: list[list[str]] = []
    seen_header = False
    for line in text.splitlines():
        cells = line.split()
        if not cells:
            continue
        if not seen_header:
            if cells[0] == header_first:
                seen_header = True
            continue
        found.append(cells)
    return found


def time_or_none(text: str) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None


_FAR = datetime.max.replace(tzinfo=UTC)


def generation_rows(stdout: str) -> list[tuple[str, str, str | None, datetime | None, datetime | None]]:
    """0.3 `generations DB`: (replica, generation, lag, start, end), oldest start first."""
    found = [
        (c[0], c[1], c[2] if len(c) > 2 else None, time_or_none(c[3]) if len(c) > 3 else None,
         time_or_none(c[4]) if len(c) > 4 else None)
        for c in table(stdout, "name") if len(c) >= 2
    ]  # fmt: skip
    return sorted(found, key=lambda g: (g[3] or _FAR, g[1]))


def snapshot_rows(stdout: str) -> list[tuple[str, str, int, int, datetime]]:
    """0.3 `snapshots DB`: (replica, generation, index, size, created), oldest first."""
    found = [(c[0], c[1], number(c[2]), int(c[3]), parse_time(c[4]))
             for c in table(stdout, "replica") if len(c) >= 5 and time_or_none(c[4]) is not None]  # fmt: skip
    return sorted(found, key=lambda r: (r[4], r[2]))


def wal_rows(stdout: str) -> list[tuple[str, str, int, int, int, datetime]]:
    """0.3 `wal DB`: (replica, generation, index, offset, size, created), oldest first."""
    found = [(c[0], c[1], number(c[2]), int(c[3]), int(c[4]), parse_time(c[5]))
             for c in table(stdout, "replica") if len(c) >= 6 and time_or_none(c[5]) is not None]  # fmt: skip
    return sorted(found, key=lambda r: (r[5], r[2], r[3]))


def listed_databases(stdout: str, paths: Iterable[str]) -> dict[str, str]:
    """0.3 `databases`: of ``paths``, those its table lists, each with its replica names' cell. Paths may
    hold spaces, so each configured path is matched as a line prefix, never split."""
    lines = stdout.splitlines()[1:]
    found: dict[str, str] = {}
    for prefix in paths:
        for line in lines:
            if line == prefix or line.startswith((prefix + " ", prefix + "\t")):
                found[prefix] = line[len(prefix) :].strip()
                break
    return found


def generation_json(
    replica: str, generation: str, lag: str | None, start: datetime | None, end: datetime | None
) -> dict[str, object]:
    """`generations --json` on 0.3: one generation."""
    return {"replica": replica, "generation": generation, "lag": lag, "start": iso(start), "end": iso(end)}


# --------------------------------------------------------------------------- documents


def listing_document(
    version: str, entries: Iterable[tuple[str, str, list[str], list[dict[str, object]]]], key: str, note: str | None
) -> dict[str, object]:
    """What a listing command prints with --json: per database (name, path, destinations) its items
    under ``key``."""
    doc: dict[str, object] = {
        "litestream_version": version,
        "databases": [{"name": name, "path": path, "destinations": destinations, key: items}
                      for name, path, destinations, items in entries],  # fmt: skip
    }
    if note:
        doc["note"] = note
    return doc


def database_row(name: str, path: str, destinations: list[str], size: int | None, native: Container[str]) -> dict[str, object]:
    """`databases --json`: one configured database (``size`` None: it does not exist), and whether
    litestream reads it from the config (``native``: the paths `litestream databases` lists)."""
    return {"name": name, "path": path, "exists": size is not None, "size": size, "replicas": destinations,
            "in_litestream_config": path in native}  # fmt: skip
