"""What the read commands answer, without typer: the listings each command fetches and the JSON
document each prints. The typer commands (``cmd_inspect``) print these as tables or JSON; the fast
path (``backupctl.cli.fast``) prints the JSON of the same functions, so the two cannot differ."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backupctl.cli.output import notice
from backupctl.cli.wiring import binary_for, explicit_config
from backupctl.commands.project import configured_database_rows
from backupctl.errors import ConfigError
from backupctl.litestream import listings, rows
from backupctl.litestream.adapter import restorable_window, series_of


@dataclass(frozen=True)
class Listing:
    key: str  # the list's name in each database's JSON entry
    fetch: Callable[..., list[Any]]  # (settings, binary, db, config_path=...) -> items
    note: str | None = None


def parse_level(level: str) -> int | str:
    """`ltx --level`: 0-9 or all."""

    if level != "all" and not (level.isdigit() and 0 <= int(level) <= 9):
        raise ConfigError(f"--level {level!r} is not a level", "use 0-9 or all")
    return int(level) if level.isdigit() else "all"


def listing(command: str, settings: Any, level: str = "all") -> Listing:
    """What `backupctl COMMAND` lists, for this version."""

    if command == "snapshots":
        return Listing("snapshots", listings.snapshots)
    if command == "wal":
        return Listing("wal", listings.wal_segments)
    if command == "ltx":
        lvl = parse_level(level)
        return Listing("ltx", lambda s, b, db, config_path: listings.ltx_files(s, b, db, lvl, config_path=config_path))

    if series_of(settings.version).lists_generations:
        return Listing("generations", listings.generations)
    return Listing("window", _window_rows, note=listings.GENERATIONS_NOTE)


def _window_rows(settings: Any, binary: Path, db: Any, config_path: Path | None = None) -> list[Any]:
    return [w for w in [restorable_window(settings, binary, db, config_path=config_path)] if not w.empty]


def listing_results(settings: Any, database: str | None, config: Path | None, what: Listing) -> list[tuple[Any, list[Any]]]:
    """The listing of each selected database, fetched in parallel; the first error is raised."""
    from concurrent.futures import ThreadPoolExecutor


    config_path = explicit_config(config)
    binary = binary_for(settings)
    dbs = settings.database(database)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(dbs)))) as pool:
        results = list(pool.map(lambda db: what.fetch(settings, binary, db, config_path=config_path), dbs))
    return list(zip(dbs, results, strict=True))


def listing_document(settings: Any, results: list[tuple[Any, list[Any]]], what: Listing) -> dict[str, Any]:
    entries = [(db.name, str(db.path), [r.destination for r in db.replicas], [item.to_json() for item in items])
               for db, items in results]  # fmt: skip
    return rows.listing_document(settings.version, entries, what.key, what.note)


def databases_document(settings: Any, config: Path | None) -> dict[str, Any]:
    """`databases --json`: the config litestream reads and one row per database of the settings."""

    config_path, rows = configured_database_rows(settings, config, note=notice)
    return {"litestream_version": settings.version, "config": str(config_path), "databases": rows}


def status_report(settings: Any, database: str | None, config: Path | None, fresh: bool) -> Any:
    """`status` (not --replica-only, not --watch): the StatusReport."""
    # lazy: the listings, which share this module, read no status
    from backupctl.checks.status import collect_status

    return collect_status(settings, lambda: binary_for(settings), database, config_path=explicit_config(config), fresh=fresh)
