"""The JSON reads that monitors and scripts call most, answered without loading typer.

Importing typer and click and building the command tree costs more than the litestream call a read
makes. These forms are parsed here and answered by the same functions their typer commands use
(``backupctl.cli.answers``):

    backupctl status --json [--fresh] [DB]
    backupctl databases --json
    backupctl snapshots|wal|generations --json [DB]
    backupctl ltx --json [--level N|all] [DB]
    backupctl start --foreground-child [--restore-if-missing]   (the detached supervisor itself)

each with ``--env-file PATH`` and ``--config/-c PATH`` (and ``BACKUPCTL_ENV_FILE``). Anything else
(another option, a typo, ``--help``, a second argument, no ``--json``) goes to typer, which parses
it and reports a mistake. So does every form click would read another way than the plain one, or
that this parser is not sure of: a value glued to a short option (``-cPATH``, and ``-c=PATH``, which
click reads as the path ``=PATH``), a value or argument that starts with ``-`` or is empty, ``--``,
an option given twice. ``tests/test_cli_fast.py`` checks that every option here is its typer
command's too, that click parses every form answered here to the same values, and that both answer
alike.
"""

from __future__ import annotations

import os
from pathlib import Path

from backupctl.cli import answers
from backupctl.cli.answers import LISTING_COMMANDS
from backupctl.cli.output import emit_json, log_line, out
from backupctl.cli.wiring import load, load_for_recovery

SHARED_VALUES = {"--env-file": "env_file", "--config": "config", "-c": "config"}
FORMS: dict[str, tuple[dict[str, str], dict[str, str], bool, str]] = {
    # command: (options taking a value, flags, takes a DB argument, the flag the form needs)
    "status": (SHARED_VALUES, {"--json": "json", "--fresh": "fresh"}, True, "json"),
    "databases": (SHARED_VALUES, {"--json": "json"}, False, "json"),
    **{name: (SHARED_VALUES, {"--json": "json"}, True, "json") for name in LISTING_COMMANDS if name != "ltx"},
    "ltx": ({**SHARED_VALUES, "--level": "level"}, {"--json": "json"}, True, "json"),
    # the detached supervisor of `start --background`: a long-lived process, smaller without typer
    "start": (SHARED_VALUES, {"--foreground-child": "child", "--restore-if-missing": "restore"}, False, "child"),
}


def parse(args: list[str]) -> tuple[str, dict[str, str | bool], str | None] | None:
    """(command, options, DB) for a form answered here, else None (typer answers)."""
    if not args or args[0] not in FORMS:
        return None
    command, rest = args[0], args[1:]
    values, flags, takes_db, needed = FORMS[command]
    options: dict[str, str | bool] = {}
    database: str | None = None
    i = 0
    while i < len(rest):
        arg = rest[i]
        # Only a long option takes `=VALUE` in click: `-c=PATH` is `-c` with the value "=PATH".
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if arg in flags and flags[arg] not in options:
            options[flags[arg]] = True
        elif name in values and values[name] not in options:
            if eq:
                value = inline
            elif i + 1 < len(rest) and not rest[i + 1].startswith("-"):
                i += 1
                value = rest[i]
            else:
                return None
            if not value:
                return None
            options[values[name]] = value
        elif takes_db and database is None and arg and not arg.startswith("-"):
            database = arg
        else:
            return None
        i += 1
    if not options.get(needed):
        return None
    return command, options, database


def answer(args: list[str]) -> int | None:
    """Answer a fast form and return its exit code, or None when typer has to (nothing printed then).
    Errors are raised as BackupctlError, for ``cli.main`` to report as any command's."""
    parsed = parse(args)
    if parsed is None:
        return None
    command, options, database = parsed

    env_file = options.get("env_file") or os.environ.get("BACKUPCTL_ENV_FILE") or None
    config = Path(str(options["config"])) if "config" in options else None
    if command == "start":
        # lazy: not needed on `status --json`'s fast path
        from backupctl.commands import launch

        restore = bool(options.get("restore"))
        env_path = Path(str(env_file)) if env_file else None
        settings = load_for_recovery(env_path, lenient=True) if restore else load(env_path)
        return launch.run_foreground(settings, config, restore_if_missing=restore, background_child=True, log=log_line,
                                     report=out)  # fmt: skip
    settings = load(Path(str(env_file)) if env_file else None)
    if command == "status":
        report = answers.status_report(settings, database, config, bool(options.get("fresh")))
        emit_json(report.to_json())
        return int(report.exit_code)
    if command == "databases":
        emit_json(answers.databases_document(settings, config))
        return 0
    what = answers.listing(command, settings, str(options.get("level", "all")))
    emit_json(answers.listing_document(settings, answers.listing_results(settings, database, config, what), what))
    return 0
