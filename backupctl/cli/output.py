"""Printing for people (rich, stderr for messages) and for machines (JSON, stdout only)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from backupctl.errors import BackupctlError, ExitCode


def _console(stderr: bool = True):  # -> rich.console.Console
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A message for people, on stderr (stdout stays clean for data)."""
    _console().print(message, markup=False)


def notice(message: str) -> None:
    _console().print(f"note: {message}", style="yellow", markup=False)


def success(message: str) -> None:
    _console().print(message, style="green", markup=False)


def out(text: str) -> None:
    """Data on stdout, unstyled."""
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def table(renderable: Any) -> None:
    """A rich table (or any renderable) on stdout."""
    _console(stderr=False).print(renderable)


def emit_json(document: dict[str, Any]) -> None:
    """The whole --json output: one object with "ok" first, on stdout."""
    body = {"ok": document.pop("ok", True), **document}
    sys.stdout.write(json.dumps(body, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def report_error(exc: BackupctlError, json_mode: bool) -> None:
    if json_mode:
        emit_json({"ok": False, "error": exc.to_json()})
        return
    console = _console()
    console.print(f"error: {exc.message}", style="bold red", markup=False)
    for line in exc.details:
        console.print(f"  {line}", markup=False)
    if exc.hint:
        console.print(f"hint: {exc.hint}", style="cyan", markup=False)


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
