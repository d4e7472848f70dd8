"""What keeping a backup whole costs, as ratios against the same run without it (`just bench-whole`).

    .venv/bin/python bench/whole.py            # prints the table
    .venv/bin/python bench/whole.py --write    # also replaces the "Whole backups" section of docs/benchmarks.md

On one database of about SIZE_MB, replicated to a local folder by a real supervised litestream 0.5.17:

- the continuity check (a read transaction, a restore of the replica's newest state, a page-by-page
  comparison) against a raw `litestream restore` of the same replica, and against `cp` of the database;
- a start that must force a fresh snapshot (the WAL was restarted while stopped) against a start that
  continues the chain (same database, same replica);
- the WAL guard (read transactions held across a restart) against the restart it protects.

Timings are medians of RUNS. Nothing here is run by the tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
BC = ROOT / ".venv" / "bin" / "backupctl"
DOC = ROOT / "docs" / "benchmarks.md"
SIZE_MB = 40
RUNS = 5
MARK = "## Whole backups (bench/whole.py)"


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BC), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def make_db(path: Path, mb: int) -> None:
    con = sqlite3.connect(path)
    con.execute("pragma journal_mode=wal")
    con.execute("create table t(id integer primary key, pad blob)")
    for i in range(mb * 1024 // 4):  # ~4 KB rows
        con.execute("insert into t(pad) values(randomblob(4000))")
        if i % 500 == 0:
            con.commit()
    con.commit()
    con.close()


APP = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30)
for line in sys.stdin:
    what, _, n = line.partition(" ")
    if what == "write":
        for _ in range(int(n)):
            con.execute("insert into t(pad) values(randomblob(4000))")
            con.commit()
    elif what == "truncate":
        print(con.execute("pragma wal_checkpoint(TRUNCATE)").fetchone()[0], flush=True)
        continue
    print("done", flush=True)
"""


