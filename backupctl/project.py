"""What commands ask of a project before (or besides) its settings: the pinned Litestream version,
an explicit ``--config``, the effective settings with their origins.

``project_version`` reads only the version's variables, so `install` and `version` work before the
project is configured; the rest take loaded :class:`~backupctl.settings.Settings`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backupctl.errors import ConfigError
from backupctl.settings import Settings


def project_version(env_file: Path | None) -> str:
    """The project's pinned Litestream version without loading (and validating) all settings.

    The "version" setting's variables (``settings.CHAINS``), each from the environment, then the
    .env if one is readable, as ``load_settings`` resolves them; else the default pin. Commands
    about the binary must work before the project is configured.
    """
    from backupctl.settings import CHAINS, find_env_file, read_env_file
    from backupctl.versions import check_version, default_version

    file_values: dict[str, str] | None = None

    def from_file(variable: str) -> str | None:
        nonlocal file_values
        if file_values is None:
            file_values = {}
            found = find_env_file(env_file, Path.cwd())  # a named --env-file that is missing is an error
            if found is not None:
                try:
                    file_values = read_env_file(found)
                except ConfigError:  # an unreadable ./.env counts as none; a named --env-file must be readable
                    if env_file is not None:
                        raise
        return file_values.get(variable)

    raw = next((value for v in CHAINS["version"] if (value := os.environ.get(v) or from_file(v))), None)
    return check_version(raw or default_version())


def explicit_config(config: Path | None) -> Path | None:
    """The --config file to use as it is (never rendered over), or None for the one rendered from the .env."""
    if config is None:
        return None
    path = config.expanduser().absolute()
    if not path.is_file():
        raise ConfigError(
            f"--config {config}: no such file",
            "pass the litestream.yml to use, or drop --config to use the one rendered from the .env",
        )
    return path


def effective_settings(settings: Settings) -> dict[str, Any]:
    """`env`: every setting's value (secrets masked) and where it came from, and the databases."""
    from backupctl.settings import CHAINS, MASKED_SETTINGS, mask

    rows = []
    for setting in CHAINS:
        value = settings.values.get(setting)
        origin = settings.origins.get(setting)
        shown = mask(value) if setting in MASKED_SETTINGS and value else value
        rows.append(
            {
                "setting": setting,
                "value": shown,
                "variable": origin.variable if origin else None,
                "source": origin.source if origin else None,
            }
        )
    return {
        "env_file": str(settings.env_file) if settings.env_file else None,
        "litestream_version": settings.version,
        "settings": rows,
        "databases": [{"path": str(db.path), "replicas": [r.destination for r in db.replicas]} for db in settings.databases],
    }
