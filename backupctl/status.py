"""Verdicts: is every database safely backed up right now, and how far back can it be restored.

Per database the verdict is one of:

- ``ok``: the replica holds everything the local database has (or is behind by less than
  the stale threshold), and replication is running;
- ``stale``: the replica has been behind the local database for longer than the stale
  threshold, or could not be read for longer than that;
- ``down``: the supervisor is not running (stopped, fatal, crashed, backing off);
- ``not-initialized``: litestream has never replicated this database;
- ``error``: the database is missing, litestream reports an error for it, or the replica
  cannot be read and no earlier reading exists.

"Stale" is about the replica being *behind the local database*, not about its age: an idle
database produces no new backup files and stays ``ok``. The local position is the 0.5
txid (``status -json``) or, on 0.3, the time of the last local write (database and -wal
mtime). A replica covers that position when its newest txid reaches it (0.5), or when its
newest file is no older than the last write minus ``SLACK_03`` (0.3; litestream lists
times truncated to the second). Since when the replica has been behind is remembered in
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

from backupctl import inspect, state
from backupctl.errors import BackupctlError, ExitCode, LitestreamError
from backupctl.paths import project_state_dir
from backupctl.runner import Litestream
from backupctl.settings import Database, Settings, parse_duration

OK, STALE, DOWN, NOT_INITIALIZED, ERROR = "ok", "stale", "down", "not-initialized", "error"
VERDICT_EXIT = {
    OK: ExitCode.OK,
    STALE: ExitCode.STATUS_STALE,
    DOWN: ExitCode.STATUS_DOWN,
    NOT_INITIALIZED: ExitCode.STATUS_DOWN,
    ERROR: ExitCode.STATUS_ERROR,
}
SLACK_03 = 2.0  # seconds: listed times are truncated to the second, plus litestream's own write
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
        codes = [VERDICT_EXIT[d.verdict] for d in self.databases]
        for code in (ExitCode.STATUS_ERROR, ExitCode.STATUS_DOWN, ExitCode.STATUS_STALE):
            if code in codes:
                return code
        if not self.supervisor.running and not self.databases:
            return ExitCode.STATUS_DOWN
        return ExitCode.OK

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
    """The supervisor's state, trusting its pidfile only if that exact process is alive."""
    now = time.time() if now is None else now
    state_dir = project_state_dir(settings.project_dir)
    sup = state.read_supervisor_state(state_dir)
    live = state.live_pidfile(state_dir)
    if live is None:
        name = state.FATAL if sup is not None and sup.state == state.FATAL else state.STOPPED
        last_error = sup.last_error if sup else None
        if sup is not None and sup.state not in (state.STOPPED, state.FATAL) and not last_error:
            last_error = f"the supervisor (pid {sup.pid}) is gone without stopping cleanly"
        return SupervisorInfo(name, False, None, None, None, sup.restarts if sup else 0, last_error)
    name = sup.state if sup else state.RUNNING
    started = (sup.child_started_at or sup.started_at) if sup else None
    return SupervisorInfo(
        state=name,
        running=name in (state.RUNNING, state.STARTING),
        pid=int(live["pid"]),
        litestream_pid=sup.litestream_pid if sup else None,
        uptime_seconds=round(now - started, 1) if started else None,
        restarts=sup.restarts if sup else 0,
        last_error=sup.last_error if sup else None,
    )


# --------------------------------------------------------------------------- local side


@dataclass
class _Local:
    exists: bool
    size: int | None
    wal_size: int | None
    updated_at: float | None
    position: int | None  # 0.5 txid
    generation: str | None  # 0.3
    initialized: bool
    litestream_status: str | None  # 0.5: ok, not initialized, no database, error


def _stat(path: Path) -> tuple[int | None, float | None]:
    try:
        st = path.stat()
    except OSError:
        return None, None
    return st.st_size, st.st_mtime


def _local_05(settings: Settings, binary_path: Path, config_path: Path) -> dict[str, dict[str, Any]]:
    """One `status -json` call for every database (0.5)."""
    import json

    ls = Litestream(binary_path, settings, config_path)
    result = ls.run("status", "-json", timeout=inspect.LISTING_TIMEOUT)
    try:
        return {str(Path(item["database"])): item for item in json.loads(result.stdout or "[]") or []}
    except (ValueError, KeyError, TypeError) as exc:
        raise LitestreamError(f"cannot parse `litestream status -json`: {exc}", "report it") from None


