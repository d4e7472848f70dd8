"""Verdicts: is every database safely backed up right now, and how far back can it be restored.

Per database the verdict is one of:

- ``ok``: the replica holds everything the local database has (or is behind by less than
  the stale threshold), and replication is running;
- ``stale``: the replica has been behind the local database for longer than the stale
  threshold, or could not be read for longer than that;
- ``down``: the supervisor is not running (stopped, fatal, crashed, backing off), or the
  running one does not replicate this database (added to the settings after it started);
- ``not-initialized``: litestream has never replicated this database;
- ``error``: the database is missing, litestream reports an error for it, or the replica
  cannot be read and no earlier reading exists;
- ``broken``: the last continuity check (``backupctl.checks.continuity``) found the replica's newest
  state equal to no committed state of the live database: committed writes are missing from it.
  The supervisor heals it with a fresh snapshot; the verdict stays until a check proves it whole.

"Behind" also covers a litestream that makes no progress: the live ``-wal`` written after the
replica's newest backup (``unshipped_since``). Past ``observations.stall_after`` that is ``stale``
at once, naming litestream's last error, whatever the stale threshold: a hung litestream's own
position stops with it, so only the live file shows it.

"Stale" is about the replica being *behind the local database*, not about its age: an idle
database produces no new backup files and stays ``ok``. Positions and "does the replica
cover the local position" come from ``backupctl.litestream.positions`` (the same answer the supervisor
uses to confirm a start). Since when the replica has been behind is remembered in
``status.json`` in the project's state folder across calls, so a monitor calling `status`
repeatedly sees "behind since" grow even while the database keeps being written.

The default threshold is ``max(3 x sync interval + 30s, 60s)``: three missed syncs plus
time for a slow upload, and never under a minute. ``BACKUP_STALE_AFTER`` overrides it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from backupctl.checks import observations
from backupctl.checks.continuity import records as continuity_records
from backupctl.checks.observations import local_position, record
from backupctl.checks.published_status import reading_current
from backupctl.checks.verdicts import epoch_iso, judge, local_files
from backupctl.config import replica_views
from backupctl.config.render import fingerprint
from backupctl.config.settings import Database, Settings, parse_duration
from backupctl.errors import VERDICT_EXIT, BackupctlError, ExitCode, worst_exit
from backupctl.host import processes, state
from backupctl.host.liveness import exited
from backupctl.litestream import listings, positions
from backupctl.litestream.adapter import local_positions, restorable_windows, series_of
from backupctl.litestream.runner import Litestream
from backupctl.litestream.series import Series
from backupctl.owned import read_json, write_json
from backupctl.paths import project_state_dir

STATUS_CACHE = "status.json"


def _shallow(item: DatabaseStatus) -> dict[str, Any]:
    """A DatabaseStatus as a JSON object: its fields as they are (``asdict`` deep-copies each one,
    which was a fifth of `status --json` at 1,000 databases). ``replicas`` only where there are several."""
    doc = {name: getattr(item, name) for name in _DATABASE_FIELDS}
    if item.replicas is None:
        del doc["replicas"]
    return doc


def stale_after_seconds(settings: Settings) -> float:
    """The stale threshold in seconds: BACKUP_STALE_AFTER, else max(3 x sync + 30s, 60s)."""
    if settings.stale_after:
        return parse_duration(settings.stale_after)
    return max(3 * settings.sync_seconds + 30.0, 60.0)


@dataclass
class SupervisorInfo:
    state: str  # starting running backoff fatal stopping stopped
    running: bool
    pid: int | None
    litestream_pid: int | None
    uptime_seconds: float | None
    restarts: int
    last_error: str | None
    mode: str | None = None  # foreground or background
    manager: str | None = None  # the service manager running a foreground supervisor
    databases: list[str] = field(default_factory=list)  # what it replicates
    settings_changed: str | None = None  # the .env or templates differ from what it runs


@dataclass
class DatabaseStatus:
    name: str
    path: str
    verdict: str
    reason: str
    destinations: list[str]
    size: int | None
    wal_size: int | None
    local_position: str | None  # 0.5: txid (16 hex digits); 0.3: generation
    local_updated_at: str | None  # last write to the database or its -wal
    replica_position: str | None  # 0.5: newest txid in the replica; 0.3: newest generation
    newest_backup: str | None
    newest_backup_age_seconds: float | None
    behind: bool | None
    behind_since: str | None
    lag_seconds: float | None  # how long the replica has been behind (0 when caught up)
    lag_txids: int | None  # 0.5 only
    oldest_restorable: str | None
    newest_snapshot: str | None
    snapshot_count: int | None
    replica_error: str | None
    replica_read_at: str | None  # when the replica position shown was read
    last_verify: dict[str, Any] | None
    observed_at: str | None = None  # set when the verdict comes from the supervisor's look at that time
    # A database with several replicas (backupctl.config.replica_views): each replica's verdict; the fields above
    # are then its worst replica's. None (and not in --json) with one replica.
    replicas: list[dict[str, Any]] | None = None


@dataclass
class StatusReport:
    checked_at: str
    litestream_version: str
    stale_after_seconds: float
    supervisor: SupervisorInfo
    databases: list[DatabaseStatus] = field(default_factory=list)
    source: str = "live"  # live (read now) or supervisor (its observations)
    observed_at: str | None = None  # the supervisor's look the verdicts come from

    @property
    def exit_code(self) -> int:
        """12 if any error, else 11 if any down/not-initialized, else 10 if any stale, else 0."""
        if not self.supervisor.running and not self.databases:
            return ExitCode.STATUS_DOWN
        return worst_exit([VERDICT_EXIT[d.verdict] for d in self.databases])

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == ExitCode.OK,
            "exit_code": int(self.exit_code),
            "checked_at": self.checked_at,
            "litestream_version": self.litestream_version,
            "stale_after_seconds": self.stale_after_seconds,
            "source": self.source,
            "observed_at": self.observed_at,
            "supervisor": asdict(self.supervisor),
            "databases": [_shallow(d) for d in self.databases],
        }


# --------------------------------------------------------------------------- supervisor


def supervisor_info(settings: Settings, now: float | None = None) -> SupervisorInfo:
    """The project's supervisor, foreground or background, as its process record and state say.

    The process record (``processes.supervisor_of``: pid + start time + argv) decides whether
    one runs; ``supervisor.json`` is trusted only when it is that process's own document.
    """

    now = time.time() if now is None else now
    state_dir = project_state_dir(settings.project_dir)
    live = processes.supervisor_of(settings.project_dir)
    if live is None:
        sup = state.read_supervisor_state(state_dir)
        name = state.FATAL if sup is not None and sup.state == state.FATAL else state.STOPPED
        last_error = sup.last_error if sup else None
        if sup is not None and sup.state not in (state.STOPPED, state.FATAL) and not last_error:
            last_error = f"the supervisor (pid {sup.pid}) is gone without stopping cleanly"
        return SupervisorInfo(name, False, None, None, None, sup.restarts if sup else 0, last_error)
    sup = state.read_supervisor_state_of(state_dir, live.pid, live.create_time)
    name = sup.state if sup else state.STARTING
    last_error = sup.last_error if sup else None
    if sup is not None and name in (state.RUNNING, state.STARTING) and exited(sup.litestream_pid, sup.litestream_start_ticks):
        # killed a moment ago: the supervisor records it at its next tick, then restarts it after a backoff
        name, last_error = state.BACKOFF, f"litestream (pid {sup.litestream_pid}) has exited; the supervisor restarts it"
    started = (sup.child_started_at or sup.started_at) if sup else None
    changed = None
    source = sup.config_source if sup is not None and sup.config_input else None
    if source and fingerprint(settings, Path(source)) != sup.config_input:
        changed = "settings changed since this supervisor started; restart it to apply them (`backupctl stop`, then start)"
    return SupervisorInfo(
        state=name,
        running=name in (state.RUNNING, state.STARTING),
        pid=live.pid,
        litestream_pid=sup.litestream_pid if sup else None,
        uptime_seconds=round(now - started, 1) if started else None,
        restarts=sup.restarts if sup else 0,
        last_error=last_error,
        mode="background" if live.background else "foreground",
        manager=live.manager,
        databases=list(sup.databases) if sup else list(live.databases),
        settings_changed=changed,
    )


# --------------------------------------------------------------------------- local side


@dataclass
class _Local:
    exists: bool
    size: int | None
    wal_size: int | None
    updated_at: float | None  # the last write to the database or its -wal (shown)
    position: positions.LocalPosition

    @property
    def initialized(self) -> bool:
        return self.position.initialized

    @property
    def litestream_status(self) -> str | None:
        return self.position.status


def _local(db: Database, position: positions.LocalPosition) -> _Local:
    files = local_files(str(db.path))
    return _Local(files["exists"], files["size"], files["wal_size"], files["updated_at"], position)


# --------------------------------------------------------------------------- verdict


def database_status(
    settings: Settings,
    db: Database,
    local: _Local,
    entry: dict[str, Any],
    replica_error: str | None,
    supervisor: SupervisorInfo,
    threshold: float,
    now: float,
    series: Series,
    unserved: bool = False,
    observed_at: float | None = None,
    verifies: dict[str, dict[str, Any]] | None = None,
    proof: dict[str, Any] | None = None,
) -> DatabaseStatus:
    """The verdict for one database from its entry (``observations.record`` has brought it up to
    date with the reading). ``replica_error``: the replica could not be read at the last reading.
    ``observed_at``: the entry is the running supervisor's observation from then. ``verifies``:
    ``state.verify_records`` of the project (read once for every database)."""
    verifies = verifies if verifies is not None else state.verify_records(project_state_dir(settings.project_dir))
    fields = judge(
        name=db.name, path=str(db.path), destinations=[r.destination for r in db.replicas],
        local={"exists": local.exists, "size": local.size, "wal_size": local.wal_size, "updated_at": local.updated_at,
               "initialized": local.initialized, "status": local.litestream_status},
        local_key=series.local_key(local.position), shown_local=series.shown_local(local.position),
        exact_positions=series.exact_positions, entry=entry, replica_error=replica_error,
        supervisor={"running": supervisor.running, "pid": supervisor.pid, "state": supervisor.state,
                    "last_error": supervisor.last_error},
        threshold=threshold, stall=observations.stall_after(settings.sync_seconds), now=now, unserved=unserved,
        observed_at=observed_at, verify=verifies.get(str(db.path)) or verifies.get(db.name), proof=proof,
    )  # fmt: skip
    return DatabaseStatus(**fields)


def collect_status(
    settings: Settings,
    binary_path: Path | Callable[[], Path],
    database: str | None = None,
    *,
    config_path: Path | None = None,
    timeout: float = listings.LISTING_TIMEOUT,
    now: float | None = None,
    fresh: bool = False,
) -> StatusReport:
    """Supervisor state and a verdict per database (all, or the one named).

    With a running supervisor whose last look is recent (``observations.published``), its
    observations are the reading: no litestream call, no replica read. Otherwise (no supervisor,
    no recent look, or ``fresh``) local positions come from one litestream call (0.5
    ``status -json``) or the files themselves (0.3), and the replicas are read side by side, each
    with ``timeout``. ``binary_path`` may be a function giving it, called only when litestream runs
    (installing or checking the binary is part of a live reading, not of reading a look).
    The exit code to use is ``report.exit_code``.

    A database with several replicas (the secondary) gets a verdict per replica, each read now, and
    its own verdict is the worst of them (``_collect_each_replica``); not with ``config_path``
    (the user's own config, whose replicas litestream reads together).
    """
    if settings.replica_view is None and config_path is None and replica_views.several(settings):
        return _collect_each_replica(settings, binary_path, database, timeout=timeout, now=now)
    now = time.time() if now is None else now
    dbs = settings.database(database)
    supervisor = supervisor_info(settings, now)
    state_dir = project_state_dir(settings.project_dir)
    threshold = stale_after_seconds(settings)
    series = series_of(settings.version)
    # A running supervisor replicates what its private config held when it started: a database
    # added to the .env since then is not replicated (and not in that config to ask about).
    replicated = set(supervisor.databases)
    unserved = {str(db.path) for db in dbs if supervisor.pid is not None and str(db.path) not in replicated}
    served = [db for db in dbs if str(db.path) not in unserved]
    report = StatusReport(
        checked_at=epoch_iso(now) or "", litestream_version=settings.version, stale_after_seconds=threshold,
        supervisor=supervisor, source="live",
    )  # fmt: skip

    verifies = state.verify_records(state_dir)

    proofs = continuity_records(state_dir)
    proof_of = replica_views.proof_of
    seen = None
    if supervisor.running and supervisor.pid is not None and not fresh:
        seen = observations.published(state_dir, supervisor.pid, now)
        if seen is not None and any(local_position(seen.entries.get(str(db.path), {})) is None for db in served):
            seen = None  # a database it has not looked at yet: read them all now
    if seen is not None:
        report.source = "supervisor"
        report.observed_at = epoch_iso(seen.observed_at)
        # The supervisor re-reads an unchanged database's replica only now and then: a replica reading
        # that is not current (older than MAX_AGE, and not a local folder unchanged since) is read again
        # here, so no verdict rests on it (a deleted replica shows).
        old = [db for db in served if not reading_current(seen.entries.get(str(db.path), {}), now)]
        rereads: dict[str, Any] = {}
        if old:
            # lazy: not needed on `status --json`'s fast path
            from backupctl.host.config_in_use import config_for_reading

            binary = binary_path() if callable(binary_path) else binary_path
            reading_config = config_path or config_for_reading(settings)
            rereads = restorable_windows(settings, binary, old, config_path=reading_config, timeout=timeout)
        for db in dbs:
            entry = dict(seen.entries.get(str(db.path), {}))
            position = local_position(entry) or positions.LocalPosition(exists=db.path.exists())
            if str(db.path) in rereads:
                reading = rereads[str(db.path)]
                window = reading if isinstance(reading, positions.Window) else None
                entry["replica_error"] = reading.message if isinstance(reading, BackupctlError) else None
                record(entry, position, window, series, _local(db, position).updated_at, now)
            verdict = database_status(settings, db, _local(db, position), entry, entry.get("replica_error"), supervisor,
                                      threshold, now, series, str(db.path) in unserved, observed_at=seen.observed_at,
                                      verifies=verifies, proof=proof_of(proofs, settings, db))  # fmt: skip
            report.databases.append(verdict)
        return report

    # lazy: not needed on `status --json`'s fast path
    from backupctl.host.config_in_use import config_for_reading

    binary_path = binary_path() if callable(binary_path) else binary_path
    config_path = config_path or config_for_reading(settings)
    ls = Litestream(binary_path, settings, config_path)
    local_now = local_positions(ls, served, timeout=timeout) if served else {}
    windows = (
        restorable_windows(settings, binary_path, served, config_path=config_path, timeout=timeout)
        if served else {}
    )  # fmt: skip
    cache_path = state_dir / (STATUS_CACHE if settings.replica_view is None else f"status-{settings.replica_view}.json")
    cache = read_json(cache_path) or {}
    for db in dbs:
        position = local_now.get(str(db.path)) or positions.LocalPosition(exists=db.path.exists())
        local = _local(db, position)
        reading = windows.get(str(db.path))
        error = reading.message if isinstance(reading, BackupctlError) else None
        window = reading if isinstance(reading, positions.Window) else None
        entry = cache.setdefault(str(db.path), {})
        if str(db.path) not in unserved:
            record(entry, position, window, series, local.updated_at, now)
            observations.note_unshipped(entry, db.path)
        verdict = database_status(settings, db, local, entry, error, supervisor, threshold, now, series,
                                  str(db.path) in unserved, verifies=verifies, proof=proof_of(proofs, settings, db))  # fmt: skip
        report.databases.append(verdict)
    try:
        write_json(cache_path, cache)
    except OSError:
        pass  # a read-only project folder still gets a status, just without memory across calls
    return report


# What `status --json` says of each replica of a database with several.
_REPLICA_FIELDS = ("verdict", "reason", "newest_backup", "newest_backup_age_seconds", "replica_position", "behind",
                   "lag_seconds", "oldest_restorable", "newest_snapshot", "snapshot_count", "replica_error",
                   "replica_read_at")  # fmt: skip


def _collect_each_replica(
    settings: Settings, binary_path: Path | Callable[[], Path], database: str | None, *, timeout: float, now: float | None
) -> StatusReport:
    """`status` of databases with several replicas: each replica read now through its view (the
    supervisor's look reads them together, and one unreadable replica hides the other), then one verdict
    per database, its worst replica's, with each replica's in ``replicas``."""
    now = time.time() if now is None else now
    reports = [
        (name, collect_status(replica_views.view(settings, name), binary_path, database, timeout=timeout, now=now,
                              fresh=True))
        for name in replica_views.names(settings)
    ]  # fmt: skip
    first = reports[0][1]
    # the supervisor as the whole settings see it (a view's would call them changed since it started)
    merged = replace(first, databases=[], supervisor=supervisor_info(settings, now))
    for i, base in enumerate(first.databases):
        per = [(replica_views.label(settings, name), report.databases[i]) for name, report in reports]
        worst = per[replica_views.worst([d.verdict for _, d in per])][1]
        merged.databases.append(
            replace(
                worst,
                reason=replica_views.combined_reason([(name, ", ".join(d.destinations), d.verdict, d.reason) for name, d in per]),
                destinations=[dest for _, d in per for dest in d.destinations],
                # the local side is one database: as read with the first replica
                local_position=base.local_position,
                size=base.size,
                wal_size=base.wal_size,
                local_updated_at=base.local_updated_at,
                replicas=[{"name": name, "destination": ", ".join(d.destinations), **{f: getattr(d, f) for f in _REPLICA_FIELDS}}
                          for name, d in per],
            )
        )  # fmt: skip
    return merged


_DATABASE_FIELDS = tuple(f.name for f in fields(DatabaseStatus))
