"""Litestream 0.3: its outputs, parsed here and nowhere else.

- A position is a generation and the time of the last write litestream has to ship: the newest of
  the shadow WAL (litestream's local copy, under ``.<db>-litestream``) and the database's ``-wal``.
  The database file's own mtime is left out on purpose: litestream's checkpoint at shutdown touches
  it without adding data, and an idle database restarted would otherwise look behind forever. The
  replica covers the database when its newest generation is the local one and its newest file is no
  older than that last write (minus ``listings.LISTED_TIME_SLACK``: times are listed to the second).
- How far litestream has read the live WAL: the salts in the header of its newest shadow WAL file,
  and that file's size.
- The restorable window: ``generations`` + ``snapshots``. ``oldest`` is the earliest generation
  start, ``newest`` the latest generation end; ``generations`` lists them all, oldest first, and
  ``latest_generation`` is the one a plain restore uses. 0.3 refuses a restore timestamp past the
  generation's exact (sub-second) end.
"""

from __future__ import annotations

import re
import struct
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from backupctl import sqlite_wal
from backupctl.litestream.listings import LISTED_TIME_SLACK, generations, snapshots
from backupctl.litestream.positions import LocalPosition, ReplicaPosition, WalPosition, Window, meta_dir
from backupctl.litestream.series import Series

if TYPE_CHECKING:
    from backupctl.config.settings import Database
    from backupctl.litestream.runner import Litestream



class V03(Series):
    name: ClassVar[str] = "0.3"
    keeps_ltx_chain: ClassVar[bool] = False
    exact_positions: ClassVar[bool] = False

    # 0.3 refuses any timestamp past the exact end of the generation: a point past the newest listing
    # is restored as the latest.
    after_newest: ClassVar[timedelta] = timedelta(0)
    lists_generations: ClassVar[bool] = True

    def restored_position(self, output: str) -> dict[str, Any]:
        position: dict[str, Any] = {}
        gen = re.search(r"generation=([0-9a-f]{16})", output)
        if gen:
            position["generation"] = gen.group(1)
        index = re.findall(r"index_max=(\d+)", output) or re.findall(r"\bindex=(\d+)", output)
        if index:
            position["index"] = int(index[-1])
        replica = re.search(r"replica=(\S+)", output)
        if replica:
            position["replica"] = replica.group(1)
        return position

    def local_positions(
        self, ls: Litestream, databases: list[Database], *, timeout: float, shipped_only: bool
    ) -> dict[str, LocalPosition]:
        """From litestream's files: no litestream call. ``shipped_only``: what litestream itself holds
        (its shadow WAL), leaving out writes to the ``-wal`` it has not picked up yet."""
        return {str(db.path): local_position(db.path, shipped_only) for db in databases}

    def local_key(self, local: LocalPosition) -> float | None:
        return local.written_at

    def replica_key(self, replica: ReplicaPosition, local: LocalPosition) -> float | None:
        if replica.empty:
            return None
        if local.generation is not None and replica.generation != local.generation:
            return None  # a new local generation whose snapshot has not reached the replica yet
        return replica.newest

    def covers_key(self, replica: float | None, local: float | None) -> bool:
        if local is None:
            return True
        if replica is None:
            return False
        return replica + LISTED_TIME_SLACK >= local

    def needs_current_marks(self) -> bool:
        return True

    def confirming_marks(self, wanted: dict[str, LocalPosition], now: dict[str, LocalPosition]) -> dict[str, LocalPosition]:
        """0.3 starts a new generation when the WAL changed while it was stopped: the old generation's
        position is then never reached; the new one's snapshot is the mark."""
        marks = dict(wanted)
        for path, current in now.items():
            if path in marks and current.generation and current.generation != marks[path].generation:
                marks[path] = current
        return marks

    def shown_local(self, local: LocalPosition) -> str | None:
        return local.generation

    def shown_replica(self, window: Window) -> str | None:
        return window.latest_generation.generation if window.latest_generation else None

    def wal_position(self, db_path: Path) -> WalPosition | None:
        meta = meta_dir(db_path)
        try:
            generation = (meta / "generation").read_text("utf-8").strip()
            wal_dir = meta / "generations" / generation / "wal"
            newest = max((p for p in wal_dir.iterdir() if p.name.endswith(".wal")), key=lambda p: p.name)
            with open(newest, "rb") as fh:
                head = fh.read(sqlite_wal.WAL_HEADER)
            size = newest.stat().st_size
        except (OSError, ValueError):
            return None
        if len(head) < sqlite_wal.WAL_HEADER:
            return None
        salt1, salt2 = struct.unpack(">II", head[16:24])
        return WalPosition(salt1, salt2, size)

    def window(self, ls: Litestream, db: Database, *, timeout: float) -> Window:
        destinations = tuple(r.destination for r in db.replicas)
        gens = generations(ls.settings, ls.binary, db, config_path=ls.config_path, timeout=timeout)
        snaps = snapshots(ls.settings, ls.binary, db, config_path=ls.config_path, timeout=timeout) if gens else []
        starts = [g.start for g in gens if g.start]
        ends = [g.end for g in gens if g.end]
        return Window(
            database=db.path,
            destinations=destinations,
            oldest=min(starts) if starts and snaps else None,  # no snapshot: nothing restores (positions.Window)
            newest=max(ends) if ends else None,
            snapshot_count=len(snaps),
            newest_snapshot=max((s.created for s in snaps), default=None),
            file_count=0,
            generations=tuple(gens),
        )


def local_position(path: Path, shipped_only: bool = False) -> LocalPosition:
    meta = meta_dir(path)
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
