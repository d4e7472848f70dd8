"""Safe restore: never over the live database by default, never a partial file, always checked.

A restore goes through three steps:

1. ``litestream restore -o`` into a private temp folder *in the output's own folder*
   (``.backupctl-restore-<pid>-*``), with a timeout. Everything litestream leaves behind
   (0.3's ``.tmp-wal``/``.tmp-shm`` included) stays inside that folder.
2. The copy is checked: non-empty, an SQLite header, ``PRAGMA integrity_check`` = ok.
3. It is renamed onto the output path (same filesystem, so atomic). When the output is
   occupied and ``force`` was given, the current file and its ``-wal``/``-shm`` are first moved
   aside to ``<name>.pre-restore-<UTC stamp>`` (kept, never deleted), and moved back if the
   rename fails.

The temp folder is removed in ``finally``, so a failure, a timeout or an interruption leaves the
original untouched and no partial file. Interruptions are cooperative (see :class:`StopRequest`):
a signal handler that raised could land between ``mkdtemp`` creating the folder and the ``try``
that removes it, between starting litestream and the ``try`` that kills it, or in the middle of
the ``rmtree``; so the CLI's handlers only call :data:`stop_request` ``.request()``, which kills the
running ``litestream restore`` and makes the next :meth:`StopRequest.check` raise, always from a
place whose cleanup is already armed. A folder left by a process killed with SIGKILL is swept by
the next restore.

Where a restore goes (``resolve_output``): an explicit path; else the database's own path when
no database is there (a new machine); else a side file ``<name>.restored-<UTC stamp>``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from backupctl.errors import ConfigError, ConflictError, LitestreamError, NotFoundError, RefusedError
from backupctl.runner import Litestream, Result
from backupctl.runner import _kill_group as runner_kill_group
from backupctl.settings import Database, Settings
from backupctl.timeparse import FORMS_HINT, TimestampError, parse_point_in_time, to_rfc3339

RESTORE_TIMEOUT = 1800.0  # seconds; a 200 MB database restores in ~3 s locally, leave room for slow links
TEMP_PREFIX = ".backupctl-restore-"
SIDE_MARK = ".restored-"
KEPT_MARK = ".pre-restore-"
SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm")
# A first positional argument that is not a configured database but looks like this is an output path.
PATH_SUFFIXES = frozenset({".db", ".sqlite", ".sqlite3", ".sqlite2", ".db3", ".s3db"})
# How litestream says "there is nothing to restore" (0.5 and 0.3 wordings).
_NO_BACKUP = re.compile(
    r"no matching backup|no backups found|no snapshots available|no generations found|"
    r"no matching backups|cannot find snapshot|no snapshot|database not found in config",
    re.IGNORECASE,
)

Step = Callable[[str], None]


# --- cooperative interruption ------------------------------------------------------------------


class StopRequest:
    """A stop asked for by a signal, honoured at safe points.

    ``request(error)`` is all a signal handler does (it never raises): it records ``error`` and
    SIGKILLs the process group of the litestream started by :meth:`run` (then reaped by the
    ``communicate`` it interrupts). ``check()`` raises the recorded error; restore and verify call
    it between steps, never between acquiring something and the ``try`` that releases it. The
    commit (move aside + rename) has no check inside it: it completes or is rolled back.
    """

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def requested(self) -> bool:
        return self.error is not None

    def reset(self) -> None:
        self.error = None

    def request(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        for proc in list(self._children.values()):
            _kill_group(proc)

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def sleep(self, seconds: float) -> None:
        """Sleep, but return early (and raise) when a stop is requested."""
        end = time.monotonic() + seconds
        while not self.requested and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
        self.check()

    def run(self, ls: Litestream, command: str, *args: str, timeout: float, what: str) -> Result:
        """``ls.run`` whose child a stop request kills at once (and which is always reaped)."""
        from backupctl import processes

        self.check()
        spawned: list[int] = []
        recorded: list[processes.ProcessRecord | None] = []

        def register(proc: subprocess.Popen[bytes]) -> None:
            self._children[proc.pid] = proc
            spawned.append(proc.pid)
            if self.requested:  # the signal came while it was starting
                _kill_group(proc)
                return
            try:
                recorded.append(
                    processes.register(
                        processes.RESTORE, proc.pid, project=ls.settings.project_dir, databases=[args[-1]] if args else [],
                        parent_pid=os.getpid(), pdeathsig=processes.use_parent_death_signal(),
                    )  # fmt: skip
                )
            except OSError:
                pass  # the record only helps other commands describe it; the restore itself goes on

        try:
            result = ls.run(command, *args, timeout=timeout, what=what, on_spawn=register, die_with_parent=True)
        except LitestreamError:
            self.check()  # killed by a stop request: say so, not "litestream failed"
            raise
        finally:
            for pid in spawned:
                self._children.pop(pid, None)
            for record in recorded:
                processes.unregister(record)
        self.check()
        return result


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # Only a child not yet reaped: once reaped, its pid (= its group id) may belong to someone else.
    if proc.returncode is None:
        runner_kill_group(proc)


# The one stop request of this process: the CLI's SIGTERM/SIGINT handlers feed it during
# restore and verify (library callers that install no handler never see it set).
stop_request = StopRequest()


def utc_stamp(moment: datetime | None = None) -> str:
    """``20261122T031500Z``: sorts by time, safe in a file name."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def side_path(db_path: Path, moment: datetime | None = None) -> Path:
    return _free(db_path.with_name(f"{db_path.name}{SIDE_MARK}{utc_stamp(moment)}"))


