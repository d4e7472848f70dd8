"""A local folder (``BACKUP_LOCAL_DIR``/<database file name>): for tests, demos and `setup --local`."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from backupctl.findings import FAIL, OK, Check
from backupctl.kinds.base import PROBE_PREFIX, Replica, ReplicaKind, StoredObject

if TYPE_CHECKING:
    from backupctl.config.settings import Settings
    from backupctl.findings import Check
    from backupctl.versions import Capabilities


class FileKind(ReplicaKind):
    name = "file"
    litestream_type = "file"
    implied_rank = 2  # nothing else set: a local folder
    local_folder = True

    def replica(
        self, name: str, remote_path: str, values: Mapping[str, str | None], local_dir: Path, caps: Capabilities
    ) -> Replica:
        return Replica(kind="file", litestream_type="file", path=str(local_dir / name))

    def destination(self, replica: Replica) -> str:
        return f"file://{replica.path}"

    def lock_key(self, replica: Replica) -> str:
        return "file://" + os.path.realpath(os.path.expanduser(replica.path))

    def probe(
        self, settings: Settings, replica: Replica, server_dates: list[tuple[float, float]], clean: Callable[[str], str]
    ) -> Check:
        return check_replica_folder(replica)

    def list_objects(self, settings: Settings, replica: Replica) -> list[StoredObject]:
        root = Path(replica.path)
        found = []
        for folder, _dirs, files in os.walk(root):
            for name in files:
                if name.startswith(PROBE_PREFIX):
                    continue
                try:
                    st = (Path(folder) / name).stat()
                except OSError:
                    continue
                found.append(StoredObject(str(Path(folder, name).relative_to(root)), st.st_size, st.st_mtime))
        return found


def check_replica_folder(replica: Replica) -> Check:
    """A local-folder replica: writable (writes, reads back and removes a probe file)."""
    import uuid


    folder = Path(replica.path)
    subject = replica.destination
    if not folder.exists():
        parent = next((p for p in folder.parents if p.exists()), None)
        if parent is not None and parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return Check(
                "replica access", OK, f"{folder} does not exist yet; litestream can create it under {parent}", subject=subject
            )
        return Check(
            "replica access",
            FAIL,
            f"{folder} does not exist and cannot be created ({parent} is not writable)",
            f"create it (mkdir -p {shlex.quote(str(folder))}) with write access for this user, or change BACKUP_LOCAL_DIR",
            subject=subject,
            finding="replica-not-writable",
        )
    if not folder.is_dir():
        return Check(
            "replica access",
            FAIL,
            f"{folder} is not a folder",
            "change BACKUP_LOCAL_DIR",
            subject=subject,
            finding="replica-not-writable",
        )
    probe = folder / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        with probe.open("xb") as handle:  # O_EXCL: a new file, never through a link planted there
            handle.write(b"backupctl doctor probe\n")
        ok = probe.read_bytes() == b"backupctl doctor probe\n"
        probe.unlink()
    except OSError as exc:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        return Check(
            "replica access",
            FAIL,
            f"cannot write to {folder}: {exc.strerror}",
            f"give this user write access to {folder}, or change BACKUP_LOCAL_DIR",
            subject=subject,
            finding="replica-not-writable",
        )
    if not ok:
        return Check(
            "replica access",
            FAIL,
            f"a file written to {folder} read back different",
            "check the disk",
            subject=subject,
            finding="replica-not-writable",
        )
    return Check("replica access", OK, f"{folder} is writable (wrote, read and removed a probe file)", subject=subject)
