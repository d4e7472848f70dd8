"""The typer application. Command modules register themselves on ``app`` when imported.

Every command is a :class:`Command`, the root and sub-groups :class:`Group` (through :class:`Typer`),
so help looks the same everywhere with the installed typer and click:

- typer escapes ``[env var: X]`` / ``[default: Y]`` for rich even when rich help is off
  (``rich_markup_mode=None``), which plain help would print as ``\\[env var: ...]``;
- Click 8.5 resets an argument's ``help`` after typer set it (arguments showed none), and lists
  arguments a second time under "Positional arguments" next to typer's "Arguments".
"""

from __future__ import annotations

import re
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
import typer
import typer.core
import typer.models

from backupctl import __version__
from backupctl.cli.output import UsageError


def _help_records(command: click.Command, ctx: click.Context) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(arguments, options) as `name  help` rows, typer's escape for rich undone."""
    args, opts = [], []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        name, help_text = record
        help_text = _duration_default(param, help_text.replace("\\[", "["))
        (args if param.param_type_name == "argument" else opts).append((name, help_text))
    return args, opts


def _duration_default(param: click.Parameter, help_text: str) -> str:
    """A duration option's default as the duration people type (`[default: 30m]`), not as the seconds
    click holds (`[default: 1800.0]`): the option takes `30m`, so its help says `30m` too."""
    spelled = getattr(param.type, "spelled", None)
    default = param.default
    if spelled is None or isinstance(default, bool) or not isinstance(default, int | float):
        return help_text
    return re.sub(rf"(\bdefault: ){re.escape(str(default))}(?=[];])", lambda m: m.group(1) + spelled(default), help_text)


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


def usage_error(exc: click.UsageError, where: click.Context | None = None) -> UsageError:
    """click's usage error as backupctl's, with what click would print for people kept in ``show``.
    ``where``: the command's context when click's parser raised the error without one."""
    ctx = exc.ctx or where
    path = ctx.command_path if ctx is not None else "backupctl"
    details = [ctx.get_usage()] if ctx is not None and not isinstance(exc, click.exceptions.NoArgsIsHelpError) else []
    return UsageError(exc.format_message(), f"see `{path} --help`", details=details, show=exc.show)


@contextmanager
def _usage_errors(resilient: bool, where: Callable[[], click.Context] | None = None) -> Iterator[None]:
    """Let click's usage errors out of typer as :class:`UsageError`: typer would print them and exit 2
    itself, leaving stdout empty under --json; ``cli.main``, the one error boundary, reports them as
    every other error. Shell completion parses resiliently and keeps click's own handling."""
    try:
        yield
    except click.UsageError as exc:
        if resilient:
            raise
        raise usage_error(exc, where() if where is not None and exc.ctx is None else None) from None


class _ParsesToTheBoundary(click.Command):
    """Parsing (``make_context``) whose usage errors leave as :class:`UsageError` (``_usage_errors``)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        # click's parser says "Option '--level' requires an argument." without a context: the JSON
        # error still names the command (people get click's own text, unchanged).
        def where() -> click.Context:
            return self.context_class(self, info_name=info_name, parent=parent)

        with _usage_errors(bool(extra.get("resilient_parsing")), where):
            return super().make_context(info_name, args, parent, **extra)


class Command(_ParsesToTheBoundary, typer.core.TyperCommand):
    """A command whose arguments keep their help and are listed once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        declared = _argument_help(self.callback)
        for param in self.params:
            if isinstance(param, click.Argument) and not param.help and param.name in declared:
                param.help = declared[param.name]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Litestream's single-dash spellings first (``spellings.normalise``), then click's parse."""
        # lazy: each command loads only what it runs
        from backupctl.cli.spellings import SpellingError, normalise

        options = {
            name: not (param.is_flag or param.count)
            for param in self.get_params(ctx)
            if isinstance(param, click.Option)
            for name in (*param.opts, *param.secondary_opts)
        }
        try:
            args = normalise(args, options, ctx.command_path)
        except SpellingError as exc:
            if not ctx.resilient_parsing:  # shell completion reads the words as click does, never fails
                raise click.UsageError(str(exc), ctx) from None
        return super().parse_args(ctx, args)

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        _write_options(self, ctx, formatter)

    def format_arguments(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click 8.5 lists arguments here too: typer's "Arguments" section (in format_options) is enough."""


class Group(_ParsesToTheBoundary, typer.core.TyperGroup):
    """A group of commands (the root, `templates`) with the same help as :class:`Command`.

    Its arguments are parsed in ``make_context`` and its command's in ``invoke`` (the command's own
    ``make_context``, then its callback): every usage error of a command line passes through one of them."""

    def invoke(self, ctx: click.Context) -> Any:
        with _usage_errors(ctx.resilient_parsing):
            return super().invoke(ctx)

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
from backupctl.cli import cmd_justfile  # noqa: E402,F401
from backupctl.cli import cmd_binary  # noqa: E402,F401
from backupctl.cli import cmd_run  # noqa: E402,F401
from backupctl.cli import cmd_inspect  # noqa: E402,F401
from backupctl.cli import cmd_serve  # noqa: E402,F401
from backupctl.cli import cmd_restore  # noqa: E402,F401
from backupctl.cli import cmd_verify  # noqa: E402,F401
from backupctl.cli import cmd_drill  # noqa: E402,F401
from backupctl.cli import cmd_doctor  # noqa: E402,F401
from backupctl.cli import cmd_demo  # noqa: E402,F401
# isort: on
