"""The typer application. Command modules register themselves on ``app`` when imported."""

from __future__ import annotations

import typer
import typer.core

from backupctl import __version__


def _unescaped_help(cls: type) -> None:
    """typer escapes `[env var: X]` / `[default: Y]` for rich even when rich help is off
    (rich_markup_mode=None), so plain --help showed `\\[env var: ...]`: undo that escape."""
    original = cls.get_help_record

    def get_help_record(self, ctx):  # noqa: ANN001, ANN202 - click's signature
        record = original(self, ctx)
        if record is None:
            return None
        name, help_text = record
        return name, help_text.replace("\\[", "[")

    cls.get_help_record = get_help_record


_unescaped_help(typer.core.TyperOption)
_unescaped_help(typer.core.TyperArgument)
_argument_init = typer.core.TyperArgument.__init__


def _keep_argument_help(self, *args, help=None, **kwargs):  # noqa: A002, ANN001, ANN002, ANN003, ANN202
    """Click 8.5 resets ``help`` after typer set it, so arguments showed no help at all."""
    _argument_init(self, *args, help=help, **kwargs)
    self.help = help


typer.core.TyperArgument.__init__ = _keep_argument_help
# ... and Click 8.5 then lists them a second time ("Positional arguments") next to typer's "Arguments".
if hasattr(typer.core.TyperCommand, "format_arguments"):
    typer.core.TyperCommand.format_arguments = lambda self, ctx, formatter: None

app = typer.Typer(
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
