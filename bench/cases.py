"""The benchmarks. Each returns rows of backupctl's figure next to a baseline measured in the same run.

Methods (also printed into docs/benchmarks.md):

- Wall times of commands are those of a whole process, as a script sees it (fork/exec to exit):
  backupctl's command and the raw litestream command that answers the same question against the
  same config, interleaved, after one warm-up run of each; the median is shown.
- cli: `--help` and `--version` (no work behind them: the cost of starting the CLI) against
  `litestream -h` and `litestream version`.
- scale: 1, 100 and 1,000 small WAL databases (one template file copied N times) matched by one
  glob, file replica, sync 1 s. `setup` against `litestream databases -json` reading the same
  config. `start --background` (returns once replication is confirmed) against a raw `litestream
  replicate` of its own copy of the databases, timed until every database has a first file
  (0.5: LTX; 0.3: snapshot or WAL segment) in its replica. With replication running: `status
  --json` against `litestream status -json` (0.3 has no status: `litestream databases`), and
  each listing of the pinned version on the first database against the raw listing it wraps
  (0.5: `snapshots` = `ltx -level 9`, `ltx` and `generations` = `ltx -level all`; 0.3:
  `snapshots`, `wal`, `generations`), plus `databases --json` against `litestream databases
  -json` (0.3: no `-json`). At 1,000 databases (0.5), the supervisor's CPU is then measured while
  litestream's own start-up work on the idle replicas goes on: its compactions, then its first L0
  retention about five minutes after its start, each changing every replica folder within
  seconds (the supervisor reads each changed replica again); that row ends once litestream has
  logged the retention of every database, and one look later. Then an idle window: the
  supervisor's RSS (sampled every second, max), USS and CPU = (CPU time in the window, from
  /proc's schedstat where there is one) / window, beside the same figures of its litestream
  child. Last, a row is
  committed to the first and the last database, and `stop` is timed against SIGTERM to the raw
  replicate until it exits; both replicas must restore that row (the final sync). At 1,000
  databases a command is repeated fewer times, and only while its repetitions take less than
  about 25 s (8 s in quick mode); the Conditions list says how many runs each median has.
- restore: a 44 MB and a 1 GB database (each built once into the bench cache, replicated by a real
  `litestream replicate` to a file replica); backupctl restore (temp file, integrity check,
  rename) vs `litestream restore -o` vs `cp` of the database file, and the floor of any safe
  restore in Python (bench/restore_floor.py: the interpreter, litestream into a temp file, the
  integrity check, rename and fsync, with nothing of backupctl's) vs `litestream restore -o`; at
  44 MB also the best a reordered restore could do (bench/restore_overlap.py: litestream started
  first, backupctl's settings, binary check, plan and imports while it runs).
- lag: 200 single-row commits/s to a WAL database for the window, replicated to SeaweedFS on
  loopback with a 1 s sync interval. A poller lists the replica's level-0 LTX objects every
  100 ms and records when each first appears. Afterwards each of those objects' max txid is
  restored (`restore -txid`) to learn the highest row it holds; a row's lag is the first time
  an object holding it was seen minus the time its commit returned. Resolution: the poll interval.
- throughput: single-row INSERT+COMMIT transactions as fast as one connection can go
  (synchronous=NORMAL, WAL), in interleaved windows on three databases: one replicated by
  backupctl's supervisor, one by a raw `litestream replicate` (the baseline), one not replicated
  (a second reference). Both replicators run throughout, each with its own file replica.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.harness import (
    BACKUPCTL,
    Options,
    Project,
    Row,
    make_db,
    max_id,
    percentile,
    s3_env,
    s3_server,
    timed,
)
from bench.scale import bench_scale

CLI_GOAL_MS = 80.0  # absolute, for --help and --version
RESTORE_GOAL_RATIO = 1.15
FLOOR = Path(__file__).with_name("restore_floor.py")  # the floor of a safe restore in Python
OVERLAP = Path(__file__).with_name("restore_overlap.py")  # backupctl's work run while litestream restores
RESTORE_SIZES = {"44 MB": 43_000, "1 GB": 1_000_000}  # rows of ~1 KB each; quick mode: the first only
WRITES_PER_SECOND = 200
POLL_SECONDS = 0.1
SYNC_SECONDS = 1.0


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def _wait_status_ok(project: Project, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if project.cli("status", "--json", check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise RuntimeError("status never turned ok after start")


# ---------------------------------------------------------------- cli overhead


def bench_cli(opts: Options) -> list[Row]:
    """--help and --version: the import cost of the CLI with no work behind it (status and listings are in scale)."""
    folder = opts.work / "cli"
    db = make_db(folder / "app" / "app.db", rows=100)
    project = Project.create(folder / "app", opts.version, BACKUP_DATABASES=db.name, BACKUP_LOCAL_DIR=str(folder / "replica"))
    project.cli("setup")
    runs = opts.n(21, 7)
    env = project.raw_env()
    bc, binary = str(BACKUPCTL), project.raw_argv("version")[0]
    # --help builds typer's whole command tree each time (its text is never cached: a stale help text is
    # a bug), so it has no goal; --version answers before anything loads.
    pairs = [
        ("--help", [bc, "--help"], [binary, "-h"], "litestream -h", None),
        ("--version", [bc, "--version"], [binary, "version"], "litestream version", CLI_GOAL_MS),
    ]
    rows: list[Row] = []
    for label, ours, raw, raw_label, goal in pairs:
        timed(ours, cwd=project.dir)  # warm-up: page cache, .pyc
        timed(raw, cwd=project.dir, env=env)
        mine, theirs = [], []
        for _ in range(runs):
            mine.append(timed(ours, cwd=project.dir))
            theirs.append(timed(raw, cwd=project.dir, env=env))
        a, b = _ms(percentile(mine, 0.5)), _ms(percentile(theirs, 0.5))
        rows.append(
            Row("cli", f"`backupctl {label}`", a, "ms", b, f"`{raw_label}`", added=True,
                goal=f"< {goal:g} ms" if goal else "-", met=(a < goal) if goal else None, note=f"median of {runs}")
        )  # fmt: skip
    return rows


# ---------------------------------------------------------------- restore


def _restore_fixture(opts: Options, rows: int) -> tuple[Project, Path]:
    """A database of ``rows`` rows of ~1 KB and its file replica, built once and kept in the bench cache."""
    cache = opts.work / "cache" / f"restore-{opts.version}-{rows}"
    db = cache / "project" / "big.db"
    marker = cache / "ready"
    project_env = {"BACKUP_DATABASES": db.name, "BACKUP_LOCAL_DIR": str(cache / "replica")}
    if marker.is_file() and db.is_file():
        return Project(cache / "project", {"LITESTREAM_VERSION": opts.version, **project_env}, opts.version), db
    shutil.rmtree(cache, ignore_errors=True)
    project = Project.create(cache / "project", opts.version, **project_env)
    make_db(db)
    con = sqlite3.connect(db)
    con.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT ?) "
        "INSERT INTO items (body) SELECT hex(randomblob(500)) FROM c",
        (rows,),
    )
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    project.cli("setup")
    replica = cache / "replica"
    log = open(cache / "replicate.log", "wb")  # noqa: SIM115
    proc = project.litestream().popen("replicate", stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        # Wait until the replica stops growing, then SIGTERM (litestream's final sync).
        last, stable_since, deadline = -1, time.monotonic(), time.monotonic() + 300
        while time.monotonic() < deadline:
            size = sum(p.stat().st_size for p in replica.rglob("*") if p.is_file()) if replica.exists() else 0
            if size != last:
                last, stable_since = size, time.monotonic()
            elif size > 0 and time.monotonic() - stable_since > 4:
                break
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    probe = cache / "probe.db"
    project.litestream().run("restore", "-o", str(probe), str(db), timeout=600)
    got = max_id(probe)
    for leftover in cache.glob("probe.db*"):
        leftover.unlink()
    if got != rows:
        raise RuntimeError(f"the replica of the {rows}-row database restores {got} rows, not {rows}")
    marker.write_text("ok\n")
    return project, db


def bench_restore(opts: Options) -> list[Row]:
    found: list[Row] = []
    for label, rows in list(RESTORE_SIZES.items())[: 1 if opts.quick else None]:
        found += _restore_rows(opts, label, rows)
    return found


def _restore_rows(opts: Options, label: str, rows: int) -> list[Row]:
    """`backupctl restore -o` (its integrity check included) against `litestream restore -o` and a plain
    copy, interleaved; and the integrity check alone, timed on the restored copy, for where the rest goes."""
    project, db = _restore_fixture(opts, rows)
    out = opts.work / "restore-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = project.raw_env()
    rounds = opts.n(5 if rows < 100_000 else 3, 1)  # the small one is quick, and noisier
    ours, raw, copy, check, floor, overlap = [], [], [], [], [], []
    small = rows < 100_000  # the overlap row only where backupctl's own time is a visible part of the whole
    raw_argv = project.raw_argv("restore", "-o", "OUT", str(db))
    config = raw_argv[raw_argv.index("-config") + 1]
    for i in range(rounds):
        target = out / f"raw-{i}.db"
        raw.append(timed(project.raw_argv("restore", "-o", str(target), str(db)), cwd=project.dir, env=env))
        target.unlink()
        target = out / f"floor-{i}.db"
        floor.append(timed([sys.executable, str(FLOOR), raw_argv[0], config, str(db), str(target)], cwd=project.dir, env=env))
        if max_id(target) != rows:
            raise RuntimeError("the floor restore returned the wrong rows")
        target.unlink()
        if small:
            target = out / f"overlap-{i}.db"
            overlap.append(timed([sys.executable, str(OVERLAP), raw_argv[0], config, str(db), str(target)], cwd=project.dir))
            if max_id(target) != rows:
                raise RuntimeError("the overlapped restore returned the wrong rows")
            target.unlink()
        target = out / f"backupctl-{i}.db"
        ours.append(timed([str(BACKUPCTL), "restore", "-o", str(target)], cwd=project.dir))
        if max_id(target) != rows:
            raise RuntimeError("backupctl restore returned the wrong rows")
        check.append(_integrity_seconds(target))
        target.unlink()
        target = out / f"cp-{i}.db"
        copy.append(timed(["cp", str(db), str(target)], cwd=project.dir))
        target.unlink()
    size_mb = db.stat().st_size / 1e6
    a, b, c, d = percentile(ours, 0.5), percentile(raw, 0.5), percentile(copy, 0.5), percentile(check, 0.5)
    e = percentile(floor, 0.5)
    note = f"{size_mb:,.0f} MB database, file replica, median of {rounds}"
    shutil.rmtree(out, ignore_errors=True)
    return [
        Row(f"restore, {label}", "`backupctl restore -o`", a, "s", b, "`litestream restore -o`",
            goal=f"<= {RESTORE_GOAL_RATIO}x", met=a / b <= RESTORE_GOAL_RATIO, note=note),
        Row(f"restore, {label}", "`backupctl restore -o`", a, "s", c, "`cp` of the database (the floor)", note=note),
        Row(f"restore, {label}", "of which: the integrity check (`PRAGMA integrity_check` of the copy)", d, "s", b,
            "`litestream restore -o`", note=note),
        Row(f"restore, {label}", "the floor of any safe restore in Python (`bench/restore_floor.py`)", e, "s", b,
            "`litestream restore -o`", note=note + "; the interpreter, litestream into a temp file, the integrity check, "
            "rename and fsync, nothing of backupctl's"),
    ] + ([
        Row(f"restore, {label}", "backupctl's work overlapped with litestream's (`bench/restore_overlap.py`)",
            percentile(overlap, 0.5), "s", b, "`litestream restore -o`", note=note + "; litestream started first, the "
            "settings, binary check, plan and command imports while it runs, then the integrity check and rename"),
    ] if small else [])  # fmt: skip


def _integrity_seconds(path: Path) -> float:
    """The integrity check restore runs on every copy, alone, in this process (its file is in the page cache)."""
    from backupctl.restore.integrity import check_database

    started = time.perf_counter()
    check_database(path)
    return time.perf_counter() - started


# ---------------------------------------------------------------- replication lag

# 0.5 on S3 keeps level N under <path>/<N as 4 hex digits>/ (the file replica uses ltx/N/).
_L0 = re.compile(r"/0000/([0-9a-f]{16})-([0-9a-f]{16})\.ltx$")


class _Poller(threading.Thread):
    """Lists the replica's level-0 LTX objects every POLL_SECONDS; records when each first appears."""

    def __init__(self, client, bucket: str, prefix: str) -> None:
        super().__init__(daemon=True)
        self.client, self.bucket, self.prefix = client, bucket, prefix.rstrip("/") + "/0000/"
        self.seen: dict[str, float] = {}
        self.stop_event = threading.Event()
        self.errors = 0

    def run(self) -> None:
        while not self.stop_event.is_set():
            started = time.time()
            try:
                pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
                for page in pages:
                    for obj in page.get("Contents", []):
                        self.seen.setdefault(obj["Key"], started)
            except Exception:
                self.errors += 1
            self.stop_event.wait(max(0.0, POLL_SECONDS - (time.time() - started)))


