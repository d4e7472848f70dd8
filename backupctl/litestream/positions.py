"""Where a database stands, locally and in its replica, and whether the replica covers it.

The one answer to "does the replica hold everything this database has?", asked by the
supervisor (a start or a restarted litestream is confirmed when the replica holds the position
litestream had just before it started; a stop's final sync is checked against the position
after it exited) and by `status` (ok or behind).

- **0.5**: positions are TXIDs. The local one is what ``litestream status -json`` calls
  ``local_txid`` (one call for every database); the replica's is the highest TXID of its LTX
  files. The replica covers the database when its TXID reaches the local one.
- **0.3**: a position is a generation and the time of the last write litestream has to ship:
  the newest of the shadow WAL (litestream's local copy, under ``.<db>-litestream``) and the
  database's ``-wal``. The database file's own mtime is left out on purpose: litestream's
  checkpoint at shutdown touches it without adding data, and an idle database restarted would
  otherwise look behind forever. The replica covers the database when its newest generation is
  the local one and its newest file is no older than that last write (minus ``SLACK_03``:
  litestream lists times truncated to the second).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backupctl.errors import LitestreamError
from backupctl.litestream.restorable import restorable_window, restorable_windows

if TYPE_CHECKING:
    from backupctl.config.settings import Database
    from backupctl.litestream.restorable import Window
    from backupctl.litestream.runner import Litestream

SLACK_03 = 2.0  # seconds: listed times are truncated to the second, plus litestream's own write


@dataclass(frozen=True)
class LocalPosition:
    exists: bool
    txid: int | None = None  # 0.5
    status: str | None = None  # 0.5: ok, not initialized, no database, error
    generation: str | None = None  # 0.3
    written_at: float | None = None  # 0.3: the last write litestream has to ship (epoch seconds)

    @property
    def initialized(self) -> bool:
        """Has litestream ever replicated this database (it keeps a local position)?"""
        if self.txid is not None or self.status is not None:
            return self.txid is not None and self.status != "not initialized"
        return self.generation is not None


@dataclass(frozen=True)
class ReplicaPosition:
    empty: bool
    txid: int | None = None  # 0.5: the highest TXID in the replica
    generation: str | None = None  # 0.3: the generation a plain restore uses
    newest: float | None = None  # the newest file's time (epoch seconds)


def local_positions(
    ls: Litestream, databases: list[Database], *, timeout: float = 30.0, shipped_only: bool = False
) -> dict[str, LocalPosition]:
    """The local position of each database, by str(path): one litestream call on 0.5, files on 0.3.

    ``shipped_only`` (0.3): what litestream itself holds (its shadow WAL), leaving out writes to the
    ``-wal`` it has not picked up yet; 0.5's TXID is always litestream's own.
    """
    if not ls.caps.has_ltx:
        return {str(db.path): _local_03(db.path, shipped_only) for db in databases}
    result = ls.run("status", "-json", timeout=timeout)
    try:
        native = {str(Path(item["database"])): item for item in json.loads(result.stdout or "[]") or []}
    except (ValueError, KeyError, TypeError) as exc:
        raise LitestreamError(f"cannot parse `litestream status -json`: {exc}", "report it") from None
    found: dict[str, LocalPosition] = {}
    for db in databases:
        item = native.get(str(db.path)) or {}
        raw = item.get("local_txid")
        txid = int(raw, 16) if isinstance(raw, str) and raw.strip("-") else None
        found[str(db.path)] = LocalPosition(exists=db.path.exists(), txid=txid, status=item.get("status"))
    return found


def _local_03(path: Path, shipped_only: bool = False) -> LocalPosition:
    meta = path.with_name(f".{path.name}-litestream")
    try:
        generation = (meta / "generation").read_text("utf-8").strip() or None
    except OSError:
        generation = None
    times = [] if shipped_only else [_mtime(path.with_name(path.name + "-wal"))]
    if generation:
        try:
            times += [f.stat().st_mtime for f in (meta / "generations" / generation / "wal").iterdir()]
        except OSError:
            pass
    known = [t for t in times if t is not None]
    return LocalPosition(exists=path.exists(), generation=generation, written_at=max(known) if known else None)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def replica_position(window: Window) -> ReplicaPosition:
    """What a restorable window (restorable.restorable_window) says of the replica's position."""
    newest = window.newest.timestamp() if window.newest is not None else None
    latest = window.latest_generation
    return ReplicaPosition(
        empty=window.empty,
        txid=window.max_txid,
        generation=latest.generation if latest is not None else None,
        newest=newest,
    )


def read_replica(ls: Litestream, db: Database, *, timeout: float = 30.0) -> ReplicaPosition:
    """Read the replica's position now (raises LitestreamError when it cannot be read)."""

    return replica_position(restorable_window(ls.settings, ls.binary, db, config_path=ls.config_path, timeout=timeout))


def read_replicas(ls: Litestream, databases: list[Database], *, timeout: float = 30.0) -> dict[str, ReplicaPosition | Exception]:
    """``read_replica`` for many databases at once (``restorable.restorable_windows``), by str(path):
    the position, or the error reading that replica gave."""

    windows = restorable_windows(ls.settings, ls.binary, databases, config_path=ls.config_path, timeout=timeout)
    return {path: (w if isinstance(w, Exception) else replica_position(w)) for path, w in windows.items()}


def local_key(local: LocalPosition, has_ltx: bool) -> float | None:
    """The local position as one comparable number (TXID, or the last write's time)."""
    if has_ltx:
        return float(local.txid) if local.txid is not None else None
    return local.written_at


def replica_key(replica: ReplicaPosition, local: LocalPosition, has_ltx: bool) -> float | None:
    """The replica's position as a number comparable with local_key; None when it holds none of it."""
    if replica.empty:
        return None
    if has_ltx:
        return float(replica.txid) if replica.txid is not None else None
    if local.generation is not None and replica.generation != local.generation:
        return None  # a new local generation whose snapshot has not reached the replica yet
    return replica.newest


def covers_key(has_ltx: bool, replica: float | None, local: float | None) -> bool:
    if local is None:
        return True
    if replica is None:
        return False
    return replica >= local if has_ltx else replica + SLACK_03 >= local


def covers(replica: ReplicaPosition, local: LocalPosition, has_ltx: bool) -> bool:
    """Does the replica hold everything litestream has of this database?"""
    if not local.initialized or replica.empty:
        return False
    return covers_key(has_ltx, replica_key(replica, local, has_ltx), local_key(local, has_ltx))
