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


def load_for_recovery(env_file: Path | None, *, lenient: bool = False, replica: str | None = None):  # -> Settings
    """Settings for restore, drill and `start --restore-if-missing`: globs in BACKUP_DATABASES are
    resolved against the replica too, and a database's folder may not exist yet (a new machine).
    ``lenient`` (start): a replica that cannot be listed is a note when the globs matched local files.
    ``replica`` (--replica): the settings narrowed to that replica of each database (``narrow``)."""
    # lazy: not needed on `status --json`'s fast path
    from backupctl.restore.recovery import resolve_databases

    settings = narrow(load_settings(env_file, replica_globs=True), replica)
    return resolve_databases(settings, note=notice if lenient else None)


def narrow(settings, replica: str | None):  # noqa: ANN001, ANN201 - Settings, imported lazily
    """--replica NAME: the settings with only that replica of each database (``replica_views.view``)."""
    if replica is None:
        return settings
    from backupctl.config.replica_views import view  # lazy: only --replica needs it

    return view(settings, replica)


def binary_for(settings) -> Path:  # noqa: ANN001  (Settings; imported lazily to keep --help fast)
    """The pinned litestream binary for these settings, installed on first use (a note on stderr says so)."""
    # lazy: not needed on `status --json`'s fast path
    from backupctl.litestream.binary import ensure_binary

    return ensure_binary(settings.version, notify=notice).path