def kept_path(path: Path, moment: datetime | None = None) -> Path:
    return _free(path.with_name(f"{path.name}{KEPT_MARK}{utc_stamp(moment)}"))


def _free(path: Path) -> Path:
    """path, or path-2, path-3... if a file (or its -wal) is already there."""
    candidate, n = path, 1
    while any(Path(f"{candidate}{s}").exists() for s in ("", *SIDE_FILES)):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


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
    No DB selects every database, each to its default location.
    """
    if db_arg:
        try:
            dbs = settings.database(db_arg)
        except NotFoundError:
            if not looks_like_path(db_arg):
                raise
            if output is not None:
                raise ConfigError(
                    f"{db_arg!r} is not a configured database, and -o names the output already",
                    "write `restore DB -o PATH`, or `restore PATH` when one database is configured",
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


def occupied(path: Path) -> bool:
    """A database is there: a non-empty file, or a non-empty -wal."""
    for candidate in (path, Path(f"{path}-wal")):
        try:
            if candidate.stat().st_size > 0:
                return True
        except OSError:
            pass
    return False


def same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name the same file, also through symlinks and ``..`` (by inode when both exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _present(path: Path) -> list[Path]:
    return [p for p in (path, *(Path(f"{path}{s}") for s in SIDE_FILES)) if p.exists() or p.is_symlink()]


def resolve_output(db: Database, output: Path | None, now: datetime | None = None, *, force: bool = False) -> tuple[Path, str]:
    """The output path and why it was chosen. With ``force`` and no path, the live database's path."""
    if output is not None:
        out = Path(output).expanduser()
        out = out if out.is_absolute() else Path.cwd() / out
        if out.is_dir():
            out = out / db.name
        return out.absolute(), "the path you gave"
    if not occupied(db.path):
        return db.path, "no database is there (a new machine), so the restore goes into place"
    if force:
        return db.path, "--force: the restore replaces the database (the current one is kept aside)"
    return side_path(db.path, now), f"{db.path} exists, so the restore goes beside it (--force replaces the database)"


# --- who has the file open --------------------------------------------------------------------


