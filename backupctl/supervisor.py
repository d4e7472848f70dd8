"""Supervise `litestream replicate`: single instance, restarts with backoff, graceful stop.

The core never prints: every line meant for people goes to a ``log`` callback (stderr in the
foreground, the rotating ``supervisor.log`` in the background).

Behaviour, in short (docs/supervision.md has the long version):

- Locks per database and per replica destination (flock) keep a second supervisor out.
- litestream runs in its own session, so a terminal hangup or Ctrl-C never reaches it
  directly; the supervisor relays exactly one SIGTERM (litestream's final sync), waits up
  to the stop timeout, then SIGKILLs its process group.
- A start counts as *confirmed* only once litestream logged that a first snapshot / sync
  reached the replica ("snapshot complete" in 0.5, "snapshot written" in 0.3): never on
  timing alone. litestream 0.5.17 stopped before its first snapshot exits 0 and leaves the
  replica empty, so "it ran a few seconds without errors" proves nothing. Errors that no
  retry can fix (bad credentials, missing bucket) fail the start at once.
- An unexpected exit is restarted after an exponential, jittered backoff (1 s .. 60 s); a run
  that lasted ``stable_after`` seconds resets the count; ``max_quick_failures`` failures in a
  row end in FATAL (SupervisorError, exit code 9) with litestream's last error lines.
- If the supervisor itself is SIGKILLed: on Linux litestream gets SIGTERM from the kernel
  (PR_SET_PDEATHSIG) and does its final sync; everywhere, the next start finds a litestream
  recorded in ``litestream.pid`` (pid + start time) still running and stops it first.
- The supervisor stays SINGLE-THREADED while litestream runs (output is tailed in the main
  loop, a periodic verify runs in a forked child process). PR_SET_PDEATHSIG fires when the
  *thread* that forked litestream dies, and again each time litestream is reparented to
  another live thread of the dying process: a SIGKILLed supervisor with N threads sends up
  to N SIGTERMs, and litestream 0.5 takes the second one as "skip the shutdown sync"
  (`shutdown sync skipped, interrupted by signal`), losing the newest writes.

Clock, sleep, spawn and the random source are injectable, so the restart logic is tested
without waiting.
"""

from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from backupctl import locks, positions, processes, state
from backupctl.errors import BackupctlError, ConflictError, ExitCode, LitestreamError, SupervisorError
from backupctl.runner import Litestream, _kill_group, scrub
from backupctl.settings import Database, Settings, parse_duration

Log = Callable[[str], None]

DEFAULT_STOP_TIMEOUT = 45.0  # above litestream 0.5's 30 s shutdown-sync-timeout
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
LOG_MAX_BYTES = 5 * 1024 * 1024
LOG_BACKUPS = 3

# WARN lines (0.5) saying the shutdown sync did not run.
_SHUTDOWN_SYNC_SKIPPED = ("shutdown sync skipped", "shutdown sync interrupted", "shutdown sync failed")
# Errors no retry fixes: fail the start at once instead of waiting for the deadline.
_PERMANENT_ERRORS = re.compile(
    r"SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied|NoSuchBucket|InvalidBucketName|"
    r"no replicas configured|multiple replicas on a single database|AuthorizationHeaderMalformed|"
    r"AuthenticationFailed|permission denied",
    re.IGNORECASE,
)
_LOGFMT = re.compile(r'(\w[\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')


def stop_timeout_seconds(settings: Settings) -> float:
    """BACKUP_STOP_TIMEOUT in seconds, or the default (longer than litestream's own)."""
    return parse_duration(settings.stop_timeout) if settings.stop_timeout else DEFAULT_STOP_TIMEOUT


