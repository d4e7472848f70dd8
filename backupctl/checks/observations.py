"""What is known of each database's position, kept between readings: by `status`, and published
by a running supervisor so that `status` can answer without asking litestream or the replica.

An *entry* (one per database, by str(path)) holds the last replica reading (its position, newest
and oldest backup, when it was read), the local position seen with it, and since when the replica
has been behind (``pending``). ``record`` is the one function that updates an entry from a
reading; the supervisor and `status`'s own readings both use it.

**The supervisor's observations** (``Observer``, ``observations.json`` in the state folder). While
its litestream runs, the supervisor looks at every database each ``interval`` (the sync interval,
at least ``MIN_INTERVAL``): one ``stat`` of its ``-wal``. Only a database that
changed since the last look, or whose replica did not yet hold it, has its positions read again
(0.5: one ``litestream status -json`` for all of them, then their listings side by side; 0.3: its
files, then its listings); one whose replica was behind or unreadable has its replica read again
(its own position has not moved). A local folder is watched (``host.watch``, Linux's inotify)
from just before each reading: when litestream compacts into it, prunes it, or someone removes files,
the kernel says so and the next look reads that replica again, whatever its database did. Besides,
every ``REVALIDATE_EVERY`` the unchanged databases longest unchecked that no watch covers have their
replicas checked again (``Observer._revalidate``: a local folder's witness, a remote replica's
listing), so a replica that lost files while its database sat idle is noticed in time; ``status
--fresh`` reads every replica at once. A database found unchanged costs
nothing more at the next look than its ``stat`` while it stays so. The cost of each look
is measured and the next one waits long enough to keep the supervisor's share of one core under
``CPU_BUDGET`` (never longer than ``MAX_INTERVAL``).

When nothing changed the document is not rewritten; its modification time is set to the time of
the look. `status` (``published``) trusts the document only when the supervisor named in it is the
live one and the look is at most ``MAX_AGE`` old; otherwise it reads litestream and the replicas
itself. A replica reading in a recent look may still be older (an idle database's replica is
re-read only every ``REVALIDATE_EVERY``, one at a time). A local folder's reading carries a
*witness* of its folders taken just before it (``published_status.folder_witness``): while the
folders are unchanged, the reading still holds; one the supervisor watches is marked ``watched``
(no change was reported up to the look), and its witness is of the replica's own folder only.
Any other reading older than ``MAX_AGE`` is read again by `status` itself
(``published_status.reading_current``). So no verdict rests on a reading that may be out of date,
and a stuck supervisor makes `status` slower, not wrong.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backupctl.checks.published_status import folder_witness, read_looks, witness_holds
from backupctl.checks.verdicts import unrestorable
from backupctl.errors import BackupctlError
from backupctl.host.watch import FolderWatch
from backupctl.litestream import positions
from backupctl.litestream.adapter import local_positions, restorable_windows, series_of
from backupctl.litestream.listings import LISTED_TIME_SLACK, iso
from backupctl.owned import write_atomic

if TYPE_CHECKING:
    from backupctl.config.settings import Database
    from backupctl.litestream.positions import Window
    from backupctl.litestream.runner import Litestream
    from backupctl.litestream.series import Series

OBSERVATIONS = "observations.json"
MIN_INTERVAL = 2.0  # seconds between two looks, at least
MAX_INTERVAL = 15.0  # ...and at most, whatever a look costs
REVALIDATE_EVERY = 60.0  # unchanged databases' replicas checked again this often (``Observer._revalidate``)
WITNESS_BATCH = 50  # ...up to this many local folders' witnesses each time (a few stats each)
CPU_BUDGET = 0.0002  # the share of one core the looks may take over time (0.02 %)
WATCH_EVERY_TICK = 100  # up to this many databases, each -wal is stat'ed every tick (about 1 s), not only at looks
MAX_PAIRS = 1000  # unshipped writes remembered per database
STALL_MIN = 10.0  # seconds: live writes unshipped this long (or 3 looks, if longer) mean no progress
READ_TIMEOUT = 30.0


# --------------------------------------------------------------------------- entries


def _iso(value: datetime | None) -> str | None:
    return iso(value)


def record(entry: dict[str, Any], local: positions.LocalPosition, window: Window | None, series: Series,
           updated_at: float | None, now: float) -> bool | None:  # fmt: skip
    """Update ``entry`` with a reading (``window`` None: the replica could not be read now, the last
    reading stands) and the local position seen with it. Returns whether the replica is behind the
    local database (None when that is unknown: no reading yet, or nothing local to compare)."""

    local_pos = series.local_key(local)
    if window is not None:
        replica_pos = series.replica_key(positions.replica_position(window), local)
        entry.update(
            replica_pos=replica_pos,
            read_at=now,
            newest=_iso(window.newest),
            oldest=_iso(window.oldest),
            newest_snapshot=_iso(window.newest_snapshot),
            snapshot_count=window.snapshot_count,
            empty=window.empty,
            replica_position=series.shown_replica(window),
        )
    if "read_at" not in entry or not local.exists or not local.initialized:
        entry.pop("behind", None)
        return None
    behind = not series.covers_key(entry.get("replica_pos"), local_pos)
    entry["behind"] = behind
    if behind:
        pending = entry.get("pending")
        if not (pending and not series.covers_key(entry.get("replica_pos"), pending.get("position"))):
            # No earlier observation: the last local write is the latest the gap can have opened.
            entry["pending"] = {"since": updated_at if updated_at is not None else now, "position": local_pos}
    else:
        entry.pop("pending", None)
    return behind


def local_fields(local: positions.LocalPosition, series: Series) -> dict[str, Any]:
    """A local position as an entry stores it (``local_position`` rebuilds it), with what `status`
    derives from it through the series, so that ``published_status`` needs no series to answer."""
    return {"local": {"exists": local.exists, "txid": local.txid, "status": local.status,
                      "generation": local.generation, "written_at": local.written_at},
            "initialized": local.initialized, "local_key": series.local_key(local),
            "shown_local": series.shown_local(local)}  # fmt: skip


def local_position(entry: dict[str, Any]) -> positions.LocalPosition | None:
    raw = entry.get("local")
    if not isinstance(raw, dict):
        return None
    try:
        return positions.LocalPosition(**raw)
    except TypeError:
        return None


# --------------------------------------------------------------------------- supervisor side


def _signature(wal: str) -> tuple[int, int]:
    """What changes when a database is written: its ``-wal``'s modification time and size. Litestream
    keeps its databases in WAL mode, where every write goes to the -wal (a checkpoint that empties
    it changes it too); one ``stat`` per database keeps a look at 1,000 databases near 5 ms."""
    try:
        st = os.stat(wal)
    except OSError:
        return (0, -1)
    return (st.st_mtime_ns, st.st_size)


def _unrestorable(entry: dict[str, Any]) -> bool:
    return unrestorable(entry, entry.get("replica_error"))


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Observer:
    """The supervisor's looks at its databases (see the module docstring). ``tick`` is cheap when
    no look is due; ``look`` does one."""

    litestream: Litestream
    databases: list[Database]
    state_dir: Path
    interval: float
    supervisor_pid: int = field(default_factory=os.getpid)
    clock: Callable[[], float] = time.monotonic  # schedules looks; what is published carries wall time
    log: Callable[[str], None] | None = None
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    signatures: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Per database, the looks that saw the live -wal written after the replica's newest backup:
    # (wall time of the look, the -wal's mtime). A pair goes once the replica holds a backup as new.
    unshipped: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    wal_seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # the -wal signature each pair was taken at
    waited: dict[str, float] = field(default_factory=dict)  # at the last reading: how long a live write had waited
    # How far litestream has read each live WAL (Series.wal_position) and since when it has not moved.
    read_positions: dict[str, Any] = field(default_factory=dict)
    read_moved_at: dict[str, float] = field(default_factory=dict)
    nothing_restores: set[str] = field(default_factory=set)  # ``unrestorable``, kept as each reading is recorded
    settled: set[str] = field(default_factory=set)  # unchanged at a look and not read since (``look``'s short cut)
    vouched: dict[str, float] = field(default_factory=dict)  # when a local folder's witness was last found holding
    # Local folders watched (``host.watch``) since their last reading, with no change reported since.
    watched: set[str] = field(default_factory=set)
    watch: FolderWatch | None = None
    watch_tried: bool = False
    _paths: list[tuple[Database, str, str]] = field(default_factory=list)  # (database, key, its -wal), made once
    _paths_of: list[Database] | None = None  # the list ``_paths`` was made from
    next_look: float = float("-inf")
    last_revalidation: float = float("-inf")
    looks: int = 0

    def __post_init__(self) -> None:
        self.interval = min(MAX_INTERVAL, max(MIN_INTERVAL, self.interval))
        self.path = self.state_dir / OBSERVATIONS

    def tick(self) -> None:
        if len(self.databases) <= WATCH_EVERY_TICK:
            now = time.time()
            for _db, key, wal in self._wal_paths():
                self._note_wal(key, _signature(wal), now)
        if self.clock() >= self.next_look:
            self.look()

    def _note_wal(self, key: str, sig: tuple[int, int], now: float) -> None:
        if sig != self.wal_seen.get(key) and sig[1] > 0:
            pairs = self.unshipped.setdefault(key, [])
            pairs.append((now, sig[0] / 1e9))
            if len(pairs) > MAX_PAIRS:  # a long outage: keep the oldest (what "waited" is measured from) and the newest
                del pairs[1 : len(pairs) - MAX_PAIRS // 2]
        self.wal_seen[key] = sig

    def look(self) -> None:
        now = time.time()
        cpu = _cpu_seconds()
        series = series_of(self.litestream.caps.version)
        written: list[Database] = []  # local position and replica read again
        recheck: list[Database] = []  # only the replica: the database did not change
        unchanged: list[Database] = []
        settled = self.settled
        moved = self._moved_folders()
        for db, key, wal in self._wal_paths():
            sig = _signature(wal)
            if key in settled and sig == self.signatures.get(key) and key not in moved:
                unchanged.append(db)  # as it was at the look that found it unchanged, and not read since
                continue
            settled.discard(key)
            entry = self.entries.get(key)
            if entry is None or sig != self.signatures.get(key) or local_position(entry) is None:
                written.append(db)
            elif entry.get("behind") is None and entry["local"].get("exists"):
                written.append(db)  # exists but was not comparable yet (litestream had not started on it)
            elif entry.get("behind") is True or "replica_error" in entry or self.unshipped.get(key) or _unrestorable(entry):
                recheck.append(db)  # the replica may have caught up, become readable again, or have a snapshot again
            elif key in moved:
                recheck.append(db)  # its watched replica folder changed (litestream compacted, or someone removed files)
            else:
                unchanged.append(db)
                settled.add(key)
            self._note_wal(key, sig, now)
            self.signatures[key] = sig
        if unchanged and self.clock() - self.last_revalidation >= REVALIDATE_EVERY:
            recheck += self._revalidate(unchanged, now)
            self.last_revalidation = self.clock()
        if written or recheck:
            self._read(written, recheck, series, now)
            self._account_unshipped(time.time())
            self._publish(now)
        else:
            self._touch(now)
        self.looks += 1
        spent = _cpu_seconds() - cpu
        self.next_look = self.clock() + min(MAX_INTERVAL, max(self.interval, spent / CPU_BUDGET))

    def _wal_paths(self) -> list[tuple[Database, str, str]]:
        """Each database with its key and its ``-wal``'s path, as strings made once (a look at 1,000
        databases stats them all: pathlib's formatting cost a third as much again)."""
        if self._paths_of is not self.databases or len(self._paths) != len(self.databases):
            self._paths = [(db, str(db.path), f"{db.path}-wal") for db in self.databases]
            self._paths_of = self.databases
        return self._paths

    def _moved_folders(self) -> set[str]:
        """The watched local folders that changed since the last look (all of them when the kernel
        lost events); they are no longer watched until read again. The events are drained at every look,
        even when nothing is watched, so that the kernel's queue never fills."""
        if self.watch is None:
            return set()
        moved = self.watch.changed()
        moved = set(self.watched) if moved is None else moved & self.watched
        self.watched -= moved
        return moved

    def _watch_tree(self, key: str, root: str) -> tuple[bool, list[str] | None]:
        """Watch a local folder's tree before it is read (``host.watch``): whether all of it is watched,
        and its folders as the walk found them (None: not walked)."""
        if not self.watch_tried:
            self.watch_tried = True
            self.watch = FolderWatch.open()
        return self.watch.watch_tree(key, root) if self.watch is not None else (False, None)

    def _revalidate(self, unchanged: list[Database], now: float) -> list[Database]:
        """The unchanged databases whose replica is to be read again now, the longest unchecked first:
        one without a witness (a remote replica: a reading costs a listing), and of up to
        ``WITNESS_BATCH`` local folders not watched (``watched``: a change there comes as an event),
        those whose witness no longer holds (a few stats each; an unchanged folder still holds what
        was read, as `status` judges it too)."""
        chosen: list[Database] = []
        remote = witnessed = 0
        watched = self.watched
        for db in sorted((db for db in unchanged if str(db.path) not in watched), key=self._checked_at):
            key = str(db.path)
            witness = self.entries[key].get("witness")
            if witness is None:
                if not remote:
                    chosen.append(db)
                remote += 1
            elif witnessed < WITNESS_BATCH:
                witnessed += 1
                if witness_holds(witness):
                    self.vouched[key] = now
                else:
                    chosen.append(db)
            if remote and witnessed >= WITNESS_BATCH:
                break
        return chosen

    def _checked_at(self, db: Database) -> float:
        key = str(db.path)
        return max(float(self.entries[key].get("read_at") or 0.0), self.vouched.get(key, 0.0))

    def _read(self, written: list[Database], recheck: list[Database], series: Series, now: float) -> None:
        local: dict[str, positions.LocalPosition] = {}
        for db in written + recheck:
            self.settled.discard(str(db.path))
        if written:
            try:
                local = local_positions(self.litestream, written, timeout=READ_TIMEOUT)
            except BackupctlError as exc:
                # Without local positions nothing can be compared: drop what the look would publish
                # for these databases, so status reads them itself.
                for db in written:
                    self.entries.pop(str(db.path), None)
                    self.nothing_restores.discard(str(db.path))
                self._log(f"cannot read litestream's positions: {exc.message}")
                written = []
        for db in recheck:
            local[str(db.path)] = local_position(self.entries[str(db.path)])  # type: ignore[assignment]
        databases = written + recheck
        readable = [db for db in databases if local[str(db.path)].exists]
        # A local folder is watched, then its witness taken, before its reading: a change after the
        # watch comes as an event, and unchanged later, the reading still holds.
        witnesses: dict[str, list[Any]] = {}
        watching: set[str] = set()
        for db in readable:
            if len(db.replicas) == 1 and db.replicas[0].spec.local_folder:
                key, root = str(db.path), str(db.replicas[0].path)
                complete, walked = self._watch_tree(key, root)
                if complete:
                    watching.add(key)
                    walked = [root]  # watched: the witness of its own folder is all `status` checks (reading_current)
                witnesses[key] = folder_witness(root, walked)
        windows: dict[str, Window | BackupctlError] = {}
        if readable:
            windows = restorable_windows(
                self.litestream.settings, self.litestream.binary, readable,
                config_path=self.litestream.config_path, timeout=READ_TIMEOUT,
            )  # fmt: skip
        for db in databases:
            key = str(db.path)
            entry = self.entries.setdefault(key, {})
            reading = windows.get(key)
            window = None if isinstance(reading, BackupctlError) or reading is None else reading
            if isinstance(reading, BackupctlError):
                entry["replica_error"] = reading.message
            else:
                entry.pop("replica_error", None)
            if window is not None and key in witnesses:
                entry["witness"] = witnesses[key]
            else:
                entry.pop("witness", None)  # no reading now, or not a local folder: the last one ages
            if window is not None and key in watching:
                entry["watched"] = True  # published: `status` trusts the reading while the look is recent
                self.watched.add(key)
            else:
                entry.pop("watched", None)
                self.watched.discard(key)
            entry.update(local_fields(local[key], series), observed_at=now)
            record(entry, local[key], window, series, _updated_at(db.path), now)
            if _unrestorable(entry):
                self.nothing_restores.add(key)
            else:
                self.nothing_restores.discard(key)

    def _account_unshipped(self, read_at: float) -> None:
        """Drop the live writes the replica now holds; note since when the rest wait (``unshipped_since``)
        and how long the oldest had waited when the replica was read (``waited``)."""
        for key, pairs in self.unshipped.items():
            entry = self.entries.get(key)
            if entry is None or "read_at" not in entry:
                continue
            newest = entry.get("newest")
            shipped = datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp() if newest else None
            if shipped is not None:
                pairs[:] = [(seen, written) for seen, written in pairs if written > shipped + LISTED_TIME_SLACK]
            if pairs:
                entry["unshipped_since"] = pairs[0][0]
                self.waited[key] = read_at - pairs[0][0]
                self._account_reading(key, read_at)
            else:
                entry.pop("unshipped_since", None)
                self.waited.pop(key, None)

    def _account_reading(self, key: str, now: float) -> None:
        """Since when litestream's own reading of this live WAL has not moved (a hung litestream's
        stops; one that cannot reach its replica goes on reading the WAL into local LTX files)."""

        position = series_of(self.litestream.caps.version).wal_position(Path(key))
        if key not in self.read_positions or position != self.read_positions[key]:
            self.read_positions[key] = position
            self.read_moved_at[key] = now

    @property
    def stall_after(self) -> float:
        return stall_after(self.interval)

    def unrestorable(self) -> set[str]:
        """Databases whose replica, at its last reading, held files but nothing that restores
        (``Window.restorable``): deleted or pruned under a running litestream."""
        return set(self.nothing_restores)

    def stalled(self) -> list[tuple[str, float]]:
        """Databases a live write of which was still missing from the replica when it was last read,
        though it had waited longer than ``stall_after``, while litestream's own reading of the WAL
        did not move either (hung, not merely unable to reach the replica): (name, seconds waited)."""
        now = time.time()
        found = []
        for db in self.databases if self.waited else ():  # asked every tick: nothing to do while nothing waits
            key = str(db.path)
            waited = self.waited.get(key, 0.0)
            if waited > self.stall_after and now - self.read_moved_at.get(key, now) > self.stall_after:
                found.append((db.name, waited))
        return found

    def _publish(self, now: float) -> None:
        document = {"supervisor_pid": self.supervisor_pid, "interval": self.interval, "observed_at": now,
                    "databases": self.entries}  # fmt: skip
        try:
            write_atomic(self.path, json.dumps(document, separators=(",", ":")))
            os.utime(self.path, (now, now))
        except OSError as exc:
            self._log(f"cannot publish observations to {self.path}: {exc.strerror}")

    def _touch(self, now: float) -> None:
        try:
            os.utime(self.path, (now, now))
        except OSError:
            self._publish(now)

    def _log(self, text: str) -> None:
        if self.log is not None:
            self.log(f"backupctl: {text}")

    def discard(self) -> None:
        """The observations end with the litestream they describe."""
        if self.watch is not None:
            self.watch.close()
            self.watch, self.watch_tried = None, False
        self.watched.clear()
        try:
            self.path.unlink()
        except OSError:
            pass


