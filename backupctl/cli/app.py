"""The typer application. Command modules register themselves on ``app`` when imported.

Every command is a :class:`Command`, the root and sub-groups :class:`Group` (through :class:`Typer`),
so help looks the same everywhere with the installed typer and click:

- typer escapes ``[env var: X]`` / ``[default: Y]`` for rich even when rich help is off
  (``rich_markup_mode=None``), which plain help would print as ``\\[env var: ...]``;
- Click 8.5 resets an argument's ``help`` after typer set it (arguments showed none), and lists
  arguments a second time under "Positional arguments" next to typer's "Arguments".
"""

from __future__ import annotations

import typing
from typing import Any

import click
import typer
import typer.core
import typer.models

from backupctl import __version__


def _help_records(command: click.Command, ctx: click.Context) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(arguments, options) as `name  help` rows, typer's escape for rich undone."""
    args, opts = [], []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        name, help_text = record
        (args if param.param_type_name == "argument" else opts).append((name, help_text.replace("\\[", "[")))
    return args, opts


def _write_options(command: click.Command, ctx: click.Context, formatter: click.HelpFormatter) -> None:
    args, opts = _help_records(command, ctx)
    if args:
        with formatter.section("Arguments"):
            formatter.write_dl(args)
    if opts:
        with formatter.section("Options"):
            formatter.write_dl(opts)


def _argument_help(callback: Any) -> dict[str, str]:
    """The help each `typer.Argument(help=...)` of a command function declares, by parameter name."""
    function = getattr(callback, "__wrapped__", callback)  # typer wraps the command function
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception:  # an annotation that cannot be resolved: typer itself would have failed first
        return {}
    found = {}
    for name, hint in hints.items():
        for meta in getattr(hint, "__metadata__", ()):
            if isinstance(meta, typer.models.ArgumentInfo) and meta.help:
                found[name] = meta.help
    return found


class Command(typer.core.TyperCommand):
    """A command whose arguments keep their help and are listed once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        declared = _argument_help(self.callback)
        for param in self.params:
            if isinstance(param, click.Argument) and not param.help and param.name in declared:
                param.help = declared[param.name]

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_options(self, ctx, formatter)

    def format_arguments(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click 8.5 lists arguments here too: typer's "Arguments" section (in format_options) is enough."""


class Group(typer.core.TyperGroup):
    """A group of commands (the root, `templates`) with the same help as :class:`Command`."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_options(self, ctx, formatter)
        self.format_commands(ctx, formatter)


class Typer(typer.Typer):
    """typer.Typer whose groups are :class:`Group` and whose commands default to :class:`Command`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=Group, **kwargs)

    def command(self, name: str | None = None, *, cls: type[typer.core.TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or Command, **kwargs)


app = Typer(
    name="backupctl",
    help="Continuous SQLite backup with a pinned, verified Litestream.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish
    pretty_exceptions_enable=False,  # our locals hold secrets; and the error boundary is in main()
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"backupctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", "-V", help="Show backupctl's version and exit.", callback=_version_callback, is_eager=True
    ),
) -> None:
    """Continuous SQLite backup with a pinned, verified Litestream."""


# Registration order is the order of `backupctl --help`.
# isort: off
from backupctl.cli import cmd_config  # noqa: E402,F401
from backupctl.cli import cmd_binary  # noqa: E402,F401
from backupctl.cli import cmd_run  # noqa: E402,F401
from backupctl.cli import cmd_inspect  # noqa: E402,F401
from backupctl.cli import cmd_serve  # noqa: E402,F401
from backupctl.cli import cmd_restore  # noqa: E402,F401
from backupctl.cli import cmd_drill  # noqa: E402,F401
from backupctl.cli import cmd_doctor  # noqa: E402,F401
from backupctl.cli import cmd_demo  # noqa: E402,F401
# isort: on
