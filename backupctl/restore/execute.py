"""Carrying out a restore plan: stage, check, move the old copy aside (kept), rename into place.

:func:`execute_restore` restores into a staged temp folder next to the output
(:mod:`backupctl.restore.staging`), gives the copy its mode and owner, checks again that
nothing holds the output, moves an occupied output and its ``-wal``/``-shm`` aside to
``<name>.pre-restore-<UTC stamp>`` (kept, never deleted) and renames the copy into place (same
filesystem, so atomic); if the rename fails the kept files are moved back. The last stop check
is right before the swap: the swap itself completes or is rolled back.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupctl.config.settings import Database, Settings
from backupctl.display import shown
from backupctl.errors import ConflictError, NotFoundError, RefusedError
from backupctl.host import locks
from backupctl.restore.plan import RestorePlan, RestoreRequest, plan_restore, window_or_none
from backupctl.restore.staging import RESTORE_TIMEOUT, Step, litestream_for, staged_restore
from backupctl.restore.stopping import stop_request
from backupctl.restore.swap import (
    check_not_in_use,
    create_folder,
    follow_folder,
    fsync_dir,
    kept_path,
    mode_and_owner_source,
    move_aside,
    move_back,
    occupied,
    present_files,
    take_mode_and_owner,
)
from backupctl.timeparse import to_rfc3339
from backupctl.units import human_size


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

        # Escaped here: a foreground start prints it as data on stdout, past the message printers.
        return shown(
            f"restored {self.database.name} to {self.output}: {human_size(self.size)}, {when}, "
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




def execute_restore(
    settings: Settings,
    binary_path: Path,
    plan: RestorePlan,
    *,
    timeout: float = RESTORE_TIMEOUT,
    on_step: Step | None = None,
    holds_lock: bool = False,
) -> RestoreResult:
    """Carry out a plan: restore to a temp file, check it, move the old copy aside if any, rename.

    ``holds_lock``: the caller already holds the database's lock (the supervisor restoring a missing
    database before it replicates); else a restore over the live database takes it."""
    started = time.monotonic()
    ls = litestream_for(settings, binary_path)
    out = plan.output
    kept: list[Path] = []
    # Restoring over the live database holds its lock from the start: a `start` meanwhile is refused
    # (a supervisor would replicate the old file, then the swapped one, forking the replica).
    held = _hold_database(plan.database) if plan.live and not holds_lock else None
    try:
        created = create_folder(out.parent)
        return _restore_and_swap(settings, binary_path, plan, ls, out, kept, created, started, timeout, on_step)
    finally:
        if held is not None:
            held.release()


def _hold_database(db: Database) -> locks.HeldLock:
    lock = locks.try_lock(locks.database_lock_path(db.path))
    if lock is None:
        holder = locks.holder(locks.database_lock_path(db.path))
        raise ConflictError(
            f"{db.path} is held by pid {holder}: backupctl replicates it, or another restore runs over it",
            "stop replication first (`backupctl stop`) or let the other restore finish, then restore again",
        )
    return lock


def _restore_and_swap(
    settings: Settings, binary_path: Path, plan: RestorePlan, ls: Any, out: Path, kept: list[Path], created: list[Path],
    started: float, timeout: float, on_step: Step | None,
) -> RestoreResult:  # fmt: skip
    try:
        args, counted = plan.restore_args(), plan.details
        with staged_restore(ls, plan.database, out.parent, args, timeout=timeout, on_step=on_step, count_rows=counted) as staged:
            stop_request.check()  # the last point where a stop leaves everything as it was
            follow_folder(staged.path, out.parent, out if out.is_file() and not out.is_symlink() else None)
            if on_step:
                on_step(f"moving the restored database to {out}")
            present = present_files(out)
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
                moved = move_aside(present, plan.keep_path or kept_path(out))
                kept = [target for _, target in moved]
            try:
                os.rename(staged.path, out)
            except BaseException:
                move_back(moved)
                raise
            fsync_dir(out.parent)
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
    window = window_or_none(settings, binary_path, plan.database)
    return to_rfc3339(window.end) if window is not None and window.end is not None else None


def restore_database(
    settings: Settings,
    binary_path: Path,
    request: RestoreRequest,
    *,
    timeout: float = RESTORE_TIMEOUT,
    on_step: Step | None = None,
    details: bool = False,
) -> RestoreResult:
    """Plan and carry out one restore (see the module docstring for the guarantees)."""
    plan = plan_restore(settings, binary_path, request, details=details)
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
    plan = plan_restore(settings, binary_path, RestoreRequest(db, db.path), details=True)
    try:
        result = execute_restore(settings, binary_path, plan, timeout=timeout, holds_lock=True)
    except NotFoundError:
        return None
    return result
