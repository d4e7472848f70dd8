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
  cannot be read and no earlier reading exists.

"Stale" is about the replica being *behind the local database*, not about its age: an idle
database produces no new backup files and stays ``ok``. Positions and "does the replica
cover the local position" come from ``backupctl.positions`` (the same answer the supervisor
uses to confirm a start). Since when the replica has been behind is remembered in
``status.json`` in the project's state folder across calls, so a monitor calling `status`
repeatedly sees "behind since" grow even while the database keeps being written.

The default threshold is ``max(3 x sync interval + 30s, 60s)``: three missed syncs plus
time for a slow upload, and never under a minute. ``BACKUP_STALE_AFTER`` overrides it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backupctl import listings, positions, restorable, state
from backupctl.errors import VERDICT_EXIT, BackupctlError, ExitCode, worst_exit
from backupctl.paths import project_state_dir
from backupctl.runner import Litestream
from backupctl.settings import Database, Settings, parse_duration

OK, STALE, DOWN, NOT_INITIALIZED, ERROR = "ok", "stale", "down", "not-initialized", "error"
STATUS_CACHE = "status.json"
MAX_WORKERS = 8


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


@dataclass
class StatusReport:
    checked_at: str
    litestream_version: str
    stale_after_seconds: float
    supervisor: SupervisorInfo
    databases: list[DatabaseStatus] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
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
            "supervisor": asdict(self.supervisor),
            "databases": [asdict(d) for d in self.databases],
        }


# --------------------------------------------------------------------------- supervisor


