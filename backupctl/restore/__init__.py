"""Safe restore: never over the live database by default, never a partial file, always checked.

A restore is planned, then carried out:

1. :mod:`~backupctl.restore.plan` decides everything without writing: which databases, where
   each goes (``resolve_output``: an explicit path; else the database's own path when no
   database is there, a new machine; else a side file ``<name>.restored-<UTC stamp>``), the
   point in time, what would be moved aside. ``--dry-run`` stops here.
2. :mod:`~backupctl.restore.staging` runs ``litestream restore -o`` into a private temp folder
   *in the output's own folder* (``.backupctl-restore-<pid>-*``), with a timeout, and
   :mod:`~backupctl.restore.integrity` checks the copy: non-empty, an SQLite header,
   ``PRAGMA integrity_check`` = ok. The temp folder is removed in ``finally``.
3. :mod:`~backupctl.restore.execute` renames it onto the output path (same filesystem, so
   atomic). When the output is occupied and ``force`` was given, the current file and its
   ``-wal``/``-shm`` are first moved aside to ``<name>.pre-restore-<UTC stamp>`` (kept, never
   deleted), and moved back if the rename fails (:mod:`~backupctl.restore.swap`, which also
   owns the in-use check, owners and modes).

A failure, a timeout or an interruption leaves the original untouched and no partial file.
Interruptions are cooperative (:mod:`~backupctl.restore.stopping`): the CLI's signal handlers
only call ``stop_request.request()``, and the restore stops at its next safe point.

This package's namespace is its public API; verify and drill reuse the staged restore.
"""

from backupctl.restore.execute import RestoreResult, execute_restore, restore_database, restore_if_missing
from backupctl.restore.integrity import SQLITE_HEADER, check_database
from backupctl.restore.plan import (
    PATH_SUFFIXES,
    RestorePlan,
    RestoreRequest,
    RestoreSpan,
    looks_like_path,
    normalize_txid,
    plan_restore,
    require_a_backup,
    resolve_output,
    restorable_window,
    restore_destination,
    select_targets,
)
from backupctl.restore.staging import RESTORE_TIMEOUT, TEMP_PREFIX, Staged, Step, litestream_for, staged_restore, sweep_stale_temp
from backupctl.restore.stopping import StopRequest, stop_request
from backupctl.restore.swap import (
    KEPT_MARK,
    SIDE_FILES,
    SIDE_MARK,
    check_not_in_use,
    create_folder,
    follow_folder,
    kept_path,
    mode_and_owner_source,
    occupied,
    open_holders,
    same_file,
    side_path,
    take_mode_and_owner,
    utc_stamp,
)

__all__ = [
    "KEPT_MARK",
    "PATH_SUFFIXES",
    "RESTORE_TIMEOUT",
    "SIDE_FILES",
    "SIDE_MARK",
    "SQLITE_HEADER",
    "TEMP_PREFIX",
    "RestorePlan",
    "RestoreRequest",
    "RestoreResult",
    "Staged",
    "Step",
    "StopRequest",
    "RestoreSpan",
    "check_database",
    "check_not_in_use",
    "create_folder",
    "execute_restore",
    "follow_folder",
    "kept_path",
    "litestream_for",
    "looks_like_path",
    "mode_and_owner_source",
    "normalize_txid",
    "occupied",
    "open_holders",
    "plan_restore",
    "require_a_backup",
    "resolve_output",
    "restorable_window",
    "restore_destination",
    "restore_database",
    "restore_if_missing",
    "same_file",
    "select_targets",
    "side_path",
    "staged_restore",
    "stop_request",
    "sweep_stale_temp",
    "take_mode_and_owner",
    "utc_stamp",
]
