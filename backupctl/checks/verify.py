"""`verify`: prove end to end that the replica restores, with a sentinel row.

1. Write a sentinel row (a random token) into the dedicated table ``_backupctl_verify`` of the
   live database. The table is created for the run and dropped in the cleanup (step 4), so the
   schema after a verify is exactly what it was (no stray table in schema.rb / introspection).
2. Make sure something replicates it:
   - backupctl's replicator holds the database lock: rely on it;
   - a litestream not started by backupctl has the database open: rely on it (a second
     replicator on one database corrupts the replica chain, so never start one then);
   - nothing replicates it: take the database and replica locks (so `start` cannot race us)
     and run a temporary ``litestream replicate`` for this database only, with a config of its
     own; it is stopped with SIGTERM at the end, whose final sync also carries the removal of
     the sentinel row. It is recorded (``processes``, role verify-replicator) and dies with
     verify (PR_SET_PDEATHSIG); one left by a SIGKILLed verify elsewhere is stopped by the next
     start, verify or doctor (``sentinel.clean_up_after_killed_verify``), which also drop its table.
3. Restore the replica into a temp folder under the project's state folder, repeatedly until
   the sentinel shows up or the deadline passes (sync interval x 2 + margin), checking
   ``PRAGMA integrity_check`` each time.
4. Always: drop the sentinel table, stop the temporary replicator, remove every temp file.
   A cleanup that fails (database locked) never hides the error that ended the verify; with no
   such error it is raised itself (ConflictError), after the temporary replicator is stopped.

Outcome: ``verified`` (sentinel restored, integrity ok), ``failed`` (the replica does not
restore, the restored copy is damaged, the temporary replicator died, or the replica refuses new
writes: the temporary replicator logged AccessDenied/Forbidden/permission denied... for it, which
is decided as soon as it is logged, not at the deadline), ``inconclusive`` (the replica restores
and nothing refused the writes, but the sentinel did not arrive in time: lag). A replica that
still restores old data but cannot take new writes is not being kept up to date: that is
``failed``, never ``inconclusive``. The result is recorded for `status`.

SIGTERM/SIGINT are honoured through ``restore.stop_request`` (see backupctl.restore): the wait
and every restore attempt stop at once, and the cleanup of step 4 always runs.

Several databases are verified at once (``verify_databases``, at most ``MAX_PARALLEL``): each run
waits mostly on litestream's sync interval, and the runs share nothing but the state documents,
which are written one writer at a time (``state.update_json``). One process record (role
``verify``) names every database of the run, so a SIGKILLed run is cleaned up after whole; one stop
request stops every run, each through its own cleanup.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from backupctl import paths
from backupctl.checks import continuity
from backupctl.checks.sentinel import SENTINEL_TABLE, clear_sentinels, verify_lock_path, write_sentinel
from backupctl.config.render import render
from backupctl.config.settings import Database, Settings, parse_duration
from backupctl.errors import VERIFY_EXIT, BackupctlError, ConflictError
from backupctl.host import locks, processes, state
from backupctl.litestream.runner import Litestream, tail
from backupctl.owned import open_private, secure_dir, write_atomic
from backupctl.redact import scrub
from backupctl.restore import RESTORE_TIMEOUT, Staged, litestream_for, staged_restore, stop_request
from backupctl.versions import capabilities


class VerifyResult(StrEnum):
    VERIFIED = "verified"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"


VERIFIED, FAILED, INCONCLUSIVE = VerifyResult
MARGIN_SECONDS = 10.0  # on top of two sync intervals: upload time, litestream's own tick
# What a replicator logs when the replica refuses writes (S3/R2 auth and policy errors, a
# read-only or non-folder file replica, a full disk): the replica cannot be kept up to date.
WRITE_REFUSED = re.compile(
    r"AccessDenied|Access Denied|Forbidden|status ?code:? 403|InvalidAccessKeyId|SignatureDoesNotMatch|"
    r"NoSuchBucket|AllAccessDisabled|permission denied|read-only file system|not a directory|"
    r"no space left on device|disk quota exceeded",
    re.IGNORECASE,
)

# Databases verified at once. Each run is mostly waiting (the sync interval, a restore), but holds a
# litestream replicate and restores; 4 keeps a small machine and a rate-limited bucket comfortable.
MAX_PARALLEL = 4

Step = Callable[[str], None]


@dataclass
class VerifyResult:
    database: str
    name: str
    status: str
    reason: str
    token: str
    checked_at: float  # epoch seconds
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    replicator: str = ""
    attempts: int = 0
    position: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return VERIFY_EXIT[self.status]

    def to_record(self) -> state.VerifyRecord:
        details = {k: v for k, v in self.to_json().items() if k not in ("database", "name", "status", "reason", "checked_at")}
        return state.VerifyRecord(self.database, self.name, self.status, self.reason, self.checked_at, details)

    def to_json(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "checked_at": self.checked_at,
            "finished_at": round(self.checked_at + self.seconds, 3),  # with checked_at: when this run overlapped others
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
            "replicator": self.replicator,
            "attempts": self.attempts,
            "position": self.position,
            "exit_code": int(self.exit_code),
        }


DatabaseStep = Callable[[Database, str], None]  # a step of one database's run (called from its worker thread)
Finished = Callable[[Database, VerifyResult | None, BaseException | None], None]  # a run's end (from the calling thread)


def verify_database(
    settings: Settings,
    binary_path: Path,
    db: Database,
    timeout: float | None = None,
    *,
    on_step: Step | None = None,
) -> VerifyResult:
    """Verify one database's replica end to end (see the module docstring). Records the result."""
    me = processes.register(processes.VERIFY, os.getpid(), project=settings.project_dir, databases=[db.path])
    try:
        return _verify_and_record(settings, binary_path, db, timeout, on_step)
    finally:
        processes.unregister(me)


