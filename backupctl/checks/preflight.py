"""Fast checks before litestream runs: a second of looking instead of minutes of waiting.

Litestream waits forever for a database that does not exist, keeps running while it logs
`file is not a database`, and retries an unreachable S3 endpoint quietly for about two
minutes. `setup` and `start` ask these checks first, so those mistakes fail in seconds with
their real cause.

Only what is cheap is checked: the database file (exists, is SQLite, journal mode from its
header without opening a connection), a local-folder replica's folder (doctor's write probe),
and an S3/R2/sftp endpoint's TCP port (a short connect timeout). `start` also runs doctor's probe
of an S3/R2 replica (list, write, read and delete one small object: about a second): wrong
credentials fail in that second with doctor's one-line diagnosis, where litestream would retry
for half a minute and log a `SignatureDoesNotMatch` line each time. `backupctl doctor` does the
thorough checks.

:func:`run` is what `setup` and `start` call: the checks, their notes passed on, their problems
raised as one error. :func:`check` returns them all, for callers that weigh them themselves.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from backupctl.config.replica_views import settings_for
from backupctl.config.secondary import said_of
from backupctl.config.settings import Database, Replica, Settings
from backupctl.errors import BackupctlError, ConfigError, LitestreamError
from backupctl.filekinds import kind_of
from backupctl.findings import FAIL
from backupctl.kinds.file import check_replica_folder
from backupctl.kinds.s3 import S3Kind
from backupctl.redact import cleaner

SQLITE_MAGIC = b"SQLite format 3\x00"
CONNECT_TIMEOUT = 3.0  # seconds: a reachable endpoint answers a TCP connect in milliseconds

# What a database file turned out to be.
DB_OK, DB_MISSING, DB_EMPTY, DB_UNREADABLE, DB_NOT_SQLITE = "ok", "missing", "empty", "unreadable", "not-sqlite"


@dataclass(frozen=True)
class DatabaseFile:
    """What is at a database path, read from its first 100 bytes (no SQLite connection, no lock)."""

    path: Path
    kind: str  # DB_OK, DB_MISSING, DB_EMPTY, DB_UNREADABLE, DB_NOT_SQLITE
    size: int = 0
    wal_mode: bool = False  # header bytes 18/19 are 2 in WAL mode, 1 with a rollback journal
    error: str | None = None  # strerror when unreadable


def read_database_file(path: Path) -> DatabaseFile:
    """Classify the file at ``path`` from its header, without opening it as a database.

    Only a regular file is opened: a FIFO would block the open until a writer came, and a device
    (/dev/zero) is no database. The settings refuse both; a file swapped for one since is caught here
    by stat first, and by a non-blocking open checked again with fstat."""
    try:
        what = kind_of(os.stat(path).st_mode)
        if what is not None:
            return DatabaseFile(path, DB_NOT_SQLITE, error=f"it is {what}")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            what = kind_of(os.fstat(fd).st_mode)
            if what is not None:
                return DatabaseFile(path, DB_NOT_SQLITE, error=f"it is {what}")
            header = handle.read(100)
            size = handle.seek(0, 2)
    except FileNotFoundError:
        return DatabaseFile(path, DB_MISSING)
    except OSError as exc:
        return DatabaseFile(path, DB_UNREADABLE, error=exc.strerror or str(exc))
    if size == 0:
        return DatabaseFile(path, DB_EMPTY)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        return DatabaseFile(path, DB_NOT_SQLITE, size=size)
    return DatabaseFile(path, DB_OK, size=size, wal_mode=header[18] == 2 and header[19] == 2)


@dataclass(frozen=True)
class Problem:
    """One reason litestream would not replicate. ``unreachable`` problems exit 5, the rest 3."""

    subject: str
    what: str
    fix: str
    unreachable: bool = False

    def line(self) -> str:
        return f"{self.subject}: {self.what}; {self.fix}"


@dataclass
class Preflight:
    """Problems (litestream would fail or wait forever) and notes (worth saying, not stopping for)."""

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    waiting_for: list[Path] = field(default_factory=list)  # databases that do not exist yet

    def error(self) -> BackupctlError | None:
        """One error naming every problem, or None. Config problems win over an unreachable replica."""
        if not self.problems:
            return None
        lines = [p.line() for p in self.problems]
        count = f"{len(lines)} problem{'s' if len(lines) > 1 else ''}"
        if all(p.unreachable for p in self.problems):
            return LitestreamError(
                f"the replica cannot be reached ({count} found before starting litestream)",
                "check the endpoint and the network (`backupctl doctor` probes the replica in full)",
                details=lines,
            )
        return ConfigError(
            f"litestream would not replicate ({count} found before starting it)",
            "fix what is named above, then run the command again (`backupctl doctor` checks more)",
            details=lines,
        )


def check(
    settings: Settings,
    *,
    missing_database: str = "note",
    restore_if_missing: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
    credentials: bool = False,
) -> Preflight:
    """Check every database and replica of ``settings``, cheaply.

    ``missing_database``: ``"note"`` (an app may create it on first boot: say we wait for it)
    or ``"error"`` (a background start would wait for a first snapshot that never comes).
    With ``restore_if_missing`` a missing database is expected: it is restored before replicating.
    ``credentials``: a reachable S3/R2 replica is also probed with its credentials (doctor's probe).
    """
    result = Preflight()
    for db in settings.databases:
        _check_database(db, result, missing_database, restore_if_missing)
    seen: set[str] = set()
    for db in settings.databases:
        for replica in db.replicas:
            key = _endpoint_key(replica)
            if key in seen:
                continue
            seen.add(key)
            problem = check_replica(replica, connect_timeout)
            if problem is None and credentials:
                problem = check_credentials(settings, replica)
            if problem is not None:  # the secondary's in its own variables' names
                result.problems.append(replace(problem, what=said_of(replica, problem.what), fix=said_of(replica, problem.fix)))
    return result


def run(
    settings: Settings,
    *,
    missing_database: str,
    note: Callable[[str], None],
    restore_if_missing: bool = False,
    unreachable_is_error: bool = True,
    credentials: bool = False,
) -> None:
    """The fast checks before litestream runs: raise their error, pass their notes to ``note``.

    ``unreachable_is_error=False`` (setup) reports an unreachable replica as a note: the file is
    still right, and a build machine may have no network; start fails on it.
    """
    found = check(settings, missing_database=missing_database, restore_if_missing=restore_if_missing, credentials=credentials)
    if not unreachable_is_error:
        for problem in [p for p in found.problems if p.unreachable]:
            found.problems.remove(problem)
            found.notes.append(f"{problem.line()} (start fails until it is reachable)")
    error = found.error()
    if error is not None:
        raise error
    for line in found.notes:
        note(line)


def _check_database(db: Database, result: Preflight, missing_database: str, restore_if_missing: bool) -> None:
    found = read_database_file(db.path)
    subject = str(db.path)
    if found.kind == DB_MISSING:
        if restore_if_missing:
            result.notes.append(f"{db.name} does not exist: it will be restored from the replica first")
            return
        if missing_database == "error":
            result.problems.append(
                Problem(
                    subject,
                    "no such file, so there is nothing to back up yet (litestream would wait for it to be created)",
                    "check BACKUP_DATABASES for a typo; if the application creates it on first boot, start the "
                    "application first; to restore it from the replica, pass --restore-if-missing",
                )
            )
            return
        result.waiting_for.append(db.path)
        result.notes.append(
            f"waiting for {db.name} to be created ({db.path} does not exist yet; litestream starts replicating "
            "it once the application creates it). If that path is a typo, fix BACKUP_DATABASES; to restore it "
            "from the replica instead, pass --restore-if-missing"
        )
    elif found.kind == DB_EMPTY:
        result.notes.append(f"{db.name} is empty: litestream replicates it once the application writes to it")
    elif found.kind == DB_UNREADABLE:
        result.problems.append(Problem(subject, f"cannot read it: {found.error}", "give this user read and write access"))
    elif found.kind == DB_NOT_SQLITE:
        why = found.error or "no SQLite header"
        result.problems.append(
            Problem(
                subject,
                f"is not an SQLite database ({why}); litestream would log 'file is not a database' forever",
                "point BACKUP_DATABASES at the SQLite file itself",
            )
        )
    elif not found.wal_mode:
        result.notes.append(
            f"{db.name} uses a rollback journal: litestream switches it to WAL mode when it starts, for good "
            "(the application keeps working; WAL is what litestream replicates)"
        )


def _endpoint_key(replica: Replica) -> str:
    # The secondary's own key: on one endpoint beside the primary it still has its own bucket and credentials.
    name = f"|{replica.name}" if replica.name else ""
    return replica.destination if replica.spec.local_folder else f"{replica.kind}|{replica.endpoint}|{replica.sftp_host}{name}"


def endpoint_address(replica: Replica) -> tuple[str, int] | None:
    """The (host, port) a network replica connects to; None when there is no endpoint to probe here."""
    return replica.spec.address(replica)


def check_replica(replica: Replica, connect_timeout: float = CONNECT_TIMEOUT) -> Problem | None:
    """A local folder: writable (doctor's probe). S3/R2/sftp: the endpoint's TCP port accepts a connection."""
    if replica.spec.local_folder:
        probe = check_replica_folder(replica)
        if probe.status == FAIL:
            return Problem(replica.destination, probe.found, probe.fix or "change BACKUP_LOCAL_DIR")
        return None
    address = endpoint_address(replica)
    if address is None:
        return None
    reason = tcp_connect_error(address, connect_timeout)
    if reason is None:
        return None
    host, port = address
    return Problem(
        replica.destination,
        f"cannot connect to {host}:{port}: {reason}",
        "check BACKUP_ENDPOINT (host and port) and that the server is up and reachable from here",
        unreachable=True,
    )


def check_credentials(settings: Settings, replica: Replica) -> Problem | None:
    """Doctor's probe of an S3/R2 replica, as a Problem when it fails (a WARN, such as a missing
    library, is left to doctor). Other kinds: None (litestream's own errors tell)."""

    if not isinstance(replica.spec, S3Kind):
        return None
    found = replica.spec.probe(settings_for(settings, replica), replica, [], cleaner(settings))
    if found.status != FAIL:
        return None
    return Problem(replica.destination, found.found, found.fix or "run `backupctl doctor` for the details")


def tcp_connect_error(address: tuple[str, int], timeout: float) -> str | None:
    """None when ``address`` accepts a TCP connection within ``timeout``; else the reason, in words."""
    try:
        with socket.create_connection(address, timeout=timeout):
            return None
    except TimeoutError:
        return f"no answer within {timeout:g}s (connect timeout)"
    except socket.gaierror as exc:
        return f"cannot resolve the host name ({exc.strerror})"
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return "connection refused"
        return (exc.strerror or str(exc)).lower()


def litestream_errors(log_lines: Iterable[str]) -> list[str]:
    """litestream's own ERROR lines among supervisor log lines (``... litestream: ERROR msg (error=...)``):
    what a failed background start should show first, rather than backupctl's restart lines."""
    found = []
    for line in log_lines:
        _, sep, rest = line.partition("litestream: ERROR ")
        if sep:
            found.append(rest.strip())
    return found
