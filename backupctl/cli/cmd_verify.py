"""`verify`: every database at once (``backupctl.checks.verify.verify_databases``), its progress shown as it goes.

A terminal shows a spinner naming each running database's step. Piped (stdout or stderr not a
terminal: a log, CI, cron), a line per database goes to stderr as it finishes, so a long verify is
seen moving; stdout keeps its contract (nothing but the one JSON document with --json).

It shares restore's signal handling and spinner (``cmd_restore``): a verify is a restore checked.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Annotated, Any

import typer

from backupctl.cli import cmd_restore
from backupctl.cli.app import app
from backupctl.cli.common import DURATION, EnvFileOpt, JsonOpt, binary_for, load, narrow, replica_option
from backupctl.cli.output import emit_json, say, success
from backupctl.display import shown
from backupctl.errors import worst_exit


class _Progress:
    """What a running verify shows: the spinner's text (``status``, on a terminal) and, with ``lines``,
    one line per finished database. ``step`` comes from the worker threads, ``finished`` from the
    main thread; the lock keeps the spinner's text whole."""

    def __init__(self, names: list[str], status: Any, lines: bool) -> None:
        self.total = len(names)
        self.status = status
        self.lines = lines
        self.steps: dict[str, str] = {}  # running database -> its current step
        self.started: dict[str, float] = {}
        self.done = 0
        self.began = time.monotonic()
        self._lock = threading.Lock()

    def step(self, db: Any, message: str) -> None:  # db: settings.Database
        with self._lock:
            self.started.setdefault(db.name, time.monotonic())
            self.steps[db.name] = message
            self._show()

    def finished(self, db: Any, result: Any, error: BaseException | None) -> None:  # verify.VerifyResult | None
        # lazy: each command loads only what it runs
        from backupctl.restore import stop_request

        with self._lock:
            self.done += 1
            self.steps.pop(db.name, None)
            self._show()
        if not self.lines:
            return
        if result is not None:
            line = f"{db.name} {result.status} ({result.seconds:.1f}s)"
        else:
            seconds = time.monotonic() - self.started.get(db.name, self.began)
            word = "stopped" if error is stop_request.error else "error"
            line = f"{db.name} {word} ({seconds:.1f}s): {getattr(error, 'message', None) or error}"
        self._print(f"verify {self.done}/{self.total}: {line}")

    def _show(self) -> None:
        if self.status is None:
            return
        if self.total == 1:  # one database: its step alone, as the spinner always said it
            lines = list(self.steps.values())[:1]
        else:
            lines = [f"verifying {self.total} databases ({self.done} done)"]
            lines += [f"  {name}: {message}" for name, message in self.steps.items()]
        if lines:
            from rich.text import Text

            # a line each, each escaped on its own: a newline in a database's name stays "\n"
            self.status.update(Text("\n").join(cmd_restore._spinner_text(line) for line in lines))

    def _print(self, line: str) -> None:
        if self.status is not None:  # above the spinner, through its console, so neither garbles the other
            self.status.console.print(shown(line), markup=False, highlight=False)
        else:
            say(line)


@app.command()
def verify(
    db: Annotated[str | None, typer.Argument(help="Database (name or path); default all.", show_default=False)] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            click_type=DURATION,
            help="How long to wait for the sentinel to reach the replica: 90s, 2m.",
            show_default=False,
        ),
    ] = None,
    replica: Annotated[
        str | None,
        replica_option("the replica litestream restores from (the newest), and every replica proven whole"),
    ] = None,
    json_out: JsonOpt = False,
    env_file: EnvFileOpt = None,
) -> int:
    """Prove the replica restores: write a sentinel row, wait for it to replicate, restore, check.

    Exit 0 verified, 20 failed (restore broken or sentinel missing), 21 inconclusive (replica lagging).
    Several databases are verified at once (up to 4); piped, a line per database says when it is done.

    \b
    Examples:
      backupctl verify                 # every database; exit 0 verified, 20 failed, 21 inconclusive
      backupctl verify app.db --json   # one database, machine-readable
      backupctl verify --replica secondary   # the secondary replica alone (Litestream 0.3)
    """
    # lazy: each command loads only what it runs
    from backupctl.checks import verify as core

    settings = narrow(load(env_file), replica)
    binary = binary_for(settings)
    databases = list(settings.database(db))
    first = f"verifying {databases[0].name}" if len(databases) == 1 else f"verifying {len(databases)} databases"
    # Piped, nobody sees a spinner (and stdout piped means a log or a program reads): say each end.
    lines = not (sys.stdout.isatty() and sys.stderr.isatty())
    with cmd_restore._signals_stop("verify"), cmd_restore._status(first, json_out) as status:
        progress = _Progress([d.name for d in databases], status, lines)
        results = core.verify_databases(
            settings, binary, databases, timeout=timeout, on_step=progress.step, on_finished=progress.finished
        )
    code = worst_exit([r.exit_code for r in results])
    if json_out:
        emit_json({"ok": code == 0, "results": [r.to_json() for r in results]})
    else:
        for r in results:
            line = f"{r.name}: {r.status} ({r.seconds:.1f}s)"
            if r.status == core.VERIFIED:
                success(line)
            else:
                say(line)
            if r.reason:
                say(f"  {r.reason}")
            timings = ", ".join(f"{k} {v:.2f}s" for k, v in r.timings.items())
            if timings:
                say(f"  {timings}")
    if code:
        raise typer.Exit(int(code))
    return 0
