"""Recovery drill: restore every database from its replica, check it, and measure RPO and RTO.

A drill answers "if this machine died now, what would we get back, and how fast": every
database is restored through backupctl.restore's staged restore into a private temp folder under the
system temp dir (``TMPDIR``), checked (SQLite header, ``PRAGMA integrity_check``), its tables
counted and compared with the live database where one exists, then removed. Nothing is written
near the live databases and nothing is left behind (a drill killed with SIGKILL leaves a
``.backupctl-restore-<pid>-*`` folder that the next restore or drill sweeps).

- **RTO** (recovery time) is the wall time of the restores and their checks, all databases.
- **RPO** (recovery point) is the age of the newest restorable state: now minus the newest
  backup the replica lists (the oldest such age over all databases). Litestream 0.3 lists a
  replica only for a database file that exists, so with no live database its RPO is unknown.

Row counts: a table the live database has and the restored copy lacks, or a different count,
fails the drill when the live database has not been written since the newest backup (then the
replica should hold exactly what the live database holds). When it has been written since, the
difference is expected (writes not yet replicated) and is reported, not failed.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from backupctl.checks.continuity import prove
from backupctl.config.settings import Database, Settings
from backupctl.errors import BackupctlError, ExitCode
from backupctl.host import state
from backupctl.litestream.adapter import restorable_window
from backupctl.litestream.listings import iso
from backupctl.litestream.runner import Litestream
from backupctl.redact import scrub
from backupctl.restore import RESTORE_TIMEOUT, litestream_for, staged_restore, stop_request


class DrillResult(StrEnum):
    PASSED = "passed"
    FAILED = "failed"


PASSED, FAILED = DrillResult
# Litestream's own bookkeeping tables (0.3) differ between the live database and a restore.
INTERNAL_TABLE_PREFIX = "_litestream"

Step = Callable[[str], None]


class DrillStopped(BackupctlError):
    """The drill was asked to stop (SIGTERM in the supervisor's drill process)."""

    exit_code = ExitCode.TERMINATED
    kind = "terminated"


@dataclass
class DatabaseDrill:
    """One database's part of a drill."""

    name: str
    path: str
    status: str
    reason: str
    size: int | None = None
    restore_seconds: float | None = None
    state_at: str | None = None  # RFC 3339: the newest restorable state
    rpo_seconds: float | None = None
    tables: list[dict[str, Any]] = field(default_factory=list)  # name, rows, live_rows
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "database": self.path,
            "status": self.status,
            "reason": self.reason,
            "integrity": "ok" if self.size is not None else None,
            "size": self.size,
            "restore_seconds": _round(self.restore_seconds),
            "state_at": self.state_at,
            "rpo_seconds": _round(self.rpo_seconds),
            "tables": self.tables,
            "notes": self.notes,
        }


@dataclass
class DrillResult:
    """A whole drill: ``status`` is failed when any database failed."""

    status: str
    checked_at: float  # epoch seconds
    rto_seconds: float
    rpo_seconds: float | None
    databases: list[DatabaseDrill]

    @property
    def exit_code(self) -> int:
        return ExitCode.OK if self.status == PASSED else ExitCode.DRILL_FAILED

    @property
    def size(self) -> int:
        return sum(d.size or 0 for d in self.databases)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "checked_at": round(self.checked_at, 3),
            "rto_seconds": _round(self.rto_seconds),
            "rpo_seconds": _round(self.rpo_seconds),
            "size": self.size,
            "databases": [d.to_json() for d in self.databases],
        }

    def summary(self) -> str:
        rpo = f"{self.rpo_seconds:.0f}s" if self.rpo_seconds is not None else "unknown"
        failed = [d.name for d in self.databases if d.status == FAILED]
        head = f"drill {self.status}" + (f" ({', '.join(failed)})" if failed else "")
        return f"{head}: RTO {self.rto_seconds:.2f}s for {len(self.databases)} database(s), RPO {rpo}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def run_drill(
    settings: Settings,
    binary_path: Path,
    *,
    litestream: Litestream | None = None,
    timeout: float | None = None,
    on_step: Step | None = None,
) -> DrillResult:
    """Drill every configured database (see the module docstring). Never raises for a database
    that fails to restore or check: that database is ``failed`` with the reason. Raises only
    for a stop request (DrillStopped / the CLI's interruption)."""

    ls = litestream or litestream_for(settings, binary_path)
    checked_at = time.time()
    results: list[DatabaseDrill] = []
    rto = 0.0
    for db in settings.databases:
        result = _drill_one(settings, binary_path, ls, db, timeout or RESTORE_TIMEOUT, on_step, checked_at)
        rto += result.restore_seconds or 0.0
        results.append(result)
    ages = [d.rpo_seconds for d in results if d.rpo_seconds is not None]
    return DrillResult(
        status=FAILED if any(d.status == FAILED for d in results) else PASSED,
        checked_at=checked_at,
        rto_seconds=rto,
        rpo_seconds=max(ages) if ages else None,
        databases=results,
    )