def verify_databases(
    settings: Settings,
    binary_path: Path,
    databases: Iterable[Database],
    timeout: float | None = None,
    *,
    workers: int | None = None,
    on_step: DatabaseStep | None = None,
    on_finished: Finished | None = None,
) -> list[VerifyResult]:
    """Verify several databases at once (at most ``workers``, default ``MAX_PARALLEL``); the results
    in the order given, each recorded as it finishes.

    ``on_step`` is called from the worker threads; ``on_finished`` from this thread, once per database
    as it finishes (with its result, or the error that ended it). A stop request (SIGTERM/SIGINT in
    the CLI) stops every run at its next safe point; this returns only once every run has cleaned up,
    and then raises the stop's error. Otherwise an error of one database does not stop the others:
    once all are done, the first error (in the order given) is raised, the others' outcomes in its
    details.
    """
    dbs = list(databases)
    if not dbs:
        return []
    # One record for the whole run: a SIGKILLed verify is cleaned up after for every database it had.
    me = processes.register(processes.VERIFY, os.getpid(), project=settings.project_dir, databases=[db.path for db in dbs])
    try:
        outcomes = _run_concurrently(settings, binary_path, dbs, timeout, workers or MAX_PARALLEL, on_step, on_finished)
    finally:
        processes.unregister(me)
    stop_request.check()  # a run cut short by a signal says so, whatever the others concluded
    return _results_or_first_error(dbs, outcomes)


def _run_concurrently(
    settings: Settings,
    binary_path: Path,
    dbs: list[Database],
    timeout: float | None,
    workers: int,
    on_step: DatabaseStep | None,
    on_finished: Finished | None,
) -> list[VerifyResult | BaseException]:
    """Each database's result or error, in order. Returns only when no run is left."""

    def one(db: Database) -> VerifyResult:
        stop_request.check()  # queued behind the first runs: a stop asked meanwhile starts nothing
        step = (lambda message: on_step(db, message)) if on_step else None
        # The worker thread that starts the temporary replicator outlives it: it is stopped in this
        # call (PR_SET_PDEATHSIG would end it with the thread, see processes.parent_death_preexec).
        return _verify_and_record(settings, binary_path, db, timeout, step)

    outcomes: dict[int, VerifyResult | BaseException] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, len(dbs))), thread_name_prefix="verify")
    stopped_here = False
    try:
        futures = {pool.submit(one, db): i for i, db in enumerate(dbs)}
        pending: set[Future[VerifyResult]] = set(futures)
        while pending:
            # The CLI's signal handlers run in this thread during the wait: they only feed stop_request.
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                i, error = futures[future], future.exception()
                outcomes[i] = error if error is not None else future.result()
                if on_finished:
                    on_finished(dbs[i], None if error is not None else future.result(), error)
    except BaseException as exc:
        # A bug in a callback, or Ctrl-C where no handler feeds stop_request (a library caller): stop
        # the other runs, and wait below for each to clean up (drop its sentinel, stop its replicator).
        stopped_here = not stop_request.requested
        stop_request.request(exc)
        raise
    finally:
        pool.shutdown(wait=True)
        if stopped_here:
            stop_request.reset()  # ours, not a signal's: the next call of this process starts afresh
    return [outcomes[i] for i in range(len(dbs))]


