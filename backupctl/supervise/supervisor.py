"""Supervise `litestream replicate`: single instance, restarts with backoff, graceful stop.

The core never prints: every line meant for people goes to a ``log`` callback (stderr in the
foreground, the rotating ``supervisor.log`` in the background).

The supervisor is a small state machine (after Supervisor's ``process.py``): STARTING ->
RUNNING -> STOPPING -> STOPPED, BACKOFF between restarts, FATAL at the end of a crash loop,
and STOPPING -> STARTING when litestream is restarted to take up new databases. Every change
goes through ``_transition``, which allows only the edges in ``TRANSITIONS``. The main loop's
work between two looks at litestream's output is ``_on_tick`` (about once a second when idle).
Behaviour, in short (docs/supervision.md has the long version):

- Before it starts, anything else replicating these databases or replicas is refused
  (``processes.check_free``) and orphans of a killed supervisor or verify are stopped; then
  locks per database and per replica (flock) close the race.
- litestream runs with a private copy of the config (``supervisor.yml``), in its own session,
  so a terminal hangup or Ctrl-C never reaches it directly; the supervisor relays exactly one
  SIGTERM (litestream's final sync), waits up to the stop timeout, then SIGKILLs its group.
- A start (and a restart after a crash) is *confirmed* once every replica holds the position
  litestream had of its database when it started (``confirm``). Errors that no retry can fix
  (bad credentials, missing bucket) fail the start at once. The final sync is judged the same way.
- An unexpected exit is restarted after an exponential, jittered backoff (1 s .. 60 s); a run
  that lasted ``stable_after`` seconds resets the count; ``max_quick_failures`` failures in a
  row end in FATAL (SupervisorError, exit code 9) with litestream's last error lines.
- With a glob in BACKUP_DATABASES and the config rendered from the settings, a database created
  later is found by ``dbwatch`` (every 15 s); the supervisor locks it, renders its private
  config again and restarts litestream (final sync first, no backoff, not a failure).
- If the supervisor itself is SIGKILLed: on Linux litestream gets SIGTERM from the kernel
  (PR_SET_PDEATHSIG) and does its final sync; everywhere, the next start finds the litestream
  through its process record and stops it first.
- The supervisor stays SINGLE-THREADED while litestream runs (output is tailed in the main
  loop, a periodic verify runs in a forked child process). PR_SET_PDEATHSIG fires when the
  *thread* that forked litestream dies, and again each time litestream is reparented to
  another live thread of the dying process: a SIGKILLed supervisor with N threads sends up
  to N SIGTERMs, and litestream 0.5 takes the second one as "skip the shutdown sync"
  (`shutdown sync skipped, interrupted by signal`), losing the newest writes.

Clocks (monotonic and wall), sleep, spawn, the random source and the position check are
injectable, so the restart logic is tested without waiting. One litestream run's pieces
(spawn, output, signals) are in ``child``; the private config, restore-if-missing and position
checks in ``confirm``; the glob scan in ``dbwatch``; the periodic jobs in ``periodic``; log lines
in ``litestream.log``, log files in ``logfiles``, the background launcher and `stop` in ``background``.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupctl.checks import continuity
from backupctl.checks.observations import Observer
from backupctl.checks.sentinel import clean_up_after_killed_verify
from backupctl.config.render import fingerprint, render
from backupctl.config.settings import Database, Settings, parse_duration
from backupctl.errors import ConflictError, ExitCode, SupervisorError
from backupctl.host import liveness, locks, memory, processes, state
from backupctl.host.service_managers import service_manager
from backupctl.litestream.adapter import series_of
from backupctl.litestream.log import PERMANENT_ERRORS, LogLine, parse_log_line
from backupctl.litestream.runner import Litestream, _kill_group
from backupctl.owned import write_atomic
from backupctl.redact import scrub
from backupctl.supervise import frame as status_frame
from backupctl.supervise.child import (
    LITESTREAM_OUTPUT,
    ChildOutcome,
    ChildProcess,
    ChildRun,
    Output,
    default_spawn,
    describe_exit,
    send_signal,
)
from backupctl.supervise.confirm import Coverage, private_config, restore_missing_database
from backupctl.supervise.dbwatch import WATCH_INTERVAL, DatabaseWatch
from backupctl.supervise.periodic import CONTINUITY_JOB, PeriodicJob, supervisor_jobs
from backupctl.versions import capabilities

__all__ = ["LITESTREAM_OUTPUT", "TRANSITIONS", "ChildProcess", "Supervisor", "backoff_delay", "stop_timeout_seconds"]

Log = Callable[[str], None]

DEFAULT_STOP_TIMEOUT = 45.0  # the default Capabilities.stop_timeout: above 0.5's 30 s shutdown-sync-timeout
BACKOFF_MIN, BACKOFF_MAX = 1.0, 60.0
STABLE_AFTER = 30.0  # a run this long resets the failure count
MAX_QUICK_FAILURES = 5
START_DEADLINE = 60.0  # a start with errors and no confirmation by then has failed
FAILED_START_GRACE = 5.0  # a start that never synced has nothing to flush: short grace, then SIGKILL
FIRST_POSITION_CHECK = 1.0  # seconds after litestream started; then every 1 s, slowing to 5 s
REPROVE_UNRESTORABLE = 60.0  # seconds: a replica still holding nothing that restores is proved again
CONTINUITY_AFTER_START = 2.0  # seconds after a confirmed start before its continuity check
MAX_HEALS = 3  # fresh snapshots in a row for one database before backupctl stops trying (and says so)
GUARD_MIN_HOLD = 10.0  # seconds a new litestream runs under the WAL guard at least, unless confirmed sooner
ERRORS_QUIET = 15.0  # seconds without a litestream error before the chain is proven again
STALL_KILL_AFTER = 5.0  # a litestream that made no progress gets this long after SIGTERM


def stop_timeout_seconds(settings: Settings) -> float:
    """BACKUP_STOP_TIMEOUT in seconds, or the default (longer than litestream's own)."""

    return parse_duration(settings.stop_timeout) if settings.stop_timeout else capabilities(settings.version).stop_timeout


def backoff_delay(failures: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before restart number ``failures`` (1-based): 1, 2, 4 ... 60, +-20 % jitter."""
    base = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** max(0, failures - 1))
    return max(BACKOFF_MIN, min(BACKOFF_MAX, base * (0.8 + 0.4 * rng())))


# The supervisor's states (after Supervisor's process.py) and the only moves between them.
# STOPPING -> STARTING: litestream stopped (final sync) to restart with new databases.
TRANSITIONS: dict[str, frozenset[str]] = {
    state.STOPPED: frozenset({state.STARTING}),
    state.STARTING: frozenset({state.RUNNING, state.STOPPING, state.BACKOFF, state.FATAL, state.STOPPED}),
    state.RUNNING: frozenset({state.STOPPING, state.BACKOFF, state.FATAL, state.STOPPED}),
    state.STOPPING: frozenset({state.STOPPED, state.STARTING, state.BACKOFF, state.FATAL}),
    state.BACKOFF: frozenset({state.STARTING, state.FATAL, state.STOPPED}),
    state.FATAL: frozenset(),
}


@dataclass
class Supervisor:
    """Runs litestream for one project until asked to stop (or FATAL)."""

    settings: Settings
    litestream: Litestream
    state_dir: Path
    log: Log
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    spawn: Callable[[], ChildProcess] | None = None
    clock: Callable[[], float] = time.monotonic  # for intervals and deadlines
    wall_clock: Callable[[], float] = time.time  # for the times recorded in supervisor.json
    sleep: Callable[[float], None] | None = None  # default: waits, but wakes on a stop request
    rng: Callable[[], float] = random.random
    max_quick_failures: int = MAX_QUICK_FAILURES
    stable_after: float = STABLE_AFTER
    start_deadline: float = START_DEADLINE
    restore_if_missing: bool = False
    background: bool = False  # started by `start --background` (a detached process of its own)
    report: Log | None = None  # where "restored X" lines also go (stdout in the foreground)
    take_locks: bool = True
    source_config: Path | None = None  # the litestream.yml the private copy was taken from
    config_input: str | None = None  # render.input_key of the settings the copy was rendered from
    # Which databases' replicas cover their local position now (paths as str). Injectable for tests;
    # the default reads positions through litestream (backupctl.supervise.confirm).
    position_check: Callable[[list[Database]], set[str]] | None = None
    handle_signals: bool = True
    watch_interval: float = WATCH_INTERVAL  # seconds between two looks for new databases (globs)

    stop_signal: int | None = field(default=None, init=False)
    status: state.SupervisorState = field(default_factory=state.SupervisorState, init=False)
    _wake: threading.Event = field(default_factory=threading.Event, init=False)
    _held: list[locks.HeldLock] = field(default_factory=list, init=False)
    _error_lines: deque[str] = field(default_factory=lambda: deque(maxlen=12), init=False)
    _jobs: list[PeriodicJob] = field(default_factory=list, init=False)
    _coverage: Coverage | None = field(default=None, init=False)
    _watch: DatabaseWatch | None = field(default=None, init=False)
    _record: processes.ProcessRecord | None = field(default=None, init=False)
    _observer: Observer | None = field(default=None, init=False)
    # Read transactions that keep each WAL whole while no litestream watches it (continuity.WalGuard).
    _guard: continuity.WalGuard = field(default_factory=continuity.WalGuard, init=False)
    _heal: set[str] = field(default_factory=set, init=False)  # databases to snapshot afresh at the next spawn
    _heals: dict[str, int] = field(default_factory=dict, init=False)  # fresh snapshots since the last whole verdict
    _proofs_seen: int = field(default=0, init=False)  # continuity.json's mtime when its verdicts were last acted on
    _last_error_at: float | None = field(default=None, init=False)  # clock() of litestream's last ERROR line
    _recheck_after_errors: bool = field(default=False, init=False)  # prove the chain once litestream's errors stop
    _unrestorable: dict[str, float] = field(default_factory=dict, init=False)  # replica holding nothing that restores: proved at
    _looks_seen: int = field(default=-1, init=False)  # the observer's looks when they were last searched for one

    # -- public -------------------------------------------------------------------------
    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        """Ask for a graceful stop (what SIGINT/SIGTERM do). Safe from a signal handler."""
        if self.stop_signal is None:
            self.stop_signal = signum
        self._wake.set()

    def run(self) -> int:
        """Supervise until stopped: returns 0, 130 or 143; raises SupervisorError on FATAL."""
        if self.take_locks:
            # Orphans of ours are stopped, then anything else replicating these databases or
            # replicas refuses the start (exit 6, naming it); the locks close the race.
            processes.check_free(self.settings, project=self.settings.project_dir, allow_pids={os.getpid()}, log=self.log)
            self._take_locks()  # before touching any state file: those belong to the lock holder

            clean_up_after_killed_verify(self.settings, self.log)
        if self.source_config is not None:
            try:
                self.litestream = Litestream(
                    self.litestream.binary, self.settings, private_config(self.source_config, self.state_dir)
                )
            except BaseException:
                self._release()
                raise
        self._coverage = Coverage(self.settings, self.litestream, self.log, self.position_check)
        if self._renders_own_config() and self.settings.globs:
            self._watch = DatabaseWatch(self.settings.globs, self.clock, self.log, self.watch_interval)
        previous = self._install_signal_handlers() if self.handle_signals else {}
        self._record = self._register_self()
        self.status = state.SupervisorState(
            state=state.STARTING,
            pid=os.getpid(),
            create_time=self._record.create_time if self._record else None,
            project=str(self.settings.project_dir),
            background=self.background,
            started_at=self.wall_clock(),
            config_path=str(self.litestream.config_path),
            config_source=str(self.source_config or self.litestream.config_path),
            config_input=self.config_input,
            databases=[str(db.path) for db in self.settings.databases],
            version=self.settings.version,
        )
        self._jobs = supervisor_jobs(
            self.settings, lambda: self.litestream, self.state_dir, self.log, self.clock, lambda: self.stop_signal is not None
        )
        try:
            self._save()
            status_frame.publish(self.state_dir, self.settings, self.status, self._record, self.litestream.binary)
            if self.restore_if_missing:
                for db in self.settings.databases:
                    restore_missing_database(self.settings, self.litestream, db, self.log, self.report)
            return self._loop()
        finally:
            for job in self._jobs:
                job.end()
            status_frame.discard(self.state_dir)
            self._guard.release()
            self.status.litestream_pid = self.status.litestream_start_ticks = None
            if self.status.state != state.FATAL:
                self._transition(state.STOPPED)
            processes.unregister(self._record)
            self._release()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    # -- states -------------------------------------------------------------------------
    def _transition(self, new: str) -> None:
        """Move to state ``new``; every change goes through here and must be an allowed edge."""
        current = self.status.state
        if new != current and new not in TRANSITIONS[current]:
            raise AssertionError(f"supervisor state {current} -> {new} is not allowed")
        self.status.state = new
        self._save()

    # -- loop ---------------------------------------------------------------------------
    def _loop(self) -> int:
        spawn = self.spawn or default_spawn(self.litestream, self.state_dir / LITESTREAM_OUTPUT)
        failures = 0
        while self.stop_signal is None:
            outcome = self._run_child(spawn)
            if outcome.stopped:
                break
            if outcome.reload is not None:  # stopped on purpose to take up new databases: no backoff
                self._adopt(outcome.reload)
                continue
            if outcome.restart is not None:  # stopped on purpose (no progress, or healing): no backoff
                continue
            if outcome.confirmed and outcome.runtime >= self.stable_after:
                failures = 0
            failures += 1
            self.status.restarts += 1
            self.status.last_exit_code = outcome.returncode
            why = outcome.failed_start or f"litestream exited unexpectedly (code {describe_exit(outcome.returncode)})"
            if failures >= self.max_quick_failures:
                self.status.last_error = self.status.last_error or why
                self.status.last_error_lines = list(self._error_lines)
                self._transition(state.FATAL)
                self.log(f"backupctl: FATAL: {why}; {failures} failed starts in a row, giving up")
                for line in self._error_lines:
                    self.log(f"backupctl:   {line}")
                raise SupervisorError(
                    f"litestream failed {failures} times in a row; replication is NOT running",
                    "fix the cause shown above (`backupctl doctor` checks credentials and the replica), then start again",
                    details=[why, *self._error_lines],
                )
            delay = backoff_delay(failures, self.rng)
            self._transition(state.BACKOFF)
            self.log(f"backupctl: {why} after {outcome.runtime:.1f}s; restarting in {delay:.1f}s")
            self._sleep(delay)
        signum = self.stop_signal
        if signum == signal.SIGINT:
            return int(ExitCode.INTERRUPTED)
        if signum == signal.SIGTERM:
            return int(ExitCode.TERMINATED)
        return 0

    def _sleep(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        else:
            self._wake.wait(seconds)

    def _run_child(self, spawn: Callable[[], ChildProcess]) -> ChildOutcome:
        """One litestream, from spawn to exit: STARTING, RUNNING once confirmed, STOPPING on request."""
        self._transition(state.STARTING)
        # What litestream has of each database before it starts (0.5: its TXID; 0.3: generation and
        # shadow WAL): once every replica holds that, this start is confirmed. At start 0.5 may cut a
        # new TXID from its own shutdown checkpoint, shipped only at the next sync (10 s by default):
        # waiting for it would make every idle restart wait a sync interval for no new data.
        self._keep_chains_whole()
        # litestream 0.5.17 can checkpoint at start before it has read what the app wrote while it was
        # stopped, which loses those frames: the guard holds every WAL until it has read past it.
        self._guard.hold(list(self.settings.databases), self.log)
        targets = self._positions.local_positions(list(self.settings.databases))
        proc = spawn()
        run = ChildRun(proc=proc, started=self.clock(), targets=targets, pending={str(db.path) for db in self.settings.databases})
        run.next_check = run.started + FIRST_POSITION_CHECK
        self.status.litestream_pid = proc.pid
        self.status.litestream_start_ticks = liveness.start_ticks(proc.pid)
        self.status.child_started_at = self.wall_clock()
        self._save()
        child = self._register_child(proc.pid)
        self.log(f"backupctl: started litestream {self.settings.version} (pid {proc.pid})")
        output = Output(proc, self.state_dir / LITESTREAM_OUTPUT)
        self._observer = self._new_observer()
        try:
            while True:
                raw = output.next_line(quick=run.term_sent_at is not None or self.stop_signal is not None)
                if raw is None:
                    run.eof = True
                elif raw:
                    self._on_line(run, parse_log_line(scrub(raw, self.settings)))
                now = self.clock()
                self._on_tick(run, now)
                if proc.poll() is not None:
                    if self.stop_signal is None and run.restart is None and run.exited_at is None:
                        # Died on its own: hold every WAL still until the next litestream has confirmed.
                        self._guard.hold(list(self.settings.databases), self.log)
                    run.exited_at = run.exited_at if run.exited_at is not None else now
                    if run.eof or output.reader_done() or now - run.exited_at > 5:  # a grandchild may hold the pipe
                        break
            returncode = proc.wait()
        finally:
            output.close()
            if self._observer is not None:
                self._observer.discard()
                self._observer = None
        processes.unregister(child)
        return self._finish(run, returncode)

    def _on_tick(self, run: ChildRun, now: float) -> None:
        """Everything the loop does between two looks at litestream's output (about once a second
        when idle, every 0.1 s while it logs): confirm, stop, periodic jobs, new databases, and the
        looks `status` reads."""
        self._check_confirmation(run, now)
        # Not confirmed yet (a slow or unreachable replica): once litestream has read past the guard
        # and run a while (its start-up checkpoint is behind it), the guard lets go, so an outage
        # does not grow the WAL for ever.
        if (
            self._guard
            and not run.confirmed
            and run.term_sent_at is None
            and now >= run.next_guard_check
            and now - run.started >= max(GUARD_MIN_HOLD, 2 * self.settings.sync_seconds)
        ):
            run.next_guard_check = now + 1.0
            self._guard.release_read(list(self.settings.databases), series_of(self.litestream.caps.version))
        # A position check can take long (1,000 replicas): a stop asked meanwhile gets its full
        # final-sync window from now, not from before the check.
        self._drive_stop(run, self.clock())
        for job in self._jobs:
            job.tick(run.confirmed)
        self._look_for_new_databases(run, now)
        if self._observer is not None and run.confirmed and run.term_sent_at is None and self.stop_signal is None:
            looks = self._observer.looks
            self._observer.tick()
            if self._observer.looks != looks:
                # Once a look (every 15 s at most): what was parsed and dropped since the last one (the
                # look's readings, continuity.json read while a pass records its verdicts, log bursts)
                # is free but stays in the C heap until trimmed (``host.memory``; ~10 us when nothing is).
                memory.trim()
            self._restart_if_stalled(run, now)
            self._recheck_when_errors_stop(now)
            self._prove_unrestorable()
        self._heal_broken_chains(run, now)

    def _new_observer(self) -> Observer | None:
        """What this litestream run publishes for `status` (none with an injected position check)."""
        if self.position_check is not None:
            return None
        return Observer(self.litestream, list(self.settings.databases), self.state_dir, self.settings.sync_seconds,
                        clock=self.clock, log=self.log)  # fmt: skip

    def _on_line(self, run: ChildRun, line: LogLine) -> None:
        self.log(f"litestream: {line.readable}")
        if line.level == "ERROR":
            self._last_error_at = self.clock()
            self._recheck_after_errors = True
            run.errors_seen += 1
            self._error_lines.append(line.readable)
            self.status.last_error = line.error_text
            self.status.last_error_lines = list(self._error_lines)
            self._save()
            if run.term_sent_at is not None:
                run.errors_after_term += 1
            elif not run.confirmed and PERMANENT_ERRORS.search(line.raw):
                run.failed_start = f"litestream cannot replicate: {line.error_text}"
        if run.term_sent_at is not None and any(m in line.message for m in self.litestream.caps.shutdown_skipped_markers):
            run.sync_skipped = True

    def _check_confirmation(self, run: ChildRun, now: float) -> None:
        if run.confirmed or run.failed_start is not None or run.term_sent_at is not None:
            return
        if now >= run.next_check and run.proc.poll() is None:
            run.pending -= self._positions.covered(
                [db for db in self.settings.databases if str(db.path) in run.pending], run.targets
            )
            run.next_check = self.clock() + min(5.0, 1.0 + (now - run.started) / 10)
            if not run.pending:
                run.confirmed = True
                self.status.confirmed_at = self.wall_clock()
                self._transition(state.RUNNING)
                pid = run.proc.pid
                self.log(f"backupctl: replication running (every replica holds its database's position); litestream pid {pid}")
                # litestream holds its own read transaction now; the guard's job is done. The new
                # chain is proven against the live pages shortly (continuity).
                self._guard.release()
                self._continuity_soon()
                return
        if run.errors_seen and now - run.started >= self.start_deadline:
            run.failed_start = f"litestream reported errors and did not confirm replication within {self.start_deadline:g}s"

    def _drive_stop(self, run: ChildRun, now: float) -> None:
        """One SIGTERM on a stop request (or a failed start), then SIGKILL of the group past its deadline."""
        proc = run.proc
        if run.term_sent_at is None and proc.poll() is None:
            if self.stop_signal is not None:
                # litestream's shutdown releases its read transaction: without ours, a checkpoint
                # racing its final sync can take frames out of the WAL unseen.
                self._guard.hold(list(self.settings.databases), self.log)
                self._send_term(run, now, self.stop_timeout, f"stopping litestream (final sync, up to {self.stop_timeout:g}s)")
            elif run.failed_start is not None:
                run.term_sent_at, run.kill_at = now, now + FAILED_START_GRACE
                send_signal(proc, signal.SIGTERM)
        if run.kill_at is not None and not run.killed and now >= run.kill_at and proc.poll() is None:
            self.log("backupctl: litestream did not exit in time; killing its process group")
            _kill_group(proc)
            run.killed = True

    def _send_term(self, run: ChildRun, now: float, timeout: float, why: str) -> None:
        run.term_sent_at, run.kill_at = now, now + timeout
        self._transition(state.STOPPING)
        self.log(f"backupctl: {why}")
        send_signal(run.proc, signal.SIGTERM)

    def _finish(self, run: ChildRun, returncode: int) -> ChildOutcome:
        runtime = self.clock() - run.started
        self.status.litestream_pid = self.status.litestream_start_ticks = None
        self.status.last_exit_code = returncode
        stopped = self.stop_signal is not None and (run.failed_start is None or run.term_sent_at is None)
        final_sync: bool | None = None
        if stopped or run.reload is not None:
            final_sync = self.status.final_sync = self._positions.final_sync(run, returncode)
        if not stopped and run.reload is None and run.restart is None and self.status.state in (state.RUNNING, state.STARTING):
            # It died on its own: never a "running" document without a litestream, even for an instant
            # (the loop decides next between BACKOFF and FATAL, both allowed from here).
            self._transition(state.BACKOFF)
        self._save()
        return ChildOutcome(returncode, runtime, run.confirmed, stopped, run.failed_start, final_sync, run.killed,
                            run.reload, run.restart)  # fmt: skip

    # -- whole chains (continuity) ---------------------------------------------------------
    def _keep_chains_whole(self) -> None:
        """Before litestream starts: a database to heal, or whose WAL was restarted while no
        litestream watched (0.5 would continue its chain without the frames checkpointed meanwhile),
        gets a full snapshot first (``continuity.force_snapshot``), under the WAL guard so that the
        app cannot open a new hole before the next litestream has read its WAL. A database whose
        WAL the guard held across the gap needs none."""
        series = series_of(self.litestream.caps.version)
        why: dict[str, str] = {}
        heal = set(self._heal)
        for db in self.settings.databases:
            key = str(db.path)
            if key in heal:
                why[key] = "to heal its broken chain"
            elif reason := continuity.chain_break(db, series):  # the guard may have come after the WAL restarted
                why[key] = f"because {reason}"
        self._heal.clear()
        if not why:
            return
        chosen = [db for db in self.settings.databases if str(db.path) in why]
        self._guard.release(chosen)  # a guard would keep the TRUNCATE checkpoint from emptying the WAL
        for db in chosen:
            size = db.path.stat().st_size if db.path.exists() else 0
            self.log(f"backupctl: {db.name}: a full snapshot {why[str(db.path)]} (a full upload, about {size // 1024} KiB)")
        busy = continuity.force_snapshot(chosen, series)
        self._guard.hold(chosen, self.log)
        # Healing (and a WAL the app kept busy) also gets a level-9 snapshot: a restore starts from
        # the newest one, which bridges LTX files missing from the replica.
        level9 = [db for db in chosen if str(db.path) in heal or db in busy] if series.keeps_ltx_chain else []
        if level9:
            failed = continuity.snapshot_level9(self.litestream, self._snapshot_config(level9))
            if failed:
                self.log(f"backupctl: the level-9 snapshot failed: {scrub(failed, self.settings)}; "
                         "the continuity check after the start will tell whether the chain is whole")  # fmt: skip

    def _snapshot_config(self, chosen: list[Database]) -> Path | None:
        """A config naming only ``chosen`` (rendered as the private one was), or None for the private one."""
        if len(chosen) == len(self.settings.databases) or not self._renders_own_config():
            return None
        import dataclasses


        path = self.state_dir / "snapshot.yml"
        write_atomic(path, render(dataclasses.replace(self.settings, databases=tuple(chosen))).text)
        return path

    def _continuity_job(self) -> PeriodicJob | None:
        return next((job for job in self._jobs if job.name == CONTINUITY_JOB), None)

    def _continuity_soon(self) -> None:
        job = self._continuity_job()
        if job is not None and self.position_check is None:
            job.soon(CONTINUITY_AFTER_START)

    def _recheck_when_errors_stop(self, now: float) -> None:
        """After litestream reported errors (a full disk, an outage) and has been quiet for a while,
        prove the chain again: 0.3.13 went on after a full replica disk with a generation that no
        longer restored, while every position looked fine."""
        if self._recheck_after_errors and self._last_error_at is not None and now - self._last_error_at >= ERRORS_QUIET:
            self._recheck_after_errors = False
            self.log("backupctl: litestream's errors have stopped; proving the replicas whole again")
            self._continuity_soon()

    def _prove_unrestorable(self) -> None:
        """A replica the last look found holding nothing that restores (deleted under litestream, which
        writes its next files into it): the continuity check runs now, finds it broken and the supervisor
        heals it with a full snapshot (``_heal_broken_chains``), instead of at the next interval."""
        if self._observer is None or (self._observer.looks == self._looks_seen and not self._unrestorable):
            return  # asked every tick: a new look is what can find one
        self._looks_seen = self._observer.looks
        found = self._observer.unrestorable()
        now = self.clock()
        self._unrestorable = {key: self._unrestorable.get(key, float("-inf")) for key in found}
        due = sorted(key for key, at in self._unrestorable.items() if now - at >= REPROVE_UNRESTORABLE)
        if due:
            names = ", ".join(os.path.basename(key) for key in due)
            self.log(f"backupctl: the replica of {names} holds nothing that restores (no snapshot to start from): "
                     "proving it now, to heal it with a full snapshot")  # fmt: skip
            self._unrestorable.update(dict.fromkeys(due, now))
            self._continuity_soon()

    def _heal_broken_chains(self, run: ChildRun, now: float) -> None:
        """A continuity check found a broken chain: restart litestream with a fresh snapshot of
        that database (at most MAX_HEALS times in a row; the verdict stays broken meanwhile)."""
        job = self._continuity_job()
        if job is None or job.running() or not run.confirmed or run.term_sent_at is not None or self.stop_signal is not None:
            return
        try:  # one stat a tick; the verdicts are read only when a check wrote new ones
            written = os.stat(self.state_dir / continuity.RECORDS).st_mtime_ns
        except OSError:
            return
        if written == self._proofs_seen:
            return
        self._proofs_seen = written
        proofs = continuity.records(self.state_dir)
        heal = []
        for db in self.settings.databases:
            proof = proofs.get(str(db.path)) or {}
            if proof.get("verdict") == continuity.WHOLE:
                self._heals.pop(str(db.path), None)
            elif proof.get("verdict") == continuity.BROKEN:
                tries = self._heals.get(str(db.path), 0)
                if tries >= MAX_HEALS:
                    if tries == MAX_HEALS:
                        self.log(f"backupctl: {db.name}: the chain is still broken after {MAX_HEALS} fresh snapshots; "
                                 "giving up healing it (status says broken; see docs/faults.md)")  # fmt: skip
                        self._heals[str(db.path)] = tries + 1
                    continue
                self._heals[str(db.path)] = tries + 1
                heal.append(db)
        if heal:
            self._heal = {str(db.path) for db in heal}
            names = ", ".join(db.name for db in heal)
            run.restart = "heal"
            why = f"the replica of {names} is missing committed writes: restarting litestream with a fresh snapshot"
            self._send_term(run, now, self.stop_timeout, why)

    def _restart_if_stalled(self, run: ChildRun, now: float) -> None:
        """litestream has shipped nothing for a while though the live WAL was written, and its own
        reading of the WAL has stopped too: it is hung. Restart it, holding every WAL still meanwhile."""
        if self._observer is None or run.term_sent_at is not None:
            return
        stalled = self._observer.stalled()
        if not stalled:
            return
        # A litestream that keeps logging errors is alive and retrying (an unreachable replica, a full
        # disk): `status` names the error; it is restarted only once that has gone on for long.
        # A silent one is hung (0.3.13 on a full disk, a SIGSTOP): restarted at once.
        longest = max(seconds for _, seconds in stalled)
        recent_error = self._last_error_at is not None and now - self._last_error_at < self._observer.stall_after
        if recent_error and longest < 5 * self._observer.stall_after:
            return
        what = "; ".join(f"{name}: nothing shipped for {seconds:.0f}s" for name, seconds in stalled)
        cause = f" (its last error: {self.status.last_error})" if self.status.last_error else ""
        run.restart = "stalled"
        self._guard.hold(list(self.settings.databases), self.log)
        self._transition(state.STOPPING)
        run.term_sent_at, run.kill_at = now, now + STALL_KILL_AFTER
        self.log(f"backupctl: litestream is not making progress though the databases are written ({what}){cause}; restarting it")
        send_signal(run.proc, signal.SIGTERM)

    # -- new databases (a glob in BACKUP_DATABASES) ---------------------------------------
    def _renders_own_config(self) -> bool:
        """The private config is rendered from the settings (not a user's own --config file)."""
        return self.source_config is not None and Path(self.source_config) == self.settings.config_path

    def _look_for_new_databases(self, run: ChildRun, now: float) -> None:
        """A database matching a glob appeared: lock it, render the config with it, restart litestream."""
        if self._watch is None or not run.confirmed or run.term_sent_at is not None or self.stop_signal is not None:
            return
        widening = self._watch.widen(self.settings, os.getpid(), lock=self.take_locks)
        if widening is None:
            return
        names = ", ".join(str(p) for p in widening.added)
        try:  # litestream reads its config only when it starts: the running one is not disturbed
            write_atomic(self.state_dir / state.PRIVATE_CONFIG, widening.config_text)
        except OSError as exc:
            self.log(f"backupctl: cannot add {names}: cannot write {state.PRIVATE_CONFIG}: {exc.strerror}; restart to retry")
            for lock in widening.held:
                lock.release()
            self._watch.refuse(widening.added)
            return
        self._held += widening.held
        run.reload = widening.settings
        self._guard.hold(list(self.settings.databases), self.log)
        self._send_term(
            run, now, self.stop_timeout, f"new database(s) {names}: restarting litestream to replicate them (final sync first)"
        )

    def _adopt(self, settings: Settings) -> None:
        """Run the next litestream with the wider settings (its config is written): state, process record."""

        self.settings = settings
        self.litestream = Litestream(self.litestream.binary, settings, self.state_dir / state.PRIVATE_CONFIG)
        self._coverage = Coverage(settings, self.litestream, self.log, self.position_check)
        self.status.databases = [str(db.path) for db in settings.databases]
        if self.source_config is not None:  # `status` compares it with the settings it loads
            self.status.config_input = fingerprint(settings, Path(self.source_config))
        self._record = self._register_self() or self._record
        self._save()
        status_frame.publish(self.state_dir, settings, self.status, self._record, self.litestream.binary)

    # -- plumbing -----------------------------------------------------------------------
    @property
    def _positions(self) -> Coverage:
        if self._coverage is None:
            self._coverage = Coverage(self.settings, self.litestream, self.log, self.position_check)
        return self._coverage

    def _register_self(self) -> processes.ProcessRecord | None:
        return processes.register(
            processes.SUPERVISOR,
            os.getpid(),
            project=self.settings.project_dir,
            databases=[db.path for db in self.settings.databases],
            replicas=[r.lock_key for db in self.settings.databases for r in db.replicas],
            background=self.background,
            manager=None if self.background else service_manager(),
            state_dir=self.state_dir,
        )

    def _register_child(self, pid: int) -> processes.ProcessRecord | None:
        try:  # None when the pid is already gone (or not a real process: an injected spawn)
            return processes.register(
                processes.LITESTREAM,
                pid,
                project=self.settings.project_dir,
                databases=[db.path for db in self.settings.databases],
                replicas=[r.lock_key for db in self.settings.databases for r in db.replicas],
                parent_pid=os.getpid(),
                pdeathsig=self.spawn is None and processes.use_parent_death_signal(),
                state_dir=self.state_dir,
            )
        except OSError as exc:
            self.log(f"backupctl: cannot record litestream pid {pid}: {exc.strerror}")
            return None

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def on_stop(signum: int, frame: object) -> None:
            # No logging here: the log's lock may be held by the code this signal interrupted.
            self.request_stop(signum)

        previous = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_stop)
        # A closed terminal must not end replication (litestream is in its own session anyway).
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        return previous

    def _take_locks(self) -> None:
        held = locks.take_replication_locks(self.settings.databases, os.getpid())
        if held is None:  # lost a race with another replicator that check_free did not see yet
            raise ConflictError(
                "another process started replicating these databases at the same moment",
                "two litestreams on one database or replica corrupt the backup; "
                "see who runs with `backupctl status`, and stop it first (`backupctl stop`)",
            )
        self._held = held

    def _release(self) -> None:
        while self._held:
            self._held.pop().release()

    def _save(self) -> None:
        try:
            state.write_supervisor_state(self.state_dir, self.status)
        except OSError as exc:
            self.log(f"backupctl: cannot write {self.state_dir / state.STATEFILE}: {exc.strerror}")