def supervisor_info(settings: Settings, now: float | None = None) -> SupervisorInfo:
    """The project's supervisor, foreground or background, as its process record and state say.

    The process record (``processes.supervisor_of``: pid + start time + argv) decides whether
    one runs; ``supervisor.json`` is trusted only when it is that process's own document.
    """
    from backupctl import processes

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
    started = (sup.child_started_at or sup.started_at) if sup else None
    changed = None
    if sup is not None and sup.config_input and sup.config_source:
        from backupctl.render import fingerprint

        if fingerprint(settings, Path(sup.config_source)) != sup.config_input:
            changed = "settings changed since this supervisor started; restart it to apply them (`backupctl stop`, then start)"
    return SupervisorInfo(
        state=name,
        running=name in (state.RUNNING, state.STARTING),
        pid=live.pid,
        litestream_pid=sup.litestream_pid if sup else None,
        uptime_seconds=round(now - started, 1) if started else None,
        restarts=sup.restarts if sup else 0,
        last_error=sup.last_error if sup else None,
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


def _stat(path: Path) -> tuple[int | None, float | None]:
    try:
        st = path.stat()
    except OSError:
        return None, None
    return st.st_size, st.st_mtime


def _local(db: Database, position: positions.LocalPosition) -> _Local:
    size, db_mtime = _stat(db.path)
    wal_size, wal_mtime = _stat(db.path.with_name(db.path.name + "-wal"))
    mtimes = [m for m in (db_mtime, wal_mtime) if m is not None]
    return _Local(size is not None, size, wal_size or 0, max(mtimes) if mtimes else None, position)


# --------------------------------------------------------------------------- verdict


def _iso(epoch: float | None) -> str | None:
    return listings.iso(datetime.fromtimestamp(epoch, UTC)) if epoch is not None else None


def database_status(
    settings: Settings,
    db: Database,
    local: _Local,
    window: restorable.Window | None,
    replica_error: BackupctlError | None,
    supervisor: SupervisorInfo,
    cache: dict[str, Any],
    threshold: float,
    now: float,
    has_ltx: bool,
    unserved: bool = False,
) -> DatabaseStatus:
    """The verdict for one database. Updates ``cache`` (this database's entry) in place."""
    entry = cache.setdefault(str(db.path), {})
    local_pos = positions.local_key(local.position, has_ltx)
    if window is not None:
        replica_pos = positions.replica_key(positions.replica_position(window), local.position, has_ltx)
        entry.update(
            replica_pos=replica_pos,
            read_at=now,
            newest=listings.iso(window.newest),
            oldest=listings.iso(window.oldest),
            newest_snapshot=listings.iso(window.newest_snapshot),
            snapshot_count=window.snapshot_count,
            replica_position=listings.txid_hex(window.max_txid)
            if has_ltx
            else (window.latest_generation.generation if window.latest_generation else None),
        )
    has_reading = "read_at" in entry
    replica_pos = entry.get("replica_pos")
    behind: bool | None = None
    behind_since: float | None = None
    if has_reading and local.exists and local.initialized:
        behind = not positions.covers_key(has_ltx, replica_pos, local_pos)
        if behind:
            pending = entry.get("pending")
            if pending and not positions.covers_key(has_ltx, replica_pos, pending.get("position")):
                behind_since = float(pending["since"])
            else:
                # No earlier observation: the last local write is the latest the gap can have opened.
                behind_since = local.updated_at if local.updated_at is not None else now
                entry["pending"] = {"since": behind_since, "position": local_pos}
        else:
            entry.pop("pending", None)

    newest = entry.get("newest")
    newest_epoch = datetime.fromisoformat(newest.replace("Z", "+00:00")).timestamp() if newest else None
    lag = (max(0.0, now - behind_since) if behind_since is not None else 0.0) if behind is not None else None
    unread_for = now - float(entry["read_at"]) if has_reading else None

    verdict, reason = OK, "the replica holds everything the local database has"
    if not local.exists:
        verdict, reason = ERROR, f"the database file {db.path} does not exist"
    elif unserved:
        verdict = DOWN
        reason = (
            f"the running supervisor (pid {supervisor.pid}) does not replicate it: settings changed since it "
            "started; restart it to apply them (`backupctl stop`, then start)"
        )
    elif local.litestream_status == "error":
        verdict, reason = ERROR, "litestream reports an error for this database"
    elif not local.initialized and replica_error is not None:
        # The unreachable replica is the cause to name, not "never replicated" (docs/status.md: error, exit 12).
        verdict, reason = ERROR, f"cannot read the replica: {replica_error.message}"
    elif not local.initialized:
        verdict, reason = NOT_INITIALIZED, "litestream has never replicated this database (start replication)"
    elif not has_reading:
        verdict = ERROR
        reason = f"cannot read the replica: {replica_error.message if replica_error else 'no reading'}"
    elif not supervisor.running:
        verdict, reason = DOWN, f"replication is not running (supervisor {supervisor.state})"
    elif window is not None and window.empty:
        verdict, reason = NOT_INITIALIZED, "the replica is empty"
    elif behind and lag is not None and lag > threshold:
        verdict, reason = STALE, f"the replica has been behind the local database for {lag:.0f}s (threshold {threshold:g}s)"
    elif replica_error is not None and unread_for is not None and unread_for > threshold:
        verdict = STALE
        reason = f"the replica could not be read for {unread_for:.0f}s (threshold {threshold:g}s): {replica_error.message}"
    elif replica_error is not None:
        reason = f"replica unreachable now ({replica_error.message}); position from {_iso(entry['read_at'])}"
    elif behind:
        reason = f"the replica is {lag:.0f}s behind, within the threshold ({threshold:g}s)"

    verify = state.last_verify(project_state_dir(settings.project_dir), str(db.path)) or state.last_verify(
        project_state_dir(settings.project_dir), db.name
    )
    return DatabaseStatus(
        name=db.name,
        path=str(db.path),
        verdict=verdict,
        reason=reason,
        destinations=[r.destination for r in db.replicas],
        size=local.size,
        wal_size=local.wal_size if local.exists else None,
        local_position=listings.txid_hex(local.position.txid) if has_ltx else local.position.generation,
        local_updated_at=_iso(local.updated_at),
        replica_position=entry.get("replica_position"),
        newest_backup=newest,
        newest_backup_age_seconds=round(now - newest_epoch, 1) if newest_epoch is not None else None,
        behind=behind,
        behind_since=_iso(behind_since),
        lag_seconds=round(lag, 1) if lag is not None else None,
        lag_txids=(
            max(0, int(local_pos) - int(replica_pos)) if has_ltx and local_pos is not None and replica_pos is not None else None
        ),
        oldest_restorable=entry.get("oldest"),
        newest_snapshot=entry.get("newest_snapshot"),
        snapshot_count=entry.get("snapshot_count"),
        replica_error=replica_error.message if replica_error else None,
        replica_read_at=_iso(entry.get("read_at")),
        last_verify=verify,
    )


def collect_status(
    settings: Settings,
    binary_path: Path,
    database: str | None = None,
    *,
    config_path: Path | None = None,
    timeout: float = listings.LISTING_TIMEOUT,
    now: float | None = None,
) -> StatusReport:
    """Supervisor state and a verdict per database (all, or the one named).

    Local positions come from one litestream call (0.5 ``status -json``) or the files
    themselves (0.3); replicas are read in parallel (``MAX_WORKERS`` threads), each with
    ``timeout``. The exit code to use is ``report.exit_code``.
    """
    from backupctl.render import config_for_reading

    now = time.time() if now is None else now
    dbs = settings.database(database)
    supervisor = supervisor_info(settings, now)
    config_path = config_path or config_for_reading(settings)
    ls = Litestream(binary_path, settings, config_path)
    has_ltx = ls.caps.has_ltx
    threshold = stale_after_seconds(settings)
    # A running supervisor replicates what its private config held when it started: a database
    # added to the .env since then is not replicated (and not in that config to ask about).
    unserved = {str(db.path) for db in dbs if supervisor.pid is not None and str(db.path) not in supervisor.databases}
    served = [db for db in dbs if str(db.path) not in unserved]
    local_positions = positions.local_positions(ls, served, timeout=timeout) if served else {}

    def read(db: Database) -> tuple[restorable.Window | None, BackupctlError | None]:
        if str(db.path) in unserved:
            return None, None
        try:
            return restorable.restorable_window(settings, binary_path, db, config_path=config_path, timeout=timeout), None
        except BackupctlError as exc:
            return None, exc

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_WORKERS, len(dbs)))) as pool:
        readings = list(pool.map(read, dbs))

    state_dir = project_state_dir(settings.project_dir)
    cache = state.read_json(state_dir / STATUS_CACHE) or {}
    report = StatusReport(
        checked_at=_iso(now) or "",
        litestream_version=settings.version,
        stale_after_seconds=threshold,
        supervisor=supervisor,
    )
    for db, (window, error) in zip(dbs, readings, strict=True):
        position = local_positions.get(str(db.path)) or positions.LocalPosition(exists=db.path.exists())
        local = _local(db, position)
        report.databases.append(
            database_status(
                settings, db, local, window, error, supervisor, cache, threshold, now, has_ltx, str(db.path) in unserved
            )
        )
    try:
        state.write_json(state_dir / STATUS_CACHE, cache)
    except OSError:
        pass  # a read-only project folder still gets a status, just without memory across calls
    return report