def _results_or_first_error(dbs: list[Database], outcomes: list[VerifyResult | BaseException]) -> list[VerifyResult]:
    """The results, or the first error with what became of the other databases (their verdicts were
    recorded all the same: `status` shows them)."""
    errors = [(db, o) for db, o in zip(dbs, outcomes, strict=True) if isinstance(o, BaseException)]
    if not errors:
        return [o for o in outcomes if isinstance(o, VerifyResult)]
    first_db, first = errors[0]
    if isinstance(first, BackupctlError) and len(dbs) > 1:
        for db, outcome in zip(dbs, outcomes, strict=True):
            if db is first_db:
                continue
            if isinstance(outcome, VerifyResult):
                first.details.append(f"{db.name}: {outcome.status} ({outcome.reason})")
            else:
                first.details.append(f"{db.name}: {getattr(outcome, 'message', None) or outcome}")
    raise first


def _verify_and_record(
    settings: Settings, binary_path: Path, db: Database, timeout: float | None, on_step: Step | None
) -> VerifyResult:
    """One database's verify under its verify lock (one verify per database at a time), recorded."""
    lock = locks.try_lock(verify_lock_path(db))
    if lock is None:
        pid = locks.holder(verify_lock_path(db))
        raise ConflictError(
            f"another verify of {db.name} is running (pid {pid})",
            "wait for it to finish; `backupctl status` shows the last result",
        )
    try:
        result = _verify(settings, binary_path, db, timeout, on_step)
    finally:
        lock.release()
    state.record_verify(paths.project_state_dir(settings.project_dir), str(db.path), result.to_record())
    return result