def _write_paced(db: Path, seconds: float, start_id: int) -> dict[int, float]:
    """WRITES_PER_SECOND single-row commits; returns id -> time the commit returned."""
    con = sqlite3.connect(db, timeout=10)
    con.execute("PRAGMA busy_timeout=10000")
    con.execute("PRAGMA synchronous=NORMAL")
    committed: dict[int, float] = {}
    t0 = time.monotonic()
    total = int(seconds * WRITES_PER_SECOND)
    for n in range(total):
        due = t0 + n / WRITES_PER_SECOND
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        row_id = start_id + n
        con.execute("INSERT INTO items (id, body) VALUES (?, ?)", (row_id, f"lag row {row_id}"))
        con.commit()
        committed[row_id] = time.time()
    con.close()
    return committed


def _lag_run(project: Project, server, bucket: str, prefix: str, db: Path, seconds: float, *, supervised: bool) -> dict:
    client = server.client()
    poller = _Poller(client, bucket, prefix)
    proc = None
    if supervised:
        project.start()
    else:
        log = open(project.dir / "replicate.log", "wb")  # noqa: SIM115
        proc = project.litestream().popen("replicate", stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
    try:
        time.sleep(3)  # first snapshot
        poller.start()
        committed = _write_paced(db, seconds, start_id=max_id(db) + 1)
        last = max(committed)
        deadline = time.monotonic() + SYNC_SECONDS + 15
        # Keep polling until the replica has caught up (a restore of the newest object holds the last row).
        while time.monotonic() < deadline:
            time.sleep(1.0)
            if _restored_max(project, db, None) >= last:
                time.sleep(0.5)
                break
        poller.stop_event.set()
        poller.join(5)
    finally:
        if supervised:
            project.stop()
        elif proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    # Which rows does each object hold? Restore up to its max txid and read the highest id.
    objects = sorted((int(_L0.search(k).group(2), 16), t) for k, t in poller.seen.items() if _L0.search(k))
    holds: list[tuple[float, int]] = []
    for txid, seen_at in objects:
        top = _restored_max(project, db, txid)
        if top >= 0:
            holds.append((seen_at, top))
    lags, missing = [], 0
    for row_id, at in committed.items():
        visible = next((seen for seen, top in holds if top >= row_id), None)
        if visible is None:
            missing += 1
        else:
            lags.append(visible - at)
    return {"lags": lags, "missing": missing, "objects": len(objects), "poll_errors": poller.errors}


def _restored_max(project: Project, db: Path, txid: int | None) -> int:
    out = project.dir / f"probe-{time.monotonic_ns()}.db"
    args = ["-o", str(out)] + (["-txid", f"{txid:016x}"] if txid is not None else []) + [str(db)]
    try:
        result = project.litestream().run("restore", *args, timeout=120, check=False)
        if result.returncode != 0 or not out.exists():
            return -1
        return max_id(out)
    finally:
        for p in out.parent.glob(out.name + "*"):
            p.unlink(missing_ok=True)


def bench_lag(opts: Options) -> list[Row]:
    seconds = 10.0 if opts.quick else 30.0
    folder = opts.work / "lag"
    results = {}
    with s3_server(folder / "seaweed") as server:
        bucket = server.create_bucket("bench-lag")
        for supervised in (True, False):
            name = "backupctl" if supervised else "raw"
            db = make_db(folder / name / "app.db")
            project = Project.create(folder / name, opts.version, BACKUP_DATABASES=db.name, **s3_env(server, bucket, name))
            project.cli("setup")
            results[name] = _lag_run(project, server, bucket, name, db, seconds, supervised=supervised)
    ours, raw = results["backupctl"], results["raw"]
    if not ours["lags"] or not raw["lags"]:
        raise RuntimeError(f"no row became visible (backupctl: {ours['objects']} objects, raw: {raw['objects']})")
    goal = SYNC_SECONDS + 1.0
    note = (
        f"{WRITES_PER_SECOND} commits/s for {seconds:g} s, SeaweedFS on loopback, sync 1 s, "
        f"{ours['objects']}/{raw['objects']} L0 objects, missing rows {ours['missing']}/{raw['missing']}"
    )
    rows = []
    for label, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
        a, b = percentile(ours["lags"], q), percentile(raw["lags"], q)
        goal_text, met = (f"<= {goal:g} s", a <= goal) if label == "p99" else ("", None)
        rows.append(Row("lag", f"lag {label}, commit to replica", a, "s", b, "raw `litestream replicate`",
                        goal=goal_text, met=met, note=note))  # fmt: skip
    return rows


# ---------------------------------------------------------------- write throughput


def _hammer(db: Path, seconds: float) -> float:
    con = sqlite3.connect(db, timeout=10)
    con.execute("PRAGMA busy_timeout=10000")
    con.execute("PRAGMA synchronous=NORMAL")
    n, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        con.execute("INSERT INTO items (body) VALUES (?)", ("x" * 100,))
        con.commit()
        n += 1
    elapsed = time.monotonic() - started
    con.close()
    return n / elapsed


def bench_throughput(opts: Options) -> list[Row]:
    window = 5.0
    rounds = opts.n(3, 1)
    folder = opts.work / "throughput"
    plain = make_db(folder / "none" / "app.db", rows=10)
    db = make_db(folder / "app" / "app.db", rows=10)
    raw_db = make_db(folder / "raw" / "app.db", rows=10)
    project = Project.create(folder / "app", opts.version, BACKUP_DATABASES=db.name, BACKUP_LOCAL_DIR=str(folder / "replica"))
    raw = Project.create(folder / "raw", opts.version, BACKUP_DATABASES=raw_db.name, BACKUP_LOCAL_DIR=str(folder / "raw-replica"))
    raw.cli("setup")
    none_rates, ours, theirs = [], [], []
    log = open(raw.dir / "replicate.log", "wb")  # noqa: SIM115
    proc = raw.litestream().popen("replicate", stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log.close()
    try:
        project.start()
        time.sleep(2)
        if proc.poll() is not None:
            raise RuntimeError(f"raw litestream replicate exited {proc.returncode}")
        # Interleaved windows, both replicators running throughout; the databases not written are idle.
        for _ in range(rounds):
            none_rates.append(_hammer(plain, window))
            ours.append(_hammer(db, window))
            theirs.append(_hammer(raw_db, window))
    finally:
        project.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    note = (
        f"single-row commits, {rounds} interleaved {window:g} s windows each (median), synchronous=NORMAL, "
        "file replica, sync 1 s; backupctl's supervisor and the raw replicate run throughout, each on its own database"
    )
    a, b, c = percentile(ours, 0.5), percentile(theirs, 0.5), percentile(none_rates, 0.5)
    return [
        Row("throughput", "commits/s with backupctl's supervised replication", a, "commits/s", b,
            "the same writes under a raw `litestream replicate`", note=note),
        Row("throughput", "commits/s with backupctl's supervised replication", a, "commits/s", c,
            "the same writes with no replication (reference)", note=note),
        Row("throughput", "commits/s with a raw `litestream replicate`", b, "commits/s", c,
            "the same writes with no replication (reference)", note=note),
    ]  # fmt: skip


BENCHMARKS = {
    "cli": bench_cli,
    "restore": bench_restore,
    "lag": bench_lag,
    "throughput": bench_throughput,
    "scale": bench_scale,
}