def note_unshipped(entry: dict[str, Any], db_path: Path) -> None:
    """A reading without the supervisor's looks (`status --fresh`): the live -wal written after the
    replica's newest backup is unshipped since that write at the latest (``unshipped_since``, kept
    across calls in the entry while the replica does not catch up with it)."""
    newest = entry.get("newest")
    shipped = datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp() if newest else None
    try:
        written = os.stat(f"{db_path}-wal").st_mtime
    except OSError:
        written = None
    if written is None or written == 0 or (shipped is not None and written <= shipped + LISTED_TIME_SLACK):
        entry.pop("unshipped_since", None)
        return
    since = entry.get("unshipped_since")
    if since is None or (shipped is not None and shipped >= float(since)):
        entry["unshipped_since"] = written


def stall_after(interval: float) -> float:
    """How long live writes may wait for the replica before litestream counts as not making progress."""
    return max(STALL_MIN, 3 * min(MAX_INTERVAL, max(MIN_INTERVAL, interval)))


def _updated_at(path: Path) -> float | None:
    times = []
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            times.append(p.stat().st_mtime)
        except OSError:
            pass
    return max(times) if times else None


# --------------------------------------------------------------------------- status side


@dataclass(frozen=True)
class Published:
    observed_at: float  # the last look (the document's modification time)
    entries: dict[str, dict[str, Any]]


def published(state_dir: Path, supervisor_pid: int, now: float) -> Published | None:
    """The live supervisor's observations, or None when there are none to trust: no document, one
    written by another supervisor, or a last look older than ``MAX_AGE`` (``published_status.read_looks``)."""
    looks = read_looks(str(state_dir), OBSERVATIONS, supervisor_pid, now)
    return Published(*looks) if looks is not None else None
