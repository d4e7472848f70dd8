"""status, databases, snapshots, generations, wal, ltx: what is backed up, and how far back."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from backupctl.cli.app import app
from backupctl.cli.common import (
    DURATION,
    ConfigOpt,
    EnvFileOpt,
    FreshOpt,
    JsonOpt,
    LevelOpt,
    binary_for,
    explicit_config,
    load,
    load_for_recovery,
)
from backupctl.cli.options import LEVEL
from backupctl.cli.output import UsageError, _console, emit_json, emit_json_line, fitted_table, print_table, say
from backupctl.display import shown
from backupctl.units import human_size

DbArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[DB]", help="A database by path or file name (default: every database in the config).", show_default=False
    ),
]
WatchOpt = Annotated[bool, typer.Option("--watch", "-w", help="Keep refreshing a live view (Ctrl-C to leave).")]
IntervalOpt = Annotated[
    float, typer.Option("--interval", click_type=DURATION, help="Time between refreshes with --watch: 3s, 1m (or seconds).")
]


def _ago(value: datetime | str | None, now: datetime | None = None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    return _duration(seconds) + " ago" if seconds >= 0 else "in " + _duration(-seconds)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def _stamp(value: datetime | None) -> str:
    if value is None:
        return "-"
    return f"{value.strftime('%Y-%m-%d %H:%M:%S')}Z ({_ago(value)})"


# --------------------------------------------------------------------------- status


_STATUS_STYLES = {"ok": "green", "stale": "yellow", "down": "red", "not-initialized": "red", "error": "bold red"}


def _shown_position(position: str, version: str) -> str:
    """A 0.5 txid short, in the form `restore --txid` reads as the same txid: 0000000000000045 as 0x45
    (a bare 45 would be read as decimal). A 0.3 position (a generation) as it is."""
    # lazy: the status table has loaded it already; `--help` has not
    from backupctl.litestream.adapter import series_of

    txids = series_of(version).exact_positions  # 0.5: positions are txids; 0.3: generations
    if txids and len(position) == 16 and all(c in "0123456789abcdef" for c in position):
        return "0x" + (position.lstrip("0") or "0")
    return position


def _status_columns(report: Any) -> tuple[list[str], list[list[Any]]]:
    """The status table's columns and rows (the reason last: the TTY view prints it under the table)."""
    from rich.text import Text

    with_verify = any(d.last_verify for d in report.databases)
    columns = ["database", "verdict", "lag", "newest backup", "restorable since", "snapshot", "size+wal", "position"]
    columns += ["verify"] if with_verify else []
    rows = []
    for d in report.databases:
        position = d.local_position or "-"
        rows.append([
            d.name,
            Text(d.verdict, style=_STATUS_STYLES.get(d.verdict, "")),
            "-" if d.lag_seconds is None else _duration(d.lag_seconds) + (f" ({d.lag_txids} tx)" if d.lag_txids else ""),
            _ago(d.newest_backup),
            _ago(d.oldest_restorable),
            _ago(d.newest_snapshot),
            f"{human_size(d.size)}+{human_size(d.wal_size)}",
            _shown_position(position, report.litestream_version),
            *([_verify_text(d.last_verify)] if with_verify else []),
            d.reason,
        ])  # fmt: skip
        for r in d.replicas or []:  # several replicas (the secondary): a row for each, under its database's
            rows.append([
                f"{d.name} ({r['name']})",
                Text(r["verdict"], style=_STATUS_STYLES.get(r["verdict"], "")),
                "-" if r["lag_seconds"] is None else _duration(r["lag_seconds"]),
                _ago(r["newest_backup"]),
                _ago(r["oldest_restorable"]),
                _ago(r["newest_snapshot"]),
                "-",
                _shown_position(r["replica_position"] or "-", report.litestream_version),
                *(["-"] if with_verify else []),
                r["reason"],
            ])  # fmt: skip
    return columns, rows


# Dropped first when the terminal is narrow: the rest answers "is it backed up, and how far back?".
_STATUS_OPTIONAL = ("size+wal", "position", "snapshot", "restorable since")


def _supervisor_line(report: Any) -> Any:
    from rich.text import Text

    sup = report.supervisor
    colour = {"running": "green", "starting": "yellow", "backoff": "yellow"}.get(sup.state, "red")
    return Text.assemble(
        ("supervisor: ", "bold"),
        (sup.state, colour),
        f"  pid {sup.pid or '-'}  uptime {_duration(sup.uptime_seconds)}  restarts {sup.restarts}",
    )


