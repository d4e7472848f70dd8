"""Proof that a replica is whole: its newest state equals the live database's state at one
committed transaction, page for page, without pausing the app.

Positions (TXIDs, generations, times) say how far litestream got; they cannot see a hole: pages
the app checkpointed out of the WAL while no litestream watched, which never reach the replica
although later transactions do (upstream litestream #752, #1164; docs/faults.md). This module
compares pages instead:

1. A read transaction is opened on the live database (read-only, never a write). While it is
   held, SQLite cannot restart the WAL nor copy frames past it into the database file, so every
   state from that moment on is readable from the database file plus the ``-wal``'s frames.
2. We wait until litestream has read the live WAL past that moment (``Series.wal_position``: 0.5's
   newest local LTX header, 0.3's shadow WAL), then restore the replica's newest state into a
   private temp folder (the same staged restore `restore` uses, integrity check included).
3. The restored copy must equal the live state after one of the transactions committed since
   that moment, page for page (``sqlite_wal`` reads the frames). Equal: **whole**, proven at that
   transaction. Equal to none: **broken** (the replica lacks pages the live database has),
   unless the replica is merely behind litestream, which is **undecided** and said so.

The verdict is kept per database in ``continuity.json`` (``record``/``records``), read by
`status` (a broken chain is its own verdict and exit code), `/healthz` and the notifier.
The supervisor runs the check after each confirmed start and every ``BACKUP_CONTINUITY_INTERVAL``,
and heals a broken chain by forcing a fresh snapshot (``supervisor``, ``heal``).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import sqlite3
import struct
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from backupctl import sqlite_wal
from backupctl.config import replica_views
from backupctl.config.settings import Database
from backupctl.errors import BackupctlError, LitestreamError, NoBackupError
from backupctl.host import memory, state
from backupctl.litestream.adapter import local_positions, read_replica, series_of
from backupctl.litestream.listings import LISTED_TIME_SLACK
from backupctl.litestream.positions import WalPosition, meta_dir
from backupctl.litestream.rows import UNRESTORABLE
from backupctl.litestream.runner import Litestream
from backupctl.litestream.series import Series
from backupctl.owned import read_json
from backupctl.paths import project_state_dir


class Continuity(StrEnum):
    """A continuity check's verdict."""

    WHOLE = "whole"
    BROKEN = "broken"
    UNDECIDED = "undecided"


WHOLE, BROKEN, UNDECIDED = Continuity
RECORDS = "continuity.json"
CATCH_UP_TIMEOUT = 30.0  # seconds litestream gets to read the live WAL past the check's start
# A restore that fails this way proves the chain broken (0.5: "cannot calc restore plan: non-contiguous
# ltx files"; 0.3 after a full replica disk: "missing initial wal segment"), unlike one that cannot
# reach the replica.
_DAMAGED = re.compile(
    r"integrity_check|not an SQLite database|non-contiguous|malformed|missing page|missing initial wal segment",
    re.IGNORECASE,
)
READER_TIMEOUT = 5.0  # a read transaction waits this long for a lock (a write-locked database)
RESTORES_WITHOUT_EXACT_POSITIONS = 3  # 0.3: restores of a copy that matches nothing, a sync apart, before "broken"

Log = Callable[[str], None]


@dataclass
class Proof:
    """One continuity check of one database."""

    database: str  # path
    name: str
    verdict: str  # whole, broken, undecided
    reason: str
    checked_at: float
    seconds: float = 0.0
    frame: int | None = None  # the live WAL frame (1-based) whose state the replica equals; 0: the database file
    pages: int | None = None  # the database's size in pages at that point
    differing_pages: int | None = None  # broken: pages that differ at the closest committed state
    replica_position: dict[str, Any] = field(default_factory=dict)
    # Several replicas (backupctl.config.replica_views): the label of the one this proof is of, or each one's proof.
    replica: str | None = None
    replicas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        for key in ("replica", "replicas"):  # only where there are several replicas
            if not doc[key]:
                del doc[key]
        return doc


