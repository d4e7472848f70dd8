"""The scale benchmark: 1, 100 and 1,000 small WAL databases matched by one glob, file replica.

For each count, two projects with their own copies of the databases (one template file copied
N times) and their own replica folders:

- ``raw``: a plain ``litestream replicate`` of the same config shape: the baselines for start
  (until every database has a first file in the replica), stop (SIGTERM until exit, with the final
  sync proven by restoring a row written just before) and nothing else;
- ``backupctl``: ``setup``, ``start --background`` (returns once replication is confirmed), the
  continuity pass every start runs (each replica proven whole against the live pages, in a child
  process); once it is over, ``status --json`` and the listings, each interleaved with the raw
  litestream command that answers the same question against the same config; then an idle window
  for the supervisor's RSS and CPU (its litestream child's as the baseline; CPU from the
  scheduler's count where Linux has one); then ``stop``.

Neither the bench nor anything it starts has its open-files limit raised here: backupctl raises
its own soft limit, litestream (Go) its own.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from backupctl.commands.service import HEALTHCHECK_ARGV
from bench.harness import BACKUPCTL, Options, Partial, Project, Row, make_db, max_id, percentile, timed, timed_rc

STATUS_GOAL_RATIO = 1.0  # supervised `status --json` against raw `litestream status -json`, at every count
LISTING_GOAL_MS = 50.0  # added to the raw listing
SUPERVISOR_GOAL_MB, SUPERVISOR_GOAL_CPU = 30.0, 0.1  # at 1,000 databases
GOAL_COUNT = 1000
LOOK_SECONDS = 20.0  # a supervisor's look interval at 1,000 databases (15 s), and a margin
RETENTION_LIMIT_S = 600.0  # litestream 0.5's L0 retention comes about 5 minutes after its start
COUNTS = (1, 100, 1000)
MB = 1024 * 1024
REPLICA_FILES = (".ltx", ".snapshot.lz4", ".wal.lz4")  # what a first sync writes: 0.5, then 0.3


def runs_for(opts: Options, count: int) -> int:
    """Repetitions of the timed commands: fewer at 1,000 databases, where one status takes longest."""
    if opts.runs:
        return opts.runs
    full, quick = {1: 15, 100: 7}, {1: 5, 100: 3}
    return (quick if opts.quick else full).get(count, 2 if opts.quick else 3)


def idle_window(opts: Options, count: int) -> float:
    if opts.quick:
        return 10.0
    return 120.0 if count >= GOAL_COUNT else 30.0


def conditions(opts: Options) -> str:
    """One line for the report: how often each count repeats its commands, and the idle windows."""
    runs = ", ".join(f"{runs_for(opts, c)} at {c:,}" for c in opts.counts)
    idle = ", ".join(f"{idle_window(opts, c):g} s at {c:,}" for c in opts.counts)
    return (
        f"repetitions per command {runs} databases (fewer at 1,000, where one command takes longest; "
        f"fewer still when they pass {budget(opts):g} s); idle windows {idle}"
    )


def budget(opts: Options) -> float:
    """Seconds of repetitions per command pair after which no further pair starts."""
    return 8.0 if opts.quick else 25.0


def _label(count: int) -> str:
    return "scale, 1 db" if count == 1 else f"scale, {count:,} dbs"


def _template(folder: Path) -> Path:
    """One small WAL database (a few rows, WAL checkpointed away), copied for every database."""
    path = folder / "template.db"
    if path.exists():
        path.unlink()
    make_db(path, rows=5)
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return path


def _project(folder: Path, opts: Options, template: Path, count: int) -> Project:
    dbs = folder / "dbs"
    dbs.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shutil.copyfile(template, dbs / f"db{i:04d}.db")
    return Project.create(
        folder, opts.version, BACKUP_DATABASES="dbs/*.db", BACKUP_LOCAL_DIR=str(folder.parent / f"{folder.name}-replica")
    )


def _db_paths(project: Project, count: int) -> list[Path]:
    return [project.dir / "dbs" / f"db{i:04d}.db" for i in range(count)]


def _replicated(replica: Path, pending: set[str]) -> set[str]:
    """The databases (replica sub-folders by name) in ``pending`` whose replica holds a first file
    (0.5: an LTX file; 0.3: a snapshot or WAL segment)."""
    done = set()
    for name in pending:
        for _root, _dirs, files in os.walk(replica / name):
            if any(f.endswith(REPLICA_FILES) for f in files):
                done.add(name)
                break
    return done


def _write_marker(paths: list[Path]) -> int:
    """One committed row in each database; returns its id (the same in all of them)."""
    marker = 0
    for path in paths:
        con = sqlite3.connect(path, timeout=10)
        con.execute("INSERT INTO items (body) VALUES ('written just before stop')")
        con.commit()
        marker = con.execute("SELECT max(id) FROM items").fetchone()[0]
        con.close()
    return marker


def _restores_marker(project: Project, db: Path, marker: int) -> bool:
    out = project.dir / f"probe-{time.monotonic_ns()}.db"
    try:
        result = project.litestream().run("restore", "-o", str(out), str(db), timeout=120, check=False)
        return result.returncode == 0 and out.exists() and max_id(out) >= marker
    finally:
        for p in out.parent.glob(out.name + "*"):
            p.unlink(missing_ok=True)


def _raw_run(project: Project, count: int) -> dict[str, float | bool]:
    """Raw `litestream replicate`: seconds until every database is in the replica, seconds to stop."""
    replica = Path(project.env["BACKUP_LOCAL_DIR"])
    log = open(project.dir / "replicate.log", "wb")  # noqa: SIM115
    started = time.perf_counter()
    proc = project.litestream().popen("replicate", stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        pending = {p.name for p in _db_paths(project, count)}
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"raw litestream replicate exited {proc.returncode} at start")
            pending -= _replicated(replica, pending)
            if pending:
                time.sleep(0.05)
        if pending:
            raise RuntimeError(f"raw litestream replicate left {len(pending)} databases unreplicated")
        start_s = time.perf_counter() - started
        time.sleep(2)  # past the first sync of each database
        probes = _probe_dbs(project, count)
        marker = _write_marker(probes)
        stopping = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(300)
        stop_s = time.perf_counter() - stopping
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    synced = all(_restores_marker(project, db, marker) for db in probes)
    return {"start": start_s, "stop": stop_s, "synced": synced, "exit": proc.returncode}


def _probe_dbs(project: Project, count: int) -> list[Path]:
    paths = _db_paths(project, count)
    return [paths[0], paths[-1]] if count > 1 else paths


@dataclass
class Pair:
    ours_ms: float
    raw_ms: float
    runs: int
    failed: int  # backupctl runs that exited non-zero

    def note(self, base: str) -> str:
        text = f"{base}, median of {self.runs}"
        return text + (f"; {self.failed} of {self.runs} backupctl runs exited non-zero" if self.failed else "")


def _interleaved(runs: int, limit_s: float, ours: list[str], raw: list[str], cwd: Path, env: dict[str, str]) -> Pair:
    """Median wall ms of ours and of raw, interleaved after one warm-up each. At most ``runs`` pairs,
    fewer (at least one) once ``limit_s`` seconds are spent: a slow command at 1,000 databases must
    not take the whole run."""
    timed_rc(ours, cwd=cwd)
    timed(raw, cwd=cwd, env=env)
    mine, theirs, failed = [], [], 0
    started = time.monotonic()
    while len(mine) < runs and (not mine or time.monotonic() - started < limit_s):
        seconds, rc = timed_rc(ours, cwd=cwd)
        mine.append(seconds)
        failed += rc != 0
        theirs.append(timed(raw, cwd=cwd, env=env))
    return Pair(1000 * percentile(mine, 0.5), 1000 * percentile(theirs, 0.5), len(mine), failed)


def _listing_pairs(project: Project) -> list[tuple[str, list[str], list[str], str]]:
    """(label, backupctl argv, raw argv, raw label) for every listing the pinned version has, on one database."""
    bc = str(BACKUPCTL)
    db = _db_paths(project, 1)[0]
    rel = str(db.relative_to(project.dir))
    raw = project.raw_argv
    if project.litestream().caps.has_ltx:
        return [
            ("databases --json", [bc, "databases", "--json"], raw("databases", "-json"), "litestream databases -json"),
            ("snapshots DB --json", [bc, "snapshots", rel, "--json"], raw("ltx", "-level", "9", "-json", str(db)),
             "litestream ltx -level 9 -json DB"),
            ("ltx DB --json", [bc, "ltx", rel, "--json"], raw("ltx", "-level", "all", "-json", str(db)),
             "litestream ltx -level all -json DB"),
            ("generations DB --json", [bc, "generations", rel, "--json"], raw("ltx", "-level", "all", "-json", str(db)),
             "litestream ltx -level all -json DB"),
        ]  # fmt: skip
    return [
        ("databases --json", [bc, "databases", "--json"], raw("databases"), "litestream databases"),
        ("snapshots DB --json", [bc, "snapshots", rel, "--json"], raw("snapshots", str(db)), "litestream snapshots DB"),
        ("wal DB --json", [bc, "wal", rel, "--json"], raw("wal", str(db)), "litestream wal DB"),
        ("generations DB --json", [bc, "generations", rel, "--json"], raw("generations", str(db)), "litestream generations DB"),
    ]


def _wait_status_ok(project: Project, deadline_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if project.cli("status", "--json", check=False, timeout=deadline_s).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"status never turned ok within {deadline_s:.0f} s of start")


def _cpu_seconds(proc) -> float:  # noqa: ANN001 - psutil.Process
    """A process's CPU time: Linux's scheduler count in nanoseconds (/proc/PID/schedstat) where there
    is one; user+system clock ticks (10 ms each: a 60 s window of a process near 0.1 % is 6 of them)
    elsewhere."""
    try:
        total = 0
        for task in os.listdir(f"/proc/{proc.pid}/task"):  # every thread's (litestream has many)
            with open(f"/proc/{proc.pid}/task/{task}/schedstat") as fh:
                total += int(fh.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        return sum(proc.cpu_times()[:2])


def _start_pass(project: Project, count: int, since: float) -> tuple[float, float]:
    """Wait for the continuity pass every confirmed start runs (each replica proven whole against the
    live pages, in a forked child): seconds from ``since`` until every database has a verdict checked
    after it, and the CPU seconds the supervisor's reaped children have used by then."""
    import psutil

    from backupctl.checks import continuity

    deadline = time.monotonic() + 120 + 1.0 * count
    while time.monotonic() < deadline:
        records = continuity.records(project.dir / ".backupctl")
        done = [r for r in records.values() if float(r.get("checked_at") or 0) >= since]
        if len(done) >= count:
            cpu = psutil.Process(project.supervisor_pid()).cpu_times()
            return max(float(r["checked_at"]) for r in done) - since, cpu.children_user + cpu.children_system
        time.sleep(1.0)
    raise RuntimeError(f"the start-up continuity pass did not end within {120 + count:.0f} s")


