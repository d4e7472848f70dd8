"""What every command does before its work, without typer: the settings loaded with their warnings
shown, an explicit --config checked, the pinned binary found. Both the typer commands and the fast
path (``backupctl.cli.fast``) use these."""

from __future__ import annotations

from pathlib import Path

from backupctl.cli.output import notice
from backupctl.commands.project import explicit_config as explicit_config
from backupctl.config.settings import load_settings


def load(env_file: Path | None, *, force_local: bool | None = None):  # -> Settings

    settings = load_settings(env_file, force_local=force_local)
    if settings.warnings:

        for warning in settings.warnings:
            notice(warning)
    return settings


def load_for_recovery(env_file: Path | None, *, lenient: bool = False):  # -> Settings
    """Settings for restore, drill and `start --restore-if-missing`: globs in BACKUP_DATABASES are
    resolved against the replica too, and a database's folder may not exist yet (a new machine).
    ``lenient`` (start): a replica that cannot be listed is a note when the globs matched local files."""
    # lazy: not needed on `status --json`'s fast path
    from backupctl.restore.recovery import resolve_databases

    return resolve_databases(load_settings(env_file, replica_globs=True), note=notice if lenient else None)


def binary_for(settings) -> Path:  # noqa: ANN001  (Settings; imported lazily to keep --help fast)
    """The pinned litestream binary for these settings, installed on first use (a note on stderr says so)."""
    # lazy: not needed on `status --json`'s fast path
    from backupctl.litestream.binary import ensure_binary

    return ensure_binary(settings.version, notify=notice).path