def _verify(settings: Settings, binary_path: Path, db: Database, timeout: float | None, on_step: Step | None) -> VerifyResult:
    checked_at = time.time()
    started = time.monotonic()
    token = os.urandom(16).hex()
    timings: dict[str, float] = {}

    ok = [False]

    def result(status: str, reason: str, **extra: Any) -> VerifyResult:
        ok[0] = status == VERIFIED
        return VerifyResult(
            str(db.path), db.name, status, reason, token, checked_at, time.monotonic() - started, timings, **extra
        )

    if not db.path.exists():
        return result(FAILED, f"{db.path} does not exist: there is nothing to verify")
    state_folder = secure_dir(paths.project_state_dir(settings.project_dir), what="state folder")
    tmp_root = secure_dir(state_folder / "tmp", what="state folder")
    ls = litestream_for(settings, binary_path)
    temporary: _TemporaryReplicator | None = None
    processes.reap_orphans(databases=[db.path], replicas=[r.lock_key for r in db.replicas])  # a killed verify's
    replicator = _running_replicator(db)
    failure: BaseException | None = None
    try:
        if replicator is None:
            if on_step:
                on_step("no replicator running: starting a temporary litestream replicate")
            temporary = _TemporaryReplicator.start(settings, binary_path, db, tmp_root)
            if temporary is None:  # lost a race with `start`: someone holds the lock now
                replicator = _running_replicator(db) or "backupctl replicator"
            else:
                replicator = f"temporary litestream replicate (pid {temporary.proc.pid}), stopped afterwards"
        wait = timeout if timeout is not None else settings.sync_seconds * 2 + MARGIN_SECONDS
        t = time.monotonic()
        if on_step:
            on_step("writing the sentinel row")
        write_sentinel(db.path, token)
        timings["write"] = time.monotonic() - t
        deadline = time.monotonic() + wait
        interval = max(0.25, min(settings.sync_seconds / 2, 5.0))
        if on_step:
            on_step(f"sentinel written; waiting for litestream to replicate it (sync interval {settings.sync_interval})")
        stop_request.sleep(min(interval, settings.sync_seconds))
        attempts = 0
        last_error: BackupctlError | None = None
        restore_seconds = 0.0
        while True:
            attempts += 1
            if on_step:
                on_step(f"restoring the replica to look for the sentinel (attempt {attempts})")
            t = time.monotonic()
            try:
                with staged_restore(ls, db, tmp_root, [], timeout=min(RESTORE_TIMEOUT, wait + 60)) as staged:
                    found = _has_sentinel(staged, token)
                    position = staged.position
                last_error = None
            except BackupctlError as exc:
                found, position, last_error = False, {}, exc
            restore_seconds = time.monotonic() - t
            if found:
                timings["replicate"] = time.monotonic() - started - timings["write"] - restore_seconds
                timings["restore"] = restore_seconds
                # The sentinel proves new writes arrive; the continuity check proves none is missing.
                if on_step:
                    on_step("comparing the replica's newest state with the live database, page for page")
                t = time.monotonic()
                # its waits (litestream catching up, up to 30 s) end at once on a stop request
                proof = continuity.prove(ls, db, tmp_root, sleep=stop_request.sleep)
                timings["continuity"] = time.monotonic() - t
                stop_request.check()  # prove reads a restore cut short by a stop as "undecided": not a verdict
                continuity.record(paths.project_state_dir(settings.project_dir), proof)
                status, reason = VERIFIED, "the sentinel row came back from the replica; integrity ok; " + proof.reason
                if proof.verdict == continuity.BROKEN:
                    status, reason = FAILED, f"the sentinel row came back, but the replica is NOT whole: {proof.reason}"
                elif proof.verdict == continuity.UNDECIDED:
                    status = INCONCLUSIVE
                    reason = f"the sentinel row came back (integrity ok), but the replica was not proven whole: {proof.reason}"
                return result(status, reason, replicator=replicator, attempts=attempts, position=position)
            stop_request.check()
            refused = _refusal(temporary, settings)
            if refused:
                return result(FAILED, refused, replicator=replicator, attempts=attempts)
            if temporary is not None and temporary.proc.poll() is not None:
                return result(
                    FAILED,
                    f"the temporary litestream replicate exited with {temporary.proc.returncode}: "
                    + " / ".join(temporary.output_tail()),
                    replicator=replicator,
                    attempts=attempts,
                )
            if time.monotonic() + max(interval, restore_seconds) > deadline:
                break
            if on_step:
                on_step(f"the sentinel is not in the replica yet (attempt {attempts}); waiting for the next sync")
            stop_request.sleep(max(interval, restore_seconds))
        timings["restore"] = restore_seconds
        if last_error is not None:
            detail = " / ".join(last_error.details[-3:])
            return result(
                FAILED,
                f"the replica does not restore: {last_error.message}" + (f" ({detail})" if detail else ""),
                replicator=replicator,
                attempts=attempts,
            )
        refused = _refusal(temporary, settings)
        if refused:
            return result(FAILED, refused, replicator=replicator, attempts=attempts)
        # A replica that restores without the sentinel may be lagging, or may restore only up to a
        # hole (litestream 0.3 restores a generation with a missing WAL segment up to the gap, and
        # with several replicas it may pick that one): the continuity check tells them apart.
        if on_step:
            on_step("the sentinel did not come back: comparing the replica's newest state with the live database")
        proof = continuity.prove(ls, db, tmp_root, sleep=stop_request.sleep)
        stop_request.check()
        continuity.record(paths.project_state_dir(settings.project_dir), proof)
        if proof.verdict == continuity.BROKEN:
            return result(
                FAILED,
                f"the sentinel had not reached the replica after {wait:g}s, and the replica is NOT whole: {proof.reason}",
                replicator=replicator,
                attempts=attempts,
            )
        return result(
            INCONCLUSIVE,
            f"the replica restores, but the sentinel had not reached it after {wait:g}s (replica lagging?)",
            replicator=replicator,
            attempts=attempts,
        )
    except BaseException as exc:
        failure = exc
        raise
    finally:
        try:
            clear_sentinels(db.path)
        except BackupctlError as exc:
            if failure is None:
                raise
            # Never mask the error that ended the verify; keep the cleanup's as a detail.
            if isinstance(failure, BackupctlError):
                failure.details.append(f"cleanup: {exc.message}")
        finally:
            if temporary is not None:
                t = time.monotonic()
                temporary.stop(settings, hurry=not ok[0])
                timings["stop_replicator"] = time.monotonic() - t