# --------------------------------------------------------------------------- replica only


@dataclass
class ReplicaDatabaseStatus:
    name: str
    path: str  # as the settings name it (it need not exist on this machine)
    verdict: str  # ok (the replica holds a restorable backup), not-initialized (empty), error (unreadable)
    reason: str
    destinations: list[str]
    newest_backup: str | None
    newest_backup_age_seconds: float | None
    oldest_restorable: str | None
    restorable_window_seconds: float | None
    newest_snapshot: str | None
    snapshot_count: int | None
    replica_position: str | None  # 0.5: newest txid; 0.3: newest generation
    replica_error: str | None


@dataclass
class ReplicaReport:
    checked_at: str
    litestream_version: str
    databases: list[ReplicaDatabaseStatus] = field(default_factory=list)

    @property
    def exit_code(self) -> ExitCode:
        """12 if a replica cannot be read, else 11 if one is empty, else 0."""
        verdicts = {d.verdict for d in self.databases}
        if ERROR in verdicts:
            return ExitCode.STATUS_ERROR
        if NOT_INITIALIZED in verdicts:
            return ExitCode.STATUS_DOWN
        return ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.exit_code == ExitCode.OK,
            "exit_code": int(self.exit_code),
            "replica_only": True,
            "checked_at": self.checked_at,
            "litestream_version": self.litestream_version,
            "databases": [asdict(d) for d in self.databases],
        }