def _drill_one(
    settings: Settings, binary_path: Path, ls: Litestream, db: Database, timeout: float, on_step: Step | None, now: float
) -> DatabaseDrill:

    drill = DatabaseDrill(db.name, str(db.path), FAILED, "")
    newest: float | None = None
    try:
        if on_step:
            on_step(f"listing the replica of {db.name}")
        window = restorable_window(settings, binary_path, db, config_path=ls.config_path)
        if window.newest is not None:
            newest = window.newest.timestamp()
            drill.state_at = iso(window.newest)
            drill.rpo_seconds = max(0.0, now - newest)
    except BackupctlError as exc:
        stop_request.check()
        if db.path.exists() or ls.caps.lists_missing_database:
            drill.notes.append(f"cannot list the replica: {scrub(exc.message, settings)}")
        else:
            drill.notes.append("Litestream 0.3 lists a replica only for an existing database file: RPO unknown")


    started = time.monotonic()
    try:
        folder = Path(tempfile.gettempdir())  # the row counts are compared with the live database's
        with staged_restore(ls, db, folder, [], timeout=timeout, on_step=on_step, count_rows=True) as staged:
            drill.restore_seconds = time.monotonic() - started
            drill.size = staged.size
            drill.tables = [dict(t) for t in staged.tables or [] if not t["name"].startswith(INTERNAL_TABLE_PREFIX)]
    except BackupctlError as exc:
        stop_request.check()  # a stop is not a failed drill: let it end the drill
        drill.restore_seconds = time.monotonic() - started
        cause = exc.details[-1].strip() if exc.details else ""
        drill.reason = scrub(exc.message + (f": {cause}" if cause and cause not in exc.message else ""), settings)
        drill.notes.extend(scrub(d, settings) for d in exc.details[-5:-1])
        return drill
    drill.status, drill.reason = _compare(db.path, drill, lambda: _prove(ls, db, folder))
    return drill


def _prove(ls: Litestream, db: Database, folder: Path) -> Any:
    return prove(ls, db, folder)


def _compare(live: Path, drill: DatabaseDrill, prove: Callable[[], Any]) -> tuple[str, str]:
    """Compare the restored tables with the live database's (where one exists)."""
    counts = live_counts(live)
    if counts is None:
        return PASSED, "restored and checked (integrity ok); no live database to compare with"
    restored = {t["name"]: t["rows"] for t in drill.tables}
    for table in drill.tables:
        table["live_rows"] = counts.get(table["name"])
    differ = sorted(name for name, rows in counts.items() if restored.get(name) != rows)
    if not differ:
        proof = prove()
        if proof.verdict == "broken":
            return FAILED, f"the replica is NOT whole: {proof.reason}"
        matched = f"restored and checked (integrity ok); {len(counts)} table(s) match the live database"
        if proof.verdict == "whole":
            return PASSED, f"{matched}, and the replica equals it page for page"
        return PASSED, f"{matched} by row count (not proven page for page: {proof.reason})"
    listed = ", ".join(f"{n} ({restored.get(n, 'missing')} restored, {counts[n]} live)" for n in differ[:5])
    # Newer live writes, or rows the replica lost? File times cannot tell (litestream's own
    # checkpoint touches the file): the continuity check compares the replica's newest state with
    # the live database's committed states, page for page.
    proof = prove()
    drill.notes.append(f"differs from the live database: {listed}; continuity: {proof.verdict} ({proof.reason})")
    if proof.verdict == "whole":
        return (
            PASSED,
            "restored and checked (integrity ok); the live database has newer writes, and the replica "
            "equals it at a committed transaction, page for page",
        )
    if proof.verdict == "broken":
        return FAILED, f"the replica is NOT whole: {proof.reason}"
    return FAILED, f"the restored copy differs from the live database, and the replica could not be proven whole: {proof.reason}"


def live_counts(path: Path) -> dict[str, int] | None:
    """Row counts per table of the live database (read-only), or None if there is none."""
    if not path.is_file():
        return None
    try:
        con = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        names = [
            r[0]
            for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            if not r[0].startswith(INTERNAL_TABLE_PREFIX)
        ]
        return {n: con.execute(f'SELECT count(*) FROM "{n.replace(chr(34), chr(34) * 2)}"').fetchone()[0] for n in names}  # noqa: S608
    except sqlite3.Error:
        return None
    finally:
        con.close()


# --- state and schedule ------------------------------------------------------------------------


def record(state_dir: Path, result: DrillResult) -> None:
    """Keep the last drill's result in the project state folder (``drill.json``)."""

    state.record_drill(state_dir, result.to_json())


def scheduled_drill(settings: Settings, litestream: Litestream, state_dir: Path, log: Step) -> DrillResult | None:
    """The supervisor's periodic drill (BACKUP_DRILL_INTERVAL), run in its forked child process.

    SIGTERM (the supervisor stopping) asks the drill to stop at its next safe point, so its temp
    folder is removed; the result is logged and recorded either way. Never raises.
    """
    import signal


    stop_request.reset()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop_request.request(DrillStopped("drill stopped", "")))
    try:
        result = run_drill(settings, litestream.binary, litestream=litestream)
    except DrillStopped:
        log("backupctl: drill stopped with the supervisor")
        return None
    except Exception as exc:  # a drill must never take replication down
        message = scrub(getattr(exc, "message", None) or str(exc) or type(exc).__name__, settings)
        log(f"backupctl: drill failed: {message}")
        record(state_dir, DrillResult(FAILED, time.time(), 0.0, None, [DatabaseDrill("*", "*", FAILED, message)]))
        return None
    log(f"backupctl: {result.summary()}")
    for d in result.databases:
        if d.status == FAILED:
            log(f"backupctl:   {d.name}: {d.reason}")
    record(state_dir, result)
    return result
