"""Starting litestream and confirming it: what happens before the supervisor's first spawn, and
whether every replica holds its database's position (the one test of a start, a restart and a
final sync).

Before the start: the private copy of the config (``private_config``), and with
``--restore-if-missing`` a missing database restored from its replica (``restore_missing_database``).
After it: an idle database logs nothing, and 0.5.17 stopped before its first snapshot exits 0
with an empty replica, so neither log lines nor timing can confirm anything: ``Coverage`` reads
positions through litestream (``backupctl.litestream.positions``) and compares them. ``position_check``
replaces the reading in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backupctl.config import replica_views
from backupctl.config.settings import Database, Settings
from backupctl.errors import BackupctlError, LitestreamError
from backupctl.host import state
from backupctl.host.config_in_use import config_for_reading
from backupctl.litestream import adapter, positions
from backupctl.litestream.runner import Litestream
from backupctl.owned import write_atomic
from backupctl.redact import scrub
from backupctl.supervise.child import ChildRun, describe_exit

Log = Callable[[str], None]

POSITION_TIMEOUT = 10.0  # one position reading (a litestream listing) while supervising


@dataclass
class Coverage:
    """Reads local and replica positions for the supervisor; says each reading error once."""

    settings: Settings
    litestream: Litestream
    log: Log
    # Which databases' replicas cover their local position now (paths as str). Injectable for tests.
    position_check: Callable[[list[Database]], set[str]] | None = None
    _last_error: str | None = field(default=None, init=False)

    def local_positions(self, databases: list[Database]) -> dict[str, positions.LocalPosition]:
        """What litestream has of each database now (empty when it cannot say, or in tests)."""
        if self.position_check is not None or not databases:
            return {}
        try:
            return adapter.local_positions(self.litestream, databases, timeout=POSITION_TIMEOUT, shipped_only=True)
        except BackupctlError as exc:
            self._error(exc)
            return {}

    def covered(
        self,
        databases: list[Database],
        targets: dict[str, positions.LocalPosition] | None = None,
        *,
        unreadable_fails: bool = False,
    ) -> set[str]:
        """The databases (paths as str) whose replica holds their local position: the one in ``targets``
        when litestream had one for it, else the one it has now (a database it never replicated).

        Several replicas (the secondary) are read one by one: each one that can be read must hold the
        position, and one at least, so a start is confirmed through an outage of the other (litestream
        writes the replica it reaches). ``unreadable_fails`` (a final sync): every replica must be read."""
        if not databases:
            return set()
        if self.position_check is not None:
            return self.position_check(databases)
        series = adapter.series_of(self.litestream.caps.version)
        wanted = {k: v for k, v in (targets or {}).items() if v.initialized}
        if series.needs_current_marks() and wanted:
            now_local = self.local_positions([db for db in databases if str(db.path) in wanted])
            wanted = series.confirming_marks(wanted, now_local)
        fresh = [db for db in databases if str(db.path) not in wanted]
        local = {**self.local_positions(fresh), **wanted} if fresh else wanted
        covered: set[str] = set()
        readable = [db for db in databases if str(db.path) in local]
        if replica_views.several(self.settings):
            held, errors = self._covered_by_each(readable, local, unreadable_fails)
            for error in errors:
                self._error(error)
            return held
        for path, replica in adapter.read_replicas(self.litestream, readable, timeout=POSITION_TIMEOUT).items():
            if isinstance(replica, BackupctlError):
                self._error(replica)
            elif isinstance(replica, positions.ReplicaPosition) and series.covers(replica, local[path]):
                covered.add(path)
        return covered

    def _covered_by_each(
        self, databases: list[Database], local: dict[str, positions.LocalPosition], unreadable_fails: bool
    ) -> tuple[set[str], list[BackupctlError]]:
        """The databases (paths as str) each of whose replicas holds its ``local`` position, read one
        replica at a time through its view (a reading of them together fails whole when one cannot be
        read). A replica that cannot be read is passed over, as long as another one holds the position,
        unless ``unreadable_fails``; the errors of those readings come back to be said."""
        readings: dict[str, list[positions.ReplicaPosition | BackupctlError]] = {str(db.path): [] for db in databases}
        for name in replica_views.names(self.settings):
            narrowed = replica_views.view(self.settings, name)
            ones = [db for db in narrowed.databases if str(db.path) in readings]
            runner = Litestream(self.litestream.binary, narrowed, config_for_reading(narrowed))
            for path, reading in adapter.read_replicas(runner, ones, timeout=POSITION_TIMEOUT).items():
                readings[path].append(reading)
        series = adapter.series_of(self.litestream.caps.version)
        held: set[str] = set()
        errors: list[BackupctlError] = []
        for path, found in readings.items():
            read = [r for r in found if isinstance(r, positions.ReplicaPosition)]
            errors += [r for r in found if isinstance(r, BackupctlError)]
            enough = bool(read) and (len(read) == len(found) or not unreadable_fails)
            if enough and all(series.covers(r, local[path]) for r in read):
                held.add(path)
        return held, errors

    def replicas_empty(self, databases: set[str]) -> bool:
        """True only when some replica is really empty (so "NO backup yet" is the truth)."""
        if not databases or self.position_check is not None:
            return False
        wanted = [db for db in self.settings.databases if str(db.path) in databases]
        readings = adapter.read_replicas(self.litestream, wanted, timeout=POSITION_TIMEOUT).values()
        return any(isinstance(r, positions.ReplicaPosition) and r.empty for r in readings)

    def final_sync(self, run: ChildRun, returncode: int) -> bool:
        """Did litestream's final sync complete? Judged by position after it exited, and said in the log."""
        clean = returncode == 0 and not run.killed and not run.sync_skipped and run.term_sent_at is not None
        # 0.5.17 stopped before its first snapshot exits 0 with an empty replica; an error while
        # stopping may or may not have lost data: only the replica's position tells.
        every = list(self.settings.databases)
        uncovered = {str(db.path) for db in every} - self.covered(every, unreadable_fails=True)
        done = clean and not uncovered
        code = describe_exit(returncode)
        if done:
            self.log("backupctl: litestream stopped; final sync completed: the replica holds every database's position")
        elif self.replicas_empty(uncovered):
            self.log(
                f"backupctl: litestream stopped (code {code}) before its first snapshot "
                "reached the replica: there is NO backup yet; start again and let it confirm"
            )
        else:
            self.log(
                f"backupctl: litestream stopped (code {code}"
                + (f", {run.errors_after_term} error(s) while stopping" if run.errors_after_term else "")
                + ("; killed after the stop timeout" if run.killed else "")
                + ("; litestream skipped its shutdown sync" if run.sync_skipped else "")
                + "); the final sync was NOT confirmed: the replica holds an earlier backup, "
                + "the newest writes may be missing from it"
                + (f" ({', '.join(sorted(Path(p).name for p in uncovered))})" if uncovered else "")
            )
        return done

    def _error(self, exc: BackupctlError) -> None:
        text = scrub(exc.message, self.settings)
        if text != self._last_error:
            self._last_error = text
            self.log(f"backupctl: cannot read the replica's position yet: {text}")


