"""Options shared by every command, so they behave the same everywhere, and the wiring every
command shares: settings loaded with their warnings shown, the pinned binary, the fast checks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import click
import typer

from backupctl.cli.options import CONFIG, ENV_FILE, FRESH, JSON, LEVEL, RESTORE_IF_MISSING, Option
from backupctl.cli.output import notice
from backupctl.cli.wiring import binary_for as binary_for
from backupctl.cli.wiring import explicit_config as explicit_config
from backupctl.cli.wiring import load as load
from backupctl.cli.wiring import load_for_recovery as load_for_recovery
from backupctl.cli.wiring import narrow as narrow


def typer_option(option: Option, **more: Any) -> Any:  # -> typer's OptionInfo
    """typer's option from its one declaration (cli/options.py), which the fast parser reads too."""
    return typer.Option(*option.flags, help=option.help, envvar=option.envvar, **more)


EnvFileOpt = Annotated[Path | None, typer_option(ENV_FILE, show_default=False)]
JsonOpt = Annotated[bool, typer_option(JSON)]
ConfigOpt = Annotated[Path | None, typer_option(CONFIG, show_default=False)]
FreshOpt = Annotated[bool, typer_option(FRESH)]
LevelOpt = Annotated[str, typer_option(LEVEL)]
RestoreIfMissingOpt = Annotated[bool, typer_option(RESTORE_IF_MISSING)]


def replica_option(default: str) -> object:
    """``--replica NAME`` for a command whose default (without it) is ``default``."""
    return typer.Option(
        "--replica",
        metavar="NAME",
        help="Use this replica alone: primary or secondary (BACKUP_SECONDARY_*, Litestream 0.3), or a type of a "
        f"BACKUP_REPLICA list; litestream's -replica works too. Default: {default}.",
        show_default=False,
    )


SkipChecksOpt = Annotated[
    bool,
    typer.Option(
        "--skip-checks",
        help="Skip the fast checks (database file, replica folder or endpoint) run before litestream.",
    ),
]


def preflight(settings, *, missing_database: str, restore_if_missing: bool = False, unreachable_is_error: bool = True) -> None:  # noqa: ANN001
    """The fast checks before litestream (``preflight.run``), their notes on stderr."""
    # lazy: each command loads only what it runs
    from backupctl.checks import preflight as checks

    checks.run(
        settings,
        missing_database=missing_database,
        restore_if_missing=restore_if_missing,
        unreachable_is_error=unreachable_is_error,
        note=notice,
        credentials=True,  # start: wrong credentials fail in a second, with doctor's diagnosis
    )


class _Duration(click.ParamType):
    """A duration flag: a Go duration like the .env's (`30s`, `5m`, `1h30m`), or plain seconds (`30`)."""

    name = "DURATION"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        if isinstance(value, int | float):
            return float(value)
        # lazy: each command loads only what it runs
        from backupctl.config.settings import parse_duration

        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                seconds = parse_duration(text)
            except ValueError:
                self.fail(f"{value!r} is not a duration: write 30s, 5m or 1h30m (or plain seconds)", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} is not positive", param, ctx)
        return seconds

    @staticmethod
    def spelled(seconds: float) -> str:
        """Seconds as the duration people write (1800 -> 30m, 90 -> 1m30s, 0.5 -> 500ms): how --help shows a default."""
        if seconds < 1:
            return f"{round(seconds * 1000)}ms"
        whole = round(seconds)
        hours, rest = divmod(whole, 3600)
        minutes, secs = divmod(rest, 60)
        text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
        return text or "0s"


DURATION = _Duration()


def restored_lines(log_path: Path, since: int) -> list[str]:
    """`start --background --restore-if-missing`: the supervisor's "restored ..." lines of this
    start (one per database: where, how much, from when), to say on the terminal and not only in the log."""
    # lazy: each command loads only what it runs
    from backupctl.host.logfiles import log_tail

    found = []
    for line in log_tail(log_path, 1000, since=since):
        if (text := line.partition("backupctl: ")[2]).startswith("restored "):
            found.append(text)
    return found