def _retention_over(project: Project, count: int, started_at: float, limit_s: float) -> float | None:
    """Wait until litestream 0.5 has logged its first L0 retention for every database (about five
    minutes after its start it removes the level-0 files its compactions have covered: the last of
    its start-up changes to idle replicas; the next come with the hourly level), then one look
    interval more for the supervisor to read the changed replicas. Seconds from ``started_at`` to
    the last of those lines; None when they did not all come within ``limit_s`` of it."""
    import re

    logs = [project.dir / ".backupctl" / name for name in ("supervisor.log.1", "supervisor.log")]
    pattern = re.compile(r"^(\S+) litestream: INFO l0 retention enforced .*\bdb=(\S+)")
    while time.time() - started_at < limit_s:
        seen: dict[str, str] = {}
        for log in logs:
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                m = pattern.match(line)
                if m:
                    seen[m.group(2)] = m.group(1)
        if len(seen) >= count:
            last = max(seen.values())
            time.sleep(LOOK_SECONDS)
            return _log_time(last) - started_at
        time.sleep(2.0)
    return None


def _log_time(stamp: str) -> float:
    """A supervisor.log line's local time stamp (seconds resolution) as a Unix time."""
    return time.mktime(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))


def _idle(project: Project, window: float) -> dict[str, dict[str, float]]:
    """Max RSS, final USS and CPU % over ``window`` for the supervisor and its litestream."""
    import psutil

    procs = {"supervisor": psutil.Process(project.supervisor_pid()), "litestream": psutil.Process(project.litestream_pid())}
    cpu0 = {k: _cpu_seconds(p) for k, p in procs.items()}
    children0 = {k: sum(p.cpu_times()[2:4]) for k, p in procs.items()}
    rss = dict.fromkeys(procs, 0)
    started = time.monotonic()
    while time.monotonic() - started < window:
        for k, p in procs.items():
            rss[k] = max(rss[k], p.memory_info().rss)
        time.sleep(1.0)
    elapsed = time.monotonic() - started
    return {
        k: {
            "rss": rss[k] / MB,
            "uss": p.memory_full_info().uss / MB,
            "cpu": 100.0 * (_cpu_seconds(p) - cpu0[k]) / elapsed,
            "children_cpu": sum(p.cpu_times()[2:4]) - children0[k],
            "window": elapsed,
        }
        for k, p in procs.items()
    }


