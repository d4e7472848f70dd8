"""Per-project state files shared by the supervisor, status and verify.

All live in the project's state folder (``paths.project_state_dir``):

- ``supervisor.pid``: JSON ``{pid, create_time, argv}`` of the running supervisor. A pid is
  only trusted if a process with that pid exists *and* its start time matches
  ``create_time`` (so a reused pid is never signalled).
- ``supervisor.json``: what the supervisor is doing, for `status` (see ``SupervisorState``).
- ``verify.json``: the last verify result per database path.
- ``drill.json``: the last recovery drill, ``{"status": "passed"|"failed", "checked_at": epoch, ...}``.
- ``supervisor.log``: the supervisor's log (rotated by size).

Writes are atomic (temp file + rename), so readers never see half a document.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backupctl.atomic import write_atomic

PIDFILE = "supervisor.pid"
STATEFILE = "supervisor.json"
VERIFYFILE = "verify.json"
DRILLFILE = "drill.json"
LOGFILE = "supervisor.log"

# Supervisor states, after Supervisor's STARTING -> RUNNING -> BACKOFF -> FATAL.
STARTING, RUNNING, BACKOFF, FATAL, STOPPING, STOPPED = "starting", "running", "backoff", "fatal", "stopping", "stopped"


@dataclass
class SupervisorState:
    state: str = STOPPED
    pid: int | None = None  # the supervisor
    litestream_pid: int | None = None
    started_at: float | None = None  # supervisor start (epoch seconds)
    child_started_at: float | None = None
    restarts: int = 0
    last_exit_code: int | None = None
    last_error: str | None = None
    last_error_lines: list[str] = field(default_factory=list)
    final_sync: bool | None = None  # did the last stop complete litestream's final sync
    config_path: str | None = None
    databases: list[str] = field(default_factory=list)
    version: str | None = None
    updated_at: float = field(default_factory=time.time)


def write_json(path: Path, document: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(document, indent=2))


def read_json(path: Path) -> dict[str, Any] | None:
    """A state document, or None when it is missing, unreadable or not a JSON object."""
    try:
        document = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def write_supervisor_state(state_dir: Path, state: SupervisorState) -> None:
    state.updated_at = time.time()
    write_json(state_dir / STATEFILE, asdict(state))


def read_supervisor_state(state_dir: Path) -> SupervisorState | None:
    raw = read_json(state_dir / STATEFILE)
    if raw is None:
        return None
    known = {k: v for k, v in raw.items() if k in SupervisorState.__dataclass_fields__}
    return SupervisorState(**known)


def record_verify(state_dir: Path, database: str, result: dict[str, Any]) -> None:
    current = read_json(state_dir / VERIFYFILE) or {}
    current[database] = result
    write_json(state_dir / VERIFYFILE, current)


def last_verify(state_dir: Path, database: str) -> dict[str, Any] | None:
    return (read_json(state_dir / VERIFYFILE) or {}).get(database)


def record_drill(state_dir: Path, result: dict[str, Any]) -> None:
    write_json(state_dir / DRILLFILE, result)


def last_drill(state_dir: Path) -> dict[str, Any] | None:
    return read_json(state_dir / DRILLFILE)


def live_record(path: Path) -> dict[str, Any] | None:
    """A pid record ({pid, create_time, ...}) if that exact process is still alive, else None.

    "Exact" means same pid and same start time: a pid reused by an unrelated process
    after a crash is recognised as stale and never signalled.
    """
    record = read_json(path)
    if not record or not isinstance(record.get("pid"), int):
        return None
    import psutil

    try:
        proc = psutil.Process(record["pid"])
        if abs(proc.create_time() - float(record.get("create_time", -1))) > 0.01:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
    except (psutil.Error, ValueError, TypeError):
        return None
    return record


def live_pidfile(state_dir: Path) -> dict[str, Any] | None:
    """The supervisor's pidfile record if that exact process is still alive, else None."""
    return live_record(state_dir / PIDFILE)


def write_pidfile(state_dir: Path, pid: int, argv: list[str]) -> None:
    import psutil

    write_json(state_dir / PIDFILE, {"pid": pid, "create_time": psutil.Process(pid).create_time(), "argv": argv})
