"""Jobs the supervisor runs every so often, each in a forked child process.

`BACKUP_VERIFY_INTERVAL` (verify) and `BACKUP_DRILL_INTERVAL` (recovery drill) start here. A job
runs in a forked child, never in a thread: the supervisor must stay single-threaded while
litestream runs (PR_SET_PDEATHSIG fires once per dying thread; see ``supervisor``). The child
gets default SIGINT/SIGTERM handling, so a stopping supervisor ends it with SIGTERM (a job that
must clean up installs its own handler). A job is only started once replication is confirmed,
never twice at once, and its finished child is reaped on the next tick. ``verify_all`` and
``drill`` are the two jobs' work; ``supervisor_jobs`` builds the jobs the settings ask for.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from backupctl.checks import continuity, notify
from backupctl.config.settings import Settings, parse_duration
from backupctl.host import state
from backupctl.litestream.runner import Litestream
from backupctl.redact import scrub

Log = Callable[[str], None]
CONTINUITY_JOB = "continuity"


@dataclass
class PeriodicJob:
    name: str
    interval: float  # seconds between two starts
    work: Callable[[], None]  # runs in the forked child
    clock: Callable[[], float]
    pid: int | None = field(default=None, init=False)
    next_at: float | None = field(default=None, init=False)

    def tick(self, ready: bool) -> None:
        """Called from the supervisor's loop: start the job when it is due and ``ready`` (confirmed)."""
        if not ready:
            return
        if not self.running():
            self.pid = None  # reaped: never signal that pid again (it may be reused)
        now = self.clock()
        if self.next_at is None:
            self.next_at = now + self.interval
            return
        if now < self.next_at or self.pid is not None:
            return
        self.next_at = now + self.interval
        self.pid = _fork(self.work)

    def soon(self, delay: float) -> None:
        """Run the job ``delay`` seconds from now (or as soon as a run in progress ends)."""
        self.next_at = self.clock() + delay

    def running(self) -> bool:
        """The job's child has not exited yet (it is reaped here when it has)."""
        if self.pid is None:
            return False
        try:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return done == 0

    def end(self) -> None:
        """A job still running when the supervisor stops is ended (SIGTERM) and reaped: it holds
        copies of the supervisor's lock files."""
        if self.running() and self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self.pid = None


def _fork(work: Callable[[], None]) -> int | None:
    if not hasattr(os, "fork"):
        work()
        return None
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        work()
        code = 0
    finally:
        os._exit(code)


def verify_all(settings: Settings, binary: Path, state_dir: Path, log: Log, stopping: Callable[[], bool]) -> None:
    """Verify every database (a restore that proves the backup), record and announce each result."""
    # lazy: verify brings threads, logging and futures the supervisor itself never uses; its forked child does
    from backupctl.checks import verify

    for db in settings.databases:
        if stopping():
            return
        try:
            result = verify.verify_database(settings, binary, db)
        except Exception as exc:  # a failed verify must never take replication down
            message = scrub(getattr(exc, "message", None) or str(exc) or type(exc).__name__, settings)
            log(f"backupctl: verify of {db.name} failed: {message}")
            record = state.VerifyRecord.failure(str(db.path), db.name, message)
            state.record_verify(state_dir, str(db.path), record)
        else:
            log(f"backupctl: verify of {db.name}: {result.status} ({result.reason})")
            record = result.to_record()
        # BACKUP_NOTIFY_URL / _FAIL_URL (notify.py): never raises; a slow webhook delays only this forked child
        notify.send(settings, notify.verify_event(record.to_json()), log=log)


def prove_all(settings: Settings, litestream: Litestream, state_dir: Path, log: Log, stopping: Callable[[], bool]) -> None:
    """Prove every database's replica whole against the live pages (``continuity``), keep each
    verdict in continuity.json, and announce a broken chain (and its healing) to the fail URL."""

    for db in settings.databases:
        if stopping():
            return

        try:
            proof = continuity.prove(litestream, db, state_dir)
        except Exception as exc:  # a failed check must never take replication down
            log(f"backupctl: continuity check of {db.name} failed: {scrub(str(exc) or type(exc).__name__, settings)}")
            continue
        previous = (continuity.records(state_dir).get(str(db.path)) or {}).get("verdict")
        continuity.record(state_dir, proof)
        word = {continuity.BROKEN: "BROKEN", continuity.UNDECIDED: "NOT PROVEN (undecided)"}.get(proof.verdict, proof.verdict)
        log(f"backupctl: continuity of {db.name}: {word}: {scrub(proof.reason, settings)} ({proof.seconds:.1f}s)")
        if proof.verdict == continuity.BROKEN or (proof.verdict == continuity.WHOLE and previous == continuity.BROKEN):
            notify.send(settings, notify.continuity_event(proof.to_json(), healed=previous == continuity.BROKEN), log=log)


def drill(settings: Settings, litestream: Litestream, state_dir: Path, log: Log) -> None:
    """A scheduled recovery drill (`backupctl drill`), recorded in drill.json."""
    # lazy: only a scheduled drill needs it, in its forked child
    from backupctl.checks.drill import scheduled_drill

    scheduled_drill(settings, litestream, state_dir, log)


def supervisor_jobs(
    settings: Settings,
    litestream: Callable[[], Litestream],
    state_dir: Path,
    log: Log,
    clock: Callable[[], float],
    stopping: Callable[[], bool],
) -> list[PeriodicJob]:
    """verify and drill (BACKUP_VERIFY_INTERVAL, BACKUP_DRILL_INTERVAL). ``litestream`` gives the one
    running now: the supervisor takes up new databases with a new config."""
    jobs = []
    if settings.verify_interval:
        def verify() -> None:
            current = litestream()
            verify_all(current.settings, current.binary, state_dir, log, stopping)

        jobs.append(PeriodicJob("verify", parse_duration(settings.verify_interval), verify, clock))
    if settings.drill_interval:
        def scheduled() -> None:
            current = litestream()
            drill(current.settings, current, state_dir, log)

        jobs.append(PeriodicJob("drill", parse_duration(settings.drill_interval), scheduled, clock))
    interval = settings.continuity_interval
    # Always a job: the supervisor runs it after every confirmed start; "off" only drops the schedule.
    every = parse_duration(interval) if interval and interval != "off" else float("inf")

    def prove() -> None:
        current = litestream()
        prove_all(current.settings, current, state_dir, log, stopping)

    jobs.append(PeriodicJob(CONTINUITY_JOB, every, prove, clock))
    return jobs
