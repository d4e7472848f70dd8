"""Which litestream config a read-only command (status, listings, restore, verify) hands litestream."""

from __future__ import annotations

from pathlib import Path

from backupctl.config.render import matches_settings, render, view_config
from backupctl.config.settings import Settings
from backupctl.errors import ConfigError
from backupctl.host import processes, state
from backupctl.owned import write_atomic
from backupctl.paths import project_state_dir


def config_for_reading(settings: Settings, *, prefer_running: bool = True) -> Path:
    """The config a read-only command hands litestream.

    It never writes litestream.yml (only `setup` and `start` do): a running supervisor's private
    copy when one runs (what really replicates), else litestream.yml when it is current or was
    written by hand, else the settings rendered into the state folder. ``prefer_running=False``
    (restore) always follows the current settings.
    """
    if settings.replica_view is not None:  # one replica of each database (replica_views): its own config
        return view_config(settings)
    state_dir = project_state_dir(settings.project_dir)
    running = processes.supervisor_of(settings.project_dir) if prefer_running else None
    if running is not None:
        doc = state.read_supervisor_state_of(state_dir, running.pid, running.create_time)
        if doc is not None and doc.config_path and Path(doc.config_path).is_file():
            return Path(doc.config_path)
    path = settings.config_path
    try:
        current: bytes | None = path.read_bytes()
    except FileNotFoundError:
        current = None
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}", "check its permissions") from None
    if current is not None and matches_settings(settings, path, current):
        return path
    preview = state_dir / "preview.yml"
    write_atomic(preview, render(settings).text)
    return preview