def collect_replica_status(
    settings: Settings,
    binary_path: Path,
    database: str | None = None,
    *,
    timeout: float = listings.LISTING_TIMEOUT,
    now: float | None = None,
) -> ReplicaReport:
    """Each database's newest backup and restorable window, read from its replica alone.

    For a machine that has the .env but not the databases (an operator's laptop): no local
    file, supervisor or state is looked at, so there is no verdict about replication running,
    only about what the replica holds and how old its newest backup is.
    """
    import dataclasses
    import tempfile

    from backupctl.atomic import write_atomic
    from backupctl.render import config_for_reading, render

    now = time.time() if now is None else now
    dbs = settings.database(database)
    with tempfile.TemporaryDirectory(prefix="backupctl-replica-only-") as tmp:
        stand_ins = {db.path: Database(Path(tmp) / db.name, db.name, db.replicas) for db in dbs if not db.path.exists()}
        reading_settings = settings
        if stand_ins:
            # litestream 0.3 stats the database before it reads a replica ("no such file or directory"):
            # give it an empty stand-in, never written to. Where the replica lives is explicit in the
            # config (folder or bucket path by name), not derived from the database's path.
            for stand_in in stand_ins.values():
                stand_in.path.touch()
            databases = tuple(stand_ins.get(d.path, d) for d in settings.databases)
            reading_settings = dataclasses.replace(settings, databases=databases)
            config_path = Path(tmp) / "litestream.yml"
            write_atomic(config_path, render(reading_settings).text)
        else:
            config_path = config_for_reading(settings, prefer_running=False)
        has_ltx = Litestream(binary_path, settings, config_path).caps.has_ltx

        def read(db: Database) -> tuple[restorable.Window | None, BackupctlError | None]:
            try:
                target = stand_ins.get(db.path, db)
                return restorable.restorable_window(reading_settings, binary_path, target, config_path=config_path,
                                                 timeout=timeout), None  # fmt: skip
            except BackupctlError as exc:
                return None, exc

        with ThreadPoolExecutor(max_workers=max(1, min(MAX_WORKERS, len(dbs)))) as pool:
            readings = list(pool.map(read, dbs))
    report = ReplicaReport(checked_at=_iso(now) or "", litestream_version=settings.version)
    for db, (window, error) in zip(dbs, readings, strict=True):
        entry = ReplicaDatabaseStatus(
            name=db.name, path=str(db.path), verdict=ERROR, reason="", destinations=[r.destination for r in db.replicas],
            newest_backup=None, newest_backup_age_seconds=None, oldest_restorable=None, restorable_window_seconds=None,
            newest_snapshot=None, snapshot_count=None, replica_position=None, replica_error=None,
        )  # fmt: skip
        if window is None:
            entry.reason = f"cannot read the replica: {error.message if error else 'no reading'}"
            entry.replica_error = error.message if error else None
        elif window.empty:
            entry.verdict, entry.reason = NOT_INITIALIZED, "the replica is empty"
        else:
            entry.verdict = OK
            entry.newest_backup, entry.oldest_restorable = listings.iso(window.newest), listings.iso(window.oldest)
            entry.newest_snapshot, entry.snapshot_count = listings.iso(window.newest_snapshot), window.snapshot_count
            if window.newest is not None:
                entry.newest_backup_age_seconds = round(now - window.newest.timestamp(), 1)
                age = entry.newest_backup_age_seconds
                entry.reason = f"the replica holds a restorable backup; the newest is {age:.0f}s old"
            if window.newest is not None and window.oldest is not None:
                entry.restorable_window_seconds = round((window.newest - window.oldest).total_seconds(), 1)
            if has_ltx:
                entry.replica_position = listings.txid_hex(window.max_txid)
            elif window.latest_generation:
                entry.replica_position = window.latest_generation.generation
        report.databases.append(entry)
    return report