class App:
    """The application: its own process with one connection that stays open, as a running app's
    does (the last connection to close would checkpoint and delete the WAL). Never this process:
    the continuity check opens the database file, and closing a descriptor of it drops every POSIX
    lock its process holds there, an app connection's included."""

    def __init__(self, db: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", APP, str(db)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip

    def ask(self, line: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def restart_wal(self) -> None:
        """A TRUNCATE checkpoint that really emptied the WAL (0: not busy), then a write: new salts."""
        for _ in range(50):
            if self.ask("truncate") == "0":
                break
            time.sleep(0.2)
        write_rows(self, 5)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def write_rows(app: App, n: int) -> None:
    app.ask(f"write {n}")


def replica_files(folder: Path) -> dict[Path, int]:
    return {f: f.stat().st_size for f in folder.rglob("*.ltx") if f.is_file()}


def new_bytes(folder: Path, before: dict[Path, int]) -> int:
    """Bytes of the replica's LTX files that were not there before (compaction removes others meanwhile)."""
    return sum(size for f, size in replica_files(folder).items() if f not in before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", action="store_true")
    opts = parser.parse_args(argv)
    from backupctl.checks import continuity
    from backupctl.config.settings import load_settings
    from backupctl.litestream.binary import ensure_binary
    from backupctl.restore.staging import litestream_for

    work = Path(tempfile.mkdtemp(prefix="bench-whole-"))
    rows: list[tuple[str, float, str, float]] = []
    uploads = (0.0, 0.0)
    try:
        db = work / "app.db"
        make_db(db, SIZE_MB)
        (work / ".env").write_text(
            f"BACKUP_DATABASES=app.db\nBACKUP_REPLICA=file\nBACKUP_LOCAL_DIR={work / 'replica'}\nBACKUP_SYNC_INTERVAL=1s\n"
            "BACKUP_CONTINUITY_INTERVAL=off\n"
        )
        run("setup", cwd=work)
        if run("start", "--background", cwd=work).returncode:
            print("start failed", file=sys.stderr)
            return 1
        settings = load_settings(env_file=work / ".env")
        binary = ensure_binary(settings.version).path
        ls = litestream_for(settings, binary)
        database = settings.databases[0]
        app = App(db)
        write_rows(app, 50)
        time.sleep(3)

        # 1. the continuity check against a raw restore and a copy.
        checks, raws, copies = [], [], []
        for i in range(RUNS):
            out = work / f"raw{i}.db"
            raws.append(timed(lambda out=out: subprocess.run(
                [str(binary), "restore", "-config", str(ls.config_path), "-o", str(out), str(db)],
                check=True, capture_output=True)))  # fmt: skip
            out.unlink()
            copies.append(timed(lambda: shutil.copyfile(db, work / "copy.db")))
            proof = None

            def check() -> None:
                nonlocal proof
                proof = continuity.prove(ls, database, work / ".backupctl")

            checks.append(timed(check))
            assert proof is not None and proof.verdict == continuity.WHOLE, proof
        rows.append(("continuity check (restore + page comparison)", median(checks), "raw `litestream restore`", median(raws)))
        rows.append(("continuity check", median(checks), "`cp` of the database", median(copies)))

        # 2. a start with a forced snapshot against a start that continues the chain.
        plain, forced, plain_bytes, forced_bytes = [], [], [], []
        for _ in range(RUNS):
            run("stop", cwd=work)  # nothing written while stopped: the chain continues
            before = replica_files(work / "replica")
            plain.append(timed(lambda: run("start", "--background", cwd=work)))
            time.sleep(3)  # the first syncs after the start
            plain_bytes.append(new_bytes(work / "replica", before))
            run("stop", cwd=work)
            write_rows(app, 200)  # the app writes while stopped, and restarts its WAL
            app.restart_wal()
            before = replica_files(work / "replica")
            forced.append(timed(lambda: run("start", "--background", cwd=work)))
            time.sleep(3)
            forced_bytes.append(new_bytes(work / "replica", before))
        log = (work / ".backupctl" / "supervisor.log").read_text()
        snapshots = log.count("a full snapshot because")
        what = f"start after the app wrote and restarted its WAL while stopped ({snapshots} forced snapshots logged)"
        rows.append((what, median(forced), "a start with nothing written while stopped", median(plain)))
        uploads = (median(forced_bytes), median(plain_bytes))

        # 3. the WAL guard: holding and releasing read transactions, against the restart they protect.
        guard = continuity.WalGuard()
        holds = [timed(lambda: (guard.hold([database]), guard.release())) for _ in range(RUNS * 4)]
        app.close()
        restarts = [timed(lambda: (run("stop", cwd=work), run("start", "--background", cwd=work))) for _ in range(3)]
        rows.append(("WAL guard: hold + release", median(holds), "stop + start of the supervisor", median(restarts)))
        run("stop", cwd=work)
    finally:
        run("stop", cwd=work)
        shutil.rmtree(work, ignore_errors=True)

    size = f"{SIZE_MB} MB"
    lines = [
        MARK,
        "",
        f"One {size} database, local-folder replica, litestream 0.5.17, medians of {RUNS} runs, measured"
        f" {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores (`just bench-whole --write`).",
        "",
        "| what | time | against (same run) | its time | ratio |",
        "|---|---|---|---|---|",
    ]
    for what, t, base, bt in rows:
        lines.append(f"| {what} | {t * 1000:.1f} ms | {base} | {bt * 1000:.1f} ms | {t / bt:.3f}x |")
    lines += [
        "",
        f"What a forced snapshot really costs is the upload: {uploads[0] / 1e6:.1f} MB of new LTX files in the replica 3 s"
        f" after a start that followed a WAL restart, against {uploads[1] / 1e6:.2f} MB after a start with nothing written"
        f" while stopped, for a {size} database: litestream 0.5.17 itself uploads every page at most starts (its shutdown"
        " empties the WAL), so the forced snapshot adds little to it. The continuity check costs one restore of the"
        " database; its ratio against a raw restore is the page comparison and the read transaction.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if opts.write:
        doc = DOC.read_text()
        head = doc.split(MARK)[0].rstrip() + "\n\n"
        DOC.write_text(head + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
