"""`restore` and `verify`: a thin skin over backupctl.restore and backupctl.checks.verify."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer

from backupctl.cli.app import app
from backupctl.cli.common import DURATION, EnvFileOpt, JsonOpt, binary_for, load_for_recovery, replica_option
from backupctl.cli.output import UsageError, emit_json, notice, say, success, table
from backupctl.display import shown
from backupctl.errors import BackupctlError, ExitCode, NoBackupError
from backupctl.units import human_size


class Terminated(BackupctlError):
    """SIGTERM while restoring: raised inside the restore so every cleanup runs."""

    exit_code = ExitCode.TERMINATED
    kind = "terminated"


@contextmanager
def _signals_stop(what: str) -> Iterator[None]:
    """SIGTERM and SIGINT ask the restore/verify to stop instead of raising wherever they land.

    A handler that raised could cut ``mkdtemp`` after it created the temp folder, or fire between
    starting litestream and the ``try`` that kills it, or in the middle of the cleanup. These
    handlers only feed ``restore.stop_request``: it kills the running ``litestream restore`` and the
    core raises the error at its next safe point (every cleanup already armed). Exit 143 / 130.
    """
    # lazy: each command loads only what it runs
    from backupctl.cli import Interrupted
    from backupctl.restore import stop_request

    def on_term(signum: int, frame: object) -> None:
        stop_request.request(Terminated(f"{what} interrupted by SIGTERM", "nothing was changed; run it again when ready"))

    def on_int(signum: int, frame: object) -> None:
        stop_request.request(Interrupted())

    stop_request.reset()
    previous = {sig: signal.signal(sig, handler) for sig, handler in ((signal.SIGTERM, on_term), (signal.SIGINT, on_int))}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop_request.reset()


def _status(message: str, json_mode: bool):  # -> a context manager with .update(str)
    if json_mode or not sys.stderr.isatty():
        return nullcontext(None)
    from rich.console import Console

    return Console(stderr=True).status(_spinner_text(message))


def _spinner_text(message: str) -> Any:
    """A spinner's words as plain Text, escaped: a database's name is neither rich markup nor a line break."""
    from rich.text import Text


    return Text(shown(message))


def _step(status: Any) -> Callable[[str], None] | None:
    """The ``on_step`` that shows each step on the spinner (None without one)."""
    return None if status is None else (lambda message: status.update(_spinner_text(message)))


@app.command()
def restore(
    db: Annotated[
        str | None,
        typer.Argument(
            metavar="[DB|PATH]",
            help="Database (name or path) to restore; with several configured, name one or pass --all. A path that is "
            "not a configured database is where to restore to (with one database configured).",
            show_default=False,
        ),
    ] = None,
    all_databases: Annotated[
        bool, typer.Option("--all", help="Restore every configured database (needed when several are and no DB is named).")
    ] = False,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the restored database; a folder (ending in /) takes every database under its own name.",
            show_default=False,
        ),
    ] = None,
    timestamp: Annotated[
        str | None,
        typer.Option(
            "--timestamp",
            "-t",
            help="Point in time: RFC 3339, '2024-01-15 12:00' (UTC unless an offset is given), '30m ago', 'yesterday'.",
            show_default=False,
        ),
    ] = None,
    txid: Annotated[
        str | None,
        typer.Option(
            "--txid",
            help="Restore up to this txid (Litestream 0.5): 16 hex digits as `ltx` lists it, 0x1ce as `status` shows it, "
            "or decimal.",
        ),
    ] = None,
    generation: Annotated[str | None, typer.Option("--generation", help="Restore from this generation (Litestream 0.3).")] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace an existing database; the old copy is moved aside and kept."),
    ] = False,
    if_db_not_exists: Annotated[
        bool,
        typer.Option(
            "--if-db-not-exists",
            help="Only where no database is yet: exit 0, restoring nothing, when the output (without -o: the "
            "database's own path) holds one.",
        ),
    ] = False,
    if_replica_exists: Annotated[
        bool,
        typer.Option(
            "--if-replica-exists",
            help="Exit 0 with a note, restoring nothing, when the replica holds no backup yet (a first deploy), not 8.",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would happen; write nothing.")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also list the replica's newest backup (state as of) and count each table's rows (--json always does).",
        ),
    ] = False,  # fmt: skip
    timeout: Annotated[
        float, typer.Option("--timeout", click_type=DURATION, help="Give up on the download after this long: 30m, 90s.")
    ] = 1800.0,
    replica: Annotated[
        str | None, replica_option("the replica holding the newest backup, as litestream picks it")
    ] = None,
    json_out: JsonOpt = False,
    env_file: EnvFileOpt = None,
) -> int:
    """Restore a database from its replica, safely: never over the live file without --force.

    Default output: the database's own path when no database is there (a new machine), else a
    side file next to it (app.db.restored-<UTC time>). The restore is written to a temp file,
    checked (PRAGMA integrity_check) and renamed into place; a failure leaves nothing behind.
    With several databases configured, name one or pass --all. On a new machine a glob in
    BACKUP_DATABASES is matched against the databases the replica holds, and missing folders are
    created like their parent folder.

    Litestream's own spellings work as well: -timestamp, -generation, -txid, -o (also -o=PATH),
    -if-db-not-exists, -if-replica-exists and -replica, with a value after a space or an =.

    \b
    Examples:
      backupctl restore --dry-run                # what would be restored, from where, the window
      backupctl restore                          # a new machine: the database back in place
      backupctl restore --all                    # ...every database, when several are configured
      backupctl restore app.db --force           # onto the live path; the old file is kept aside
      backupctl restore -o /tmp/check.db         # a copy to look at
      backupctl restore -o /tmp/check.db -v      # ...with the backup's time and each table's rows
      backupctl restore --all -o /tmp/all/       # every database into one folder
      backupctl restore --timestamp "30m ago"    # point in time
      backupctl restore -timestamp=2024-01-15T12:00:00Z  # litestream's spelling, as its guides write it
      backupctl restore --txid 0000000000000042  # up to a txid `backupctl ltx` lists (0.5)
      backupctl restore --all --if-db-not-exists --if-replica-exists  # boot: restore only what is missing
      backupctl restore --replica secondary -o /tmp/check.db  # from the secondary replica (Litestream 0.3)
    """
    # lazy: each command loads only what it runs
    from backupctl import restore as core
    from backupctl.cli import Interrupted

    skipped: list[dict[str, str | None]] = []  # databases left alone by --if-db-not-exists / --if-replica-exists

    def skip(name: str | None, path: Path | None, reason: str) -> None:
        skipped.append({"name": name, "database": None if path is None else str(path), "reason": reason})
        if not json_out:
            notice(reason)

    def nothing_to_restore(exc: NoBackupError) -> int:
        skip(None, None, f"{exc.message}: nothing restored (--if-replica-exists)")  # no database is known yet
        if json_out:
            emit_json({"ok": True, **({"dry_run": True, "plans": []} if dry_run else {"restores": []}), "skipped": skipped})
        return 0

    if db is not None and all_databases:
        raise _usage("name a database or pass --all, not both", "`backupctl restore DB` restores that one; --all every one")
    try:
        settings = load_for_recovery(env_file, replica=replica)
    except NoBackupError as exc:  # a glob that the replica holds nothing for yet: a first deploy
        if not if_replica_exists:
            raise
        return nothing_to_restore(exc)
    if db is None and not all_databases and len(settings.databases) > 1:
        names = [d.name for d in settings.databases]
        raise _usage(
            f"{len(names)} databases are configured; say which to restore",
            f"name one (`backupctl restore {names[0]}`), or pass --all to restore every one",
            details=[f"configured: {', '.join(names)}"],
        )
    out_dir = output is not None and output.endswith(("/", os.sep))
    targets = core.select_targets(settings, db, Path(output) if output is not None else None, output_is_dir=out_dir)
    if if_db_not_exists:  # litestream's meaning: the output already holds a database, so there is nothing to do
        for database, out in list(targets):
            there = core.restore_destination(database, out)
            if core.occupied(there):
                targets.remove((database, out))
                skip(database.name, database.path, f"{there} already holds a database: {database.name} not restored "
                     "(--if-db-not-exists)")  # fmt: skip
    binary = binary_for(settings)
    details = verbose or json_out or dry_run  # what the report shows; the restore itself needs none of it

    def passed_over(database: Any, exc: NoBackupError) -> bool:
        """--if-replica-exists: an empty replica is noted and passed over; else the error stands."""
        if not if_replica_exists:
            return False
        skip(database.name, database.path, f"{exc.message}: nothing restored (--if-replica-exists)")
        return True

    plans = []
    for database, out in targets:
        try:
            request = core.RestoreRequest(database, out, timestamp, txid, generation, force)
            with _naming_each_replica(settings, replica):
                plan = core.plan_restore(settings, binary, request, details=details)
            if dry_run:  # an empty replica fails the dry run as it would fail the restore (exit 8)
                core.require_a_backup(settings, binary, plan)
        except NoBackupError as exc:
            if passed_over(database, exc):
                continue
            raise
        plans.append(plan)
    if dry_run:
        if json_out:
            emit_json({"ok": True, "dry_run": True, "plans": [p.to_json() for p in plans], "skipped": skipped})
            return 0
        for p in plans:
            say(f"would restore {p.database.name} from {', '.join(p.source)}")
            say(f"  to {p.output} ({p.reason})")
            say(f"  point in time: {p.point_in_time() or 'latest'}")
            if p.generation:
                say(f"  generation: {p.generation}")
            if p.window is not None:
                say(f"  restorable window: {p.window.describe()}")
            for note in p.notes:
                say(f"  {note}")
        say("dry run: nothing was written")
        return 0

    results: list[dict[str, Any]] = []
    with _signals_stop("restore"):
        for p in plans:
            try:
                with _status(f"restoring {p.database.name}", json_out) as status, _naming_each_replica(settings, replica):
                    step = _step(status)
                    result = core.execute_restore(settings, binary, p, timeout=timeout, on_step=step)
            except NoBackupError as exc:  # 0.3 on a new machine finds out only now that the replica is empty
                if passed_over(p.database, exc):
                    continue
                raise
            except (Terminated, Interrupted) as exc:
                if results:  # the databases restored before the signal stay restored: say which
                    done = ", ".join(f"{r['name']} ({r['output']})" for r in results)
                    if isinstance(exc, Terminated):
                        raise Terminated(
                            f"restore interrupted by SIGTERM while restoring {p.database.name}",
                            f"already restored: {done}; {p.database.name} and the rest were not changed",
                        ) from None
                    notice(f"already restored: {done}; {p.database.name} and the rest were not changed")
                raise
            results.append(result.to_json())
            if json_out:
                continue
            success(f"restored {p.database.name} to {result.output}")
            say(f"  size: {human_size(result.size)}   integrity: ok   time: {result.seconds:.2f}s")
            position = ", ".join(f"{k} {v}" for k, v in result.position.items() if v is not None and k != "replica")
            say(f"  position: {position or 'unknown'}   point in time: {result.point_in_time or 'latest'}")
            newest = not (details or p.txid or p.generation)  # a plain restore restores the newest backup
            state_at = result.state_at or ("the newest backup (-v lists its time)" if newest else "unknown")
            say(f"  from: {', '.join(result.source)}   state as of: {state_at}")
            for folder in result.created_folders:
                say(f"  created folder {folder}")
            for kept in result.kept:
                say(f"  previous file kept as {kept}")
            for note in result.notes:
                notice(note)
            if result.tables is not None:
                from rich.table import Table


                t = Table(title=shown(f"{result.output.name}: tables"))
                t.add_column("table")
                t.add_column("rows", justify="right")
                for row in result.tables:  # a table's name is the application's: it may hold anything too
                    t.add_row(shown(row["name"]), str(row["rows"]))
                table(t)
            if not p.live and p.database.path.exists() and result.output.parent == p.database.path.parent:
                notice(
                    f"the live database {p.database.path} was not touched; to replace it: stop the app, "
                    f"then `backupctl restore {p.database.name} --force`"
                )
    if json_out:
        emit_json({"ok": True, "restores": results, "skipped": skipped})
    elif len(results) > 1:
        total = sum(r["size"] for r in results)
        success(f"restored {len(results)} databases ({human_size(total)}) in {sum(r['seconds'] for r in results):.2f}s")
    elif not results:
        say("nothing was restored")
    return 0


@contextmanager
def _naming_each_replica(settings: Any, replica: str | None) -> Iterator[None]:
    """A litestream failure of a plain restore with several replicas (litestream 0.3 reads them all, and
    fails when one cannot be read) names the way past it: one replica alone."""
    # lazy: as every core import of the CLI, kept off --help's path
    from backupctl.config.replica_views import labels, several
    from backupctl.errors import LitestreamError

    try:
        yield
    except LitestreamError as exc:
        if replica is None and several(settings):
            names = " or ".join(f"--replica {name}" for name in labels(settings))
            exc.hint = f"{exc.hint}; with a replica unreachable or lost, restore from one alone: {names}"
        raise


def _usage(message: str, hint: str, details: list[str] | None = None) -> BackupctlError:
    """A command line that does not say enough (which database): exit 2, as click's usage errors."""

    return UsageError(message, hint, details=details)
