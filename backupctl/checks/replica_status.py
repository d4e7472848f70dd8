"""What the replicas alone say: `status --replica-only`, for a machine with the .env but not the
databases (an operator's laptop). No local file, supervisor or state is looked at, so there is no
verdict about replication running, only about what each replica holds and how old its newest
backup is. Verdicts are the ones of ``backupctl.checks.status``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backupctl.checks.verdicts import BROKEN, ERROR, NOT_INITIALIZED, OK, epoch_iso
from backupctl.config import replica_views
from backupctl.config.render import render
from backupctl.config.settings import Database, Settings
from backupctl.errors import ExitCode
from backupctl.host.config_in_use import config_for_reading
from backupctl.litestream import listings, rows
from backupctl.litestream.adapter import restorable_windows, series_of
from backupctl.litestream.positions import Window
from backupctl.litestream.runner import Litestream
from backupctl.owned import write_atomic


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
    # Several replicas (backupctl.config.replica_views): each one's; the fields above are the worst one's. Not in
    # --json with one replica.
    replicas: list[dict[str, Any]] | None = None


@dataclass
class ReplicaReport:
    checked_at: str
    litestream_version: str
    databases: list[ReplicaDatabaseStatus] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
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
            "databases": [{k: v for k, v in asdict(d).items() if k != "replicas" or v is not None} for d in self.databases],
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

    With several replicas (the secondary) each is read on its own and a database's verdict is the
    worst of its replicas' (``_collect_each_replica``).
    """
    import dataclasses

    if settings.replica_view is None and replica_views.several(settings):
        return _collect_each_replica(settings, binary_path, database, timeout=timeout, now=now)
    import tempfile


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
        series = series_of(Litestream(binary_path, settings, config_path).caps.version)

        targets = [stand_ins.get(db.path, db) for db in dbs]
        windows = restorable_windows(reading_settings, binary_path, targets, config_path=config_path,
                                              timeout=timeout)  # fmt: skip
        readings = []
        for target in targets:
            reading = windows.get(str(target.path))
            if isinstance(reading, Window):
                readings.append((reading, None))
            else:
                readings.append((None, reading))
    report = ReplicaReport(checked_at=epoch_iso(now) or "", litestream_version=settings.version)
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
        elif not window.restorable:
            entry.verdict, entry.reason = BROKEN, rows.UNRESTORABLE
            entry.newest_backup, entry.snapshot_count = listings.iso(window.newest), window.snapshot_count
            entry.replica_position = series.shown_replica(window)
        else:
            entry.verdict = OK
            entry.newest_backup, entry.oldest_restorable = listings.iso(window.newest), listings.iso(window.oldest)
            entry.newest_snapshot, entry.snapshot_count = listings.iso(window.newest_snapshot), window.snapshot_count
            if window.newest is not None:
                entry.newest_backup_age_seconds = round(max(0.0, now - window.newest.timestamp()), 1)
                age = entry.newest_backup_age_seconds
                entry.reason = f"the replica holds a restorable backup; the newest is {age:.0f}s old"
            if window.newest is not None and window.oldest is not None:
                entry.restorable_window_seconds = round((window.newest - window.oldest).total_seconds(), 1)
            entry.replica_position = series.shown_replica(window)
        report.databases.append(entry)
    return report


# What `status --replica-only --json` says of each replica of a database with several.
_REPLICA_FIELDS = ("verdict", "reason", "newest_backup", "newest_backup_age_seconds", "oldest_restorable",
                   "restorable_window_seconds", "newest_snapshot", "snapshot_count", "replica_position",
                   "replica_error")  # fmt: skip


def _collect_each_replica(
    settings: Settings, binary_path: Path, database: str | None, *, timeout: float, now: float | None
) -> ReplicaReport:
    """`status --replica-only` of several replicas: each read through its view; a database's verdict is
    the worst of its replicas', each replica's in ``replicas``."""
    import dataclasses

    now = time.time() if now is None else now
    reports = [
        (replica_views.label(settings, name),
         collect_replica_status(replica_views.view(settings, name), binary_path, database, timeout=timeout, now=now))
        for name in replica_views.names(settings)
    ]  # fmt: skip
    first = reports[0][1]
    merged = dataclasses.replace(first, databases=[])
    for i in range(len(first.databases)):
        per = [(name, report.databases[i]) for name, report in reports]
        worst = per[replica_views.worst([d.verdict for _, d in per])][1]
        bad = [f"{name} {d.verdict} ({', '.join(d.destinations)}): {d.reason}" for name, d in per if d.verdict != "ok"]
        good = [f"{name} ok: {d.reason}" for name, d in per if d.verdict == "ok"]
        merged.databases.append(
            dataclasses.replace(
                worst,
                reason="; ".join(bad + good),
                destinations=[dest for _, d in per for dest in d.destinations],
                replicas=[{"name": name, "destination": ", ".join(d.destinations), **{f: getattr(d, f) for f in _REPLICA_FIELDS}}
                          for name, d in per],
            )
        )  # fmt: skip
    return merged