# --------------------------------------------------------------------------- how far litestream read


def _passed(position: WalPosition | None, wal: sqlite_wal.WalFile, end: int) -> bool:
    """Has litestream read the live WAL (as ``wal``) up to byte ``end``?"""
    if position is None:
        return False
    if (position.salt1, position.salt2) != (wal.salt1, wal.salt2):
        return False
    return position.end >= end


# --------------------------------------------------------------------------- the live side


class NotWal(Exception):
    """The database is not in WAL mode: there is no WAL to hold (and litestream must switch it)."""


class _Reader:
    """A read transaction on the live database: holds its WAL still while the check runs.

    POSIX advisory locks belong to a process and an inode: closing *any* descriptor of the database
    file drops every lock the process holds on it, SQLite's included ("How To Corrupt An SQLite
    Database File", 2.2). So while a reader is open, this process never opens and closes the live
    database file by itself; the check reads its pages through a descriptor opened before and
    closed after the reader (``prove``), and the WAL guard asks SQLite for the journal mode."""

    def __init__(self, path: Path) -> None:
        uri = "file:" + urllib.parse.quote(str(path)) + "?mode=ro"
        self.con = sqlite3.connect(uri, uri=True, timeout=READER_TIMEOUT, isolation_level=None)
        try:
            if str(self.con.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                raise NotWal(str(path))
            self.con.execute("BEGIN")
            self.con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except BaseException:
            self.con.close()
            raise

    def close(self) -> None:
        try:
            self.con.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self.con.close()


@dataclass
class Match:
    frame: int | None  # the first commit frame (0: the database file alone) whose state equals the copy
    pages: int
    differing: int  # at the closest candidate


def match(live_fd: int, wal: sqlite_wal.WalFile, restored: Path, first: int) -> Match:
    """Find the committed state of the live database, at or after WAL frame ``first`` (0: the
    database file alone), that equals the ``restored`` copy page for page.

    ``wal`` must be read while a read transaction begun before frame ``first`` was committed is
    still held: then no frame after ``first`` has been copied into the database file, and a page
    with no frame at or before a commit point reads from the database file as it was then.
    ``live_fd``: a descriptor of the live database file, read with pread and never closed here."""
    head = os.pread(live_fd, 100, 0)
    page_size = wal.page_size or (struct.unpack(">H", head[16:18])[0] if len(head) == 100 else 4096)
    page_size = 65536 if page_size == 1 else page_size
    with contextlib.ExitStack() as stack:
        live = _LivePages(live_fd, page_size)
        copy = _Pages(stack, restored, page_size)
        wal_fh = stack.enter_context(open(wal.path, "rb")) if wal.frames else None

        def read_frame(frame: sqlite_wal.Frame) -> bytes:
            assert wal_fh is not None
            wal_fh.seek(frame.offset)
            return wal_fh.read(page_size)

        frames_of: dict[int, list[sqlite_wal.Frame]] = {}
        for frame in wal.frames:
            frames_of.setdefault(frame.pgno, []).append(frame)
        # The state after frame ``first``: each page's last frame up to it, else the database file.
        differing = {p for p in range(1, copy.count + 1) if p not in frames_of and live.page(p) != copy.page(p)}
        for p, frames in frames_of.items():
            upto = [f for f in frames if f.index <= first]
            if (read_frame(upto[-1]) if upto else live.page(p)) != copy.page(p):
                differing.add(p)
        if first:
            size = next(f.commit_size for f in wal.frames if f.index == first)
        else:
            head = live.page(1)
            size = struct.unpack(">I", head[28:32])[0] if head else 0

        def off(size: int) -> int:
            return sum(1 for p in differing if p <= size) + abs(size - copy.count)

        best = Match(first if off(size) == 0 else None, size, off(size))
        if best.frame is not None:
            return best
        # Then each later commit, one frame at a time.
        for frame in wal.frames:
            if frame.index <= first:
                continue
            if read_frame(frame) == copy.page(frame.pgno):
                differing.discard(frame.pgno)
            else:
                differing.add(frame.pgno)
            if frame.commit_size:
                distance = off(frame.commit_size)
                if distance == 0:
                    return Match(frame.index, frame.commit_size, 0)
                if distance < best.differing:
                    best = Match(None, frame.commit_size, distance)
        return best


class _LivePages:
    """The live database file's pages, read with pread on a descriptor the caller owns."""

    def __init__(self, fd: int, page_size: int) -> None:
        self.fd, self.page_size = fd, page_size
        self.count = os.fstat(fd).st_size // page_size

    def page(self, p: int) -> bytes | None:
        if p > self.count:
            return None
        return os.pread(self.fd, self.page_size, (p - 1) * self.page_size)


class _Pages:
    """A private file's pages (the restored copy) through a read-only memory map."""

    def __init__(self, stack: contextlib.ExitStack, path: Path, page_size: int) -> None:
        self.page_size = page_size
        fh = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - the stack closes it
        size = os.fstat(fh.fileno()).st_size
        self.map = stack.enter_context(mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)) if size else None
        self.count = size // page_size

    def page(self, p: int) -> bytes | None:
        if self.map is None or p > self.count:
            return None
        return self.map[(p - 1) * self.page_size : p * self.page_size]


