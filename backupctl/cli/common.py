"""Options shared by every command, so they behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EnvFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--env-file",
        envvar="BACKUPCTL_ENV_FILE",
        help="The .env to read (default: ./.env). The process environment overrides it.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (errors too).")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="litestream.yml to use (default: beside the .env).", show_default=False),
]


def load(env_file: Path | None, *, force_local: bool | None = None, replica_only: bool = False):  # -> Settings
    from backupctl.settings import load_settings

    return load_settings(env_file, force_local=force_local, replica_only=replica_only)


def binary_for(settings) -> Path:  # noqa: ANN001  (Settings; imported lazily to keep --help fast)
    """The pinned litestream binary for these settings, installed on first use (a note on stderr says so)."""
    from backupctl.binary import ensure_binary
    from backupctl.cli.output import notice

    return ensure_binary(settings.version, notify=notice).path


def human_size(n: float | None) -> str:
    """1536 -> "1.5 KB"; None -> "-"."""
    if n is None:
        return "-"
    from backupctl.doctor import human_size as size

    return size(n)
