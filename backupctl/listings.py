"""What is in the replicas: listings for Litestream 0.5 and 0.3, parsed into typed records.

Litestream's listings exit 0 when the replica is unreachable (0.3 logs the error on stdout,
0.5 retries quietly for minutes and prints an empty list). So every listing here:

1. probes the replica's endpoint first (a TCP connect with a short timeout) for network
   replicas: a closed port, a DNS failure or a black hole is reported at once, naming
   ``Replica.destination`` and the cause;
2. runs litestream with a timeout (a hang is an error, never an empty table);
3. on 0.3, reads stdout for ``level=ERROR`` log lines and raises them.

An empty result therefore means an empty replica, never an unreachable one.

Times are UTC and tz-aware. Litestream lists them truncated to whole seconds: a file listed
at ``t`` was written somewhere in ``[t, t + 1s)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backupctl.errors import BackupctlError, LitestreamError
from backupctl.kinds import probe_replica
from backupctl.litestream_log import logfmt
from backupctl.runner import Litestream, Result, scrub
from backupctl.settings import Database, Replica, Settings

LISTING_TIMEOUT = 30.0  # seconds; 0.5 against a silent endpoint would otherwise retry for minutes
SNAPSHOT_LEVEL = 9  # 0.5: snapshots are level-9 LTX files
WAL_LEVEL = 0  # 0.5: what 0.3 called WAL segments are level-0 LTX files
GENERATIONS_NOTE = (
    "Litestream 0.5 has no generations: the replica is one continuous chain of LTX files "
    "(snapshots are level 9, incremental files level 0), so this shows its restorable window."
)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class LtxFile:
    """One LTX file of a 0.5 replica."""

    level: int
    min_txid: int
    max_txid: int
    size: int
    timestamp: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "level": self.level,
            "min_txid": txid_hex(self.min_txid),
            "max_txid": txid_hex(self.max_txid),
            "size": self.size,
            "timestamp": iso(self.timestamp),
        }


@dataclass(frozen=True)
class Generation:
    """One 0.3 generation (a continuous chain started by a snapshot) on one replica."""

    replica: str  # the replica's name in litestream.yml (backupctl names it by kind)
    generation: str
    lag: str | None  # litestream's own "lag" column (local db change time minus the replica's end)
    start: datetime | None
    end: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "replica": self.replica,
            "generation": self.generation,
            "lag": self.lag,
            "start": iso(self.start),
            "end": iso(self.end),
        }


@dataclass(frozen=True)
class Snapshot:
    """A full copy of the database in the replica (0.3 snapshot, 0.5 level-9 LTX file)."""

    replica: str
    created: datetime
    size: int
    generation: str | None = None  # 0.3
    index: int | None = None  # 0.3
    min_txid: int | None = None  # 0.5
    max_txid: int | None = None  # 0.5

    def to_json(self) -> dict[str, object]:
        return {
            "replica": self.replica,
            "created": iso(self.created),
            "size": self.size,
            "generation": self.generation,
            "index": self.index,
            "min_txid": txid_hex(self.min_txid),
            "max_txid": txid_hex(self.max_txid),
        }


@dataclass(frozen=True)
class WalSegment:
    """An incremental piece: a 0.3 WAL segment, or a 0.5 LTX file at a level below 9."""

    replica: str
    created: datetime
    size: int
    generation: str | None = None  # 0.3
    index: int | None = None  # 0.3
    offset: int | None = None  # 0.3
    level: int | None = None  # 0.5
    min_txid: int | None = None  # 0.5
    max_txid: int | None = None  # 0.5

    def to_json(self) -> dict[str, object]:
        return {
            "replica": self.replica,
            "created": iso(self.created),
            "size": self.size,
            "generation": self.generation,
            "index": self.index,
            "offset": self.offset,
            "level": self.level,
            "min_txid": txid_hex(self.min_txid),
            "max_txid": txid_hex(self.max_txid),
        }


@dataclass(frozen=True)
class ConfiguredDatabase:
    """A database as litestream's `databases` command sees it."""

    path: str
    replicas: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "replicas": list(self.replicas)}


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


# --------------------------------------------------------------------------- helpers


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def txid_hex(value: int | None) -> str | None:
    """A txid the way litestream writes it (16 hex digits; what `restore -txid` takes)."""
    return None if value is None else f"{value:016x}"


