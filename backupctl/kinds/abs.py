"""Azure Blob Storage (``abs``): BACKUP_BUCKET is the container; the account key reaches litestream as
``LITESTREAM_AZURE_ACCOUNT_KEY`` in its environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backupctl.kinds.base import BUCKET_VARIABLES, Checking, Replica, ReplicaKind, clean_path

if TYPE_CHECKING:
    from backupctl.config.settings import Settings
    from backupctl.versions import Capabilities


class AbsKind(ReplicaKind):
    name = "abs"
    litestream_type = "abs"
    variables = {
        "bucket": BUCKET_VARIABLES,
        "abs_account_name": ("BACKUP_ABS_ACCOUNT_NAME",),
        "abs_account_key": ("BACKUP_ABS_ACCOUNT_KEY", "LITESTREAM_AZURE_ACCOUNT_KEY"),
    }
    secrets = frozenset({"abs_account_key"})
    options = ("bucket", "abs_account_name")
    needs_bucket = True
    withheld_variables = ("BACKUP_ABS_ACCOUNT_KEY",)

    def check(self, checking: Checking) -> None:
        if not checking.values["abs_account_name"]:
            checking.add(
                "BACKUP_ABS_ACCOUNT_NAME", "an abs replica needs the storage account name", "set BACKUP_ABS_ACCOUNT_NAME"
            )

    def replica(
        self, name: str, remote_path: str, values: Mapping[str, str | None], local_dir: Path, caps: Capabilities
    ) -> Replica:
        return Replica(
            kind="abs",
            litestream_type="abs",
            path=remote_path,
            bucket=values["bucket"],
            abs_account_name=values["abs_account_name"],
        )

    def destination(self, replica: Replica) -> str:
        return f"abs://{replica.abs_account_name}@{replica.bucket}/{replica.path}"

    def lock_key(self, replica: Replica) -> str:
        return f"abs://{(replica.abs_account_name or '').lower()}/{replica.bucket}/{clean_path(replica.path)}"

    def template_values(self, replica: Replica) -> dict[str, Any]:
        return {"bucket": replica.bucket, "account_name": replica.abs_account_name}

    def environment(self, settings: Settings) -> dict[str, str]:
        key = settings.credentials.abs_account_key
        return {"LITESTREAM_AZURE_ACCOUNT_KEY": key} if key else {}