def private_config(source: Path, state_dir: Path) -> Path:
    """A copy of the config taken now (mode 0600), what litestream runs with: a later `setup`, or a
    changed .env or template, never alters what this supervisor replicates (status says so)."""

    private = state_dir / state.PRIVATE_CONFIG
    try:
        text = source.read_text("utf-8")
    except OSError as exc:
        raise LitestreamError(f"cannot read {source}: {exc.strerror}", "check its permissions") from None
    write_atomic(private, text)
    return private


def restore_missing_database(
    settings: Settings, litestream: Litestream, db: Database, log: Log, report: Log | None = None
) -> bool:
    """Restore a missing database from its replica before replication starts. Never over an existing file.

    Returns True when it restored. With no backup in the replica, nothing happens (a fresh start).
    """
    if db.path.exists():
        return False
    log(f"backupctl: {db.path} is missing; restoring it from the replica if it has a backup")
    # lazy: only `start --restore-if-missing` restores; a supervisor keeps every module it imports
    from backupctl.restore import restore_if_missing

    restored = restore_if_missing(settings, litestream.binary, db)
    if restored is None:
        log(f"backupctl: no backup of {db.path} in the replica (or the database appeared meanwhile); starting fresh")
        return False
    log(f"backupctl: {restored.summary()}")
    if report is not None:
        report(restored.summary())
    return True