def _local(db: Database, version_has_ltx: bool, native: dict[str, Any] | None) -> _Local:
    size, db_mtime = _stat(db.path)
    wal_size, wal_mtime = _stat(db.path.with_name(db.path.name + "-wal"))
    mtimes = [m for m in (db_mtime, wal_mtime) if m is not None]
    updated = max(mtimes) if mtimes else None
    if version_has_ltx:
        raw = (native or {}).get("local_txid")
        position = int(raw, 16) if isinstance(raw, str) and raw.strip("-") else None
        status = (native or {}).get("status")
        initialized = position is not None and status != "not initialized"
        return _Local(size is not None, size, wal_size or 0, updated, position, None, initialized, status)
    meta = db.path.with_name(f".{db.path.name}-litestream")
    try:
        generation = (meta / "generation").read_text().strip() or None
    except OSError:
        generation = None
    return _Local(size is not None, size, wal_size or 0, updated, None, generation, generation is not None, None)


# --------------------------------------------------------------------------- verdict


def _iso(epoch: float | None) -> str | None:
    return inspect.iso(datetime.fromtimestamp(epoch, UTC)) if epoch is not None else None


def _covers(version_has_ltx: bool, replica_pos: float | None, local_pos: float | None) -> bool:
    """Does the replica position include the local position?"""
    if local_pos is None:
        return True
    if replica_pos is None:
        return False
    if version_has_ltx:
        return replica_pos >= local_pos
    return replica_pos + SLACK_03 >= local_pos


def database_status(
    settings: Settings,
    db: Database,
    local: _Local,
    window: inspect.Window | None,
    replica_error: BackupctlError | None,
    supervisor: SupervisorInfo,
    cache: dict[str, Any],
    threshold: float,
    now: float,
    has_ltx: bool,
) -> DatabaseStatus:
    """The verdict for one database. Updates ``cache`` (this database's entry) in place."""
    entry = cache.setdefault(str(db.path), {})
    local_pos = (float(local.position) if local.position is not None else None) if has_ltx else local.updated_at
    if window is not None:
        replica_pos = float(window.max_txid) if has_ltx and window.max_txid is not None else None
        if not has_ltx and window.newest is not None:
            replica_pos = window.newest.timestamp()
        entry.update(
            replica_pos=replica_pos,
            read_at=now,
            newest=inspect.iso(window.newest),
            oldest=inspect.iso(window.oldest),
            newest_snapshot=inspect.iso(window.newest_snapshot),
            snapshot_count=window.snapshot_count,
            replica_position=inspect.txid_hex(window.max_txid)
            if has_ltx
            else (window.latest_generation.generation if window.latest_generation else None),
        )
    has_reading = "read_at" in entry
    replica_pos = entry.get("replica_pos")
    behind: bool | None = None
    behind_since: float | None = None
    if has_reading and local.exists and local.initialized:
        behind = not _covers(has_ltx, replica_pos, local_pos)
        if behind:
            pending = entry.get("pending")
            if pending and not _covers(has_ltx, replica_pos, pending.get("position")):
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
        local_position=inspect.txid_hex(local.position) if has_ltx else local.generation,
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
    timeout: float = inspect.LISTING_TIMEOUT,
    now: float | None = None,
) -> StatusReport:
    """Supervisor state and a verdict per database (all, or the one named).

    Local positions come from one litestream call (0.5 ``status -json``) or the files
    themselves (0.3); replicas are read in parallel (``MAX_WORKERS`` threads), each with
    ``timeout``. The exit code to use is ``report.exit_code``.
    """
    from backupctl.render import sync_config

    now = time.time() if now is None else now
    dbs = settings.database(database)
    config_path = config_path or sync_config(settings).path
    ls = Litestream(binary_path, settings, config_path)
    has_ltx = ls.caps.has_ltx
    threshold = stale_after_seconds(settings)
    supervisor = supervisor_info(settings, now)
    native = _local_05(settings, binary_path, config_path) if has_ltx and dbs else {}

    def read(db: Database) -> tuple[inspect.Window | None, BackupctlError | None]:
        try:
            return inspect.restorable_window(settings, binary_path, db, config_path=config_path, timeout=timeout), None
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
        local = _local(db, has_ltx, native.get(str(db.path)))
        report.databases.append(database_status(settings, db, local, window, error, supervisor, cache, threshold, now, has_ltx))
    try:
        state.write_json(state_dir / STATUS_CACHE, cache)
    except OSError:
        pass  # a read-only project folder still gets a status, just without memory across calls
    return report