def one_count(opts: Options, count: int) -> list[Row]:
    """Every figure at ``count`` databases; a failure part-way keeps the rows measured before it."""
    rows: list[Row] = []
    try:
        _measure(opts, count, rows)
    except Exception as exc:
        if not rows:
            raise
        raise Partial(rows, exc) from exc
    return rows


def _measure(opts: Options, count: int, rows: list[Row]) -> None:
    folder = opts.work / "scale" / str(count)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    template = _template(folder)
    made = time.perf_counter()
    raw_project = _project(folder / "raw", opts, template, count)
    project = _project(folder / "app", opts, template, count)
    made = time.perf_counter() - made
    raw_project.cli("setup")
    project.cli("setup")
    runs = runs_for(opts, count)
    env = project.raw_env()
    bench, bc, cwd = _label(count), str(BACKUPCTL), project.dir
    base_note = f"{count:,} database{'s' if count > 1 else ''}, file replica"

    def row(measure: str, value: float | None, unit: str, baseline: float | None, label: str, **kw) -> None:
        rows.append(Row(bench, measure, value, unit, baseline, label, **kw))

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    has_ltx = project.litestream().caps.has_ltx
    databases = project.raw_argv("databases", "-json") if has_ltx else project.raw_argv("databases")
    databases_label = "`litestream databases -json`" if has_ltx else "`litestream databases`"
    setup = _interleaved(runs, budget(opts), [bc, "setup"], databases, cwd, env)
    row("`setup`", setup.ours_ms, "ms", setup.raw_ms, f"{databases_label} (reads the same config)", added=True,
        note=setup.note(base_note) + f"; the databases copied from one template in {made:.2f} s; "
        f"open-files limit of the bench {soft}/{hard} (soft/hard)")  # fmt: skip

    raw = _raw_run(raw_project, count)

    goals = count >= GOAL_COUNT
    raw_start = "raw `litestream replicate` until every database has a first file in the replica"
    raw_stop = "SIGTERM to raw `litestream replicate` until it exits"
    started, started_at = time.perf_counter(), time.time()
    start_label = "`start --background` (returns once confirmed)"
    try:
        project.start(timeout=60 + 0.3 * count)
    except Exception as exc:
        row(start_label, None, "s", float(raw["start"]), raw_start, goal="starts" if goals else "",
            met=False if goals else None, note=f"{base_note}; backupctl: {exc}")  # fmt: skip
        row("`stop` (final sync)", None, "s", float(raw["stop"]), raw_stop, note=f"{base_note}; not measured: no start")
        project.stop()
        raise
    start_s = time.perf_counter() - started
    try:
        row(start_label, start_s, "s", float(raw["start"]), raw_start, goal="starts" if goals else "",
            met=True if goals else None, note=f"{base_note}, one run each")  # fmt: skip
        _wait_status_ok(project, 120 + count * 0.5)
        # Every start proves each replica whole against the live pages (a child process, minutes at 1,000
        # databases): what follows is measured once it is over, replication settled.
        pass_s, pass_cpu = _start_pass(project, count, started_at)
        row("start-up continuity pass (every replica proven whole)", pass_s, "s", None, "-",
            note=f"{base_note}; wall time from `start` until continuity.json holds a verdict for every database, "
            f"checked after the start; the supervisor's children (the pass, its listings) used {pass_cpu:.1f} CPU s "
            f"by the end of it (the pass runs again every BACKUP_CONTINUITY_INTERVAL, 1h by default)")  # fmt: skip
        running = f"{base_note}, replication running, the start-up continuity pass over"
        raw_status = project.raw_argv("status", "-json") if has_ltx else databases
        status_label = "`litestream status -json`" if has_ltx else "`litestream databases` (0.3 has no status)"
        status = _interleaved(runs, budget(opts), [bc, "status", "--json"], raw_status, cwd, env)
        goal = f"<= {STATUS_GOAL_RATIO:g}x raw"
        met = status.ours_ms <= STATUS_GOAL_RATIO * status.raw_ms
        row("`status --json`", status.ours_ms, "ms", status.raw_ms, status_label, added=True, goal=goal,
            met=met and not status.failed, note=status.note(running))  # fmt: skip
        health = [bc, *HEALTHCHECK_ARGV[1:]]
        ours_cpu, raw_cpu, interval = _healthcheck_cpu(runs, health, raw_status, cwd, env)
        row(f"compose healthcheck CPU per day (`{' '.join(HEALTHCHECK_ARGV)}` every {interval:g} s)", ours_cpu, "s", raw_cpu,
            f"{status_label} at the same interval", note=f"{running}; user+system CPU of {runs} runs each, "
            "scaled to a day at the generated compose file's healthcheck interval")  # fmt: skip
        for label, ours, theirs, raw_label in _listing_pairs(project):
            got = _interleaved(runs, budget(opts), ours, theirs, cwd, env)
            row(f"`{label}`", got.ours_ms, "ms", got.raw_ms, f"`{raw_label}`", added=True,
                goal=f"<= raw + {LISTING_GOAL_MS:g} ms", met=got.ours_ms - got.raw_ms <= LISTING_GOAL_MS and not got.failed,
                note=got.note(running) + "; DB: the first database")  # fmt: skip
        if has_ltx and goals:
            # Litestream's own start-up work on 1,000 idle replicas goes on after the continuity pass:
            # compactions, then the first L0 retention, each changing every replica folder within seconds,
            # and the supervisor reads each changed replica again. Its CPU while that lasts is a row of
            # its own; the idle window starts once it is over.
            import psutil

            procs = [psutil.Process(project.supervisor_pid()), psutil.Process(project.litestream_pid())]
            cpu0, t0 = [_cpu_seconds(p) for p in procs], time.monotonic()
            over = _retention_over(project, count, started_at, RETENTION_LIMIT_S)
            spent = time.monotonic() - t0
            cpu = [100.0 * (_cpu_seconds(p) - c) / max(spent, 1e-9) for p, c in zip(procs, cpu0, strict=True)]
            when = f"{over:.0f} s after the start" if over is not None else f"not within {RETENTION_LIMIT_S:.0f} s"
            row("supervisor CPU while litestream's start-up compactions and L0 retention run", cpu[0], "%", cpu[1],
                "its litestream's own CPU",
                note=f"{base_note}; from the end of the listings until litestream has logged its first L0 retention "
                f"for every database ({when}) and one look more: {spent:.0f} s; CPU from /proc's schedstat")  # fmt: skip
        window = idle_window(opts, count)
        usage = _idle(project, window)
        sup, ls = usage["supervisor"], usage["litestream"]
        idle_note = (f"{base_note}, {sup['window']:.0f} s idle window after status and the listings, the start-up "
                     f"continuity pass over; the supervisor's own CPU (its children in the window: "
                     f"{sup['children_cpu']:.2f} CPU s)")  # fmt: skip
        row("supervisor RSS (max)", sup["rss"], "MB", ls["rss"], "its litestream's own RSS",
            goal=f"<= {SUPERVISOR_GOAL_MB:g} MB" if goals else "", met=sup["rss"] <= SUPERVISOR_GOAL_MB if goals else None,
            note=idle_note)  # fmt: skip
        row("supervisor USS (memory only it holds)", sup["uss"], "MB", ls["uss"], "its litestream's own USS", note=idle_note)
        row("supervisor CPU (idle)", sup["cpu"], "%", ls["cpu"], "its litestream's own CPU",
            goal=f"< {SUPERVISOR_GOAL_CPU:g} %" if goals else "", met=sup["cpu"] < SUPERVISOR_GOAL_CPU if goals else None,
            note=idle_note)  # fmt: skip
        probes = _probe_dbs(project, count)
        marker = _write_marker(probes)
        stopping = time.perf_counter()
        project.cli("stop", timeout=300)
        stop_s = time.perf_counter() - stopping
        project.started = False
    finally:
        project.stop()
    synced = all(_restores_marker(project, db, marker) for db in probes)
    stop_note = (
        f"{base_note}, one run each; a row written to {len(probes)} database(s) just before the stop restores: "
        f"backupctl {'yes' if synced else 'NO'}, raw {'yes' if raw['synced'] else 'NO'}"
    )
    row("`stop` (final sync)", stop_s, "s", float(raw["stop"]), raw_stop,
        goal="stops with a final sync" if goals else "", met=synced if goals else None, note=stop_note)  # fmt: skip
    shutil.rmtree(folder, ignore_errors=True)  # 1,000 databases and two replicas; a failed count's folder is kept


def _healthcheck_cpu(runs: int, ours: list[str], raw: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """CPU seconds a day of the compose file's healthcheck (``service.HEALTHCHECK``'s interval) for
    ``ours`` and for ``raw``: the user+system time of their processes (children of this one), runs
    interleaved, per run, times the runs in a day."""
    from backupctl.commands.service import HEALTHCHECK
    from backupctl.config.settings import parse_duration

    interval = parse_duration(HEALTHCHECK["interval"])
    spent = {"ours": 0.0, "raw": 0.0}
    for _ in range(runs):
        for name, argv, run_env in (("ours", ours, None), ("raw", raw, env)):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            subprocess.run(argv, cwd=cwd, env=run_env, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            spent[name] += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    per_day = 86400.0 / interval
    return spent["ours"] / runs * per_day, spent["raw"] / runs * per_day, interval


def bench_scale(opts: Options) -> list[Row]:
    """Every count in ``opts.counts`` (run.py runs them one by one, so one failing count keeps the others)."""
    rows: list[Row] = []
    for count in opts.counts:
        rows += one_count(opts, count)
    return rows
