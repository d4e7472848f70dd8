"""Printing for people (rich, stderr for messages) and for machines (JSON, stdout only).

Every message, error and table cell for people passes through ``display.shown``: a file name with
a newline or an escape sequence in it is printed escaped (``new\\nline.db``), never raw. JSON keeps
the real value. ``out`` is data (a rendered config, log lines already escaped when written) and is
printed as it is.
"""

from __future__ import annotations

import os
import sys

from backupctl.display import shown
from backupctl.errors import BackupctlError, ExitCode
from backupctl.owned import json_dumps

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: 19 ms of every `status --json`
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _console(stderr: bool = True):  # -> rich.console.Console
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A message for people, on stderr (stdout stays clean for data)."""
    _console().print(shown(message), markup=False)


def notice(message: str) -> None:
    _console().print(f"note: {shown(message)}", style="yellow", markup=False)


def success(message: str) -> None:
    _console().print(shown(message), style="green", markup=False)


def out(text: str) -> None:
    """Data on stdout, unstyled."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def log_line(line: str) -> None:
    """A log line on stderr with the time of day, as a foreground `start` or `serve` writes them."""
    import time

    sys.stderr.write(f"{time.strftime('%H:%M:%S')} {shown(line)}\n")
    sys.stderr.flush()


def table(renderable: Any) -> None:
    """A rich table (or any renderable) on stdout."""
    _console(stderr=False).print(renderable)


def emit_json(document: dict[str, Any]) -> None:
    """The whole --json output: one object with "ok" first, on stdout. Indented on a terminal;
    piped, on one line (as `gh` does): the compact form is what programs read, and Python's
    indenting encoder took a third of `status --json` at 1,000 databases."""
    body = {"ok": document.pop("ok", True), **document}
    if sys.stdout.isatty():
        import json  # lazy: a person reading the indented form does not count its 7 ms

        text = json.dumps(body, indent=2, default=str, ensure_ascii=False)
    else:
        text = json_dumps(body)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def emit_json_line(document: dict[str, Any]) -> None:
    """One compact JSON document on one line of stdout (a stream of them is JSON Lines)."""
    body = {"ok": document.pop("ok", True), **document}
    sys.stdout.write(json_dumps(body) + "\n")
    sys.stdout.flush()


class UsageError(BackupctlError):
    """A mistake on the command line that click found (unknown option or command, missing or bad value).

    Raised out of typer (``app.Group``) so that it reaches the one error boundary like any error:
    with --json it is the usual error document, kind "usage"; for people, ``show`` prints click's own
    text (usage line, "Try ... --help", the error), as typer did before."""

    exit_code = ExitCode.USAGE
    kind = "usage"

    def __init__(
        self, message: str, hint: str = "", *, details: list[str] | None = None, show: Callable[[], None] | None = None
    ) -> None:
        super().__init__(message, hint, details=details)
        self.show = show


def report_error(exc: BackupctlError, json_mode: bool) -> None:
    if json_mode:
        emit_json({"ok": False, "error": exc.to_json()})
        return
    if isinstance(exc, UsageError) and exc.show is not None:
        exc.show()
        return
    try:
        console = _console()
    except Exception:  # rich cannot even be imported (out of file descriptors): plain text still works
        sys.stderr.write(f"error: {shown(exc.message)}\n" + "".join(f"  {shown(line)}\n" for line in exc.details))
        sys.stderr.write(f"hint: {shown(exc.hint)}\n" if exc.hint else "")
        sys.stderr.flush()
        return
    console.print(f"error: {shown(exc.message)}", style="bold red", markup=False)
    for line in exc.details:
        console.print(f"  {shown(line)}", markup=False)
    if exc.hint:
        console.print(f"hint: {shown(exc.hint)}", style="cyan", markup=False)


def os_error(exc: OSError) -> BackupctlError:
    """An OSError the commands did not expect, as a plain error naming the file and a fix."""
    import errno

    where = f": {exc.filename}" if exc.filename else ""
    hints = {
        errno.EMFILE: "too many open files: raise the limit (ulimit -n 4096) or back up fewer databases per project",
        errno.ENFILE: "the system is out of file descriptors: close other programs, or raise fs.file-max",
        errno.ELOOP: "that path is a symbolic link; backupctl never writes its state through one: remove the link",
        errno.EACCES: "check the permissions of that path for this user",
        errno.EPERM: "check the permissions of that path for this user",
        errno.ENOSPC: "the disk is full: free some space",
        errno.EROFS: "that file system is read-only",
    }
    error = BackupctlError(
        f"{exc.strerror or type(exc).__name__}{where}",
        hints.get(exc.errno or 0, "check that path and the machine's limits, then run the command again"),
    )
    error.exit_code = ExitCode.CONFIG
    error.kind = "os"
    return error


