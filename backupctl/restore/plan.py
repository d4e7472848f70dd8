"""Planning a restore: which databases, where each goes, and what it will do, writing nothing.

:func:`select_targets` reads ``restore [DB|PATH] [-o PATH]``; :func:`resolve_output` picks the
output (an explicit path; else the database's own path when no database is there, a new
machine; else, with ``force``, that path with the current file kept aside; else a side file
``<name>.restored-<UTC stamp>``); :func:`plan_restore` validates the point in time (``--txid``,
``--generation``, ``--timestamp`` against the replica's restorable window) and refuses an
occupied output without ``force``, or one in use. A :class:`RestorePlan` is what ``--dry-run``
shows and what :func:`backupctl.restore.execute.execute_restore` carries out.

The restorable window is read from the replica only where it decides something (a
``--timestamp`` must fall inside it) or where the report asks for it (``details``: ``--json``,
``--dry-run``, ``--verbose``); a plain restore makes no listing call.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backupctl.config.settings import Database, Settings
from backupctl.errors import BackupctlError, ConfigError, NoBackupError, NotFoundError, RefusedError
from backupctl.litestream import adapter, rows
from backupctl.restore.swap import check_not_in_use, kept_path, occupied, present_files, same_file, side_path
from backupctl.timeparse import FORMS_HINT, TimestampError, parse_point_in_time, to_rfc3339
from backupctl.versions import capabilities

# A first positional argument that is not a configured database but looks like this is an output path.
PATH_SUFFIXES = frozenset({".db", ".sqlite", ".sqlite3", ".sqlite2", ".db3", ".s3db"})


def looks_like_path(text: str) -> bool:
    """The positional-argument rule: a separator, a leading ``.``/``~``, or an SQLite file suffix."""
    return "/" in text or os.sep in text or text.startswith((".", "~")) or Path(text).suffix.lower() in PATH_SUFFIXES


def select_targets(
    settings: Settings, db_arg: str | None, output: Path | None, *, output_is_dir: bool = False
) -> list[tuple[Database, Path | None]]:
    """Which databases to restore and where, from ``restore [DB] [-o PATH]``.

    ``-o DIR/`` (``output_is_dir``, or an existing folder) restores each database into that
    folder under its own name.

    DB is a configured database (name or path). If it is not, but looks like a path
    (see :func:`looks_like_path`) and one database is configured, it is the output path:
    ``backupctl restore /path/to/restore.db`` restores that database there.
    No DB selects every database, each to its default location (the CLI asks for --all when there
    are several).
    """
    if db_arg:
        try:
            dbs = settings.database(db_arg)
        except NotFoundError:
            if not looks_like_path(db_arg):
                raise
            if output is not None:  # with -o the argument can only name the database: it is not there (exit 8)
                names = ", ".join(d.name for d in settings.databases) or "none"
                raise NotFoundError(
                    f"{db_arg!r} is not a configured database (configured: {names})",
                    "name one of them (`backupctl restore DB -o PATH`); without -o, `backupctl restore PATH` "
                    "restores the one configured database to PATH",
                ) from None
            if len(settings.databases) != 1:
                names = ", ".join(d.name for d in settings.databases) or "none"
                raise ConfigError(
                    f"{db_arg!r} is not a configured database ({names}); as an output path it is ambiguous",
                    f"name the database: `backupctl restore DB -o {db_arg}`",
                ) from None
            return [(settings.databases[0], Path(db_arg))]
    else:
        dbs = list(settings.databases)
    if output is not None and (output_is_dir or Path(output).expanduser().is_dir()):
        folder = Path(output).expanduser()
        return [(db, folder / db.name) for db in dbs]
    if output is not None and len(dbs) > 1:
        raise ConfigError(
            f"-o names one output file but {len(dbs)} databases are configured",
            "name the database to restore (`backupctl restore DB -o PATH`), or give a folder ending in / "
            "(`-o restored/`) to restore each there under its own name",
        )
    return [(db, output) for db in dbs]


def restore_destination(db: Database, output: Path | None) -> Path:
    """Where litestream's own restore would write: the output given (a folder takes the database's
    name), else the database's path. What ``--if-db-not-exists`` looks at."""
    if output is None:
        return db.path
    out = Path(output).expanduser()
    out = out if out.is_absolute() else Path.cwd() / out
    if out.is_dir():
        out = out / db.name
    return out.absolute()


