"""Where a database stands, locally and in its replica: the records every version's adapter fills.

The one answer to "does the replica hold everything this database has?" is asked of the adapter of
the litestream series in use (``litestream/adapter.py``: ``series_of``; ``v05.py``, ``v03.py``),
by the supervisor (a start or a restarted litestream is confirmed when the replica holds the
position litestream had just before it started; a stop's final sync is checked against the position
after it exited) and by `status` (ok or behind). This module holds what they answer with:

- ``LocalPosition``: what litestream has of a database (0.5: a TXID; 0.3: a generation and the time
  of the last write it has to ship);
- ``ReplicaPosition``: what the replica holds, read from a ``Window``;
- ``Window``: how far back the database can be restored, from what its replica holds right now;
- ``WalPosition``: how far litestream has read the live WAL (its salts and an offset).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from backupctl.litestream import rows
from backupctl.litestream.listings import Generation


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


@dataclass(frozen=True)
class WalPosition:
    """A point in a live WAL: its salts, and the byte offset just past the last frame included."""

    salt1: int
    salt2: int
    end: int


@dataclass(frozen=True)
class Window:
    """How far back one database can be restored, from what its replica holds right now.

    ``oldest``/``newest`` are the oldest and newest backup times as litestream lists them
    (UTC, truncated to whole seconds), None for an empty replica. ``destinations`` names
    the replica(s) read.
    """

    database: Path
    destinations: tuple[str, ...]
    oldest: datetime | None
    newest: datetime | None
    snapshot_count: int
    newest_snapshot: datetime | None
    file_count: int  # LTX files of every level (0.5); 0 on 0.3 (see wal_segments)
    generations: tuple[Generation, ...] = ()  # 0.3 only, oldest first
    min_txid: int | None = None  # 0.5 only
    max_txid: int | None = None  # 0.5 only

    @property
    def empty(self) -> bool:
        return self.newest is None

    @property
    def restorable(self) -> bool:
        """Something restores: the replica holds a snapshot (0.5: or a file that starts the chain).
        A replica deleted under a running litestream fills with its next files, none of which restores:
        ``newest`` is set and ``oldest`` None."""
        return self.oldest is not None

    @property
    def latest_generation(self) -> Generation | None:
        """0.3: the generation a restore without -generation uses (newest end)."""
        dated = [g for g in self.generations if g.end is not None]
        return max(dated, key=lambda g: g.end) if dated else None  # type: ignore[arg-type,return-value]

    def to_json(self) -> dict[str, object]:
        return rows.window_json(str(self.database), self.destinations, self.oldest, self.newest, self.snapshot_count,
                                self.newest_snapshot, self.file_count, [g.to_json() for g in self.generations],
                                self.min_txid, self.max_txid)  # fmt: skip


def replica_position(window: Window) -> ReplicaPosition:
    """What a restorable window says of the replica's position."""
    newest = window.newest.timestamp() if window.newest is not None else None
    latest = window.latest_generation
    return ReplicaPosition(
        empty=window.empty,
        txid=window.max_txid,
        generation=latest.generation if latest is not None else None,
        newest=newest,
    )


def meta_dir(db_path: Path) -> Path:
    """litestream's local folder for a database (both versions): ``.<name>-litestream`` beside it."""
    return db_path.with_name(f".{db_path.name}-litestream")