def _status_table(report: Any, console: Any, local_mode: bool = False) -> Any:
    """The terminal view: supervisor line, a table that fits ``console`` without cutting a name,
    reasons, and where the backups go."""
    from rich.console import Group
    from rich.text import Text


    parts: list[Any] = [_supervisor_line(report)]
    if report.supervisor.last_error:
        parts.append(Text(f"last error: {shown(report.supervisor.last_error)}", style="red"))
    columns, rows = _status_columns(report)
    title = f"Litestream {report.litestream_version} · stale after {report.stale_after_seconds:g}s"
    parts.append(fitted_table(console, columns, [r[:-1] for r in rows], title=title, optional=_STATUS_OPTIONAL))
    for d in report.databases:
        if d.verdict != "ok" or d.replica_error:
            parts.append(Text(shown(f"{d.name}: {d.reason}"), style=_STATUS_STYLES.get(d.verdict, "yellow")))
    parts += [Text(line, style="dim") for line in _destination_lines(report, console.width, local_mode)]
    return Group(*parts)


# Up to this many databases get a line each for where they go; more share one (the folder they share).
_DESTINATION_LINES = 3


def _destination_lines(report: Any, width: int, local_mode: bool) -> list[str]:
    """Where the backups go, under the status table: the table has no room for a replica URL, and
    without it a project left in local mode (`setup --local`) looks like one backing up to its bucket.

    Each line fits ``width``; a URL too long to share a line with its database's name gets a line of
    its own, whole (the terminal wraps it), never cut."""

    pairs = [(shown(d.name), shown(dest)) for d in report.databases for dest in d.destinations]
    lines: list[str] = []
    if len(report.databases) <= _DESTINATION_LINES:
        for name, dest in pairs:
            line = f"{name} -> {dest}"
            lines += [line] if len(line) <= width else [f"{name} ->", f"  {dest}"]
    elif pairs:
        shared = os.path.commonprefix([dest for _, dest in pairs])
        shared = shared[: shared.rfind("/") + 1]
        if shared.rstrip("/").endswith(":"):  # only the scheme in common (file://, s3://): no folder to name
            lines.append(f"{len(report.databases)} databases; `backupctl databases` lists where each one goes")
        else:
            lines += [f"{len(report.databases)} databases -> one replica each under", f"  {shared}"]
    if local_mode:
        lines.append("local mode: a plain `backupctl setup` goes back to the .env's replica")
    return lines


def _print_status(report: Any, local_mode: bool = False) -> None:
    """On a terminal the fitted view; piped, tab-separated rows with every column and the reason
    (the supervisor line goes to stderr, so stdout is only data)."""
    import sys


    if sys.stdout.isatty():
        console = _console(stderr=False)
        console.print(_status_table(report, console, local_mode))
        return
    say(_supervisor_line(report).plain)
    if report.supervisor.last_error:  # as on a terminal: a supervisor killed, a litestream that exited
        say(f"last error: {shown(report.supervisor.last_error)}")
    columns, rows = _status_columns(report)
    print_table([*columns, "reason"], rows)


def _verify_text(verify: dict[str, Any] | None) -> str:
    """DatabaseStatus.last_verify (`status`: verified/failed/inconclusive, `checked_at`: epoch seconds)
    as `verified 3m ago`, `FAILED 2h ago` or `inconclusive`."""
    if not verify:
        return "-"
    status = str(verify.get("status"))
    text = {"verified": "verified", "failed": "FAILED"}.get(status, status)
    when = verify.get("checked_at")
    if status != "inconclusive" and isinstance(when, int | float):
        text += " " + _ago(datetime.fromtimestamp(when, UTC))
    return text


def _watch(collect: Callable[[], Any], interval: float, json_: bool, local_mode: bool = False) -> None:
    """Refresh until Ctrl-C: a live table on a terminal; piped, a table per refresh (plain text); with
    --json, one JSON document per line (JSON Lines), flushed at once, for `jq` or a monitor."""
    import sys
    import time


    if json_:
        while True:
            emit_json_line(collect().to_json())
            time.sleep(interval)
    if not sys.stdout.isatty():
        while True:
            _print_status(collect(), local_mode)
            sys.stdout.write("\n")
            sys.stdout.flush()
            time.sleep(interval)
    from rich.console import Console
    from rich.live import Live

    console = Console()
    with Live(console=console, refresh_per_second=4, screen=False) as live:
        while True:
            live.update(_status_table(collect(), console, local_mode))
            time.sleep(interval)