def resolve_output(db: Database, output: Path | None, now: datetime | None = None, *, force: bool = False) -> tuple[Path, str]:
    """The output path and why it was chosen. With ``force`` and no path, the live database's path."""
    if output is not None:
        return restore_destination(db, output), "the path you gave"
    if not occupied(db.path):
        return db.path, "no database is there (a new machine), so the restore goes into place"
    if force:
        return db.path, "--force: the restore replaces the database (the current one is kept aside)"
    return side_path(db.path, now), f"{db.path} exists, so the restore goes beside it (--force replaces the database)"


@dataclass
class RestoreSpan:
    """The span a point-in-time restore can reach (from backupctl.litestream.adapter)."""

    start: datetime | None
    end: datetime | None

    def describe(self) -> str:
        a = to_rfc3339(self.start) if self.start else "?"
        b = to_rfc3339(self.end) if self.end else "?"
        return f"{a} .. {b}"


@dataclass
class RestorePlan:
    database: Database
    output: Path
    reason: str
    live: bool  # the output is the configured database's path
    replaces: list[Path]  # files at the output moved aside first (the database, -wal, -shm)
    keep_path: Path | None
    timestamp: str | None  # RFC 3339 UTC, as passed to litestream
    txid: str | None
    generation: str | None
    source: list[str]
    window: RestoreSpan | None = None
    notes: list[str] = field(default_factory=list)
    # Count each table's rows and list the replica's window for the report. Off, a plain restore
    # makes one litestream call (the download); a --timestamp always lists the window (its bounds).
    details: bool = False

    def point_in_time(self) -> str | None:
        """What state is restored, in words (None: the latest): a timestamp, or up to a txid."""
        if self.timestamp:
            return self.timestamp
        if self.txid:
            return f"txid {self.txid} (the state right after that transaction id)"
        return None

    def restore_args(self) -> list[str]:
        args: list[str] = []
        if self.timestamp:
            args += ["-timestamp", self.timestamp]
        if self.txid:
            args += ["-txid", self.txid]
        if self.generation:
            args += ["-generation", self.generation]
        return args

    def to_json(self) -> dict[str, Any]:
        return {
            "database": str(self.database.path),
            "name": self.database.name,
            "output": str(self.output),
            "reason": self.reason,
            "live": self.live,
            "replaces": [str(p) for p in self.replaces],
            "kept": str(self.keep_path) if self.keep_path else None,
            "timestamp": self.timestamp,
            "txid": self.txid,
            "generation": self.generation,
            "source": self.source,
            "window": _window_json(self.window),
            "notes": self.notes,
        }


def _window_json(window: RestoreSpan | None) -> dict[str, str | None] | None:
    if window is None:
        return None
    return {
        "start": to_rfc3339(window.start) if window.start else None,
        "end": to_rfc3339(window.end) if window.end else None,
    }


