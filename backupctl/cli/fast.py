"""The JSON reads that monitors and scripts call most, answered without loading typer.

Importing typer and click and building the command tree costs more than the litestream call a read
makes. These forms are parsed here and answered by the same functions their typer commands use
(``backupctl.cli.answers``):

    backupctl status --json [--fresh] [DB]
    backupctl databases --json
    backupctl snapshots|wal|generations --json [DB]
    backupctl ltx --json [--level N|all] [DB]
    backupctl start --foreground-child [--restore-if-missing]   (the detached supervisor itself)

each with ``--env-file PATH`` and ``--config/-c PATH`` (and ``BACKUPCTL_ENV_FILE``). Each option is
declared once, in ``cli/options.py``, and typer builds its own from the same declaration. Anything else
(another option, a typo, ``--help``, a second argument, no ``--json``) goes to typer, which parses
it and reports a mistake. So does every form click would read another way than the plain one, or
that this parser is not sure of: a value glued to a short option (``-cPATH``, and ``-c=PATH``, which
click reads as the path ``=PATH``), a value or argument that starts with ``-`` or is empty, ``--``,
an option given twice. ``tests/cli/test_cli_fast.py`` checks that click parses every form answered here
to the same values (environment variables and defaults included), and that both answer alike.
"""

from __future__ import annotations

import os
import time

from backupctl.cli.options import (
    CONFIG,
    ENV_FILE,
    FOREGROUND_CHILD,
    FRESH,
    JSON,
    LEVEL,
    LISTING_COMMANDS,
    RESTORE_IF_MISSING,
    Option,
)
from backupctl.cli.output import emit_json


class Form:
    """A command form answered here: its options (declared once, in cli/options.py), whether it takes a
    DB argument, and the flag without which it is not this form. (A plain class: see ``Option``.)"""

    __slots__ = ("needs", "options", "takes_db")

    def __init__(self, options: tuple[Option, ...], takes_db: bool, needs: Option) -> None:
        self.options, self.takes_db, self.needs = options, takes_db, needs


SHARED = (ENV_FILE, CONFIG)
LISTED = ("databases", *LISTING_COMMANDS)  # what cli.quick_listing may answer while a supervisor runs
FORMS: dict[str, Form] = {
    "status": Form((*SHARED, JSON, FRESH), True, JSON),
    "databases": Form((*SHARED, JSON), False, JSON),
    **{name: Form((*SHARED, JSON), True, JSON) for name in LISTING_COMMANDS if name != "ltx"},
    "ltx": Form((*SHARED, JSON, LEVEL), True, JSON),
    # the detached supervisor of `start --background`: a long-lived process, smaller without typer
    "start": Form((*SHARED, FOREGROUND_CHILD, RESTORE_IF_MISSING), False, FOREGROUND_CHILD),
}


def parse(args: list[str]) -> tuple[str, dict[str, str | bool], str | None] | None:
    """(command, options by dest, DB) for a form answered here, else None (typer answers). Options
    absent from ``args`` take their environment variable, then their default, as click does."""
    if not args or args[0] not in FORMS:
        return None
    command, rest = args[0], args[1:]
    form = FORMS[command]
    by_flag = {flag: option for option in form.options for flag in option.flags}
    options: dict[str, str | bool] = {}
    database: str | None = None
    i = 0
    while i < len(rest):
        arg = rest[i]
        # Only a long option takes `=VALUE` in click: `-c=PATH` is `-c` with the value "=PATH".
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        option = by_flag.get(name)
        if option is not None and option.dest in options:
            return None  # given twice: click's rules for repeats are typer's to apply
        if option is not None and not option.takes_value and not eq:
            options[option.dest] = True
        elif option is not None and option.takes_value:
            if eq:
                value = inline
            elif i + 1 < len(rest) and not rest[i + 1].startswith("-"):
                i += 1
                value = rest[i]
            else:
                return None
            if not value:
                return None
            options[option.dest] = value
        elif form.takes_db and database is None and arg and not arg.startswith("-"):
            database = arg
        else:
            return None
        i += 1
    if not options.get(form.needs.dest):
        return None
    for option in form.options:
        if option.dest not in options:
            from_env = os.environ.get(option.envvar) if option.envvar else None
            if from_env:
                options[option.dest] = from_env
            elif option.default is not None:
                options[option.dest] = option.default
    return command, options, database


def answer(args: list[str]) -> int | None:
    """Answer a fast form and return its exit code, or None when typer has to (nothing printed then).
    Errors are raised as BackupctlError, for ``cli.main`` to report as any command's."""
    parsed = parse(args)
    if parsed is None:
        return None
    command, options, database = parsed

    env_file = options.get(ENV_FILE.dest) or None
    if command == "status" and CONFIG.dest not in options and not options.get(FRESH.dest):
        # lazy: the light module that answers from the running supervisor's published look
        from backupctl.checks import published_status

        document = published_status.answer(str(env_file) if env_file else None, database, os.environ, time.time())
        if document is not None:
            emit_json(document)
            return int(document["exit_code"])
    if command in LISTED and CONFIG.dest not in options:
        # lazy: the light module that runs a listing as the running supervisor's frame says
        from backupctl.cli import quick_listing

        level = str(options.get(LEVEL.dest, LEVEL.default))
        listed = quick_listing.answer(command, str(env_file) if env_file else None, database, level, os.environ)
        if listed is not None:
            emit_json(listed)
            return 0
    from pathlib import Path

    # lazy: everything else loads the settings (and what they import)
    from backupctl.cli import answers
    from backupctl.cli.output import log_line, out
    from backupctl.cli.wiring import load, load_for_recovery

    config = Path(str(options[CONFIG.dest])) if CONFIG.dest in options else None
    if command == "start":
        # lazy: not needed on `status --json`'s fast path
        from backupctl.commands import launch

        restore = bool(options.get(RESTORE_IF_MISSING.dest))
        env_path = Path(str(env_file)) if env_file else None
        settings = load_for_recovery(env_path, lenient=True) if restore else load(env_path)
        return launch.run_foreground(settings, config, restore_if_missing=restore, background_child=True, log=log_line,
                                     report=out)  # fmt: skip
    settings = load(Path(str(env_file)) if env_file else None)
    if command == "status":
        report = answers.status_report(settings, database, config, bool(options.get(FRESH.dest)))
        emit_json(report.to_json())
        return int(report.exit_code)
    if command == "databases":
        emit_json(answers.databases_document(settings, config))
        return 0
    what = answers.listing(command, settings, str(options.get(LEVEL.dest, LEVEL.default)))
    emit_json(answers.listing_document(settings, answers.listing_results(settings, database, config, what), what))
    return 0