@app.command()
def status(
    env_file: EnvFileOpt = None,
    json_: JsonOpt = False,
    watch: WatchOpt = False,
    interval: IntervalOpt = 3.0,
    database: DbArg = None,
    config: ConfigOpt = None,
    replica_only: Annotated[
        bool,
        typer.Option(
            "--replica-only",
            help="Read only the replicas (newest backup, restorable window): for a machine with the .env "
            "but not the databases. Exit 0, 11 if a replica is empty, 12 if one cannot be read.",
        ),
    ] = False,
    fresh: FreshOpt = False,
    replica: Annotated[
        str | None,
        typer.Option(
            "--replica",
            metavar="NAME",
            # the option's name first: click wraps a narrow terminal at hyphens, never inside a line's first word
            help="--replica-only reads this replica alone: primary or secondary (BACKUP_SECONDARY_*, Litestream 0.3), "
            "or a type of a BACKUP_REPLICA list. Default: every replica, a verdict for each.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Is every database backed up right now? Exit 0 only when all are ok (10 stale, 11 down, 12 error).

    \b
    Examples:
      backupctl status                          # a table that fits the terminal
      backupctl status | cut -f1,2              # piped: tab-separated, every column, nothing cut
      backupctl status --watch --interval 10s   # live view; Ctrl-C to leave
      backupctl status --watch --json | jq .ok  # one JSON document per line
      backupctl status --replica-only --replica secondary   # what the secondary replica holds
    """
    # lazy: each command loads only what it runs
    from backupctl.checks.status import collect_status
    from backupctl.cli.answers import status_report

    # Without the databases (an operator's laptop) the settings are read as on a new machine: a glob
    # is matched against the replica and a missing folder is fine.
    if replica is not None and not replica_only:
        raise UsageError(
            "--replica goes with --replica-only",
            "`backupctl status` shows every replica's verdict; `status --replica-only --replica NAME` reads one replica",
        )
    settings = load_for_recovery(env_file, lenient=True, replica=replica) if replica_only else load(env_file)
    config_path = explicit_config(config)
    if replica_only:
        _replica_only(settings, binary_for(settings), database, json_)
    # lazy: each command loads only what it runs
    from backupctl.config.settings import local_mode_marker

    local_mode = local_mode_marker(settings.project_dir).exists()
    if watch:
        # lazy: each command loads only what it runs
        from backupctl.cli import Interrupted

        try:
            binary = binary_for(settings)
            _watch(
                lambda: collect_status(settings, binary, database, config_path=config_path, fresh=fresh),
                interval,
                json_,
                local_mode,
            )
        except Interrupted:  # Ctrl-C is how a watch ends: quietly
            raise typer.Exit(0) from None
    report = status_report(settings, database, config, fresh)
    if json_:
        emit_json(report.to_json())
    else:
        _print_status(report, local_mode)
    raise typer.Exit(int(report.exit_code))


def _replica_only(settings: Any, binary: Path, database: str | None, json_: bool) -> None:
    # lazy: each command loads only what it runs
    from backupctl.checks.replica_status import collect_replica_status

    report = collect_replica_status(settings, binary, database)
    if json_:
        emit_json(report.to_json())
        raise typer.Exit(int(report.exit_code))
    from rich.text import Text


    styles = {"ok": "green", "not-initialized": "red", "error": "bold red"}
    columns = ["database", "replica", "newest backup", "restorable since", "window", "snapshots"]
    # A database with several replicas (the secondary) gets a row for each, named by it.
    each: list[tuple[str, dict[str, Any]]] = []
    for d in report.databases:
        each += [(f"{d.name} ({r['name']})", r) for r in d.replicas] if d.replicas else [(d.name, vars(d))]
    rows = [
        [
            shown(name),
            Text("holds a backup" if r["verdict"] == "ok" else r["verdict"], style=styles.get(r["verdict"], "")),
            _ago(r["newest_backup"]),
            _ago(r["oldest_restorable"]),
            _duration(r["restorable_window_seconds"]),
            "-" if r["snapshot_count"] is None else str(r["snapshot_count"]),
        ]
        for name, r in each
    ]
    title = f"Litestream {report.litestream_version} · from the replicas alone (no local database, no supervisor)"
    print_table(columns, rows, title=title)
    for d in report.databases:  # on stderr, as drill's reasons: piped stdout stays one tab-separated table
        if d.verdict != "ok":
            say(f"{d.name}: {d.reason}")
    raise typer.Exit(int(report.exit_code))


# --------------------------------------------------------------------------- listings


@app.command()
def databases(env_file: EnvFileOpt = None, json_: JsonOpt = False, config: ConfigOpt = None) -> None:
    """The databases in the config, as litestream reads them, with their replicas."""
    # lazy: each command loads only what it runs
    from backupctl.cli.answers import databases_document

    doc = databases_document(load(env_file), config)
    if json_:
        emit_json(doc)
        return

    rows = doc["databases"]
    print_table(
        ["name", "path", "size", "replica"],
        [[r["name"], r["path"], human_size(r["size"]) if r["exists"] else "missing", ", ".join(r["replicas"])] for r in rows],
        title=f"databases ({doc['config']})",
    )


def _listing(
    env_file: Path | None,
    json_: bool,
    database: str | None,
    command: str,
    columns: list[tuple[str, Callable[[Any], str]]],
    config: Path | None = None,
    optional: tuple[str, ...] = (),
    level: str = "all",
) -> None:
    # lazy: each command loads only what it runs
    from backupctl.cli.answers import listing, listing_document, listing_results

    settings = load(env_file)
    what = listing(command, settings, level)
    results = listing_results(settings, database, config, what)
    kind, note = what.key, what.note
    if json_:
        emit_json(listing_document(settings, results, what))
        return
    import sys


    headers = [name for name, _ in columns]
    if not sys.stdout.isatty():  # one tab-separated table for every database, complete
        rows = [[db.name, *(render(item) for _, render in columns)] for db, items in results for item in items]
        print_table(["database", *headers], rows)
        for db, items in results:
            if not items:
                say(f"the replica of {db.name} is empty")
    else:
        for db, items in results:
            print_table(
                headers,
                [[render(item) for _, render in columns] for item in items],
                title=f"{kind} of {db.name} ({', '.join(r.destination for r in db.replicas)})",
                caption=None if items else "the replica is empty",
                optional=optional,
            )
    if note:
        say(note)


@app.command()
def snapshots(env_file: EnvFileOpt = None, json_: JsonOpt = False, database: DbArg = None, config: ConfigOpt = None) -> None:
    """Full snapshots in the replica (0.3 snapshots; 0.5 level-9 LTX files), oldest first."""
    # lazy: each command loads only what it runs
    from backupctl.litestream.listings import txid_hex

    _listing(env_file, json_, database, "snapshots", [
        ("created", lambda s: _stamp(s.created)),
        ("size", lambda s: human_size(s.size)),
        ("generation / txid", lambda s: f"{s.generation} #{s.index}" if s.generation else str(txid_hex(s.max_txid))),
        ("replica", lambda s: s.replica),
    ], config=config, optional=("replica", "size"))  # fmt: skip


@app.command()
def wal(env_file: EnvFileOpt = None, json_: JsonOpt = False, database: DbArg = None, config: ConfigOpt = None) -> None:
    """Incremental pieces in the replica (0.3 WAL segments; 0.5 level-0 LTX files), oldest first."""
    # lazy: each command loads only what it runs
    from backupctl.litestream.listings import txid_hex

    _listing(env_file, json_, database, "wal", [
        ("created", lambda s: _stamp(s.created)),
        ("size", lambda s: human_size(s.size)),
        ("position", lambda s: f"{s.generation} {s.index}/{s.offset}" if s.generation
            else f"{txid_hex(s.min_txid)}-{txid_hex(s.max_txid)}"),
        ("replica", lambda s: s.replica),
    ], config=config, optional=("replica", "size"))  # fmt: skip


@app.command()
def ltx(
    env_file: EnvFileOpt = None,
    json_: JsonOpt = False,
    database: DbArg = None,
    level: LevelOpt = LEVEL.default,  # type: ignore[assignment]
    config: ConfigOpt = None,
) -> None:
    """LTX files in the replica at a level (0.5 only; 9 = snapshots, 0 = incremental)."""
    # lazy: each command loads only what it runs
    from backupctl.litestream.listings import txid_hex

    _listing(env_file, json_, database, "ltx", [
        ("level", lambda f: str(f.level)),
        ("txids", lambda f: f"{txid_hex(f.min_txid)}-{txid_hex(f.max_txid)}"),
        ("size", lambda f: human_size(f.size)),
        ("timestamp", lambda f: _stamp(f.timestamp)),
    ], config=config, optional=("size",), level=level)  # fmt: skip


@app.command()
def generations(env_file: EnvFileOpt = None, json_: JsonOpt = False, database: DbArg = None, config: ConfigOpt = None) -> None:
    """Generations (0.3), or the restorable window of the one continuous chain (0.5)."""

    # lazy: each command loads only what it runs
    from backupctl.litestream.adapter import series_of

    settings = load(env_file)
    if series_of(settings.version).lists_generations:
        _listing(env_file, json_, database, "generations", [
            ("generation", lambda g: g.generation),
            ("start", lambda g: _stamp(g.start)),
            ("end", lambda g: _stamp(g.end)),
            ("lag", lambda g: g.lag or "-"),
            ("replica", lambda g: g.replica),
        ], config=config, optional=("replica", "lag"))  # fmt: skip
        return
    _listing(env_file, json_, database, "generations", [
        ("oldest", lambda w: _stamp(w.oldest)),
        ("newest", lambda w: _stamp(w.newest)),
        ("txids", lambda w: f"{w.min_txid:016x}-{w.max_txid:016x}" if w.max_txid is not None else "-"),
        ("snapshots", lambda w: str(w.snapshot_count)),
        ("files", lambda w: str(w.file_count)),
    ], config=config, optional=("files", "snapshots"))  # fmt: skip