def report_internal_error(exc: Exception, json_mode: bool) -> None:
    if os.environ.get("BACKUPCTL_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    wrapped = BackupctlError(
        f"internal error: {type(exc).__name__}",
        "this is a bug in backupctl; rerun with BACKUPCTL_DEBUG=1 for the traceback and report it",
    )
    wrapped.exit_code = ExitCode.INTERNAL
    report_error(wrapped, json_mode)


def _plain(cell: Any) -> str:
    return cell.plain if hasattr(cell, "plain") else str(cell)


def shown_cell(cell: Any) -> Any:
    """A table cell (a string or rich Text) with its control characters escaped; a Text keeps its style."""
    from rich.text import Text

    if not isinstance(cell, Text):
        return shown(str(cell))
    plain = shown(cell.plain)
    return cell if plain == cell.plain else Text(plain, style=cell.style)


def print_table(
    columns: list[str],
    rows: list[list[Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
    optional: tuple[str, ...] = (),
    right: tuple[str, ...] = (),
    terminal: Any = None,
) -> None:
    """Data as a table on stdout; cells are strings or rich Text (for colour).

    - Piped (stdout not a terminal): plain tab-separated lines, a header line first, every column,
      nothing cut or wrapped, like `gh`. The title and caption go to stderr.
    - On a terminal: ``terminal`` when given (a rich renderable laid out for reading, such as doctor's
      folded fixes), else :func:`fitted_table`.
    """
    if not sys.stdout.isatty():
        if title:
            say(title)
        out("\t".join(columns))
        for row in rows:  # a tab or newline in a name, escaped, cannot shift a column or start a row
            out("\t".join(shown(_plain(c)) for c in row))
        if caption:
            say(caption)
        return
    console = _console(stderr=False)
    if terminal is not None:
        console.print(terminal)
        return
    console.print(fitted_table(console, columns, rows, title=title, caption=caption, optional=optional, right=right))


def fitted_table(
    console: Any,
    columns: list[str],
    rows: list[list[Any]],
    *,
    title: str | None = None,
    caption: str | None = None,
    optional: tuple[str, ...] = (),
    right: tuple[str, ...] = (),
) -> Any:
    """A table that fits ``console``'s width without cutting a cell: the ``optional`` columns are
    dropped first (in order); if it still does not fit, one block per row (`column  value` lines),
    so an identifier (a TXID for `restore --txid`, a replica URL) is never cut."""
    from rich import box
    from rich.console import Group
    from rich.measure import Measurement
    from rich.table import Table
    from rich.text import Text

    keep = list(range(len(columns)))
    rows = [[shown_cell(c) for c in row] for row in rows]
    title, caption = (shown(title) if title else None), (shown(caption) if caption else None)

    def build(indexes: list[int]) -> Table:
        t = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left")
        for i in indexes:
            t.add_column(columns[i], no_wrap=True, justify="right" if columns[i] in right else "left")
        for row in rows:
            t.add_row(*(row[i] for i in indexes))
        return t

    unbounded = console.options.update(max_width=1 << 20)  # Measurement.get clamps to max_width

    def fits(t: Table) -> bool:
        return Measurement.get(console, unbounded, t).maximum <= console.width

    table_ = build(keep)
    for name in optional:
        if fits(table_):
            break
        if name in columns and columns.index(name) in keep:
            keep.remove(columns.index(name))
            table_ = build(keep)
    if fits(table_):
        return table_
    width = max(len(c) for c in columns)
    blocks: list[Any] = [Text(title, style="italic")] if title else []
    for row in rows:
        for name, cell in zip(columns, row, strict=True):
            line = Text(f"{name:<{width}}  ", style="bold")
            line.append(cell if isinstance(cell, Text) else Text(str(cell)))
            blocks.append(line)
        blocks.append(Text(""))
    if caption:
        blocks.append(Text(caption, style="italic"))
    return Group(*blocks)
