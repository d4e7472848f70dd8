"""How far back each database can be restored, read from what its replica holds right now.

One ``ltx -level all -json`` listing on 0.5, ``generations`` + ``snapshots`` on 0.3 (the listings
and their parsers are ``listings.py``), turned into a :class:`Window`: the oldest and newest
backup, the snapshots, and on 0.5 the txid span. `status`, `restore`, `drill` and the replica
positions (``positions.py``) read it. ``restorable_windows`` reads many databases side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backupctl.config.settings import Database, Settings
from backupctl.errors import BackupctlError
from backupctl.litestream.listings import (
    LISTING_TIMEOUT,
    SNAPSHOT_LEVEL,
    Generation,
    LtxFile,
    checked_listing,
    destinations_of,
    generations,
    iso,
    listing_runner,
    ltx_files,
    parse_ltx,
    probe_replica,
    snapshots,
    txid_hex,
)
from backupctl.litestream.runner import run_many


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
    def latest_generation(self) -> Generation | None:
        """0.3: the generation a restore without -generation uses (newest end)."""
        dated = [g for g in self.generations if g.end is not None]
        return max(dated, key=lambda g: g.end) if dated else None  # type: ignore[arg-type,return-value]

    def to_json(self) -> dict[str, object]:
        return {
            "database": str(self.database),
            "destinations": list(self.destinations),
            "oldest": iso(self.oldest),
            "newest": iso(self.newest),
            "snapshot_count": self.snapshot_count,
            "newest_snapshot": iso(self.newest_snapshot),
            "file_count": self.file_count,
            "generations": [g.to_json() for g in self.generations],
            "min_txid": txid_hex(self.min_txid),
            "max_txid": txid_hex(self.max_txid),
        }


def _window_05(db: Database, files: list[LtxFile]) -> Window:
    destinations = tuple(r.destination for r in db.replicas)
    if not files:
        return Window(db.path, destinations, None, None, 0, None, 0)
    bases = [f for f in files if f.level == SNAPSHOT_LEVEL or f.min_txid <= 1]
    snaps = [f for f in files if f.level == SNAPSHOT_LEVEL]
    return Window(
        database=db.path,
        destinations=destinations,
        oldest=min(f.timestamp for f in (bases or files)),
        newest=max(f.timestamp for f in files),
        snapshot_count=len(snaps),
        newest_snapshot=max((f.timestamp for f in snaps), default=None),
        file_count=len(files),
        min_txid=min(f.min_txid for f in files),
        max_txid=max(f.max_txid for f in files),
    )


def _read_directly(db: Database) -> list[LtxFile] | None:
    """The LTX files of the database's one replica as its kind reads them (None: ask litestream).
    Times are truncated to the second, as litestream lists them."""
    if len(db.replicas) != 1:
        return None
    raw = db.replicas[0].spec.ltx_files(db.replicas[0])
    if raw is None:
        return None
    files = [LtxFile(level, lo, hi, size, datetime.fromtimestamp(int(mtime), UTC)) for level, lo, hi, size, mtime in raw]
    return sorted(files, key=lambda f: (f.timestamp, f.level, f.min_txid))


def restorable_windows(
    settings: Settings,
    binary_path: Path,
    databases: list[Database],
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
    parallel: int = 16,
) -> dict[str, Window | BackupctlError]:
    """``restorable_window`` for many databases at once, by str(path): a Window, or the error that
    database's replica gave. 0.5: a replica whose kind can read its LTX files itself (a local folder,
    ``ReplicaKind.ltx_files``) is read directly, the others by listings ``parallel`` at a time (no
    threads); 0.3 one by one."""

    ls = listing_runner(settings, binary_path, config_path)
    found: dict[str, Window | BackupctlError] = {}
    if not ls.caps.has_ltx:
        for db in databases:
            try:
                found[str(db.path)] = restorable_window(settings, binary_path, db, config_path=ls.config_path, timeout=timeout)
            except BackupctlError as exc:
                found[str(db.path)] = exc
        return found
    listable: list[Database] = []
    for db in databases:
        direct = _read_directly(db)
        if direct is not None:
            found[str(db.path)] = _window_05(db, direct)
            continue
        try:
            for replica in db.replicas:
                probe_replica(replica)
            listable.append(db)
        except BackupctlError as exc:
            found[str(db.path)] = exc
    argvs = [ls.argv("ltx", "-level", "all", "-json", str(db.path)) for db in listable]
    answers = run_many(argvs, ls.environment.env, timeout=timeout, parallel=parallel, settings=settings)
    for db, answer in zip(listable, answers, strict=True):
        try:
            if isinstance(answer, BackupctlError):
                answer.message = f"cannot read replica {destinations_of(db)}: {answer.message}"
                raise answer
            found[str(db.path)] = _window_05(db, parse_ltx(db, checked_listing(settings, db, answer)))
        except BackupctlError as exc:
            found[str(db.path)] = exc
    return found


def restorable_window(
    settings: Settings,
    binary_path: Path,
    db: Database,
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
) -> Window:
    """How far back ``db`` can be restored, read from its replica(s) now.

    0.5: one ``ltx -level all -json`` call. ``oldest`` is the oldest file that starts a
    restorable chain (a level-9 snapshot, or any file starting at txid 1), ``newest`` the
    newest file of any level; ``min_txid``/``max_txid`` span the files (``txid_hex(max_txid)``
    is what ``restore -txid`` takes to get the newest state).

    0.3: ``generations`` + ``snapshots``. ``oldest`` is the earliest generation start,
    ``newest`` the latest generation end; ``generations`` lists them all, oldest first, and
    ``latest_generation`` is the one a plain restore uses.

    Restore caveats measured with the real binaries: listed times are truncated to the
    second, so ``restore -timestamp <oldest>`` can answer "no matching backup"; use
    ``oldest + 1s``. For the newest state restore without ``-timestamp`` (or 0.5
    ``-txid``): 0.5 includes a file listed at ``newest`` only from ``newest + 1s``, and 0.3
    refuses any timestamp past the generation's exact (sub-second) end.

    An empty replica gives a Window with ``oldest``/``newest`` None and ``empty`` True. An
    unreachable, refusing or hanging replica raises LitestreamError naming
    ``Replica.destination`` and the cause: never an empty Window for an error.
    """
    ls = listing_runner(settings, binary_path, config_path)
    destinations = tuple(r.destination for r in db.replicas)
    if ls.caps.has_ltx:
        return _window_05(db, ltx_files(settings, binary_path, db, "all", config_path=ls.config_path, timeout=timeout))
    gens = generations(settings, binary_path, db, config_path=ls.config_path, timeout=timeout)
    snaps03 = snapshots(settings, binary_path, db, config_path=ls.config_path, timeout=timeout) if gens else []
    starts = [g.start for g in gens if g.start]
    ends = [g.end for g in gens if g.end]
    return Window(
        database=db.path,
        destinations=destinations,
        oldest=min(starts) if starts else None,
        newest=max(ends) if ends else None,
        snapshot_count=len(snaps03),
        newest_snapshot=max((s.created for s in snaps03), default=None),
        file_count=0,
        generations=tuple(gens),
    )