def backoff_delay(failures: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before restart number ``failures`` (1-based): 1, 2, 4 ... 60, +-20 % jitter."""
    base = min(BACKOFF_MAX, BACKOFF_MIN * 2 ** max(0, failures - 1))
    return max(BACKOFF_MIN, min(BACKOFF_MAX, base * (0.8 + 0.4 * rng())))


@dataclass(frozen=True)
class LogLine:
    level: str  # INFO, ERROR, ... ("" when litestream printed something else)
    message: str
    fields: dict[str, str]
    raw: str

    @property
    def readable(self) -> str:
        if not self.level:
            return self.raw
        extra = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.level} {self.message}" + (f" ({extra})" if extra else "")

    @property
    def error_text(self) -> str:
        detail = self.fields.get("error")
        return f"{self.message}: {detail}" if detail else self.message


def parse_log_line(raw: str) -> LogLine:
    """litestream's logfmt line (`time=... level=INFO msg="..." k=v`) made readable."""
    raw = raw.rstrip("\r\n")
    if raw.startswith("Error: "):  # 0.5 prints fatal errors like this
        return LogLine("ERROR", raw[len("Error: ") :], {}, raw)
    head: dict[str, str] = {}
    found: dict[str, str] = {}
    for key, value in _LOGFMT.findall(raw):
        target = head if key in ("time", "level", "msg") and key not in head else found
        target[key] = _unquote(value)
    if "level" not in head or "msg" not in head:
        # 0.3 before its config is loaded: "2026/01/01 00:00:00 ERROR failed to run error=..."
        m = re.match(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (ERROR|WARN|INFO|DEBUG) (.*)$", raw)
        if m:
            return LogLine(m.group(1), m.group(2), {}, raw)
        return LogLine("", raw, {}, raw)
    return LogLine(head["level"].upper(), head["msg"], found, raw)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\n", " ").replace("\\t", " ").replace("\\\\", "\\")
    return value


class RotatingLog:
    """Append-only log file rotated by size (`supervisor.log.1` .. `.N`), one timestamped line per call."""

    def __init__(
        self, path: Path, max_bytes: int = LOG_MAX_BYTES, backups: int = LOG_BACKUPS, redirect_std: bool = False
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.redirect_std = redirect_std  # keep fd 1/2 (tracebacks) pointing at the current file
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self._open()

    def _open(self) -> IO[str]:
        handle = open(self.path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115 - long-lived
        os.chmod(self.path, 0o600)
        if self.redirect_std:
            for fd in (1, 2):
                os.dup2(handle.fileno(), fd)
        return handle

    def __call__(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with self._lock:
            self._handle.write(f"{stamp} {line}\n")
            self._handle.flush()
            if self._handle.tell() >= self.max_bytes:
                self._rotate()

    def _rotate(self) -> None:
        self._handle.close()
        for n in range(self.backups, 0, -1):
            src = self.path if n == 1 else self.path.with_name(f"{self.path.name}.{n - 1}")
            if src.exists():
                os.replace(src, self.path.with_name(f"{self.path.name}.{n}"))
        self._handle = self._open()

    def close(self) -> None:
        with self._lock:
            self._handle.close()


class ChildProcess(Protocol):
    """What the supervisor needs from a spawned litestream (subprocess.Popen fits)."""

    pid: int
    stdout: Any
    returncode: int | None

    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...


def _fresh_private_file(path: Path) -> None:
    """Create (or empty) ``path`` with mode 0600, never readable by others even for an instant:
    it receives litestream's raw, unmasked output."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file may have been created with a looser mode
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _default_spawn(litestream: Litestream, output: Path) -> Callable[[], ChildProcess]:
    """litestream writes to a file, not a pipe: a Go program dies of SIGPIPE when it logs to a
    closed pipe, so a pipe would kill it (without its final sync) right after its supervisor died."""

    def spawn() -> ChildProcess:
        output.parent.mkdir(parents=True, exist_ok=True)
        _fresh_private_file(output)
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
    _verify_pid: int | None = field(default=None, init=False)
    _next_verify: float | None = field(default=None, init=False)
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
            manager=None if self.background else processes.service_manager(),
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
        try:
            self._save()
            if self.restore_if_missing:
                for db in self.settings.databases:
                    restore_missing_database(self.settings, self.litestream, db, self.log)
            return self._loop()
        finally:
            self._end_verify()
            if self.status.state != state.FATAL:
                self.status.state = state.STOPPED
            self.status.litestream_pid = None
            self._save()
            processes.unregister(me)
            self._release()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

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
                self.status.state = state.FATAL
                self.status.last_error = self.status.last_error or why
                self.status.last_error_lines = list(self._error_lines)
                self._save()
                self.log(f"backupctl: FATAL: {why}; {failures} failed starts in a row, giving up")
                for line in self._error_lines:
                    self.log(f"backupctl:   {line}")
                raise SupervisorError(
                    f"litestream failed {failures} times in a row; replication is NOT running",
                    "fix the cause shown above (`backupctl doctor` checks credentials and the replica), then start again",
                    details=[why, *self._error_lines],
                )
            delay = backoff_delay(failures, self.rng)
            self.status.state = state.BACKOFF
            self._save()
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
        self.status.state = state.STARTING
        self._save()
        # What litestream has of each database before it starts (0.5: its TXID; 0.3: generation and
        # shadow WAL): once every replica holds that, this start is confirmed. At start 0.5 may cut a
        # new TXID from its own shutdown checkpoint, shipped only at the next sync (10 s by default):
        # waiting for it would make every idle restart wait a sync interval for no new data.
        targets = self._local_positions(list(self.settings.databases))
        proc = spawn()
        started = self.clock()
        self.status.litestream_pid = proc.pid
        self.status.child_started_at = time.time()
        self._save()
        child = self._register_child(proc.pid)
        self.log(f"backupctl: started litestream {self.settings.version} (pid {proc.pid})")

        lines: queue.Queue[str | None] = queue.Queue()
        reader: threading.Thread | None = None
        tail: OutputTail | None = None
        if proc.stdout is not None:  # an injected spawn with a pipe (tests): no parent-death signal there
            reader = threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True)
            reader.start()
        else:  # the default: a file, tailed here in the main thread (see "SINGLE-THREADED" above)
            tail = OutputTail(self.state_dir / LITESTREAM_OUTPUT)

        # Confirmation by position: each database's replica must cover the local position litestream
        # keeps (what it had shipped or was about to ship when it started). First checked once
        # litestream had a moment to open its databases (a bad config or database ends it at once).
        pending = {str(db.path) for db in self.settings.databases}
        next_check = started + FIRST_POSITION_CHECK
        confirmed = False
        errors_seen = 0
        failed_start: str | None = None
        term_sent_at: float | None = None
        kill_at: float | None = None
        killed = False
        errors_after_term = 0
        sync_skipped = False
        eof = False
        exited_at: float | None = None

        idle = IDLE_POLL_MIN
        while True:
            if tail is not None:
                raw = tail.next_line(finished=proc.poll() is not None)
                if raw == "":
                    # Back off while litestream is quiet (idle CPU), but stay quick while stopping.
                    time.sleep(IDLE_POLL_MIN if term_sent_at is not None or self.stop_signal is not None else idle)
                    idle = min(idle * 2, IDLE_POLL_MAX)
                else:
                    idle = IDLE_POLL_MIN
            else:
                try:
                    raw = lines.get(timeout=0.2)
                except queue.Empty:
                    raw = ""
            if raw is None:
                eof = True
            elif raw:
                line = parse_log_line(scrub(raw, self.settings))
                self.log(f"litestream: {line.readable}")
                if line.level == "ERROR":
                    errors_seen += 1
                    self._error_lines.append(line.readable)
                    self.status.last_error = line.error_text
                    self.status.last_error_lines = list(self._error_lines)
                    self._save()
                    if term_sent_at is not None:
                        errors_after_term += 1
                    elif not confirmed and _PERMANENT_ERRORS.search(line.raw):
                        failed_start = f"litestream cannot replicate: {line.error_text}"
                if term_sent_at is not None and any(m in line.message for m in _SHUTDOWN_SYNC_SKIPPED):
                    sync_skipped = True

            now = self.clock()
            running = proc.poll() is None
            if not confirmed and failed_start is None and term_sent_at is None and running and now >= next_check:
                pending -= self._covered([db for db in self.settings.databases if str(db.path) in pending], targets)
                next_check = self.clock() + min(5.0, 1.0 + (now - started) / 10)
                if not pending:
                    confirmed = self._confirm(proc, "the replica holds the database's current position")
            if not confirmed and failed_start is None and errors_seen and now - started >= self.start_deadline:
                failed_start = f"litestream reported errors and did not confirm replication within {self.start_deadline:g}s"

            if term_sent_at is None and proc.poll() is None:
                if self.stop_signal is not None:
                    term_sent_at = now
                    kill_at = now + self.stop_timeout
                    self.status.state = state.STOPPING
                    self._save()
                    self.log(f"backupctl: stopping litestream (final sync, up to {self.stop_timeout:g}s)")
                    _signal(proc, signal.SIGTERM)
                elif failed_start is not None:
                    term_sent_at = now
                    kill_at = now + FAILED_START_GRACE
                    _signal(proc, signal.SIGTERM)
            if kill_at is not None and not killed and now >= kill_at and proc.poll() is None:
                self.log("backupctl: litestream did not exit in time; killing its process group")
                _kill_group(proc)
                killed = True

            if proc.poll() is not None:
                exited_at = exited_at if exited_at is not None else now
                reader_done = reader is not None and not reader.is_alive()
                if eof or reader_done or now - exited_at > 5:  # a stray grandchild may hold the pipe
                    break
            self._maybe_verify(confirmed)

        returncode = proc.wait()
        if reader is not None:
            reader.join(timeout=1)
        if tail is not None:
            tail.close()
        runtime = self.clock() - started
        processes.unregister(child)
        self.status.litestream_pid = None
        self.status.last_exit_code = returncode
        stopped = self.stop_signal is not None and failed_start is None
        if self.stop_signal is not None and term_sent_at is None:
            stopped = True  # it exited on its own while we were asked to stop
        final_sync: bool | None = None
        if stopped:
            clean = returncode == 0 and not killed and not sync_skipped and term_sent_at is not None
            # The final sync is judged by position: after litestream exited, does every replica
            # hold what litestream had of its database? (0.5.17 stopped before its first snapshot
            # exits 0 with an empty replica; an error while stopping may or may not have lost data.)
            uncovered = {str(db.path) for db in self.settings.databases} - self._covered(list(self.settings.databases))
            final_sync = clean and not uncovered
            self.status.final_sync = final_sync
            if final_sync:
                self.log("backupctl: litestream stopped; final sync completed: the replica holds every database's position")
            elif self._replicas_empty(uncovered):
                self.log(
                    f"backupctl: litestream stopped (code {_describe_exit(returncode)}) before its first snapshot "
                    "reached the replica: there is NO backup yet; start again and let it confirm"
                )
            else:
                self.log(
                    f"backupctl: litestream stopped (code {_describe_exit(returncode)}"
                    + (f", {errors_after_term} error(s) while stopping" if errors_after_term else "")
                    + ("; killed after the stop timeout" if killed else "")
                    + ("; litestream skipped its shutdown sync" if sync_skipped else "")
                    + "); the final sync was NOT confirmed: the replica holds an earlier backup, "
                    + "the newest writes may be missing from it"
                    + (f" ({', '.join(sorted(Path(p).name for p in uncovered))})" if uncovered else "")
                )
        self._save()
        return ChildOutcome(returncode, runtime, confirmed, stopped, failed_start, final_sync, killed)

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
        for db in databases:
            if str(db.path) not in local:
                continue
            try:
                replica = positions.read_replica(self.litestream, db, timeout=POSITION_TIMEOUT)
            except BackupctlError as exc:
                self._position_error(exc)
                continue
            if positions.covers(replica, local[str(db.path)], has_ltx):
                covered.add(str(db.path))
        return covered

    def _replicas_empty(self, databases: set[str]) -> bool:
        """True only when some replica is really empty (so "NO backup yet" is the truth)."""
        if not databases or self.position_check is not None:
            return False
        for db in self.settings.databases:
            if str(db.path) not in databases:
                continue
            try:
                if positions.read_replica(self.litestream, db, timeout=POSITION_TIMEOUT).empty:
                    return True
            except BackupctlError:
                continue
        return False

    def _position_error(self, exc: BackupctlError) -> None:
        text = scrub(exc.message, self.settings)
        if text != self._last_position_error:
            self._last_position_error = text
            self.log(f"backupctl: cannot read the replica's position yet: {text}")

    def _confirm(self, proc: ChildProcess, why: str) -> bool:
        self.status.state = state.RUNNING
        self.status.confirmed_at = time.time()
        self._save()
        self.log(f"backupctl: replication running ({why}); litestream pid {proc.pid}")
        return True

    # -- periodic verify ----------------------------------------------------------------
    def _maybe_verify(self, confirmed: bool) -> None:
        interval = self.settings.verify_interval
        if not interval or not confirmed:
            return
        now = self.clock()
        if self._next_verify is None:
            self._next_verify = now + parse_duration(interval)
            return
        if now < self._next_verify or self._verify_running():
            return
        self._next_verify = now + parse_duration(interval)
        self._verify_pid = self._fork_verify()

    def _fork_verify(self) -> int | None:
        """Run the periodic verify in a forked child process, never in a thread: the supervisor must stay
        single-threaded while litestream runs (PR_SET_PDEATHSIG, see the module docstring)."""
        if not hasattr(os, "fork"):
            self._verify_all()
            return None
        pid = os.fork()
        if pid:
            return pid
        code = 1
        try:  # the child: default signal handling, so `stop` (SIGTERM) ends it
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            self._verify_all()
            code = 0
        finally:
            os._exit(code)

    def _verify_running(self) -> bool:
        if self._verify_pid is None:
            return False
        try:
            done, _ = os.waitpid(self._verify_pid, os.WNOHANG)
        except ChildProcessError:
            done = self._verify_pid
        if done == 0:
            return True
        self._verify_pid = None
        return False

    def _end_verify(self) -> None:
        """A verify still running when the supervisor stops is ended (it holds copies of our lock files)."""
        if self._verify_running() and self._verify_pid is not None:
            try:
                os.kill(self._verify_pid, signal.SIGTERM)
                os.waitpid(self._verify_pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self._verify_pid = None

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


class OutputTail:
    """Follows litestream's output file from the supervisor's main thread (no reader thread: see the
    module docstring on PR_SET_PDEATHSIG). Reading a regular file never blocks; keeps the file small."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = b""
        try:
            self.handle: IO[bytes] | None = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError:
            self.handle = None

    def next_line(self, finished: bool) -> str | None:
        """The next complete line; "" when none is there yet; None once ``finished`` and all was read."""
        if self.handle is None:
            return None if finished else ""
        chunk = self.handle.readline()
        if chunk:
            if not chunk.endswith(b"\n"):
                self.partial += chunk
                return self.next_line(finished) if finished else ""
            line, self.partial = (self.partial + chunk).decode("utf-8", "replace"), b""
            return line
        if finished:
            if self.partial:
                line, self.partial = self.partial.decode("utf-8", "replace"), b""
                return line
            return None
        try:
            size = os.stat(self.path).st_size
            if size >= LOG_MAX_BYTES:  # everything up to here is relayed: start the file over
                os.truncate(self.path, 0)
                size = 0
            if size < self.handle.tell():
                self.handle.seek(0)
        except OSError:
            pass
        return ""

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


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
def restore_missing_database(settings: Settings, litestream: Litestream, db: Database, log: Log) -> bool:
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
    log(f"backupctl: restored {db.path} from the replica")
    return True


# -- background mode, stop, logs ----------------------------------------------------------
@dataclass(frozen=True)
class BackgroundStart:
    pid: int
    log_path: Path
    litestream_pid: int | None


def start_background(
    argv: list[str], state_dir: Path, *, cwd: Path | None = None, timeout: float = 120.0, poll: float = 0.2
) -> BackgroundStart:
    """Launch ``argv`` (a `start --foreground-child`) detached; return once it confirms replication.

    Fails fast, with the log's tail, when the supervisor exits or goes FATAL first.
    """
    log_path = state_dir / state.LOGFILE
    state_dir.mkdir(parents=True, exist_ok=True)
    offset = log_path.stat().st_size if log_path.exists() else 0
    with open(log_path, "ab") as log_handle:
        os.chmod(log_path, 0o600)
        proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=log_handle,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        current = state.read_supervisor_state(state_dir)
        if code is None and current and current.pid == proc.pid and current.state == state.RUNNING:
            return BackgroundStart(proc.pid, log_path, current.litestream_pid)
        if code == ExitCode.CONFLICT:
            # Lost a race with another start: say who won, not the winner's log lines (shared log).
            own = [line for line in log_tail(log_path, 40, since=offset) if line.startswith(("error: ", "hint: "))]
            message = next((x for x in own if x.startswith("error: ")), "error: another supervisor runs these databases")
            raise ConflictError(
                message.removeprefix("error: "),
                "stop it first (`backupctl stop`), or look at it with `backupctl status`",
            )
        if code is not None:
            raise SupervisorError(
                f"the background supervisor exited (code {code}) before replication started",
                f"see the log: backupctl logs ({log_path})",
                details=log_tail(log_path, 15, since=offset),
            )
        if time.monotonic() > deadline:
            _terminate_quietly(proc)
            raise SupervisorError(
                f"replication was not confirmed within {timeout:g}s; stopped the background supervisor",
                f"see the log: backupctl logs ({log_path}); `backupctl doctor` checks the replica",
                details=log_tail(log_path, 15, since=offset),
            )
        time.sleep(poll)


def _terminate_quietly(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(DEFAULT_STOP_TIMEOUT + 15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class StopResult:
    was_running: bool
    pid: int | None = None
    final_sync: bool | None = None
    stopped: bool = True


def stop_supervisor(record: processes.ProcessRecord | None, state_dir: Path, timeout: float) -> StopResult:
    """SIGTERM the supervisor of this record and wait until it and its litestream are gone.

    The record is re-checked (pid + start time + argv) right before the signal, so a pid reused
    by another process is never signalled; the final sync is read from that process's own state
    document (supervisor.json naming the same pid and start time), never from an older one.
    """
    import psutil

    if record is None or not record.alive():
        return StopResult(was_running=False)
    before = state.read_supervisor_state_of(state_dir, record.pid, record.create_time)
    children = [r for r in processes.records(role=processes.LITESTREAM) if r.parent_pid == record.pid]
    try:
        proc = psutil.Process(record.pid)
        if not record.alive():
            return StopResult(was_running=False)
        proc.terminate()
    except psutil.NoSuchProcess:
        pass
    if not _wait_gone(record.pid, timeout):
        raise SupervisorError(
            f"the supervisor (pid {record.pid}) did not stop within {timeout:g}s",
            "it may still be waiting for litestream's final sync; run `backupctl stop` again or check `backupctl logs`",
        ) from None
    for child in children:
        _wait_gone(child.pid, 10.0)
    if before is not None and before.litestream_pid:
        _wait_gone(before.litestream_pid, 10.0)
    after = state.read_supervisor_state_of(state_dir, record.pid, record.create_time)
    return StopResult(was_running=True, pid=record.pid, final_sync=after.final_sync if after else None)


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait until pid has exited: gone, or a zombie (a foreground supervisor's parent, a shell or a
    service manager, reaps it whenever it likes). False on timeout."""
    import psutil

    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def log_tail(path: Path, lines: int, since: int = 0) -> list[str]:
    """The last ``lines`` lines of a log (only what was written after byte ``since``)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(since, size - 256 * 1024)
            handle.seek(start)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:] if lines > 0 else []


def follow(path: Path, lines: int, poll: float = 0.25, stop: Callable[[], bool] | None = None) -> Iterator[str]:
    """The last ``lines`` lines, then every new line as it is written, across rotation (like tail -F)."""
    yield from log_tail(path, lines)
    handle = None
    inode = None
    try:
        while stop is None or not stop():
            if handle is None:
                try:
                    handle = open(path, "rb")  # noqa: SIM115 - closed in finally / on rotation
                    inode = os.fstat(handle.fileno()).st_ino
                    if lines >= 0:
                        handle.seek(0, os.SEEK_END)
                    lines = -1  # only the first open skips what was already shown
                except FileNotFoundError:
                    time.sleep(poll)
                    continue
            chunk = handle.readline()
            if chunk:
                yield chunk.decode("utf-8", "replace").rstrip("\n")
                continue
            try:
                current = os.stat(path)
                rotated = current.st_ino != inode or current.st_size < handle.tell()
            except FileNotFoundError:
                rotated = True
            if rotated:
                rest = handle.read()
                yield from rest.decode("utf-8", "replace").splitlines()
                handle.close()
                handle = None
                continue
            time.sleep(poll)
    finally:
        if handle is not None:
            handle.close()