def parse_time(text: str) -> datetime:
    """A litestream timestamp (RFC 3339, any precision) as a tz-aware UTC datetime."""
    text = text.strip()
    m = re.fullmatch(r"(.*?T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        raise ValueError(text)
    base, frac, zone = m.groups()
    frac = (frac or "")[:7]  # Python takes at most microseconds
    value = datetime.fromisoformat(base + frac + ("+00:00" if zone == "Z" else zone))
    return value.astimezone(UTC)


def _runner(settings: Settings, binary_path: Path, config_path: Path | None) -> Litestream:
    if config_path is None:
        from backupctl.render import config_for_reading

        config_path = config_for_reading(settings)
    return Litestream(binary_path, settings, config_path)


def _error_lines(text: str) -> list[dict[str, str]]:
    """0.3 logs failures on stdout (and exits 0); 0.5 prints `Error: ...` on stderr."""
    errors = []
    for line in text.splitlines():
        stripped = line.strip()
        if "level=ERROR" in stripped or "level=WARN" in stripped:
            errors.append(logfmt(stripped))
        elif stripped.startswith("Error:"):
            errors.append({"msg": stripped.removeprefix("Error:").strip()})
    return errors


def _replica_for(db: Database, name: str | None) -> Replica | None:
    for replica in db.replicas:
        if name in (replica.kind, replica.litestream_type):
            return replica
    return db.replicas[0] if len(db.replicas) == 1 else None


def _destinations(db: Database) -> str:
    return ", ".join(r.destination for r in db.replicas) or "(no replica)"


def _run_listing(settings: Settings, ls: Litestream, db: Database, command: str, *args: str, timeout: float) -> Result:
    """Run one listing for one database; every failure becomes a LitestreamError naming the replica."""
    for replica in db.replicas:
        probe_replica(replica)
    try:
        result = ls.run(command, *args, timeout=timeout, check=False, what=f"litestream {command} for {db.name}")
    except LitestreamError as exc:
        exc.message = f"cannot read replica {_destinations(db)}: {exc.message}"
        raise
    return _checked_listing(settings, db, result)


def _checked_listing(settings: Settings, db: Database, result: Result) -> Result:
    """A listing's result, or the LitestreamError its output says (exit 0 does not mean it worked)."""
    errors = _error_lines(result.stdout + "\n" + result.stderr)
    if errors or result.returncode != 0:
        first = errors[0] if errors else {}
        replica = _replica_for(db, first.get("replica"))
        where = replica.destination if replica else _destinations(db)
        cause = first.get("error") or first.get("msg") or f"exit {result.returncode}"
        if first.get("error") and first.get("msg"):
            cause = f"{first['msg']}: {first['error']}"
        raise LitestreamError(
            scrub(f"cannot read replica {where}: {cause}", settings),
            "check the endpoint, the bucket, the credentials and the network; `backupctl doctor` probes them",
            details=[scrub(" ".join(result.argv), settings)]
            + [scrub(x, settings) for x in (result.stderr + "\n" + result.stdout).strip().splitlines()[-8:]],
        )
    return result


def _table(text: str, header_first: str) -> list[list[str]]:
    """Rows of a 0.3 tab-aligned table (whitespace-separated; no cell contains spaces)."""
    rows: list[list[str]] = []
    seen_header = False
    for line in text.splitlines():
        cells = line.split()
        if not cells:
            continue
        if not seen_header:
            if cells[0] == header_first:
                seen_header = True
            continue
        rows.append(cells)
    return rows


def _int(text: str) -> int:
    return int(text, 16) if re.fullmatch(r"[0-9a-fA-F]{16}", text) else int(text)


def _parse_time_or_none(text: str) -> datetime | None:
    try:
        return parse_time(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------- 0.5


def ltx_files(
    settings: Settings,
    binary_path: Path,
    db: Database,
    level: int | str = "all",
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
) -> list[LtxFile]:
    """0.5: the replica's LTX files at `level` (an int, or "all"), oldest first."""
    ls = _runner(settings, binary_path, config_path)
    _require(ls, "ltx", ls.caps.has_ltx)
    result = _run_listing(settings, ls, db, "ltx", "-level", str(level), "-json", str(db.path), timeout=timeout)
    return _parse_ltx(db, result)


def _parse_ltx(db: Database, result: Result) -> list[LtxFile]:
    import json

    try:
        raw = json.loads(result.stdout or "[]") or []
        files = [
            LtxFile(
                level=int(item["level"]),
                min_txid=_int(str(item["min_txid"])),
                max_txid=_int(str(item["max_txid"])),
                size=int(item["size"]),
                timestamp=parse_time(item["timestamp"]),
            )
            for item in raw
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise LitestreamError(
            f"cannot parse `litestream ltx -json` output for {db.name}: {exc}",
            "this Litestream's output differs from what backupctl knows; report it",
            details=result.stdout.strip().splitlines()[:5],
        ) from None
    return sorted(files, key=lambda f: (f.timestamp, f.level, f.min_txid))


def _require(ls: Litestream, command: str, available: bool) -> None:
    if not available:
        raise LitestreamError(
            f"Litestream {ls.caps.version} has no `{command}` listing",
            "use `backupctl snapshots`, `wal` and `generations`, which work with every pinned version",
        )


# --------------------------------------------------------------------------- 0.3


def generations(
    settings: Settings,
    binary_path: Path,
    db: Database,
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
) -> list[Generation]:
    """0.3: `litestream generations DB`, oldest start first."""
    ls = _runner(settings, binary_path, config_path)
    _require(ls, "generations", ls.caps.has_generations)
    result = _run_listing(settings, ls, db, "generations", str(db.path), timeout=timeout)
    gens = []
    for cells in _table(result.stdout, "name"):
        if len(cells) < 2:
            continue
        gens.append(
            Generation(
                replica=cells[0],
                generation=cells[1],
                lag=cells[2] if len(cells) > 2 else None,
                start=_parse_time_or_none(cells[3]) if len(cells) > 3 else None,
                end=_parse_time_or_none(cells[4]) if len(cells) > 4 else None,
            )
        )
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(gens, key=lambda g: (g.start or far, g.generation))


def snapshots(
    settings: Settings,
    binary_path: Path,
    db: Database,
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
) -> list[Snapshot]:
    """Snapshots, oldest first: 0.3 `snapshots DB`; 0.5 the level-9 LTX files."""
    ls = _runner(settings, binary_path, config_path)
    if ls.caps.has_ltx:
        name = db.replicas[0].kind if db.replicas else "replica"
        return [
            Snapshot(replica=name, created=f.timestamp, size=f.size, min_txid=f.min_txid, max_txid=f.max_txid)
            for f in ltx_files(settings, binary_path, db, SNAPSHOT_LEVEL, config_path=ls.config_path, timeout=timeout)
        ]
    result = _run_listing(settings, ls, db, "snapshots", str(db.path), timeout=timeout)
    snaps = []
    for cells in _table(result.stdout, "replica"):
        if len(cells) < 5 or _parse_time_or_none(cells[4]) is None:
            continue
        snaps.append(
            Snapshot(
                replica=cells[0], generation=cells[1], index=_int(cells[2]), size=int(cells[3]), created=parse_time(cells[4])
            )
        )
    return sorted(snaps, key=lambda s: (s.created, s.index or 0))


def wal_segments(
    settings: Settings,
    binary_path: Path,
    db: Database,
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
) -> list[WalSegment]:
    """Incremental pieces, oldest first: 0.3 `wal DB`; 0.5 the level-0 LTX files."""
    ls = _runner(settings, binary_path, config_path)
    if ls.caps.has_ltx:
        name = db.replicas[0].kind if db.replicas else "replica"
        return [
            WalSegment(replica=name, created=f.timestamp, size=f.size, level=f.level, min_txid=f.min_txid, max_txid=f.max_txid)
            for f in ltx_files(settings, binary_path, db, WAL_LEVEL, config_path=ls.config_path, timeout=timeout)
        ]
    result = _run_listing(settings, ls, db, "wal", str(db.path), timeout=timeout)
    segs = []
    for cells in _table(result.stdout, "replica"):
        if len(cells) < 6 or _parse_time_or_none(cells[5]) is None:
            continue
        segs.append(
            WalSegment(
                replica=cells[0],
                generation=cells[1],
                index=_int(cells[2]),
                offset=int(cells[3]),
                size=int(cells[4]),
                created=parse_time(cells[5]),
            )
        )
    return sorted(segs, key=lambda s: (s.created, s.index or 0, s.offset or 0))


# --------------------------------------------------------------------------- both


def configured_databases(
    settings: Settings,
    binary_path: Path,
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
    check: bool = True,
) -> list[ConfiguredDatabase]:
    """What litestream itself reads from a config (`litestream databases`; -json on 0.5).

    The one parser of that listing (setup --check and doctor use it too). 0.3 prints a text table
    whose paths may hold spaces: the configured paths are matched as line prefixes, never split.
    ``check=False`` returns what could be read even when litestream exits non-zero.
    """
    import json

    ls = _runner(settings, binary_path, config_path)
    if ls.caps.has_json:
        result = ls.run("databases", "-json", timeout=timeout, check=check, what="litestream databases")
        try:
            raw = json.loads(result.stdout or "[]") or []
            return [ConfiguredDatabase(str(d["path"]), _names(d.get("replica"))) for d in raw if isinstance(d, dict)]
        except (ValueError, KeyError, TypeError) as exc:
            if not check:
                return []
            raise LitestreamError(f"cannot parse `litestream databases -json`: {exc}", "report it") from None
    result = ls.run("databases", timeout=timeout, check=check, what="litestream databases")
    errors = _error_lines(result.stdout)
    if errors and check:
        raise LitestreamError(f"litestream databases: {errors[0].get('error') or errors[0].get('msg')}", "check litestream.yml")
    lines = result.stdout.splitlines()[1:]
    found = []
    for db in settings.databases:
        prefix = str(db.path)
        for line in lines:
            if line == prefix or line.startswith((prefix + " ", prefix + "\t")):
                found.append(ConfiguredDatabase(prefix, _names(line[len(prefix) :].strip())))
                break
    return found


def _names(text: object) -> tuple[str, ...]:
    return tuple(n for n in str(text or "").split(",") if n)


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
    database's replica gave. 0.5 runs its listings ``parallel`` at a time (no threads); 0.3 one by one."""
    from backupctl.runner import run_many

    ls = _runner(settings, binary_path, config_path)
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
                answer.message = f"cannot read replica {_destinations(db)}: {answer.message}"
                raise answer
            found[str(db.path)] = _window_05(db, _parse_ltx(db, _checked_listing(settings, db, answer)))
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
    ls = _runner(settings, binary_path, config_path)
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
