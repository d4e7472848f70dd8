"""What every litestream series answers, whatever its outputs look like: the adapter's questions.

Commands and checks never test a version or a capability flag for these: they ask the adapter of the
series in use (``adapter.series_of``). Each series' outputs (``litestream status -json``, the
listings, its local files) are parsed in its own module, ``v05.py`` or ``v03.py``; supporting a
series that changes them means one more such module, its golden outputs, and its line in
``adapter.SERIES``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from backupctl.errors import BackupctlError
from backupctl.litestream.positions import LocalPosition, ReplicaPosition, WalPosition, Window

if TYPE_CHECKING:
    from backupctl.config.settings import Database
    from backupctl.litestream.runner import Litestream


class Series:
    """One litestream series (0.5, 0.3): how its positions read and compare, and how far back it restores."""

    name: ClassVar[str]
    # Does litestream keep a chain of LTX files whose next link is cut from the live WAL's salts and
    # offset? Then a WAL restarted while no litestream watched breaks it, and a level-9 snapshot heals
    # it (continuity.chain_break, continuity.force_snapshot).
    keeps_ltx_chain: ClassVar[bool]
    # Positions are exact (TXIDs) rather than times truncated to the second by listings.
    exact_positions: ClassVar[bool]

    # -- positions ------------------------------------------------------------------------------
    def local_positions(
        self, ls: Litestream, databases: list[Database], *, timeout: float, shipped_only: bool
    ) -> dict[str, LocalPosition]:
        """What litestream has of each database, by str(path). ``shipped_only``: leave out writes it
        has not picked up yet, where the series can tell them apart."""
        raise NotImplementedError

    def local_key(self, local: LocalPosition) -> float | None:
        """The local position as one comparable number."""
        raise NotImplementedError

    def replica_key(self, replica: ReplicaPosition, local: LocalPosition) -> float | None:
        """The replica's position as a number comparable with ``local_key``; None when it holds none of it."""
        raise NotImplementedError

    def covers_key(self, replica: float | None, local: float | None) -> bool:
        """Does a replica at ``replica`` hold a database at ``local`` (both keys)?"""
        raise NotImplementedError

    def covers(self, replica: ReplicaPosition, local: LocalPosition) -> bool:
        """Does the replica hold everything litestream has of this database?"""
        if not local.initialized or replica.empty:
            return False
        return self.covers_key(self.replica_key(replica, local), self.local_key(local))

    def confirming_marks(self, wanted: dict[str, LocalPosition], now: dict[str, LocalPosition]) -> dict[str, LocalPosition]:
        """The positions a start is confirmed against: ``wanted`` (taken before it started), unless
        the series has since moved a database somewhere ``wanted`` can never be reached (``now``)."""
        return dict(wanted)

    def needs_current_marks(self) -> bool:
        """Must ``confirming_marks`` see the positions of now, not only those wanted?"""
        return False

    def shown_local(self, local: LocalPosition) -> str | None:
        """The local position as `status` shows it."""
        raise NotImplementedError

    def shown_replica(self, window: Window) -> str | None:
        """The replica's position as `status` shows it."""
        raise NotImplementedError

    def wal_position(self, db_path: Path) -> WalPosition | None:
        """How far litestream has read this database's live WAL (None: it cannot be told)."""
        raise NotImplementedError

    # -- restore and listings ------------------------------------------------------------------
    restore_flags: ClassVar[tuple[str, ...]] = ()  # put before `restore`'s other arguments
    # A point in time this far past the newest listed backup is surely after it (listed times are
    # truncated to the second; how the series compares them decides).
    after_newest: ClassVar[timedelta] = timedelta(0)
    lists_generations: ClassVar[bool] = False  # `generations` lists generations, else the one chain's window

    def restored_position(self, output: str) -> dict[str, Any]:
        """What `litestream restore` says it restored (txid, generation, index, replica), from its output."""
        raise NotImplementedError

    # -- the restorable window ----------------------------------------------------------------
    def window(self, ls: Litestream, db: Database, *, timeout: float) -> Window:
        """How far back ``db`` can be restored, read from its replica(s) now."""
        raise NotImplementedError

    def windows(
        self, ls: Litestream, databases: list[Database], *, timeout: float, parallel: int
    ) -> dict[str, Window | BackupctlError]:
        """``window`` for many databases, by str(path): a Window, or the error its replica gave."""
        found: dict[str, Window | BackupctlError] = {}
        for db in databases:
            try:
                found[str(db.path)] = self.window(ls, db, timeout=timeout)
            except BackupctlError as exc:
                found[str(db.path)] = exc
        return found
