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

How far back a database can be restored, read from these listings, is each series' adapter's
(``adapter.restorable_window``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from backupctl.config.settings import Database, Replica, Settings
from backupctl.errors import LitestreamError
from backupctl.kinds import probe_replica
from backupctl.litestream import rows
from backupctl.litestream.log import logfmt
from backupctl.litestream.rows import GENERATIONS_NOTE, LISTING_TIMEOUT, SNAPSHOT_LEVEL, WAL_LEVEL, iso, parse_time, txid_hex
from backupctl.litestream.runner import Litestream, Result
from backupctl.redact import scrub

__all__ = ["GENERATIONS_NOTE", "LISTING_TIMEOUT", "SNAPSHOT_LEVEL", "WAL_LEVEL", "iso", "parse_time", "txid_hex"]  # home: rows
LISTED_TIME_SLACK = 2.0  # seconds: listed times are truncated to the second, plus litestream's own write


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
        return rows.ltx_json(self.level, self.min_txid, self.max_txid, self.size, self.timestamp)


@dataclass(frozen=True)
class Generation:
    """One 0.3 generation (a continuous chain started by a snapshot) on one replica."""

    replica: str  # the replica's name in litestream.yml (backupctl names it by kind)
    generation: str
    lag: str | None  # litestream's own "lag" column (local db change time minus the replica's end)
    start: datetime | None
    end: datetime | None

    def to_json(self) -> dict[str, object]:
        return rows.generation_json(self.replica, self.generation, self.lag, self.start, self.end)


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
        return rows.snapshot_json(self.replica, self.created, self.size, self.generation, self.index, self.min_txid,
                                  self.max_txid)  # fmt: skip


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
        return rows.wal_json(self.replica, self.created, self.size, self.generation, self.index, self.offset, self.level,
                             self.min_txid, self.max_txid)  # fmt: skip


@dataclass(frozen=True)
class ConfiguredDatabase:
    """A database as litestream's `databases` command sees it."""

    path: str
    replicas: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "replicas": list(self.replicas)}


# --------------------------------------------------------------------------- helpers


def listing_runner(settings: Settings, binary_path: Path, config_path: Path | None) -> Litestream:
    """The litestream that lists: ``config_path``, else the config read-only commands use."""
    if config_path is None:
        # lazy: not needed on `status --json`'s fast path
        from backupctl.host.config_in_use import config_for_reading

        config_path = config_for_reading(settings)
    return Litestream(binary_path, settings, config_path)


def _error_lines(text: str) -> list[dict[str, str]]:
    """0.3 logs failures on stdout (and exits 0); 0.5 prints `Error: ...` on stderr."""
    errors = []
    for line in text.splitlines():
        stripped = line.strip()
        if not rows.is_error_line(stripped):
            continue
        if stripped.startswith("Error:"):
            errors.append({"msg": stripped.removeprefix("Error:").strip()})
        else:
            errors.append(logfmt(stripped))
    return errors


def _replica_for(db: Database, name: str | None) -> Replica | None:
    for replica in db.replicas:
        if name in (replica.kind, replica.litestream_type):
            return replica
    return db.replicas[0] if len(db.replicas) == 1 else None


def destinations_of(db: Database) -> str:
    """The replica(s) of ``db`` as an error names them."""
    return ", ".join(r.destination for r in db.replicas) or "(no replica)"


def _run_listing(settings: Settings, ls: Litestream, db: Database, command: str, *args: str, timeout: float) -> Result:
    """Run one listing for one database; every failure becomes a LitestreamError naming the replica."""
    for replica in db.replicas:
        probe_replica(replica)
    try:
        result = ls.run(command, *args, timeout=timeout, check=False, what=f"litestream {command} for {db.name}")
    except LitestreamError as exc:
        exc.message = f"cannot read replica {destinations_of(db)}: {exc.message}"
        raise
    return checked_listing(settings, db, result)


def checked_listing(settings: Settings, db: Database, result: Result) -> Result:
    """A listing's result, or the LitestreamError its output says (exit 0 does not mean it worked)."""
    errors = _error_lines(result.stdout + "\n" + result.stderr)
    if errors or result.returncode != 0:
        first = errors[0] if errors else {}
        replica = _replica_for(db, first.get("replica"))
        where = replica.destination if replica else destinations_of(db)
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
    ls = listing_runner(settings, binary_path, config_path)
    _require(ls, "ltx", ls.caps.has_ltx)
    result = _run_listing(settings, ls, db, "ltx", "-level", str(level), "-json", str(db.path), timeout=timeout)
    return parse_ltx(db, result)


def parse_ltx(db: Database, result: Result) -> list[LtxFile]:
    try:
        return [LtxFile(*row) for row in rows.ltx_rows(result.stdout)]
    except (ValueError, KeyError, TypeError) as exc:
        raise LitestreamError(
            f"cannot parse `litestream ltx -json` output for {db.name}: {exc}",
            "this Litestream's output differs from what backupctl knows; report it",
            details=result.stdout.strip().splitlines()[:5],
        ) from None


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
    ls = listing_runner(settings, binary_path, config_path)
    _require(ls, "generations", ls.caps.has_generations)
    result = _run_listing(settings, ls, db, "generations", str(db.path), timeout=timeout)
    return [Generation(*row) for row in rows.generation_rows(result.stdout)]


def snapshots(
    settings: Settings,
    binary_path: Path,
    db: Database,
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
) -> list[Snapshot]:
    """Snapshots, oldest first: 0.3 `snapshots DB`; 0.5 the level-9 LTX files."""
    ls = listing_runner(settings, binary_path, config_path)
    if ls.caps.has_ltx:
        name = db.replicas[0].kind if db.replicas else "replica"
        return [
            Snapshot(replica=name, created=f.timestamp, size=f.size, min_txid=f.min_txid, max_txid=f.max_txid)
            for f in ltx_files(settings, binary_path, db, SNAPSHOT_LEVEL, config_path=ls.config_path, timeout=timeout)
        ]
    result = _run_listing(settings, ls, db, "snapshots", str(db.path), timeout=timeout)
    return [Snapshot(replica=r, generation=g, index=i, size=size, created=t)
            for r, g, i, size, t in rows.snapshot_rows(result.stdout)]  # fmt: skip


def wal_segments(
    settings: Settings,
    binary_path: Path,
    db: Database,
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
) -> list[WalSegment]:
    """Incremental pieces, oldest first: 0.3 `wal DB`; 0.5 the level-0 LTX files."""
    ls = listing_runner(settings, binary_path, config_path)
    if ls.caps.has_ltx:
        name = db.replicas[0].kind if db.replicas else "replica"
        return [
            WalSegment(replica=name, created=f.timestamp, size=f.size, level=f.level, min_txid=f.min_txid, max_txid=f.max_txid)
            for f in ltx_files(settings, binary_path, db, WAL_LEVEL, config_path=ls.config_path, timeout=timeout)
        ]
    result = _run_listing(settings, ls, db, "wal", str(db.path), timeout=timeout)
    return [WalSegment(replica=r, generation=g, index=i, offset=off, size=size, created=t)
            for r, g, i, off, size, t in rows.wal_rows(result.stdout)]  # fmt: skip


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

    ls = listing_runner(settings, binary_path, config_path)
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
    listed = rows.listed_databases(result.stdout, [str(db.path) for db in settings.databases])
    return [ConfiguredDatabase(path, _names(names)) for path, names in listed.items()]


def _names(text: object) -> tuple[str, ...]:
    return tuple(n for n in str(text or "").split(",") if n)
