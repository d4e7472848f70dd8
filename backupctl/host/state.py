"""Per-project state files shared by the supervisor, status and verify.

All live in the project's state folder (``paths.project_state_dir``):

- ``supervisor.json``: what the supervisor is doing, for `status` (see ``SupervisorState``). It
  names the supervisor by pid *and* start time: readers trust it only for the supervisor that
  ``processes.supervisor_of`` finds alive (the process records are the one answer to "who runs").
- ``supervisor.yml``: the running supervisor's private copy of its litestream config, taken when
  it started, so a later `setup` or `.env` change never alters what it replicates.
- ``verify.json``: the last verify result per database path (one ``VerifyRecord`` each).
- ``drill.json``: the last recovery drill, ``{"status": "passed"|"failed", "checked_at": epoch, ...}``.
- ``supervisor.log``: the supervisor's log (rotated by size).
- ``project.json``: which project owns this folder, so two projects never share one state folder
  (``BACKUPCTL_STATE_DIR`` set for both): see ``paths.claim``.

Writes are atomic (temp file + rename), so readers never see half a document. A document several
writers add entries to (``verify.json``, ``continuity.json``) is changed through ``update_json``,
one writer at a time.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from backupctl import paths
from backupctl.owned import open_lock, read_json, write_json

STATEFILE = "supervisor.json"
PRIVATE_CONFIG = "supervisor.yml"
VERIFYFILE = "verify.json"
DRILLFILE = "drill.json"
LOGFILE = "supervisor.log"

# Supervisor states, after Supervisor's STARTING -> RUNNING -> BACKOFF -> FATAL.
class Phase(StrEnum):
    """Where a supervisor is: STARTING -> RUNNING -> BACKOFF -> FATAL, and STOPPING -> STOPPED."""

    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    FATAL = "fatal"
    STOPPING = "stopping"
    STOPPED = "stopped"


STARTING, RUNNING, BACKOFF, FATAL, STOPPING, STOPPED = Phase


@dataclass
class SupervisorState:
    state: str = STOPPED
    pid: int | None = None  # the supervisor
    create_time: float | None = None  # the supervisor's process start time (with pid: which process)
    project: str | None = None
    background: bool = False
    litestream_pid: int | None = None
    litestream_start_ticks: int | None = None  # with litestream_pid: which process (host.liveness.start_ticks)
    started_at: float | None = None  # supervisor start (epoch seconds)
    child_started_at: float | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    last_error: str | None = None
    last_error_lines: list[str] = field(default_factory=list)
    final_sync: bool | None = None  # did the last stop complete litestream's final sync
    config_path: str | None = None  # the private copy litestream runs with
    config_source: str | None = None  # the litestream.yml it was copied from
    config_input: str | None = None  # digest of the settings and templates it was rendered from
    confirmed_at: float | None = None  # when the running litestream was confirmed by position
    databases: list[str] = field(default_factory=list)
    version: str | None = None
    updated_at: float = field(default_factory=time.time)


@contextmanager
def _one_writer(path: Path) -> Iterator[None]:
    """Hold the lock of one state document: across the threads of a concurrent `verify` and across
    processes (a `verify` beside the supervisor's scheduled one). The lock file lives with the others
    (``paths.lock_path``), so the state folder holds only documents."""

    # Keyed by the folder's real path (two spellings of one folder share the lock), never by where a
    # link planted as the document points. Each call opens the file anew, and flock locks belong to
    # the open file, so threads of one process exclude each other as two processes do.
    fd = open_lock(paths.lock_path("state", os.path.join(os.path.realpath(path.parent), path.name)))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for one small read and write: never long
        yield
    finally:
        os.close(fd)  # closing releases the flock


def update_json(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Read a state document, let ``change`` edit it in place, write it back, with no other writer in
    between: two verifies recording at once would otherwise each write back the document as they
    read it, and one database's entry would be lost."""
    with _one_writer(path):
        document = read_json(path) or {}
        change(document)
        write_json(path, document)


def write_supervisor_state(state_dir: Path, state: SupervisorState) -> None:
    state.updated_at = time.time()
    write_json(state_dir / STATEFILE, asdict(state))


def read_supervisor_state(state_dir: Path) -> SupervisorState | None:
    raw = read_json(state_dir / STATEFILE)
    if raw is None:
        return None
    known = {k: v for k, v in raw.items() if k in SupervisorState.__dataclass_fields__}
    return SupervisorState(**known)


def read_supervisor_state_of(state_dir: Path, pid: int, create_time: float) -> SupervisorState | None:
    """supervisor.json, but only when it is the document of that exact supervisor process."""
    current = read_supervisor_state(state_dir)
    if current is None or current.pid != pid or current.create_time is None:
        return None
    return current if abs(current.create_time - create_time) <= 0.01 else None


@dataclass
class VerifyRecord:
    """The last verify of one database: the one shape `verify`, the supervisor and `status` share."""

    database: str
    name: str
    status: str  # verified, failed, inconclusive
    reason: str
    checked_at: float  # epoch seconds
    details: dict[str, Any] = field(default_factory=dict)  # timings, replicator, attempts, position

    @classmethod
    def failure(cls, database: str, name: str, reason: str) -> VerifyRecord:
        return cls(database, name, "failed", reason, time.time())

    def to_json(self) -> dict[str, Any]:
        return {**self.details, "database": self.database, "name": self.name, "status": self.status,
                "reason": self.reason, "checked_at": self.checked_at}  # fmt: skip


def record_verify(state_dir: Path, database: str, record: VerifyRecord) -> None:
    """Keep ``record`` as the database's last verify; safe beside other verifies recording theirs."""

    def put(current: dict[str, Any]) -> None:
        current[database] = record.to_json()

    update_json(state_dir / VERIFYFILE, put)


def verify_records(state_dir: Path) -> dict[str, dict[str, Any]]:
    """Every database's last verify as recorded (VerifyRecord.to_json), by the key it was recorded under."""
    document = read_json(state_dir / VERIFYFILE) or {}
    return {k: v for k, v in document.items() if isinstance(v, dict) and isinstance(v.get("status"), str)}


def last_verify(state_dir: Path, database: str) -> dict[str, Any] | None:
    """The last verify of a database as recorded (VerifyRecord.to_json), or None."""
    return verify_records(state_dir).get(database)


def record_drill(state_dir: Path, result: dict[str, Any]) -> None:
    write_json(state_dir / DRILLFILE, result)


def last_drill(state_dir: Path) -> dict[str, Any] | None:
    return read_json(state_dir / DRILLFILE)