# --------------------------------------------------------------------------- the check


def prove(
    ls: Litestream,
    db: Database,
    work_dir: Path,
    *,
    catch_up_timeout: float = CATCH_UP_TIMEOUT,
    sleep: Callable[[float], None] = time.sleep,
    replica_covers: Callable[[], bool | None] | None = None,
) -> Proof:
    """Check that ``db``'s replica is whole now (see the module docstring). Never raises for a
    verdict: a replica that cannot be read or restored gives ``undecided`` with the reason, a
    restored copy that fails its integrity check gives ``broken``. ``replica_covers`` answers
    "does the replica hold litestream's own position?" (default: ``replica_holds_local``); the
    restore waits for it, so a replica merely behind litestream is never taken for a broken one.

    A database with several replicas has each proven on its own (``_prove_each_replica``): it is
    whole when every replica is, broken when one is."""
    if len(db.replicas) > 1:
        return _prove_each_replica(ls, db, work_dir, catch_up_timeout, sleep)
    proof = _prove_replica(ls, db, work_dir, catch_up_timeout, sleep, replica_covers)
    proof.replica = replica_views.view_label(ls.settings)  # one replica of several (a view), or None
    return proof


def _prove_each_replica(ls: Litestream, db: Database, work_dir: Path, catch_up_timeout: float,
                        sleep: Callable[[float], None]) -> Proof:  # fmt: skip
    """Each replica proven through its view: the database is broken if one is, whole if all are, else
    undecided; each replica's proof in ``replicas`` (``record`` keeps them too, for `status`)."""
    from backupctl.host.config_in_use import config_for_reading  # lazy: only a database with several replicas reads views

    started = time.time()
    each: dict[str, Proof] = {}
    for name in replica_views.names(ls.settings):
        narrowed = replica_views.view(ls.settings, name)
        one = next(d for d in narrowed.databases if d.path == db.path)
        runner = Litestream(ls.binary, narrowed, config_for_reading(narrowed))
        each[replica_views.label(ls.settings, name)] = prove(runner, one, work_dir, catch_up_timeout=catch_up_timeout,
                                                             sleep=sleep)  # fmt: skip
    verdicts = [p.verdict for p in each.values()]
    verdict = BROKEN if BROKEN in verdicts else WHOLE if all(v == WHOLE for v in verdicts) else UNDECIDED
    reason = "; ".join(f"{name} {p.verdict}: {p.reason}" for name, p in each.items())
    proof = Proof(str(db.path), db.name, verdict, reason, started)
    proof.seconds = round(sum(p.seconds for p in each.values()), 2)
    proof.replicas = {name: p.to_json() for name, p in each.items()}
    return proof


