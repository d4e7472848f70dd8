"""Google Cloud Storage (``gs``; ``gcs`` is accepted too). Litestream finds the service-account key
through ``GOOGLE_APPLICATION_CREDENTIALS``; backupctl sets it from the settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backupctl.kinds.base import BUCKET_VARIABLES, Checking, Replica, ReplicaKind, clean_path, resolve

if TYPE_CHECKING:
    from backupctl.config.settings import Settings
    from backupctl.versions import Capabilities


class GsKind(ReplicaKind):
    name = "gs"
    litestream_type = "gs"
    aliases = ("gcs",)
    variables = {
        "bucket": BUCKET_VARIABLES,
        "gs_credentials_file": ("BACKUP_GS_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS"),
    }
    options = ("bucket",)
    needs_bucket = True

    def type_for(self, caps: Capabilities) -> str:
        return caps.gs_type_name  # 0.3 calls it gcs

    def check(self, checking: Checking) -> None:
        values = checking.values
        if values["gs_credentials_file"]:
            creds = resolve(values["gs_credentials_file"], checking.project_dir)
            if not creds.is_file():
                checking.add(
                    checking.variable("gs_credentials_file", "BACKUP_GS_CREDENTIALS_FILE"),
                    f"{creds} does not exist",
                    "point it at the service-account JSON key file",
                )
            values["gs_credentials_file"] = str(creds)

    def replica(
        self, name: str, remote_path: str, values: Mapping[str, str | None], local_dir: Path, caps: Capabilities
    ) -> Replica:
        return Replica(kind="gs", litestream_type=self.type_for(caps), path=remote_path, bucket=values["bucket"])

    def destination(self, replica: Replica) -> str:
        return f"gs://{replica.bucket}/{replica.path}"

    def lock_key(self, replica: Replica) -> str:
        return f"gs://{replica.bucket}/{clean_path(replica.path)}"

    def template_values(self, replica: Replica) -> dict[str, Any]:
        return {"bucket": replica.bucket}

    def environment(self, settings: Settings) -> dict[str, str]:
        # As the settings hold it: resolved against the project folder when a gs replica is in use.
        path = settings.values.get("gs_credentials_file")
        return {"GOOGLE_APPLICATION_CREDENTIALS": path} if path else {}
