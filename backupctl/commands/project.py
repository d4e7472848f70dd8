"""What commands ask of a project before (or besides) its settings: the pinned Litestream version
and its binary (`version`), an explicit ``--config``, the effective settings with their origins
(`env`), the configured databases as litestream reads them (`databases`).

``project_version`` reads only the version's variables, so `install` and `version` work before the
project is configured; the rest take loaded :class:`~backupctl.config.settings.Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backupctl import __version__
from backupctl.config.settings import CHAINS, MASKED_SETTINGS, Settings, find_env_file, read_env_file
from backupctl.errors import ConfigError
from backupctl.filekinds import not_regular
from backupctl.litestream import rows
from backupctl.litestream.listings import configured_databases
from backupctl.redact import mask
from backupctl.versions import check_version, default_version, platform_pin


def project_version(env_file: Path | None) -> str:
    """The project's pinned Litestream version without loading (and validating) all settings.

    The "version" setting's variables (``settings.CHAINS``), each from the environment, then the
    .env if one is readable, as ``load_settings`` resolves them; else the default pin. Commands
    about the binary must work before the project is configured.
    """

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


def litestream_report(env_file: Path | None) -> dict[str, Any]:
    """`version`: backupctl's version and the project's pinned litestream (installed? verified? from where?).

    A cached binary whose sha256 is not the pin's is never run, not even for `litestream version`
    (every other command refuses it too): ``litestream`` stays None and ``ok``/``error`` carry the
    refusal (``binary.tampered``), for the command to report and exit with. A user's own binary
    (BACKUPCTL_LITESTREAM_BIN) is run as every command runs it, with ``verified`` saying whether it
    is the pinned build."""
    # lazy: not needed on `status --json`'s fast path
    from backupctl.litestream.binary import cached, reported_version, tampered, user_binary

    pinned = project_version(env_file)
    pin = platform_pin(pinned)
    binary = user_binary(pinned) or cached(pinned)
    doc: dict[str, Any] = {
        "backupctl": __version__,
        "litestream_pinned": pinned,
        "platform": pin.platform,
        "installed": binary is not None,
        "litestream": None,
        "path": None,
        "pinned_sha256": pin.sha256,
        "sha256": None,
        "verified": False,
        "source": None,
    }
    if binary is not None and not binary.verified and binary.source != "user":
        doc.update(path=str(binary.path), sha256=binary.sha256, source=binary.source)
        return {"ok": False, **doc, "error": tampered(binary).to_json()}
    if binary is not None:
        doc.update(
            litestream=reported_version(binary.path),
            path=str(binary.path),
            sha256=binary.sha256,
            verified=binary.verified,
            source=binary.source,
        )
    return doc


def explicit_config(config: Path | None) -> Path | None:
    """The --config file to use as it is (never rendered over), or None for the one rendered from the .env."""
    if config is None:
        return None

    path = config.expanduser().absolute()
    what = not_regular(path)
    if what is not None:  # said as it is, not "no such file"; litestream would block on a FIFO
        raise ConfigError(
            f"--config {config} is {what}, not a regular file",
            "pass the litestream.yml file itself, or drop --config to use the one rendered from the .env",
        )
    if not path.is_file():
        raise ConfigError(
            f"--config {config}: no such file",
            "pass the litestream.yml to use, or drop --config to use the one rendered from the .env",
        )
    return path


def effective_settings(settings: Settings) -> dict[str, Any]:
    """`env`: every setting's value (secrets masked) and where it came from, and the databases."""

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
    if settings.secondary is not None:  # BACKUP_SECONDARY_*: only when there is a secondary replica
        for setting, value, origin in settings.secondary.shown():
            rows.append(
                {
                    "setting": f"secondary_{setting}",
                    "value": mask(value) if setting in MASKED_SETTINGS else value,
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


def configured_database_rows(
    settings: Settings, config: Path | None, *, note: Callable[[str], None]
) -> tuple[Path, list[dict[str, Any]]]:
    """`databases`: the config read (``config``, else the project's) and each configured database:
    its path, whether it exists and its size, its replicas, and whether litestream reads it there.
    The pinned binary is installed on first use (``note`` says so)."""
    # lazy: not needed on `status --json`'s fast path
    from backupctl.host.config_in_use import config_for_reading
    from backupctl.litestream.binary import ensure_binary

    path = explicit_config(config) or config_for_reading(settings)
    binary = ensure_binary(settings.version, notify=note).path
    native = {d.path: d for d in configured_databases(settings, binary, config_path=path)}
    found = []
    for db in settings.databases:
        size = db.path.stat().st_size if db.path.exists() else None
        found.append(rows.database_row(db.name, str(db.path), [r.destination for r in db.replicas], size, native))
    return path, found