def normalize_txid(raw: str) -> str:
    """16 hex digits (litestream's form). Decimal and 0x-hex are converted; 16 digits are read as hex."""
    text = raw.strip().lower()
    if re.fullmatch(r"[0-9a-f]{16}", text):
        return text
    try:
        value = int(text, 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        raise ConfigError(
            f"--txid {raw!r} is not a transaction id",
            "write 16 hex digits as `backupctl ltx` shows them (0000000000000003), or a decimal number",
        ) from None
    if not 0 < value < 1 << 64:
        raise ConfigError(f"--txid {raw!r} is out of range", "txids start at 1 (see `backupctl ltx`)")
    return f"{value:016x}"


@dataclass(frozen=True)
class RestoreRequest:
    """What was asked: which database, where to (None: beside it, or into place with ``force``), which
    point (a ``timestamp``, a 0.5 ``txid`` or a 0.3 ``generation``; none: the newest), and whether an
    existing database may be replaced (moved aside, kept)."""

    database: Database
    output: Path | None = None
    timestamp: str | None = None
    txid: str | None = None
    generation: str | None = None
    force: bool = False


def plan_restore(
    settings: Settings, binary_path: Path, request: RestoreRequest, *, now: datetime | None = None, details: bool = False
) -> RestorePlan:
    """Decide and validate everything a restore will do, without writing anything.

    ``details``: also list the restorable window for a plain restore (the report's ``state_at``)
    and count the restored tables' rows. A ``--timestamp`` lists the window whatever ``details``
    says: it decides whether the point can be restored."""
    now = now or datetime.now(UTC)
    db = request.database
    txid, generation = _checked_point(settings, request)
    out, reason, live, replaces, keep, notes = _placed(request, now)
    window: RestoreSpan | None = None
    stamp: str | None = None
    if request.timestamp is not None:
        window, stamp = _point_in_window(settings, binary_path, db, request.timestamp, now, notes)
    elif details and txid is None and generation is None:
        window = window_or_none(settings, binary_path, db)
    return RestorePlan(
        database=db,
        output=out,
        reason=reason,
        live=live,
        replaces=replaces,
        keep_path=keep,
        timestamp=stamp,
        txid=txid,
        generation=generation,
        source=[r.destination for r in db.replicas],
        window=window,
        notes=notes,
        details=details,
    )


def _checked_point(settings: Settings, request: RestoreRequest) -> tuple[str | None, str | None]:
    """The txid and generation asked for, checked against this version and each other, normalised."""
    caps = capabilities(settings.version)
    txid, generation = request.txid, request.generation
    if txid is not None and not caps.restore_by_txid:
        raise ConfigError(
            f"--txid is a Litestream 0.5 option; this project uses {settings.version}",
            "restore by --timestamp, or by --generation (0.3); `backupctl generations` lists them",
        )
    if generation is not None and not caps.restore_by_generation:
        raise ConfigError(
            f"--generation is a Litestream 0.3 option; Litestream {settings.version} has no generations",
            "restore by --timestamp or --txid (`backupctl ltx` lists txids)",
        )
    if txid is not None and request.timestamp is not None:
        raise ConfigError("--txid and --timestamp both pick the point to restore", "give one of them")
    if txid is not None:
        txid = normalize_txid(txid)
    if generation is not None:
        generation = generation.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{16}", generation):
            raise ConfigError(
                f"--generation {generation!r} is not a generation id (16 hex digits)",
                "copy one from `backupctl generations`",
            )
    return txid, generation


def _placed(request: RestoreRequest, now: datetime) -> tuple[Path, str, bool, list[Path], Path | None, list[str]]:
    """Where the restore goes and what is there: (output, why there, the live database?, the files to
    move aside, where they are kept, notes). Refuses an occupied output without ``force``."""
    db = request.database
    out, reason = resolve_output(db, request.output, now, force=request.force)
    live = same_file(out, db.path)
    if live:
        out = db.path  # the live database however it was spelled: replace the file, never a symlink to it
    notes: list[str] = []
    replaces = present_files(out)
    keep: Path | None = None
    if replaces:
        if occupied(out) and not request.force:
            raise RefusedError(
                f"{out} already exists; backupctl never restores over a database without --force",
                f"pass --force to move it (and its -wal/-shm) aside to {kept_path(out, now).name} and restore in "
                "its place, or leave -o out to restore beside it",
            )
        check_not_in_use(db if live else None, out)
        keep = kept_path(out, now)
        notes.append(f"{', '.join(p.name for p in replaces)} will be moved aside to {keep.name}* (kept)")
    return out, reason, live, replaces, keep, notes


def _point_in_window(
    settings: Settings, binary_path: Path, db: Database, timestamp: str, now: datetime, notes: list[str]
) -> tuple[RestoreSpan | None, str | None]:
    """The replica's window and the timestamp to pass litestream (None: the newest state, noted),
    after checking the point is in the past and inside the window."""
    try:
        moment = parse_point_in_time(timestamp, now)
    except TimestampError as exc:
        raise ConfigError(f"--timestamp: {exc}", FORMS_HINT) from None
    if moment > now:
        raise ConfigError(f"--timestamp {to_rfc3339(moment)} is in the future", "pick a point in the past")
    window = restorable_window(settings, binary_path, db)
    stamp: str | None = to_rfc3339(moment)
    if window is None:
        raise NoBackupError(
            f"the replica of {db.name} holds no backup ({', '.join(r.destination for r in db.replicas)})",
            "start replication (`backupctl start`) and let it sync once; `backupctl status` shows it",
        )
    if window.start is not None and moment < window.start:
        raise NotFoundError(
            f"{stamp} is before the oldest backup of {db.name}: the restorable window is {window.describe()}",
            "pick a time inside the window (`backupctl ltx`/`generations` list the backups)",
        )
    # Listed times are truncated to the second: how far past the newest listing a point is surely
    # after it depends on how the series compares them.
    slack = adapter.series_of(settings.version).after_newest
    if window.end is not None and moment >= window.end + slack:
        # Nothing changed in the replica after its last backup: the state at `moment` is the latest.
        notes.append(f"{stamp} is after the last backup ({to_rfc3339(window.end)}), so the latest backup is restored")
        stamp = None
    return window, stamp


def restorable_window(settings: Settings, binary_path: Path, db: Database) -> RestoreSpan | None:
    """The replica's restorable span from backupctl.litestream.adapter; None for an empty replica.

    Raises LitestreamError when the replica cannot be listed.
    """

    window = adapter.restorable_window(settings, binary_path, db)
    if window.empty:
        return None
    return RestoreSpan(window.oldest, window.newest)


def require_a_backup(settings: Settings, binary_path: Path, plan: RestorePlan) -> None:
    """Raise NotFoundError (exit 8, as the restore itself would) when the replica holds no backup.

    Used by `restore --dry-run`, which downloads nothing. A plan with a timestamp has checked it
    already; with --txid/--generation litestream is the judge at restore time."""
    if plan.timestamp or plan.txid or plan.generation or plan.window is not None:
        return

    if not plan.database.path.exists() and not capabilities(settings.version).lists_missing_database:
        return  # 0.3 cannot list a replica without its local file (a new machine): the restore will tell
    db = plan.database
    window = adapter.restorable_window(settings, binary_path, db)  # raises when unreachable
    if not window.empty and not window.restorable:
        raise NoBackupError(f"{rows.UNRESTORABLE} ({', '.join(r.destination for r in db.replicas)})",
                            "start replication: the supervisor's continuity check writes a fresh snapshot; "
                            "`backupctl ltx`/`snapshots` list what the replica holds")  # fmt: skip
    if window.empty:
        raise NoBackupError(
            f"the replica of {db.name} holds no backup ({', '.join(r.destination for r in db.replicas)})",
            "start replication (`backupctl start`) and let it sync once; if Litestream 0.3 wrote this replica, "
            "set LITESTREAM_VERSION=0.3.13 (0.5 cannot list 0.3 backups)",
        )


def window_or_none(settings: Settings, binary_path: Path, db: Database) -> RestoreSpan | None:
    try:
        return restorable_window(settings, binary_path, db)
    except (BackupctlError, OSError):  # only informative here: a plain restore does not need it
        return None
