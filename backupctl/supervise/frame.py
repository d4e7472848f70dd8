"""The supervisor's side of `status --json`'s fast answer: the frame it publishes in its state folder.

``checks.published_status`` reads the frame (and describes it); this module writes it when the
supervisor starts and when it takes on new databases, and removes it when it stops or cannot vouch
for one. A frame is written only for settings ``published_status.answer`` can prove unchanged: the
project's own .env and litestream.yml, one replica per database, no warnings, globs without wildcards
in their folders, and a process start time to prove the supervisor by (Linux).
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from backupctl import __version__
from backupctl.checks.continuity import RECORDS
from backupctl.checks.observations import OBSERVATIONS, stall_after
from backupctl.checks.published_status import FRAME
from backupctl.checks.status import stale_after_seconds
from backupctl.config import replica_views
from backupctl.config.inputs import disk_inputs, identity, settings_key
from backupctl.config.render import fingerprint
from backupctl.config.settings import Settings, load_settings
from backupctl.errors import BackupctlError
from backupctl.host.processes import ProcessRecord
from backupctl.host.state import STATEFILE, VERIFYFILE, SupervisorState
from backupctl.litestream.adapter import series_of
from backupctl.litestream.runner import plain_environment
from backupctl.owned import write_json
from backupctl.versions import capabilities


def publish(
    state_dir: Path, settings: Settings, status: SupervisorState, record: ProcessRecord | None, binary: Path | None = None
) -> bool:
    """Write the frame for the settings this supervisor runs, or remove it when ``answer`` could not
    rely on one (returns whether it was written). The settings are loaded again after their inputs'
    key is taken: a frame is written only when that load gives the same settings, so a .env edited
    in between leaves a key no caller matches, never a frame that lies. With ``binary`` (the litestream
    this supervisor runs), the frame also carries what the fast listing needs (``listing``)."""
    def why_not() -> str | None:
        if record is None or record.start_ticks is None:
            return "no start time to prove this process by (no /proc)"
        if settings.env_file is None or settings.replica_view is not None or replica_views.several(settings):
            return "no .env, or several replicas (status reads each)"
        if status.config_source is None or Path(status.config_source) != settings.config_path:
            return "a config of the user's own"
        return None

    path = state_dir / FRAME
    if why_not() is not None:
        discard(state_dir)
        return False
    salt = os.urandom(16).hex()  # secrets.token_hex, without hmac loading OpenSSL into the supervisor
    paths = disk_inputs(settings)
    env_path = str(settings.env_file)
    key = settings_key(salt, __version__, env_path, os.environ, paths) if paths is not None else None
    try:
        again = load_settings(settings.env_file) if key is not None else None
    except BackupctlError:
        again = None
    by_path = sorted(settings.databases, key=lambda db: str(db.path))
    same = (
        again is not None
        and not again.warnings
        and sorted(again.databases, key=lambda db: str(db.path)) == by_path
        and replace(again, databases=settings.databases) == settings
        and fingerprint(again, Path(status.config_source or "")) == status.config_input
    )
    if not same or again is None:
        discard(state_dir)
        return False
    frame = {
        "backupctl": __version__,
        "env_file": env_path,
        "salt": salt,
        "key": key,
        "disk": paths,
        "supervisor": {"pid": record.pid, "create_time": record.create_time, "start_ticks": record.start_ticks,  # type: ignore[union-attr]
                       "mode": "background" if record.background else "foreground", "manager": record.manager},  # type: ignore[union-attr]
        "files": {"supervisor": STATEFILE, "observations": OBSERVATIONS, "verify": VERIFYFILE, "continuity": RECORDS},
        "litestream_version": again.version,
        "stale_after_seconds": stale_after_seconds(again),
        "stall_after": stall_after(again.sync_seconds),
        "exact_positions": series_of(again.version).exact_positions,
        # in the order a fresh load lists them (what the full path shows)
        "listing": listing(again, status, binary),
        "databases": [
            {"name": db.name, "stem": db.path.stem, "path": str(db.path), "destinations": [r.destination for r in db.replicas],
             "proof_key": replica_views.proof_key(str(db.path), replica_views.view_label(again))}
            for db in again.databases
        ],
    }  # fmt: skip
    try:
        write_json(path, frame)
    except OSError:
        discard(state_dir)  # an earlier frame must not outlive the settings it was written for
        return False
    return True


def listing(settings: Settings, status: SupervisorState, binary: Path | None) -> dict[str, Any] | None:
    """What ``cli.quick_listing`` needs to run a listing as the full path would, without the settings:
    the binary and the config this supervisor runs (each with its ``identity`` now: a file replaced
    or rewritten since is not used), the variables to keep from litestream's environment, and each
    database's replica kind and, for a local folder, its path. Only where litestream needs nothing of
    the settings in its environment (``runner.plain_environment``: local folders) and no replica to
    probe first; None elsewhere."""
    withheld = plain_environment(settings)
    if withheld is None or binary is None or status.config_path is None:
        return None
    binary_id, config_id = identity(str(binary)), identity(status.config_path)
    if binary_id is None or config_id is None or any(len(db.replicas) != 1 for db in settings.databases):
        return None
    return {"binary": str(binary), "binary_identity": list(binary_id), "config": status.config_path,
            "config_identity": list(config_id), "withheld": withheld, "has_ltx": capabilities(settings.version).has_ltx,
            "drop_aws_ca_bundle": capabilities(settings.version).drop_aws_ca_bundle,
            "kinds": {str(db.path): db.replicas[0].kind for db in settings.databases},
            # each local folder, for 0.5's listings to read as litestream does (``litestream.folder``)
            "folders": {str(db.path): str(db.replicas[0].path) for db in settings.databases
                        if db.replicas[0].spec.local_folder}}  # fmt: skip


def discard(state_dir: Path) -> None:
    """No frame: `status` takes the full path (the supervisor stops, or cannot vouch for one)."""
    try:
        os.unlink(os.path.join(state_dir, FRAME))
    except OSError:
        pass
