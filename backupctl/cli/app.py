"""The typer application. Command modules register themselves on ``app`` when imported."""

from __future__ import annotations

import typer

from backupctl import __version__

app = typer.Typer(
    name="backupctl",
    help="Continuous SQLite backup with a pinned, verified Litestream.",
    no_args_is_help=True,
    add_completion=False,
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
from backupctl.cli import cmd_doctor  # noqa: E402,F401
from backupctl.cli import cmd_demo  # noqa: E402,F401
# isort: on
