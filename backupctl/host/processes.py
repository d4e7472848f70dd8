"""Who replicates this database: the one record of every process backupctl starts.

Every long-lived process backupctl starts registers here: the supervisor (foreground or
background), its litestream child, verify's temporary replicator and restore's litestream.
A record is one JSON file in the machine-wide registry (``paths.state_home()/procs``), named
after the role and pid, holding pid, start time, argv, project, role, the databases and
replica keys it touches, and its parent.

A record is trusted only through :func:`is_alive`, the one liveness test: a process with that
pid exists, started at the recorded time, and runs the recorded argv. A pid reused by an
unrelated program (even one started in the same second) never passes, so it is never
signalled. Records of dead processes are pruned as they are read.

One question, :func:`replicators_of`, answers "which processes replicate or hold this
database?" for `start`, `stop`, `status`, `verify`, `restore` and `doctor`: backupctl's own
(from the records) and foreign ones (``foreign_litestreams.py``: a `litestream replicate` whose
command line or config names the database, or any litestream with the database open).
:func:`check_free` turns the answer into the refusal every replicating command gives, and
:func:`reap_orphans` stops a litestream whose backupctl parent died (a SIGKILLed supervisor or
verify). :func:`child_kwargs` starts a litestream that dies with its parent (Linux).

Which service manager runs a supervisor is ``service_managers.py``.

Flock locks (``locks.py``) stay the race-free guard that two replicators never start at once;
the records say *who* holds them.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backupctl import paths
from backupctl.errors import ConflictError
from backupctl.host.liveness import alive_from_proc, start_ticks
from backupctl.owned import read_private, write_atomic

SUPERVISOR = "supervisor"
LITESTREAM = "litestream"  # the supervisor's `litestream replicate`
VERIFY_REPLICATOR = "verify-replicator"  # verify's temporary `litestream replicate`
RESTORE = "restore"  # restore's `litestream restore`
VERIFY = "verify"  # a verify run (its sentinel table is in the database while it runs)
# Roles whose record outlives a killed process, so the next command can clean up after it
# (``leftovers``); every other dead record is simply removed when read.
KEPT_WHEN_DEAD = (VERIFY,)
REPLICATING_ROLES = (SUPERVISOR, LITESTREAM, VERIFY_REPLICATOR)
CHILD_ROLES = (LITESTREAM, VERIFY_REPLICATOR, RESTORE)

NO_PDEATHSIG_ENV = "BACKUPCTL_NO_PDEATHSIG"  # testing knob: exercise the orphan path on Linux
START_TIME_TOLERANCE = 0.01  # seconds: psutil's create_time is stable to well below this

Log = Callable[[str], None]


def registry_dir() -> Path:
    return paths.records_dir()


@dataclass(frozen=True)
class ProcessRecord:
    role: str
    pid: int
    create_time: float
    argv: list[str]
    project: str  # the project folder (resolved) it works for
    databases: list[str] = field(default_factory=list)  # resolved database paths it replicates or holds
    replicas: list[str] = field(default_factory=list)  # replica lock keys (settings.Replica.lock_key)
    parent_pid: int | None = None
    parent_create_time: float | None = None
    pdeathsig: bool = False  # the kernel sends it SIGTERM when its parent dies
    background: bool = False  # supervisor: started by `start --background`
    manager: str | None = None  # supervisor: the service manager running it (service_managers.py)
    state_dir: str | None = None
    started_at: float = 0.0
    start_ticks: int | None = None  # Linux: start time in clock ticks since boot (see start_ticks)
    parent_start_ticks: int | None = None
    exe: str | None = None  # the executable it runs (resolved), checked before it is ever signalled

    @property
    def file(self) -> Path:
        return registry_dir() / f"{self.role}-{self.pid}.json"

    @property
    def command_line(self) -> str:
        return " ".join(self.argv)

    def alive(self) -> bool:
        """The process of this record is running, and it is backupctl or litestream (``runs_our_program``)."""
        return is_alive(self.pid, self.create_time, self.argv, self.start_ticks) and runs_our_program(self)

    def parent_alive(self) -> bool:
        if self.parent_pid is None or self.parent_create_time is None:
            return True
        return is_alive(self.parent_pid, self.parent_create_time, ticks=self.parent_start_ticks)

    def describe(self) -> str:
        what = {
            SUPERVISOR: "backupctl supervisor" + (" (background)" if self.background else " (foreground)"),
            LITESTREAM: "litestream started by the backupctl supervisor",
            VERIFY_REPLICATOR: "the temporary litestream of `backupctl verify`",
            RESTORE: "the litestream of `backupctl restore`",
        }.get(self.role, self.role)
        return f"{what}, pid {self.pid}, project {self.project}"


def is_alive(pid: int, create_time: float, argv: list[str] | None = None, ticks: int | None = None) -> bool:
    """The one liveness test: pid exists, started at that time (``ticks`` since boot where the OS has
    them, else ``create_time``), runs ``argv`` (when given), and is not a zombie."""
    if ticks is not None:
        known = alive_from_proc(pid, ticks, argv)
        if known is not None:
            return known
    import psutil

    try:
        proc = psutil.Process(pid)
        current_ticks = start_ticks(pid) if ticks is not None else None
        if current_ticks is not None:
            if current_ticks != ticks:
                return False
        elif abs(proc.create_time() - float(create_time)) > START_TIME_TOLERANCE:
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if argv:
            current = proc.cmdline()
            # An empty command line is the kernel not answering for a moment (a process being
            # exec'd): only a different one means another program.
            if current and current != list(argv):
                return False
    except (psutil.Error, ValueError, TypeError, OSError):
        return False
    return True


def executable_of(pid: int) -> str | None:
    """The resolved path of the executable a process runs; None when it cannot be read (another
    user's process, or gone)."""
    if sys.platform.startswith("linux"):
        try:
            # A replaced binary (a reinstall, a Python upgrade) reads "PATH (deleted)": the same program.
            return os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        except OSError:
            return None
    import psutil

    try:
        exe = psutil.Process(pid).exe()
    except (psutil.Error, OSError):
        return None
    return os.path.realpath(exe) if exe else None


def runs_our_program(record: ProcessRecord) -> bool:
    """The process is really what the record says: the executable it recorded, and that is litestream
    for the litestream roles, backupctl (under Python or frozen) for the others.

    A record is a file anyone able to write our state folder could forge; this check, with the
    folder's and file's ownership (owned.py), keeps a forged one from getting `sleep` or a shell
    signalled. Litestream is recognised by its executable's name (litestream*), as foreign
    litestreams are (foreign_litestreams.py)."""
    exe = executable_of(record.pid)
    if exe is None or (record.exe is not None and exe != record.exe):
        return False
    name = os.path.basename(exe).lower()
    if record.role in CHILD_ROLES:
        return name.startswith("litestream")
    if name.startswith("backupctl"):  # a frozen build
        return True
    args = [os.path.basename(a) for a in record.argv[1:3]]
    return name.startswith("python") and ("backupctl" in args or record.argv[1:3] == ["-m", "backupctl"])


def register(
    role: str,
    pid: int,
    *,
    project: Path,
    databases: Iterable[Path | str] = (),
    replicas: Iterable[str] = (),
    parent_pid: int | None = None,
    pdeathsig: bool = False,
    background: bool = False,
    manager: str | None = None,
    state_dir: Path | None = None,
) -> ProcessRecord | None:
    """Record a process backupctl just started (or itself). None if it is already gone."""
    import psutil

    try:
        proc = psutil.Process(pid)
        create_time, argv = proc.create_time(), _cmdline(proc)
        parent_create_time = psutil.Process(parent_pid).create_time() if parent_pid else None
    except psutil.Error:
        return None
    record = ProcessRecord(
        role=role,
        pid=pid,
        create_time=create_time,
        argv=argv,
        project=str(Path(project).resolve()),
        databases=[os.path.realpath(d) for d in databases],
        replicas=list(replicas),
        parent_pid=parent_pid,
        parent_create_time=parent_create_time,
        pdeathsig=pdeathsig,
        background=background,
        manager=manager,
        state_dir=str(state_dir) if state_dir else None,
        started_at=time.time(),
        start_ticks=start_ticks(pid),
        parent_start_ticks=start_ticks(parent_pid) if parent_pid else None,
        exe=executable_of(pid),
    )
    write_atomic(record.file, json.dumps(asdict(record), indent=2))
    return record


def _cmdline(proc: Any, wait: float = 2.0) -> list[str]:
    """A process's command line, waiting while it reads empty: right after Popen returns, the child
    has closed its close-on-exec pipe but the kernel may not have laid out its new argv yet."""
    deadline = time.monotonic() + wait
    while True:
        argv = proc.cmdline()
        if argv or time.monotonic() >= deadline:
            return argv
        time.sleep(0.01)


def unregister(record: ProcessRecord | None) -> None:
    """Remove a record (only the file of that exact process)."""
    if record is None:
        return
    current = _read(record.file)
    same = current is not None and current.pid == record.pid
    if same and abs(current.create_time - record.create_time) <= START_TIME_TOLERANCE:
        record.file.unlink(missing_ok=True)


def _read(path: Path) -> ProcessRecord | None:
    """A record, only from a file of ours, mode 0600, not a link: anything else is not backupctl's."""
    text = read_private(path, strict=True)
    if text is None:
        return None
    try:
        raw = json.loads(text)
        known = {k: v for k, v in raw.items() if k in ProcessRecord.__dataclass_fields__}
        return ProcessRecord(**known)
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def records(*, role: str | Iterable[str] | None = None, project: Path | None = None) -> list[ProcessRecord]:
    """Every live record (of a role, of a project); files of dead processes are removed on the way."""
    folder = registry_dir()
    roles = {role} if isinstance(role, str) else (set(role) if role is not None else None)
    wanted_project = str(Path(project).resolve()) if project is not None else None
    found: list[ProcessRecord] = []
    try:
        files = sorted(folder.glob("*.json"))
    except OSError:
        return []
    for file in files:
        if roles is not None and file.name.rsplit("-", 1)[0] not in roles:
            continue
        record = _read(file)
        if record is None:
            continue
        if not record.alive():
            if record.role not in KEPT_WHEN_DEAD:
                file.unlink(missing_ok=True)
            continue
        if wanted_project is not None and record.project != wanted_project:
            continue
        found.append(record)
    return found


def leftovers(role: str, project: Path) -> list[ProcessRecord]:
    """Records of this project's processes of ``role`` that died without removing them (SIGKILL).
    Their files are removed: the caller cleans up after them now."""
    wanted = str(Path(project).resolve())
    found = []
    for file in sorted(registry_dir().glob(f"{role}-*.json")):
        record = _read(file)
        if record is None or record.project != wanted or record.alive():
            continue
        file.unlink(missing_ok=True)
        found.append(record)
    return found


def supervisor_of(project: Path) -> ProcessRecord | None:
    """The live supervisor (foreground or background) of this project, if any."""
    found = records(role=SUPERVISOR, project=project)
    return found[0] if found else None


def record_of(pid: int) -> ProcessRecord | None:
    """The live record of a pid (any role), e.g. the pid written in a lock file."""
    for record in records():
        if record.pid == pid:
            return record
    return None


# --------------------------------------------------------------------------- who replicates a database


@dataclass(frozen=True)
class Replicator:
    pid: int
    command_line: str
    record: ProcessRecord | None  # None: a litestream backupctl did not start

    @property
    def ours(self) -> bool:
        return self.record is not None

    def describe(self) -> str:
        if self.record is not None:
            return self.record.describe()
        return f"litestream not started by backupctl, pid {self.pid}: {self.command_line}"


def replicators_of(db_path: Path, *, scan: bool = True) -> list[Replicator]:
    """Every process that replicates ``db_path``: backupctl's (records) first, then foreign litestreams.

    ``scan`` looks at every process of this user (litestream command lines, their configs and
    open files): a few tens of milliseconds; without it only backupctl's records are asked.
    """
    return replicators_of_many([db_path], scan=scan)[os.path.realpath(db_path)]


def replicators_of_many(db_paths: Iterable[Path], *, scan: bool = True) -> dict[str, list[Replicator]]:
    """``replicators_of`` for many databases with one look at the records and at most one process
    scan (a start of 1,000 tenants scanned every process 1,000 times), by resolved path."""
    targets = [os.path.realpath(p) for p in db_paths]
    ours = records(role=REPLICATING_ROLES)
    found = {t: [Replicator(r.pid, r.command_line, r) for r in ours if t in r.databases] for t in targets}
    if scan and targets:
        # lazy: not needed on `status --json`'s fast path
        from backupctl.host.foreign_litestreams import foreign_litestreams

        known = {r.pid for r in records()}
        for target, others in foreign_litestreams([Path(t) for t in targets]).items():
            found[str(target)] += [Replicator(pid, line, None) for pid, line in others if pid not in known]
    return found


def check_free(settings: Any, *, project: Path, allow_pids: Iterable[int] = (), log: Log | None = None) -> None:
    """Refuse (ConflictError, exit 6) when anything else replicates one of these databases or replicas.

    Orphans of backupctl's own (a litestream whose supervisor or verify died) are stopped first.
    Called by `start` (both modes) before it takes its locks, and by verify before it starts its
    temporary replicator.
    """
    # lazy: not needed on `status --json`'s fast path
    from backupctl.host import locks

    allowed = set(allow_pids)
    dbs = list(settings.databases)
    reap_orphans(databases=[db.path for db in dbs], replicas=[r.lock_key for db in dbs for r in db.replicas], log=log)
    running = supervisor_of(project)
    if running is not None and running.pid not in allowed:
        raise ConflictError(
            f"replication is already running for this project: {running.describe()}",
            _how_to_stop(running),
        )
    live = [r for r in records(role=REPLICATING_ROLES) if r.pid not in allowed]
    replicators = replicators_of_many([db.path for db in dbs])
    for db in dbs:
        for other in replicators[os.path.realpath(db.path)]:
            if other.pid in allowed or (other.record and other.record.parent_pid in allowed):
                continue
            raise ConflictError(
                f"{db.path} is already replicated by {other.describe()}",
                "two replicators on one database break the replica chain; "
                + (
                    _how_to_stop(other.record)
                    if other.record
                    else f"stop pid {other.pid} first (and remove it from your Procfile, systemd unit or sidecar), "
                    "then let backupctl replicate"
                ),
            )
        holder = locks.holder(locks.database_lock_path(db.path))
        if holder and holder not in allowed:
            who = record_of(holder) if holder > 0 else None
            if who is not None:
                raise ConflictError(f"{db.path} is already being replicated by {who.describe()}", _how_to_stop(who))
            raise ConflictError(
                f"{db.path} is held by pid {holder} ({_command_line(holder)}): a replicator, or a restore over it",
                "wait for a restore to finish, or stop that supervisor (`backupctl stop` in its project), then start again",
            )
        for replica in db.replicas:
            key = replica.lock_key
            for other in live:
                clash = next((k for k in other.replicas if _overlaps(k, key)), None)
                if clash is not None:
                    raise ConflictError(
                        f"replica {replica.destination} is already written by {other.describe()}",
                        "two projects must never share one replica location: give this one its own "
                        "(BACKUP_LOCAL_DIR, BACKUP_BUCKET or BACKUP_PATH)",
                    )
            holder = locks.holder(locks.replica_lock_path(replica))
            if holder and holder not in allowed:
                raise ConflictError(
                    f"replica {replica.destination} is already written by pid {holder}",
                    "two projects must never share one replica location: give this one its own",
                )
    _check_foreign_replica_writers(dbs, allowed)


def _check_foreign_replica_writers(dbs: list[Any], allowed: set[int]) -> None:
    """A litestream backupctl did not start, writing into one of our replica locations (or one inside
    or around it), even for another database: two writers there destroy each other's backups."""
    # lazy: not needed on `status --json`'s fast path
    from backupctl.host.foreign_litestreams import foreign_replica_writers, replicas_overlap

    ours = {r.pid for r in records()} | allowed
    writers = [(pid, line, keys) for pid, line, keys in foreign_replica_writers() if pid not in ours]
    for db in dbs:
        for replica in db.replicas:
            for pid, line, keys in writers:
                if any(replicas_overlap(replica.lock_key, key) for key in keys):
                    raise ConflictError(
                        f"replica {replica.destination} is already written by a litestream not started by backupctl, "
                        f"pid {pid}: {line}",
                        "two writers in one replica location break both backups: stop that litestream (and remove it "
                        "from your Procfile, systemd unit or sidecar), or give this project its own location "
                        "(BACKUP_LOCAL_DIR, BACKUP_BUCKET or BACKUP_PATH)",
                    )


def _command_line(pid: int) -> str:
    import psutil

    try:
        return " ".join(psutil.Process(pid).cmdline()) or "?"
    except (psutil.Error, OSError):
        return "gone now"


def _overlaps(a: str, b: str) -> bool:
    """Two replica keys name the same place, or one lies inside the other."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _how_to_stop(record: ProcessRecord | None) -> str:
    if record is None:
        return "stop it first"
    if record.role != SUPERVISOR:
        return f"wait for it to finish, or stop pid {record.pid}"
    if record.manager:
        # lazy: not needed on `status --json`'s fast path
        from backupctl.host.service_managers import manager_stop_hint

        return f"it runs under {record.manager}: stop it there ({manager_stop_hint(record.manager)})"
    if record.background:
        return f"`backupctl stop` in {record.project} stops it"
    return f"Ctrl-C where it runs, or `backupctl stop` in {record.project}"


# --------------------------------------------------------------------------- orphans


def reap_orphans(
    *, databases: Iterable[Path] = (), replicas: Iterable[str] = (), timeout: float = 45.0, log: Log | None = None
) -> list[int]:
    """Stop every litestream backupctl started whose parent died, if it touches these databases/replicas.

    Such a process got SIGTERM from the kernel when its parent died (PR_SET_PDEATHSIG, Linux) and
    is doing its final sync: wait for it. Without that signal (macOS), send it one SIGTERM (its
    final sync) and wait. A second SIGTERM would make litestream 0.5 skip its final sync, so none
    is ever sent; past ``timeout`` its process group is SIGKILLed.
    """
    import psutil

    wanted_dbs = {os.path.realpath(d) for d in databases}
    wanted_replicas = set(replicas)
    stopped: list[int] = []
    for record in records(role=CHILD_ROLES):
        if record.parent_alive():
            continue
        touches = wanted_dbs & set(record.databases) or any(_overlaps(a, b) for a in record.replicas for b in wanted_replicas)
        if not touches:
            continue
        if log:
            log(f"backupctl: stopping {record.describe()}: the process that started it is gone (final sync first)")
        try:
            proc = psutil.Process(record.pid)
            if not (record.pdeathsig and sys.platform.startswith("linux")):
                proc.terminate()
            try:
                proc.wait(timeout)
            except psutil.TimeoutExpired:
                if log:
                    log(f"backupctl: pid {record.pid} did not exit within {timeout:g}s; killing it")
                # Its own process group (runner.py starts litestream in a new session) is killed whole;
                # never a group this record does not lead.
                if record.alive() and os.getpgid(record.pid) == record.pid:
                    os.killpg(record.pid, signal.SIGKILL)
                elif record.alive():
                    proc.kill()
                proc.wait(10)
        except (psutil.Error, OSError):
            pass
        record.file.unlink(missing_ok=True)
        stopped.append(record.pid)
    return stopped


# --------------------------------------------------------------------------- starting children


def use_parent_death_signal() -> bool:
    return sys.platform.startswith("linux") and not os.environ.get(NO_PDEATHSIG_ENV)


def parent_death_preexec(parent_pid: int) -> Callable[[], None]:
    """Linux: the kernel sends SIGTERM to the child when its parent dies, even by SIGKILL.

    "Parent" is the *thread* that starts the child: one started from a worker thread (a concurrent
    `verify`) gets the signal when that thread ends, so such a thread stops its children first.
    """
    import ctypes

    # Looked up here, not in the child: between fork and exec only this thread exists in the child,
    # and dlopen/dlsym there could wait forever on a loader lock another thread held at the fork.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        pr_set_pdeathsig = 1
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def child_kwargs() -> dict[str, Any]:
    """Popen keyword arguments for a litestream that must die with this process (where the OS allows)."""
    if use_parent_death_signal():
        return {"preexec_fn": parent_death_preexec(os.getpid())}
    return {}