def _running_replicator(db: Database) -> str | None:
    """Who replicates this database now (backupctl's supervisor, or a litestream outside backupctl)."""
    found = processes.replicators_of(db.path)
    return found[0].describe() if found else None


def _has_sentinel(staged: Staged, token: str) -> bool:
    con = sqlite3.connect(staged.path)
    try:
        return con.execute(f"SELECT 1 FROM {SENTINEL_TABLE} WHERE token = ?", (token,)).fetchone() is not None  # noqa: S608
    except sqlite3.OperationalError:  # no such table yet in the replica
        return False
    finally:
        con.close()


@dataclass
class _TemporaryReplicator:
    proc: subprocess.Popen[bytes]
    held: list[locks.HeldLock]
    config: Path
    log: Path
    record: processes.ProcessRecord | None = None

    @classmethod
    def start(cls, settings: Settings, binary_path: Path, db: Database, tmp_root: Path) -> _TemporaryReplicator | None:
        """A `litestream replicate` of this database alone. It holds the database and replica locks,
        is recorded (role verify-replicator), and dies with this process (PR_SET_PDEATHSIG on Linux;
        elsewhere the next start/verify/doctor stops it as an orphan)."""

        held = locks.take_replication_locks([db])
        if held is None:
            return None
        try:
            only = dataclasses.replace(settings, databases=(db,))
            config = tmp_root / f"verify-{os.getpid()}-{db.name}.yml"
            log = tmp_root / f"verify-{os.getpid()}-{db.name}.log"
            write_atomic(config, render(only).text)
            ls = Litestream(binary_path, only, config_path=config)
            with os.fdopen(open_private(log, append=False, truncate=True), "wb") as out:  # 0600: raw output
                proc = ls.popen(
                    "replicate", stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **processes.child_kwargs()
                )
            record = processes.register(
                processes.VERIFY_REPLICATOR,
                proc.pid,
                project=settings.project_dir,
                databases=[db.path],
                replicas=[r.lock_key for r in db.replicas],
                parent_pid=os.getpid(),
                pdeathsig=processes.use_parent_death_signal(),
            )
        except BaseException:
            for h in held:
                h.release()
            raise
        return cls(proc, held, config, log, record)

    def write_refusal(self, settings: Settings) -> str | None:
        """The first line of the replicator's log saying the replica refused a write, if any."""
        try:
            text = self.log.read_text("utf-8", "replace")
        except OSError:
            return None
        for line in text.splitlines():
            if "error" in line.lower() and WRITE_REFUSED.search(line):
                error = re.search(r'error="((?:[^"\\]|\\.)*)"', line)
                return scrub((error.group(1) if error else line).strip(), settings)[:300]
        return None

    def output_tail(self) -> list[str]:
        try:
            return tail(self.log.read_text("utf-8", "replace"), 3)
        except OSError:
            return []

    def stop(self, settings: Settings, *, hurry: bool = False) -> None:
        """SIGTERM (litestream's final sync carries the sentinel's removal), a second SIGTERM if
        that sync hangs (0.5 retries it for 30 s; a second signal skips the retries), then SIGKILL.
        ``hurry``: the replica is already known broken, so do not wait long for the final sync.
        Always releases the locks and removes the temporary config and log.
        """
        # litestream's own final-sync retries (0.5: 30 s), plus room for the upload
        first_wait = 2.0 if hurry else capabilities(settings.version).shutdown_sync_timeout + 10.0
        if settings.stop_timeout:
            first_wait = min(first_wait, parse_duration(settings.stop_timeout))
        try:
            for sig, wait in ((signal.SIGTERM, first_wait), (signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
                if self.proc.poll() is not None:
                    break
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(wait)
                except subprocess.TimeoutExpired:
                    continue
                except ProcessLookupError:
                    break
        except BaseException:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise
        finally:
            processes.unregister(self.record)
            for h in self.held:
                h.release()
            self.config.unlink(missing_ok=True)
            self.log.unlink(missing_ok=True)


def _refusal(temporary: Any, settings: Settings) -> str | None:
    """Why verify fails when its temporary replicator's writes are refused (None: they are not)."""
    refused = temporary.write_refusal(settings) if temporary is not None else None
    return f"the replica refuses new writes, so it is not being kept up to date: {refused}" if refused else None
