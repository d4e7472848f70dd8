"""Supervise `litestream replicate`: single instance, restarts with backoff, graceful stop.

The core never prints: every line meant for people goes to a ``log`` callback (stderr in the
foreground, the rotating ``supervisor.log`` in the background).

The supervisor is a small state machine (after Supervisor's ``process.py``): STARTING ->
RUNNING -> STOPPING -> STOPPED, BACKOFF between restarts, FATAL at the end of a crash loop.
Every change goes through ``_transition``, which allows only the edges in ``TRANSITIONS``;
each litestream run keeps what it tracks in one ``_ChildRun``. Behaviour, in short
(docs/supervision.md has the long version):

- Before it starts, anything else replicating these databases or replicas is refused
  (``processes.check_free``) and orphans of a killed supervisor or verify are stopped; then
  locks per database and per replica (flock) close the race.
- litestream runs with a private copy of the config (``supervisor.yml``), in its own session,
  so a terminal hangup or Ctrl-C never reaches it directly; the supervisor relays exactly one
  SIGTERM (litestream's final sync), waits up to the stop timeout, then SIGKILLs its group.
- A start (and a restart after a crash) is *confirmed* once every replica holds the position
  litestream had of its database when it started (``backupctl.positions``): an idle database
  logs nothing, and 0.5.17 stopped before its first snapshot exits 0 with an empty replica, so
  neither log lines nor timing can confirm anything. Errors that no retry can fix (bad
  credentials, missing bucket) fail the start at once. The final sync is judged the same way.
- An unexpected exit is restarted after an exponential, jittered backoff (1 s .. 60 s); a run
  that lasted ``stable_after`` seconds resets the count; ``max_quick_failures`` failures in a
  row end in FATAL (SupervisorError, exit code 9) with litestream's last error lines.
- If the supervisor itself is SIGKILLed: on Linux litestream gets SIGTERM from the kernel
  (PR_SET_PDEATHSIG) and does its final sync; everywhere, the next start finds the litestream
  through its process record and stops it first.
- The supervisor stays SINGLE-THREADED while litestream runs (output is tailed in the main
  loop, a periodic verify runs in a forked child process). PR_SET_PDEATHSIG fires when the
  *thread* that forked litestream dies, and again each time litestream is reparented to
  another live thread of the dying process: a SIGKILLed supervisor with N threads sends up
  to N SIGTERMs, and litestream 0.5 takes the second one as "skip the shutdown sync"
  (`shutdown sync skipped, interrupted by signal`), losing the newest writes.

Clock, sleep, spawn, the random source and the position check are injectable, so the restart
logic is tested without waiting. Log lines are read by ``litestream_log``, log files kept by
``logfiles``, and the background launcher and `stop` live in ``background``.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from backupctl import locks, positions, processes, state
from backupctl.errors import BackupctlError, ConflictError, ExitCode, LitestreamError, SupervisorError
from backupctl.litestream_log import PERMANENT_ERRORS, LogLine, parse_log_line
from backupctl.logfiles import OutputTail, fresh_private_file
from backupctl.periodic import PeriodicJob
from backupctl.runner import Litestream, _kill_group, scrub
from backupctl.service_managers import service_manager
from backupctl.settings import Database, Settings, parse_duration

Log = Callable[[str], None]

DEFAULT_STOP_TIMEOUT = 45.0  # the default Capabilities.stop_timeout: above 0.5's 30 s shutdown-sync-timeout
BACKOFF_MIN, BACKOFF_MAX = 1.0, 60.0
STABLE_AFTER = 30.0  # a run this long resets the failure count
MAX_QUICK_FAILURES = 5
START_DEADLINE = 60.0  # a start with errors and no confirmation by then has failed
FAILED_START_GRACE = 5.0  # a start that never synced has nothing to flush: short grace, then SIGKILL
POSITION_TIMEOUT = 10.0  # one position reading (a litestream listing) while supervising
FIRST_POSITION_CHECK = 1.0  # seconds after litestream started; then every 1 s, slowing to 5 s
# How often the main loop looks at litestream's output when it is quiet: from 0.1 s after a
# line up to 1 s when idle, so an idle supervisor wakes about once a second.
IDLE_POLL_MIN = 0.1
IDLE_POLL_MAX = 1.0
LITESTREAM_OUTPUT = "litestream.out"  # litestream's raw (unmasked) output, mode 0600, relayed line by line into the log

def stop_timeout_seconds(settings: Settings) -> float:
    """BACKUP_STOP_TIMEOUT in seconds, or the default (longer than litestream's own)."""
    from backupctl.versions import capabilities

    return parse_duration(settings.stop_timeout) if settings.stop_timeout else capabilities(settings.version).stop_timeout


def backoff_delay(failures: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before restart number ``failures`` (1-based): 1, 2, 4 ... 60, +-20 % jitter."""
    base = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** max(0, failures - 1))
    return max(BACKOFF_MIN, min(BACKOFF_MAX, base * (0.8 + 0.4 * rng())))


class ChildProcess(Protocol):
    """What the supervisor needs from a spawned litestream (subprocess.Popen fits)."""

    pid: int
    stdout: Any
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


def _default_spawn(litestream: Litestream, output: Path) -> Callable[[], ChildProcess]:
    """litestream writes to a file, not a pipe: a Go program dies of SIGPIPE when it logs to a
    closed pipe, so a pipe would kill it (without its final sync) right after its supervisor died."""

    def spawn() -> ChildProcess:
        output.parent.mkdir(parents=True, exist_ok=True)
        fresh_private_file(output)
        with open(output, "ab") as handle:  # O_APPEND: the reader may truncate it when it grows
            kwargs: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": handle, "stderr": subprocess.STDOUT}
            kwargs.update(processes.child_kwargs())  # PR_SET_PDEATHSIG on Linux
            try:
                return litestream.popen("replicate", **kwargs)
            except OSError as exc:
                raise LitestreamError(
                    f"cannot run {litestream.binary}: {exc.strerror}",
                    "run `backupctl install --force` to reinstall the pinned binary",
                ) from None

    return spawn


# The supervisor's states (after Supervisor's process.py) and the only moves between them.
TRANSITIONS: dict[str, frozenset[str]] = {
    state.STOPPED: frozenset({state.STARTING}),
    state.STARTING: frozenset({state.RUNNING, state.STOPPING, state.BACKOFF, state.FATAL, state.STOPPED}),
    state.RUNNING: frozenset({state.STOPPING, state.BACKOFF, state.FATAL, state.STOPPED}),
    state.STOPPING: frozenset({state.STOPPED, state.BACKOFF, state.FATAL}),
    state.BACKOFF: frozenset({state.STARTING, state.FATAL, state.STOPPED}),
    state.FATAL: frozenset(),
}


@dataclass
class _ChildRun:
    """Everything one litestream run tracks, in one place."""

    proc: ChildProcess
    started: float
    targets: dict[str, positions.LocalPosition]
    pending: set[str]  # databases whose replica does not hold the target position yet
    next_check: float = 0.0
    confirmed: bool = False
    errors_seen: int = 0
    failed_start: str | None = None
    term_sent_at: float | None = None
    kill_at: float | None = None
    killed: bool = False
    errors_after_term: int = 0
    sync_skipped: bool = False
    eof: bool = False
    exited_at: float | None = None


@dataclass
class ChildOutcome:
    returncode: int | None
    runtime: float
    confirmed: bool
    stopped: bool  # we stopped it because of a stop request
    failed_start: str | None = None  # why we stopped it during its start
    final_sync: bool | None = None
    killed: bool = False


@dataclass
class Supervisor:
    """Runs litestream for one project until asked to stop (or FATAL)."""

    settings: Settings
    litestream: Litestream
    state_dir: Path
    log: Log
    stop_timeout: float = DEFAULT_STOP_TIMEOUT
    spawn: Callable[[], ChildProcess] | None = None
    clock: Callable[[], float] = time.monotonic
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
    # the default reads positions through litestream (backupctl.positions).
    position_check: Callable[[list[Database]], set[str]] | None = None
    handle_signals: bool = True

    stop_signal: int | None = field(default=None, init=False)
    status: state.SupervisorState = field(default_factory=state.SupervisorState, init=False)
    _wake: threading.Event = field(default_factory=threading.Event, init=False)
    _held: list[locks.HeldLock] = field(default_factory=list, init=False)
    _error_lines: deque[str] = field(default_factory=lambda: deque(maxlen=12), init=False)
    _jobs: list[PeriodicJob] = field(default_factory=list, init=False)
    _last_position_error: str | None = field(default=None, init=False)

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
            from backupctl.verify import clean_up_after_killed_verify

            clean_up_after_killed_verify(self.settings, self.log)
        if self.source_config is not None:
            try:
                self._use_private_config()
            except BaseException:
                self._release()
                raise
        previous = self._install_signal_handlers() if self.handle_signals else {}
        me = processes.register(
            processes.SUPERVISOR,
            os.getpid(),
            project=self.settings.project_dir,
            databases=[db.path for db in self.settings.databases],
            replicas=[r.lock_key for db in self.settings.databases for r in db.replicas],
            background=self.background,
            manager=None if self.background else service_manager(),
            state_dir=self.state_dir,
        )
        self.status = state.SupervisorState(
            state=state.STARTING,
            pid=os.getpid(),
            create_time=me.create_time if me else None,
            project=str(self.settings.project_dir),
            background=self.background,
            started_at=time.time(),
            config_path=str(self.litestream.config_path),
            config_source=str(self.source_config or self.litestream.config_path),
            config_input=self.config_input,
            databases=[str(db.path) for db in self.settings.databases],
            version=self.settings.version,
        )
        self._jobs = self._periodic_jobs()
        try:
            self._save()
            if self.restore_if_missing:
                for db in self.settings.databases:
                    restore_missing_database(self.settings, self.litestream, db, self.log, self.report)
            return self._loop()
        finally:
            for job in self._jobs:
                job.end()
            self.status.litestream_pid = None
            if self.status.state != state.FATAL:
                self._transition(state.STOPPED)
            processes.unregister(me)
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
        spawn = self.spawn or _default_spawn(self.litestream, self.state_dir / LITESTREAM_OUTPUT)
        failures = 0
        while self.stop_signal is None:
            outcome = self._run_child(spawn)
            if outcome.stopped:
                break
            if outcome.confirmed and outcome.runtime >= self.stable_after:
                failures = 0
            failures += 1
            self.status.restarts += 1
            self.status.last_exit_code = outcome.returncode
            why = outcome.failed_start or f"litestream exited unexpectedly (code {_describe_exit(outcome.returncode)})"
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
        targets = self._local_positions(list(self.settings.databases))
        proc = spawn()
        run = _ChildRun(
            proc=proc,
            started=self.clock(),
            targets=targets,
            pending={str(db.path) for db in self.settings.databases},
        )
        run.next_check = run.started + FIRST_POSITION_CHECK
        self.status.litestream_pid = proc.pid
        self.status.child_started_at = time.time()
        self._save()
        child = self._register_child(proc.pid)
        self.log(f"backupctl: started litestream {self.settings.version} (pid {proc.pid})")
        output = _Output(proc, self.state_dir / LITESTREAM_OUTPUT)
        try:
            while True:
                raw = output.next_line(quick=run.term_sent_at is not None or self.stop_signal is not None)
                if raw is None:
                    run.eof = True
                elif raw:
                    self._on_line(run, parse_log_line(scrub(raw, self.settings)))
                now = self.clock()
                self._check_confirmation(run, now)
                self._drive_stop(run, now)
                if proc.poll() is not None:
                    run.exited_at = run.exited_at if run.exited_at is not None else now
                    if run.eof or output.reader_done() or now - run.exited_at > 5:  # a grandchild may hold the pipe
                        break
                for job in self._jobs:
                    job.tick(run.confirmed)
            returncode = proc.wait()
        finally:
            output.close()
        processes.unregister(child)
        return self._finish(run, returncode)

    def _on_line(self, run: _ChildRun, line: LogLine) -> None:
        self.log(f"litestream: {line.readable}")
        if line.level == "ERROR":
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

    def _check_confirmation(self, run: _ChildRun, now: float) -> None:
        if run.confirmed or run.failed_start is not None or run.term_sent_at is not None:
            return
        if now >= run.next_check and run.proc.poll() is None:
            run.pending -= self._covered([db for db in self.settings.databases if str(db.path) in run.pending], run.targets)
            run.next_check = self.clock() + min(5.0, 1.0 + (now - run.started) / 10)
            if not run.pending:
                run.confirmed = True
                self.status.confirmed_at = time.time()
                self._transition(state.RUNNING)
                pid = run.proc.pid
                self.log(f"backupctl: replication running (every replica holds its database's position); litestream pid {pid}")
                return
        if run.errors_seen and now - run.started >= self.start_deadline:
            run.failed_start = f"litestream reported errors and did not confirm replication within {self.start_deadline:g}s"

    def _drive_stop(self, run: _ChildRun, now: float) -> None:
        """One SIGTERM on a stop request (or a failed start), then SIGKILL of the group past its deadline."""
        proc = run.proc
        if run.term_sent_at is None and proc.poll() is None:
            if self.stop_signal is not None:
                run.term_sent_at, run.kill_at = now, now + self.stop_timeout
                self._transition(state.STOPPING)
                self.log(f"backupctl: stopping litestream (final sync, up to {self.stop_timeout:g}s)")
                _signal(proc, signal.SIGTERM)
            elif run.failed_start is not None:
                run.term_sent_at, run.kill_at = now, now + FAILED_START_GRACE
                _signal(proc, signal.SIGTERM)
        if run.kill_at is not None and not run.killed and now >= run.kill_at and proc.poll() is None:
            self.log("backupctl: litestream did not exit in time; killing its process group")
            _kill_group(proc)
            run.killed = True

    def _finish(self, run: _ChildRun, returncode: int) -> ChildOutcome:
        runtime = self.clock() - run.started
        self.status.litestream_pid = None
        self.status.last_exit_code = returncode
        stopped = self.stop_signal is not None and (run.failed_start is None or run.term_sent_at is None)
        final_sync: bool | None = None
        if stopped:
            clean = returncode == 0 and not run.killed and not run.sync_skipped and run.term_sent_at is not None
            # The final sync is judged by position: after litestream exited, does every replica
            # hold what litestream had of its database? (0.5.17 stopped before its first snapshot
            # exits 0 with an empty replica; an error while stopping may or may not have lost data.)
            uncovered = {str(db.path) for db in self.settings.databases} - self._covered(list(self.settings.databases))
            final_sync = clean and not uncovered
            self.status.final_sync = final_sync
            self._log_final_sync(run, returncode, final_sync, uncovered)
        self._save()
        return ChildOutcome(returncode, runtime, run.confirmed, stopped, run.failed_start, final_sync, run.killed)

    def _log_final_sync(self, run: _ChildRun, returncode: int, final_sync: bool, uncovered: set[str]) -> None:
        code = _describe_exit(returncode)
        if final_sync:
            self.log("backupctl: litestream stopped; final sync completed: the replica holds every database's position")
        elif self._replicas_empty(uncovered):
            self.log(
                f"backupctl: litestream stopped (code {code}) before its first snapshot "
                "reached the replica: there is NO backup yet; start again and let it confirm"
            )
        else:
            self.log(
                f"backupctl: litestream stopped (code {code}"
                + (f", {run.errors_after_term} error(s) while stopping" if run.errors_after_term else "")
                + ("; killed after the stop timeout" if run.killed else "")
                + ("; litestream skipped its shutdown sync" if run.sync_skipped else "")
                + "); the final sync was NOT confirmed: the replica holds an earlier backup, "
                + "the newest writes may be missing from it"
                + (f" ({', '.join(sorted(Path(p).name for p in uncovered))})" if uncovered else "")
            )

    def _use_private_config(self) -> None:
        """Run litestream with a copy of its config taken now (mode 0600): a later `setup`, or a
        changed .env or template, never alters what this supervisor replicates (status says so)."""
        from backupctl.atomic import write_atomic

        private = self.state_dir / state.PRIVATE_CONFIG
        try:
            text = Path(self.source_config).read_text("utf-8")  # type: ignore[arg-type]
        except OSError as exc:
            raise LitestreamError(f"cannot read {self.source_config}: {exc.strerror}", "check its permissions") from None
        write_atomic(private, text)
        self.litestream = Litestream(self.litestream.binary, self.settings, private)

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

    def _local_positions(self, databases: list[Database]) -> dict[str, positions.LocalPosition]:
        if self.position_check is not None or not databases:
            return {}
        try:
            return positions.local_positions(self.litestream, databases, timeout=POSITION_TIMEOUT, shipped_only=True)
        except BackupctlError as exc:
            self._position_error(exc)
            return {}

    def _covered(self, databases: list[Database], targets: dict[str, positions.LocalPosition] | None = None) -> set[str]:
        """The databases (paths as str) whose replica holds their local position: the one in ``targets``
        when litestream had one for it, else the one it has now (a database it never replicated)."""
        if not databases:
            return set()
        if self.position_check is not None:
            return self.position_check(databases)
        has_ltx = self.litestream.caps.has_ltx
        wanted = {k: v for k, v in (targets or {}).items() if v.initialized}
        fresh = [db for db in databases if str(db.path) not in wanted]
        local = {**self._local_positions(fresh), **wanted} if fresh else wanted
        covered: set[str] = set()
        readable = [db for db in databases if str(db.path) in local]
        for path, replica in positions.read_replicas(self.litestream, readable, timeout=POSITION_TIMEOUT).items():
            if isinstance(replica, BackupctlError):
                self._position_error(replica)
            elif isinstance(replica, positions.ReplicaPosition) and positions.covers(replica, local[path], has_ltx):
                covered.add(path)
        return covered

    def _replicas_empty(self, databases: set[str]) -> bool:
        """True only when some replica is really empty (so "NO backup yet" is the truth)."""
        if not databases or self.position_check is not None:
            return False
        wanted = [db for db in self.settings.databases if str(db.path) in databases]
        readings = positions.read_replicas(self.litestream, wanted, timeout=POSITION_TIMEOUT).values()
        return any(isinstance(r, positions.ReplicaPosition) and r.empty for r in readings)

    def _position_error(self, exc: BackupctlError) -> None:
        text = scrub(exc.message, self.settings)
        if text != self._last_position_error:
            self._last_position_error = text
            self.log(f"backupctl: cannot read the replica's position yet: {text}")

    # -- periodic jobs (verify, drill) ----------------------------------------------------
    def _periodic_jobs(self) -> list[PeriodicJob]:
        jobs = []
        if self.settings.verify_interval:
            jobs.append(PeriodicJob("verify", parse_duration(self.settings.verify_interval), self._verify_all, self.clock))
        if self.settings.drill_interval:
            jobs.append(PeriodicJob("drill", parse_duration(self.settings.drill_interval), self._drill, self.clock))
        return jobs

    def _drill(self) -> None:
        from backupctl.drill import scheduled_drill

        scheduled_drill(self.settings, self.litestream, self.state_dir, self.log)

    def _verify_all(self) -> None:
        from backupctl import notify, verify

        for db in self.settings.databases:
            if self.stop_signal is not None:
                return
            try:
                result = verify.verify_database(self.settings, self.litestream.binary, db)
            except Exception as exc:  # a failed verify must never take replication down
                message = scrub(getattr(exc, "message", None) or str(exc) or type(exc).__name__, self.settings)
                self.log(f"backupctl: verify of {db.name} failed: {message}")
                record = state.VerifyRecord.failure(str(db.path), db.name, message)
                state.record_verify(self.state_dir, str(db.path), record)
            else:
                self.log(f"backupctl: verify of {db.name}: {result.status} ({result.reason})")
                record = result.to_record()
            # BACKUP_NOTIFY_URL / _FAIL_URL (notify.py): never raises; a slow webhook delays only this forked child
            notify.send(self.settings, notify.verify_event(record.to_json()), log=self.log)

    # -- plumbing -----------------------------------------------------------------------
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


def _pump(stream: Any, lines: queue.Queue[str | None]) -> None:
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
    except (OSError, ValueError):
        pass
    finally:
        lines.put(None)


class _Output:
    """litestream's output, line by line: the output file tailed in this (the only) thread, or,
    for an injected spawn with a pipe (tests), a reader thread (no parent-death signal there)."""

    def __init__(self, proc: ChildProcess, path: Path) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.reader: threading.Thread | None = None
        self.tail: OutputTail | None = None
        self.idle = IDLE_POLL_MIN
        if proc.stdout is not None:
            self.reader = threading.Thread(target=_pump, args=(proc.stdout, self.lines), daemon=True)
            self.reader.start()
        else:
            self.tail = OutputTail(path)

    def next_line(self, quick: bool) -> str | None:
        """A line; "" when none came (after a short wait); None at the end of the output."""
        if self.tail is None:
            try:
                return self.lines.get(timeout=0.2)
            except queue.Empty:
                return ""
        raw = self.tail.next_line(finished=self.proc.poll() is not None)
        if raw == "":
            # Back off while litestream is quiet (idle CPU), but stay quick while stopping.
            time.sleep(IDLE_POLL_MIN if quick else self.idle)
            self.idle = min(self.idle * 2, IDLE_POLL_MAX)
        else:
            self.idle = IDLE_POLL_MIN
        return raw

    def reader_done(self) -> bool:
        return self.reader is not None and not self.reader.is_alive()

    def close(self) -> None:
        if self.reader is not None:
            self.reader.join(timeout=1)
        if self.tail is not None:
            self.tail.close()


def _signal(proc: ChildProcess, signum: int) -> None:
    try:
        os.kill(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"{code}, killed by {signal.Signals(-code).name}"
        except ValueError:
            return str(code)
    return str(code)


# -- restore before replicating -----------------------------------------------------------
def restore_missing_database(
    settings: Settings, litestream: Litestream, db: Database, log: Log, report: Log | None = None
) -> bool:
    """Restore a missing database from its replica before replication starts. Never over an existing file.

    Returns True when it restored. With no backup in the replica, nothing happens (a fresh start).
    """
    from backupctl.restore import restore_if_missing

    if db.path.exists():
        return False
    log(f"backupctl: {db.path} is missing; restoring it from the replica if it has a backup")
    restored = restore_if_missing(settings, litestream.binary, db)
    if restored is None:
        log(f"backupctl: no backup of {db.path} in the replica (or the database appeared meanwhile); starting fresh")
        return False
    log(f"backupctl: {restored.summary()}")
    if report is not None:
        report(restored.summary())
    return True