def open_holders(files: list[Path]) -> list[tuple[int, str]]:
    """Processes (pid, name) other than this one with any of ``files`` open.

    On Linux this reads /proc/*/fd; elsewhere psutil's open_files. Processes of other users are
    invisible without privileges: the check sees what this user can see.
    """
    targets = set()
    for f in files:
        targets.add(str(f))
        try:
            targets.add(str(f.resolve()))
        except OSError:
            pass
    me = os.getpid()
    found: list[tuple[int, str]] = []
    proc = Path("/proc")
    if (proc / "self" / "fd").is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                fds = os.listdir(entry / "fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(entry / "fd" / fd)
                except OSError:
                    continue
                if link in targets:
                    found.append((int(entry.name), _comm(entry)))
                    break
        return found
    import psutil

    for p in psutil.process_iter(["pid", "name"]):
        if p.info["pid"] == me:
            continue
        try:
            if any(f.path in targets for f in p.open_files()):
                found.append((p.info["pid"], p.info["name"] or "?"))
        except (psutil.Error, OSError):
            continue
    return found


def _comm(entry: Path) -> str:
    try:
        return (entry / "comm").read_text("utf-8").strip() or "?"
    except OSError:
        return "?"


def check_not_in_use(db: Database | None, path: Path) -> None:
    """Raise ConflictError if backupctl replicates this database or any process has the file open."""
    if db is not None:
        from backupctl import processes

        ours = [r for r in processes.replicators_of(db.path, scan=False) if r.pid != os.getpid()]
        if ours:
            raise ConflictError(
                f"backupctl is replicating {db.path} ({ours[0].describe()}); restoring over it would fork the replica",
                "stop replication first (`backupctl stop`), restore, then start it again",
            )
    holders = open_holders([path, *(Path(f"{path}{s}") for s in SIDE_FILES)])
    if holders:
        listed = ", ".join(f"pid {pid} ({name})" for pid, name in holders)
        raise ConflictError(
            f"{path} is open in another process: {listed}",
            "stop the application (and any litestream) using it, then run the restore again",
            details=[f"pid {pid}: {name}" for pid, name in holders],
        )


# --- the plan ---------------------------------------------------------------------------------


@dataclass
class Window:
    """The span a point-in-time restore can reach (from backupctl.listings)."""

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
    window: Window | None = None
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


def _window_json(window: Window | None) -> dict[str, str | None] | None:
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


def plan_restore(
    settings: Settings,
    binary_path: Path,
    db: Database,
    output: Path | None = None,
    *,
    timestamp: str | None = None,
    txid: str | None = None,
    generation: str | None = None,
    force: bool = False,
    now: datetime | None = None,
    details: bool = False,
) -> RestorePlan:
    """Decide and validate everything a restore will do, without writing anything.

    ``details``: also list the restorable window for a plain restore (the report's ``state_at``)
    and count the restored tables' rows. A ``--timestamp`` lists the window whatever ``details``
    says: it decides whether the point can be restored."""
    from backupctl.versions import capabilities

    caps = capabilities(settings.version)
    now = now or datetime.now(UTC)
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
    if txid is not None and timestamp is not None:
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

    out, reason = resolve_output(db, output, now, force=force)
    live = same_file(out, db.path)
    if live:
        out = db.path  # the live database however it was spelled: replace the file, never a symlink to it
    notes: list[str] = []
    replaces = _present(out)
    keep: Path | None = None
    if replaces:
        if occupied(out) and not force:
            raise RefusedError(
                f"{out} already exists; backupctl never restores over a database without --force",
                f"pass --force to move it (and its -wal/-shm) aside to {kept_path(out, now).name} and restore in "
                "its place, or leave -o out to restore beside it",
            )
        check_not_in_use(db if live else None, out)
        keep = kept_path(out, now)
        notes.append(f"{', '.join(p.name for p in replaces)} will be moved aside to {keep.name}* (kept)")

    window: Window | None = None
    stamp: str | None = None
    if timestamp is not None:
        try:
            moment = parse_point_in_time(timestamp, now)
        except TimestampError as exc:
            raise ConfigError(f"--timestamp: {exc}", FORMS_HINT) from None
        if moment > now:
            raise ConfigError(f"--timestamp {to_rfc3339(moment)} is in the future", "pick a point in the past")
        window = restorable_window(settings, binary_path, db)
        stamp = to_rfc3339(moment)
        if window is None:
            raise NotFoundError(
                f"the replica of {db.name} holds no backup ({', '.join(r.destination for r in db.replicas)})",
                "start replication (`backupctl start`) and let it sync once; `backupctl status` shows it",
            )
        if window is not None and window.start is not None and moment < window.start:
            raise NotFoundError(
                f"{stamp} is before the oldest backup of {db.name}: the restorable window is {window.describe()}",
                "pick a time inside the window (`backupctl ltx`/`generations` list the backups)",
            )
        # Listed times are truncated to the second. 0.5 compares the exact file times with the
        # timestamp, so only a point a whole second past the newest listing is surely after it;
        # 0.3 refuses any timestamp past the exact end of the generation, so treat it as "latest".
        slack = timedelta(0) if caps.has_generations else timedelta(seconds=1)
        if window is not None and window.end is not None and moment >= window.end + slack:
            # Nothing changed in the replica after its last backup: the state at `moment` is the latest.
            notes.append(f"{stamp} is after the last backup ({to_rfc3339(window.end)}), so the latest backup is restored")
            stamp = None
    elif details and txid is None and generation is None:
        window = _window_or_none(settings, binary_path, db)
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


def restorable_window(settings: Settings, binary_path: Path, db: Database) -> Window | None:
    """The replica's restorable span from backupctl.listings; None for an empty replica.

    Raises LitestreamError when the replica cannot be listed.
    """
    from backupctl import listings

    window = listings.restorable_window(settings, binary_path, db)
    if window.empty:
        return None
    return Window(window.oldest, window.newest)


def require_a_backup(settings: Settings, binary_path: Path, plan: RestorePlan) -> None:
    """Raise NotFoundError (exit 8, as the restore itself would) when the replica holds no backup.

    Used by `restore --dry-run`, which downloads nothing. A plan with a timestamp has checked it
    already; with --txid/--generation litestream is the judge at restore time."""
    if plan.timestamp or plan.txid or plan.generation or plan.window is not None:
        return
    from backupctl.versions import capabilities

    if not plan.database.path.exists() and not capabilities(settings.version).lists_missing_database:
        return  # 0.3 cannot list a replica without its local file (a new machine): the restore will tell
    if restorable_window(settings, binary_path, plan.database) is None:  # raises when unreachable
        db = plan.database
        raise NotFoundError(
            f"the replica of {db.name} holds no backup ({', '.join(r.destination for r in db.replicas)})",
            "start replication (`backupctl start`) and let it sync once; if Litestream 0.3 wrote this replica, "
            "set LITESTREAM_VERSION=0.3.13 (0.5 cannot list 0.3 backups)",
        )


def _window_or_none(settings: Settings, binary_path: Path, db: Database) -> Window | None:
    try:
        return restorable_window(settings, binary_path, db)
    except Exception:  # only informative here: a plain restore does not need it
        return None


# --- doing it ---------------------------------------------------------------------------------


@dataclass
class Staged:
    """A checked restore waiting in a temp folder."""

    path: Path
    size: int
    position: dict[str, Any]
    tables: list[dict[str, Any]] | None  # name and rows of each table; None: not counted
    download_seconds: float


@dataclass
class RestoreResult:
    database: Database
    output: Path
    size: int
    position: dict[str, Any]
    point_in_time: str | None
    tables: list[dict[str, Any]] | None  # None: rows not counted (the plan asked for no details)
    seconds: float
    kept: list[Path]
    source: list[str]
    notes: list[str]
    state_at: str | None = None  # RFC 3339: when the restored state was backed up (None: unknown)
    created_folders: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        """One line: what, where, from when, how much."""
        when = f"state as of {self.state_at}" if self.state_at else "latest state"
        rows = "" if self.tables is None else f"{sum(t['rows'] for t in self.tables)} rows in {len(self.tables)} tables, "
        return (
            f"restored {self.database.name} to {self.output}: {_size_text(self.size)}, {when}, "
            f"{rows}{self.seconds:.2f}s, from {', '.join(self.source)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "database": str(self.database.path),
            "name": self.database.name,
            "output": str(self.output),
            "size": self.size,
            "position": self.position,
            "point_in_time": self.point_in_time or "latest",
            "integrity": "ok",
            "tables": self.tables,
            "seconds": round(self.seconds, 3),
            "kept": [str(p) for p in self.kept],
            "source": self.source,
            "notes": self.notes,
            "state_at": self.state_at,
            "created_folders": [str(p) for p in self.created_folders],
        }


def _size_text(n: int) -> str:
    from backupctl.doctor import human_size

    return human_size(n)


def litestream_for(settings: Settings, binary_path: Path) -> Litestream:
    """A Litestream bound to a config that follows the current settings (litestream.yml is never written)."""
    from backupctl.render import config_for_reading

    return Litestream(binary_path, settings, config_for_reading(settings, prefer_running=False))


def sweep_stale_temp(folder: Path) -> list[Path]:
    """Remove restore temp folders whose process is gone (killed with SIGKILL, power loss)."""
    removed: list[Path] = []
    try:
        entries = list(folder.glob(f"{TEMP_PREFIX}*"))
    except OSError:
        return removed
    for entry in entries:
        match = re.match(re.escape(TEMP_PREFIX) + r"(\d+)-", entry.name)
        if not match or not entry.is_dir():
            continue
        if int(match.group(1)) != os.getpid() and not _pid_exists(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _pid_exists(pid: int) -> bool:
    """Signal 0 tells (as psutil.pid_exists does on POSIX, without importing psutil for it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextmanager
def staged_restore(
    ls: Litestream,
    db: Database,
    folder: Path,
    args: list[str],
    *,
    timeout: float = RESTORE_TIMEOUT,
    on_step: Step | None = None,
    count_rows: bool = False,
) -> Iterator[Staged]:
    """Restore ``db`` into a temp folder inside ``folder``, check it, yield it; always clean up.

    The integrity check always runs; ``count_rows`` also counts each table's rows (``Staged.tables``).

    The folder is named ``.backupctl-restore-<pid>-<token>-*``; cleanup removes every folder with
    that prefix, so it holds even if ``mkdtemp`` was cut short after creating it.
    """
    stop_request.check()
    create_folder(folder)
    sweep_stale_temp(folder)
    prefix = f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-"
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
        out = tmpdir / db.name
        argv = ["-o", str(out), *args]
        if ls.caps.has_json:
            argv.insert(0, "-json")
        if on_step:
            on_step(f"downloading {db.name} from {', '.join(r.destination for r in db.replicas)}")
        try:
            what = f"litestream restore of {db.name}"
            result = stop_request.run(ls, "restore", *argv, str(db.path), timeout=timeout, what=what)
        except LitestreamError as exc:
            text = " ".join(exc.details)
            if _NO_BACKUP.search(text):
                at = next((args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("-")), None)
                raise NotFoundError(
                    f"the replica has no backup of {db.name}" + (f" matching {at}" if at else ""),
                    "check the replica settings (`backupctl env`) and that replication ran (`backupctl status`)",
                    details=exc.details,
                ) from None
            raise
        if on_step:
            on_step(f"checking the restored {db.name}")
        tables = check_database(out, count_rows=count_rows)
        stop_request.check()
        yield Staged(out, out.stat().st_size, _position(ls, result.stdout + "\n" + result.stderr), tables, result.seconds)
    finally:
        _remove_temp(folder, prefix)


def create_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents, each with the mode and owner of the nearest
    existing ancestor (a new machine: the app's storage folder follows the app's folder); below a
    sticky shared folder such as /tmp, without its sticky bit and nothing for others.
    Returns the folders created, outermost first."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    if not missing:
        return []
    model = current.stat()
    mode = stat.S_IMODE(model.st_mode)
    if mode & stat.S_ISVTX:
        mode &= 0o770
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        created.append(path)
        os.chmod(path, mode | stat.S_IRWXU)
        _chown_like(path, model)
    return created


def follow_folder(path: Path, folder: Path, replaced: Path | None = None) -> None:
    """Give a restored file the owner and mode of the file it replaces, if any; else the owner of
    ``folder`` and a mode derived from it: the folder's read and write bits (never execute), and no
    access for others in a sticky folder such as /tmp."""
    if replaced is not None:
        model = replaced.stat()
        os.chmod(path, stat.S_IMODE(model.st_mode))
        _chown_like(path, model)
        return
    model = folder.stat()
    mode = stat.S_IMODE(model.st_mode) & 0o666
    if model.st_mode & stat.S_ISVTX:
        mode &= 0o660
    os.chmod(path, mode | stat.S_IRUSR | stat.S_IWUSR)
    _chown_like(path, model)


def _chown_like(path: Path, model: os.stat_result) -> None:
    """Owner and group of ``model`` where this process may set them (root: both; others: a group
    they belong to); otherwise left as created."""
    uid = model.st_uid if os.geteuid() == 0 else -1
    try:
        os.chown(path, uid, model.st_gid)
    except OSError:
        pass


def _remove_temp(folder: Path, prefix: str) -> None:
    for entry in folder.glob(f"{glob_escape(prefix)}*"):
        shutil.rmtree(entry, ignore_errors=True)
        if entry.exists() or entry.is_symlink():  # something still wrote into it: once more
            shutil.rmtree(entry, ignore_errors=True)


def check_database(path: Path, *, count_rows: bool = False) -> list[dict[str, Any]] | None:
    """Non-empty, SQLite, ``PRAGMA integrity_check`` ok; with ``count_rows`` returns each table's
    name and row count (else None).

    The file is private to this restore and nothing writes it while it is checked, so SQLite reads
    it through a memory map: the check reads every page, and a 200 MB file is checked ~1/3 faster
    (and counted ~10x faster) than through read() calls into SQLite's page cache."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        size = -1
    if size <= 0:
        raise LitestreamError(
            f"litestream restore reported success but produced {'no file' if size < 0 else 'an empty file'}",
            "the replica may be empty or unreachable; `backupctl ltx`/`generations` lists what it holds",
        )
    with path.open("rb") as handle:
        if handle.read(16) != SQLITE_HEADER:
            raise LitestreamError("the restored file is not an SQLite database", "the replica may be damaged")
    try:
        con = sqlite3.connect(path, timeout=5)
        try:
            con.execute(f"PRAGMA mmap_size = {max(size, 1)}")
            rows = [r[0] for r in con.execute("PRAGMA integrity_check").fetchall()]
            if rows != ["ok"]:
                raise LitestreamError(
                    "the restored database fails PRAGMA integrity_check",
                    "the replica may be damaged; try an earlier --timestamp",
                    details=[str(r) for r in rows[:10]],
                )
            if not count_rows:
                return None
            names = [
                r[0]
                for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            tables = []
            for name in names:
                quoted = '"' + name.replace('"', '""') + '"'
                tables.append({"name": name, "rows": con.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0]})  # noqa: S608
            return tables
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise LitestreamError(f"the restored database does not open: {exc}", "the replica may be damaged") from None


def _position(ls: Litestream, output: str) -> dict[str, Any]:
    if ls.caps.has_json:
        start = output.find("{")
        if start >= 0:
            try:
                doc = json.loads(output[start : output.rfind("}") + 1])
                return {"txid": doc.get("txid"), "replica": doc.get("replica")}
            except ValueError:
                pass
        return {}
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


def mode_and_owner_source(out: Path, live: Path) -> Path:
    """Whose mode and owner a restored file takes: the file it replaces, else the live database
    (restoring a copy of it elsewhere), else the folder it lands in."""
    if out.is_file():
        return out
    if live.is_file():
        return live
    return out.parent


def take_mode_and_owner(path: Path, like: Path) -> None:
    """Give ``path`` the permission bits and owner of ``like`` (a folder: its bits minus execute).

    A `restore --force` run as root must not turn an app's `0600 app:app` database into a
    `0644 root` one the app cannot write and others can read. Changing the owner needs root (or
    the same owner); without it the mode is still copied."""
    st = os.stat(like)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        mode &= 0o666
    os.chmod(path, mode & 0o7777)
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(path, st.st_uid, st.st_gid)
        except PermissionError:
            pass
        os.chmod(path, mode & 0o7777)  # chown clears setuid/setgid bits


def _move_aside(files: list[Path], keep: Path) -> list[tuple[Path, Path]]:
    moved: list[tuple[Path, Path]] = []
    main = files[0].name if files else ""
    try:
        for f in files:
            suffix = f.name[len(main) :] if f.name.startswith(main) else ""
            target = Path(f"{keep}{suffix}")
            os.rename(f, target)
            moved.append((f, target))
    except BaseException:
        _move_back(moved)
        raise
    return moved


def _move_back(moved: list[tuple[Path, Path]]) -> None:
    for original, target in reversed(moved):
        try:
            os.rename(target, original)
        except OSError:
            pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def execute_restore(
    settings: Settings,
    binary_path: Path,
    plan: RestorePlan,
    *,
    timeout: float = RESTORE_TIMEOUT,
    on_step: Step | None = None,
) -> RestoreResult:
    """Carry out a plan: restore to a temp file, check it, move the old copy aside if any, rename."""
    started = time.monotonic()
    ls = litestream_for(settings, binary_path)
    out = plan.output
    kept: list[Path] = []
    created = create_folder(out.parent)
    try:
        args, counted = plan.restore_args(), plan.details
        with staged_restore(ls, plan.database, out.parent, args, timeout=timeout, on_step=on_step, count_rows=counted) as staged:
            stop_request.check()  # the last point where a stop leaves everything as it was
            follow_folder(staged.path, out.parent, out if out.is_file() and not out.is_symlink() else None)
            if on_step:
                on_step(f"moving the restored database to {out}")
            present = _present(out)
            # Before the rename, so the restored file is never visible with litestream's 0644 / our owner.
            take_mode_and_owner(staged.path, mode_and_owner_source(out, plan.database.path))
            moved: list[tuple[Path, Path]] = []
            if present:
                if occupied(out) and plan.keep_path is None:
                    raise RefusedError(
                        f"{out} appeared while restoring; not replacing it without --force",
                        "run the restore again",
                    )
                # Checked again right before the swap: the plan may be minutes old.
                check_not_in_use(plan.database if plan.live else None, out)
                moved = _move_aside(present, plan.keep_path or kept_path(out))
                kept = [target for _, target in moved]
            try:
                os.rename(staged.path, out)
            except BaseException:
                _move_back(moved)
                raise
            _fsync_dir(out.parent)
    except NotFoundError as exc:
        if plan.window is not None:
            exc.details.insert(0, f"restorable window: {plan.window.describe()}")
        raise
    return RestoreResult(
        database=plan.database,
        output=out,
        size=staged.size,
        position=staged.position,
        point_in_time=plan.point_in_time(),
        tables=staged.tables,
        seconds=time.monotonic() - started,
        kept=kept,
        source=plan.source,
        notes=plan.notes,
        state_at=_state_at(plan) or _state_after(settings, binary_path, plan),
        created_folders=created,
    )


def _state_at(plan: RestorePlan) -> str | None:
    """When the restored state was written: the point asked for, else the newest backup listed."""
    if plan.timestamp:
        return plan.timestamp
    if plan.txid is None and plan.generation is None and plan.window is not None and plan.window.end is not None:
        return to_rfc3339(plan.window.end)
    return None


def _state_after(settings: Settings, binary_path: Path, plan: RestorePlan) -> str | None:
    """Litestream 0.3 lists a replica only once the database file exists: on a new machine the
    window is read after the restore put it in place (only for a plan that wants the details)."""
    if not plan.details or plan.window is not None or plan.txid or plan.generation or not plan.database.path.exists():
        return None
    window = _window_or_none(settings, binary_path, plan.database)
    return to_rfc3339(window.end) if window is not None and window.end is not None else None


def restore_database(
    settings: Settings,
    binary_path: Path,
    db: Database,
    output: Path | None = None,
    *,
    timestamp: str | None = None,
    txid: str | None = None,
    generation: str | None = None,
    force: bool = False,
    timeout: float = RESTORE_TIMEOUT,
    on_step: Step | None = None,
    details: bool = False,
) -> RestoreResult:
    """Plan and carry out one restore (see the module docstring for the guarantees)."""
    plan = plan_restore(
        settings, binary_path, db, output, timestamp=timestamp, txid=txid, generation=generation, force=force, details=details
    )
    return execute_restore(settings, binary_path, plan, timeout=timeout, on_step=on_step)


def restore_if_missing(
    settings: Settings, binary_path: Path, db: Database, *, timeout: float = RESTORE_TIMEOUT
) -> RestoreResult | None:
    """For `start --restore-if-missing`: restore into place only when no database is there and
    the replica has a backup. Returns what was restored, or None when nothing was done.
    Never touches an existing database; raises on a real failure (unreachable replica, bad backup).
    """
    if occupied(db.path):
        return None
    # The supervisor logs the restore with its state time and row counts (docs/supervision.md).
    plan = plan_restore(settings, binary_path, db, db.path, details=True)
    try:
        result = execute_restore(settings, binary_path, plan, timeout=timeout)
    except NotFoundError:
        return None
    return result