def _prove_replica(ls: Litestream, db: Database, work_dir: Path, catch_up_timeout: float, sleep: Callable[[float], None],
                   replica_covers: Callable[[], bool | None] | None) -> Proof:  # fmt: skip
    started = time.monotonic()
    proof = Proof(str(db.path), db.name, UNDECIDED, "", time.time())
    if not db.path.exists():
        proof.reason = f"the database file {db.path} does not exist"
        return proof
    try:
        live_fd = os.open(db.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        proof.reason = f"cannot read {db.path}: {exc.strerror}"
        return proof
    try:
        return _prove(ls, db, work_dir, proof, live_fd, catch_up_timeout, sleep, replica_covers)
    finally:
        os.close(live_fd)  # only now: the reader is closed, so no SQLite lock of ours goes with it
        proof.seconds = round(time.monotonic() - started, 2)


def _prove(ls: Litestream, db: Database, work_dir: Path, proof: Proof, live_fd: int, catch_up_timeout: float,
           sleep: Callable[[float], None], replica_covers: Callable[[], bool | None] | None) -> Proof:  # fmt: skip
    # lazy: only a continuity check restores; `status --json` reads verdicts only
    from backupctl.restore.staging import staged_restore

    series = series_of(ls.caps.version)
    try:
        reader = _Reader(db.path)
    except NotWal:
        proof.reason = f"{db.path} is not in WAL mode yet (litestream switches it when it starts)"
        return proof
    except sqlite3.Error as exc:
        proof.reason = f"cannot open a read transaction on {db.path}: {exc}"
        return proof
    try:
        wal0 = sqlite_wal.read_wal(Path(f"{db.path}-wal"))
        first = wal0.last_commit.index if wal0.last_commit is not None else 0
        end0 = wal0.committed_end
        # litestream must have read the live WAL at least as far as the state our reader sees, and
        # the replica must hold what it read (0.5 uploads its local LTX files after writing them).
        deadline = time.monotonic() + catch_up_timeout
        covers = replica_covers or (lambda: replica_holds_local(ls, db))
        waits = (
            (lambda: _passed(series.wal_position(db.path), wal0, end0), 0.25,
             "litestream has not read the live database's newest writes within {t:g}s (it may be hung or far "
             "behind); the replica cannot be compared with it now"),
            (lambda: covers() is True, 0.5,
             "the replica did not receive what litestream read within {t:g}s (a slow or unreachable replica); "
             "it is compared again later"),
        )  # fmt: skip
        # With no WAL frame the state to match is the database file alone: only the replica's catching
        # up with litestream is waited for.
        for ready, pause, why in waits if first else waits[1:]:
            while not ready():
                if time.monotonic() >= deadline:
                    proof.reason = why.format(t=catch_up_timeout)
                    return proof
                sleep(pause)
        # 0.5 says exactly which transaction the replica holds; 0.3's coverage is judged from times listed
        # to the second, so the replica may still lack the last frames litestream read (a sync away). A
        # copy that matches nothing is then restored again after a sync: a replica merely behind catches
        # up, a broken one does not.
        tries = 1 if series.exact_positions else RESTORES_WITHOUT_EXACT_POSITIONS
        for attempt in range(tries):
            if attempt:
                sleep(ls.settings.sync_seconds + LISTED_TIME_SLACK)
            try:
                with staged_restore(ls, db, work_dir, [], timeout=max(60.0, catch_up_timeout * 4)) as staged:
                    proof.replica_position = dict(staged.position)
                    wal1 = sqlite_wal.read_wal(Path(f"{db.path}-wal"))
                    if first and (wal1.salt1, wal1.salt2) != (wal0.salt1, wal0.salt2):
                        proof.reason = "the live WAL was restarted during the check; it runs again later"
                        return proof
                    found = match(live_fd, wal1, staged.path, first)
            except NoBackupError:
                # The replica said it holds litestream's position, yet nothing restores: no snapshot to start
                # from (deleted or pruned under a running litestream, which writes its next files into it).
                proof.verdict = BROKEN
                proof.reason = UNRESTORABLE
                return proof
            except LitestreamError as exc:
                if _DAMAGED.search(" ".join([exc.message, *exc.details])):
                    proof.verdict = BROKEN
                    proof.reason = f"the replica's newest state does not restore to a sound database: {exc.message}"
                else:
                    proof.reason = f"cannot restore the replica's newest state: {exc.message}"
                return proof
            except BackupctlError as exc:
                proof.reason = f"cannot restore the replica's newest state: {exc.message}"
                return proof
            if found.frame is not None:
                break
    finally:
        reader.close()
    proof.pages = found.pages
    if found.frame is not None:
        proof.verdict, proof.frame = WHOLE, found.frame
        at = "the database file" if found.frame == 0 else f"WAL frame {found.frame}"
        proof.reason = f"the replica's newest state equals the live database at {at}, page for page ({found.pages} pages)"
        return proof
    proof.differing_pages = found.differing
    proof.verdict = BROKEN
    again = "" if series.exact_positions else f" (restored {RESTORES_WITHOUT_EXACT_POSITIONS} times, a sync apart)"
    proof.reason = (
        f"the replica's newest state matches no committed state of the live database{again}: {found.differing} "
        "page(s) differ at the closest one (committed writes are missing from the replica)"
    )
    return proof


def replica_holds_local(ls: Litestream, db: Database) -> bool | None:
    """Does the replica hold litestream's own position of ``db`` (None: cannot tell now)?"""

    try:
        local = local_positions(ls, [db], timeout=30, shipped_only=True)[str(db.path)]
        return series_of(ls.caps.version).covers(read_replica(ls, db, timeout=30), local)
    except BackupctlError:
        return None


# --------------------------------------------------------------------------- records


def records(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The last continuity verdict of each database (by path), as kept in ``continuity.json``."""

    data = read_json(state_dir / RECORDS)
    return data if isinstance(data, dict) else {}


def record(state_dir: Path, proof: Proof, *, healing: bool | None = None, healed_at: float | None = None) -> None:
    """Keep ``proof`` as the database's last verdict. An undecided check leaves a decided verdict
    standing (it says nothing new), but records that it ran. A database with several replicas: each
    replica's verdict is kept too, under ``path#label`` (a proof of one replica only there)."""

    def put(data: dict[str, Any]) -> None:
        for name, sub in proof.replicas.items():
            keep(data, Proof(**{**sub, "replica": name}))
        keep(data, proof)

    def keep(data: dict[str, Any], proof: Proof) -> None:
        key = replica_views.proof_key(proof.database, proof.replica)
        previous = data.get(key) or {}
        entry = proof.to_json()
        if proof.verdict == UNDECIDED and previous.get("verdict") in (WHOLE, BROKEN):
            entry = {**previous, "last_undecided": {"checked_at": proof.checked_at, "reason": proof.reason}}
        if proof.verdict == BROKEN:
            entry["broken_since"] = previous.get("broken_since") if previous.get("verdict") == BROKEN else proof.checked_at
        if healing is not None:
            entry["healing"] = healing
        if healed_at is not None:
            entry["healed_at"] = healed_at
        elif proof.verdict == WHOLE and previous.get("verdict") == BROKEN:
            entry["healed_at"] = proof.checked_at
        data[key] = entry

    # concurrent verifies each prove their own database: one read-modify-write at a time keeps every entry
    state.update_json(state_dir / RECORDS, put)


@dataclass
class Summary:
    """What the continuity records say of a project's databases, in one line for people."""

    verdicts: dict[str, str]  # name -> whole / broken / undecided / unchecked
    text: str

    @property
    def all_whole(self) -> bool:
        return bool(self.verdicts) and all(v == WHOLE for v in self.verdicts.values())

    def to_json(self) -> dict[str, Any]:
        return {"all_whole": self.all_whole, "databases": self.verdicts}


def whole_summary(settings: Any, now: float | None = None) -> Summary:
    """The last continuity verdict of every database of ``settings``, said as it stands."""

    kept = records(project_state_dir(settings.project_dir))
    now = time.time() if now is None else now
    verdicts: dict[str, str] = {}
    ages: list[float] = []
    for db in settings.databases:
        entry = kept.get(str(db.path)) or {}
        verdicts[db.name] = str(entry.get("verdict") or "unchecked")
        if entry.get("verdict") == WHOLE:
            ages.append(now - float(entry.get("checked_at") or now))
    broken_names = [n for n, v in verdicts.items() if v == BROKEN]
    other = [n for n, v in verdicts.items() if v not in (WHOLE, BROKEN)]
    if broken_names:
        text = f"the replica of {_some(broken_names)} is NOT whole (`backupctl status` says why)"
    elif other:
        text = f"not proven whole yet: {_some(other)} (`backupctl verify` proves it)"
    else:
        text = f"every replica was proven whole against the live pages {max(ages):.0f}s ago at most"
    return Summary(verdicts, text)


def _some(names: list[str], shown: int = 10) -> str:
    """Names for one line: at most ``shown``, then how many more (`status` lists each database)."""
    if len(names) <= shown:
        return ", ".join(names)
    return f"{', '.join(names[:shown])} and {len(names) - shown} more ({len(names)} databases)"


def broken(state_dir: Path) -> dict[str, dict[str, Any]]:
    """The databases whose last decided verdict is a broken chain."""
    return {k: v for k, v in records(state_dir).items() if isinstance(v, dict) and v.get("verdict") == BROKEN}


# --------------------------------------------------------------------------- keeping the chain whole


TRIM_AFTER = 64  # readers closed before the heap is trimmed, when the guard does not empty at once


class WalGuard:
    """Read transactions held on databases while no litestream watches them (between a litestream
    that exits and the next one confirming): SQLite then cannot restart the WAL, so every frame the
    app commits meanwhile stays in the -wal for the next litestream to read. Without it, a checkpoint
    in the gap takes frames out of the WAL unseen, and litestream 0.5 continues the chain without
    them (upstream #752: the hole this module's check finds). The WAL grows while a guard is held."""

    def __init__(self) -> None:
        self._readers: dict[str, _Reader] = {}
        self._held_at: dict[str, tuple[int, int, int]] = {}  # the live WAL (salts, size) when taken
        self._closed = 0  # readers closed since the heap was last trimmed

    def hold(self, databases: list[Database], log: Log | None = None) -> None:
        for db in databases:
            key = str(db.path)
            if key in self._readers or not db.path.exists():
                continue
            try:
                self._readers[key] = _Reader(db.path)
                wal = sqlite_wal.read_wal(Path(f"{db.path}-wal"))
                self._held_at[key] = (wal.salt1, wal.salt2, wal.committed_end)
            except NotWal:
                continue  # a rollback-journal database has no WAL to hold (and litestream must switch it)
            except sqlite3.Error as exc:
                if log is not None:
                    log(f"backupctl: cannot hold {db.name}'s WAL while litestream restarts: {exc}")

    def holds(self, db: Database) -> bool:
        return str(db.path) in self._readers

    def release_read(self, databases: list[Database], series: Series) -> None:
        """Let go of the databases whose live WAL the running litestream has read past the point
        the guard was taken at: those frames are in its local LTX files (0.5) or shadow WAL (0.3)
        now, whatever happens to the WAL, so an outage of the replica does not grow the WAL for ever."""
        for db in databases:
            key = str(db.path)
            held = self._held_at.get(key)
            if key not in self._readers or held is None:
                continue
            position = series.wal_position(db.path)
            if position is not None and (position.salt1, position.salt2) == held[:2] and position.end >= held[2]:
                self.release([db])

    def release(self, databases: list[Database] | None = None) -> None:
        keys = list(self._readers) if databases is None else [str(db.path) for db in databases]
        for key in keys:
            self._held_at.pop(key, None)
            reader = self._readers.pop(key, None)
            if reader is not None:
                reader.close()
                self._closed += 1
        if self._closed and (not self._readers or self._closed >= TRIM_AFTER):
            # each connection's memory (about 120 KB) is free now but would stay in the heap (host.memory)
            self._closed = 0
            memory.trim()

    def __bool__(self) -> bool:
        return bool(self._readers)


def chain_break(db: Database, series: Series) -> str | None:
    """Why litestream 0.5 could not continue this database's chain safely from where it stopped
    (None: it can). Its last local LTX file names the live WAL it read (salts) and how far; when
    the live WAL now has other salts, it was restarted while no litestream watched, and frames
    committed after litestream's last read may have been checkpointed out of it unseen. 0.3 starts
    a new generation (a full snapshot) by itself in that case."""
    if not series.keeps_ltx_chain or not db.path.exists():
        return None
    position = series.wal_position(db.path)
    if position is None:
        return None  # never replicated here, or reset: litestream snapshots (or checks the replica) itself
    wal = sqlite_wal.read_wal(Path(f"{db.path}-wal"))
    if wal.page_size == 0 or wal.empty:
        return None  # no WAL frames: litestream finds its last offset past the WAL's end and snapshots
    if (wal.salt1, wal.salt2) == (position.salt1, position.salt2) and wal.committed_end >= position.end:
        return None
    return "its WAL was checkpointed and restarted while litestream was not running"


SNAPSHOT_TIMEOUT = 1800.0  # seconds: a full upload of a large database over a slow link


def restart_generation_03(db: Database) -> None:
    """0.3: make the next litestream start a new generation (a full snapshot) by removing its note
    of the current one (``.<db>-litestream/generation``). Only litestream's own state is touched:
    the replica keeps every generation, and the shadow WAL is kept for the next start."""
    try:
        (meta_dir(db.path) / "generation").unlink()
    except FileNotFoundError:
        pass


def _truncate_wal(db: Database, tries: int = 20, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Empty ``db``'s WAL with SQLite's own TRUNCATE checkpoint (every frame goes into the database
    file, nowhere else). False when readers kept it busy through every try."""
    for _ in range(tries):
        try:
            con = sqlite3.connect(str(db.path), timeout=READER_TIMEOUT, isolation_level=None)
            try:
                busy = con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error:
            busy = 1
        if busy == 0:
            return True
        sleep(0.1)
    return False


def force_snapshot(databases: list[Database], series: Series) -> list[Database]:
    """Make the next litestream start of ``databases`` begin with every page, while no litestream
    replicates them. 0.5: their WAL is emptied by a TRUNCATE checkpoint, so litestream finds its last
    offset past the WAL's end and writes every page into its next L0 file (newer than any page a
    hole left, in every compaction level too). 0.3: the next start begins a new generation. Take a
    ``WalGuard`` right after this until the next litestream has read their WAL. Returns the
    databases whose WAL the app kept busy through every try."""
    if not series.keeps_ltx_chain:
        for db in databases:
            restart_generation_03(db)
        return []
    return [db for db in databases if db.path.exists() and not _truncate_wal(db)]


def snapshot_level9(ls: Litestream, config: Path | None = None) -> str | None:
    """0.5: write a level-9 snapshot of the databases in ``config`` (default: ``ls``'s) now
    (``replicate -once -force-snapshot``), while no other litestream replicates them. A restore of
    the newest state starts from the newest level-9 snapshot, so this also bridges LTX files missing
    from the replica (a "non-contiguous" chain). Returns None, or why it failed."""
    runner = Litestream(ls.binary, ls.settings, config) if config is not None else ls
    try:
        runner.run("replicate", "-once", "-force-snapshot", timeout=SNAPSHOT_TIMEOUT, what="litestream snapshot")
    except BackupctlError as exc:
        return exc.message
    return None
