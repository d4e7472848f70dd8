"""demo: the whole loop in one command, through the same commands a user runs.

It creates a WAL database, replicates it to a local folder under the background supervisor
(`backupctl start --background`), writes rows while showing live status, stops (final sync),
restores to a new file and checks that every committed row came back.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from backupctl.cli.app import app
from backupctl.errors import ExitCode, RefusedError
from backupctl.owned import write_atomic
from backupctl.versions import check_version


class DemoFailed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step
        self.detail = detail


def _backupctl(folder: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "backupctl", *args, "--env-file", str(folder / ".env")],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _fingerprint(db: Path) -> tuple[int, str]:
    """Row count and a digest of every row, to compare the restore with the original."""
    import hashlib
    import sqlite3

    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        digest = hashlib.sha256()
        count = 0
        for row in con.execute("SELECT id, body, created FROM orders ORDER BY id"):
            digest.update(repr(row).encode())
            count += 1
        return count, digest.hexdigest()
    finally:
        con.close()


def _create_database(db: Path) -> None:
    import sqlite3

    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, body TEXT NOT NULL, created REAL NOT NULL)")
    con.commit()
    con.close()


class _Writer(threading.Thread):
    """Writes one row at a time, each in its own transaction, like an application would."""

    def __init__(self, db: Path, seconds: float, rate: float) -> None:
        super().__init__(daemon=True)
        self.db, self.seconds, self.rate = db, seconds, rate
        self.rows = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        import sqlite3

        try:
            con = sqlite3.connect(self.db, timeout=10)
            con.execute("PRAGMA busy_timeout=10000")
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:
                con.execute("INSERT INTO orders (body, created) VALUES (?, ?)", (f"order #{self.rows + 1}", time.time()))
                con.commit()
                self.rows += 1
                time.sleep(1 / self.rate)
            con.close()
        except BaseException as exc:  # reported by the main thread
            self.error = exc


def _status_line(folder: Path) -> str:
    import json

    result = _backupctl(folder, "status", "--json", timeout=60)
    try:
        doc = json.loads(result.stdout)
        db = doc["databases"][0]
        verdict = db.get("verdict", "?")
        newest = db.get("newest_backup") or "none yet"
        return f"status: {verdict} (newest backup {newest})"
    except (ValueError, KeyError, IndexError, TypeError):
        return f"status: exit {result.returncode}"


@app.command()
def demo(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Folder for the demo's files (default: a new temp folder).")
    ] = None,
    seconds: Annotated[float, typer.Option("--seconds", help="How long to write rows.", min=1, max=120)] = 5.0,
    rate: Annotated[float, typer.Option("--rate", help="Rows per second while writing.", min=1, max=1000)] = 50.0,
    version: Annotated[
        str, typer.Option("--litestream-version", help="Litestream version to demo (0.5.17 or 0.3.13).")
    ] = "0.5.17",
) -> None:
    """Run the whole loop end to end with a local-folder replica: replicate, write, stop, restore, compare."""
    import tempfile

    from rich.console import Console
    from rich.live import Live


    console = Console(stderr=True, highlight=False)
    version = check_version(version, setting="--litestream-version")
    folder = (directory or Path(tempfile.mkdtemp(prefix="backupctl-demo-"))).expanduser().absolute()
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "demo.db"
    replica = folder / "replica"
    restored = folder / "restored.db"
    for leftover in (db, restored):
        if leftover.exists():
            raise RefusedError(f"{leftover} already exists", "give --dir a new or empty folder")
    timings: dict[str, float] = {}
    started = time.monotonic()
    running = False

    def step(name: str, func):  # type: ignore[no-untyped-def]
        t0 = time.monotonic()
        console.print(f"[bold]{name}[/bold]…")
        value = func()
        timings[name] = time.monotonic() - t0
        return value

    def check(result: subprocess.CompletedProcess[str], name: str) -> subprocess.CompletedProcess[str]:
        if result.returncode != 0:
            tail = (result.stderr + result.stdout).strip().splitlines()[-8:]
            raise DemoFailed(name, f"exit {result.returncode}\n  " + "\n  ".join(tail))
        return result

    try:
        write_atomic(
            folder / ".env",
            "# backupctl demo: a local-folder replica, synced every second\n"
            f"BACKUP_DATABASES={db.name}\n"
            f"BACKUP_LOCAL_DIR={replica.name}\n"
            "BACKUP_SYNC_INTERVAL=1s\n"
            f"LITESTREAM_VERSION={version}\n",
        )
        step("create a SQLite database in WAL mode", lambda: _create_database(db))
        step("render litestream.yml", lambda: check(_backupctl(folder, "setup"), "setup"))
        step(
            f"install the pinned Litestream {version} (once; cached afterwards)",
            lambda: check(_backupctl(folder, "install", version, timeout=600), "install"),
        )
        step("start replication in the background", lambda: check(_backupctl(folder, "start", "--background"), "start"))
        running = True

        def write() -> _Writer:
            writer = _Writer(db, seconds, rate)
            writer.start()
            line = "starting…"
            with Live(console=console, refresh_per_second=4, transient=True) as live:
                next_status = time.monotonic() + 1.5
                while writer.is_alive():
                    if time.monotonic() >= next_status:
                        line = _status_line(folder)
                        next_status = time.monotonic() + 1.5
                    live.update(f"  {writer.rows} rows written · {line}")
                    writer.join(0.25)
            if writer.error:
                raise DemoFailed("write rows", repr(writer.error))
            console.print(f"  {writer.rows} rows written · {line}")
            return writer

        writer = step(f"write rows for {seconds:g}s", write)
        stop = step("stop replication (final sync)", lambda: check(_backupctl(folder, "stop"), "stop"))
        running = False
        step(
            "restore the replica to a new file",
            lambda: check(_backupctl(folder, "restore", "-o", str(restored)), "restore"),
        )
        original, copy = _fingerprint(db), _fingerprint(restored)
        if original != copy or original[0] != writer.rows:
            raise DemoFailed(
                "compare",
                f"original has {original[0]} rows, restored copy has {copy[0]} (written: {writer.rows})",
            )
    except DemoFailed as failed:
        console.print(f"[bold red]demo failed at {failed.step}[/bold red]: {failed.detail}")
        console.print(f"files are in {folder}")
        raise typer.Exit(int(ExitCode.LITESTREAM)) from None
    finally:
        if running:
            _backupctl(folder, "stop")

    total = time.monotonic() - started
    console.print(f"[bold green]demo passed[/bold green] in {total:.1f}s: all {original[0]} rows came back from the replica")
    final = stop.stdout.strip() or stop.stderr.strip().splitlines()[-1:]
    for label, path in (
        ("database", db),
        ("replica", replica),
        ("restored copy", restored),
        ("settings", folder / ".env"),
        ("litestream.yml", folder / "litestream.yml"),
        ("supervisor log", folder / ".backupctl" / "supervisor.log"),
    ):
        console.print(f"  {label:15} {path}")
    console.print("  timings: " + ", ".join(f"{name.split(' (')[0]} {secs:.1f}s" for name, secs in timings.items()))
    if final:
        console.print(f"  stop said: {final if isinstance(final, str) else ' '.join(final)}")
