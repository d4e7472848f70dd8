"""An SFTP server (``BACKUP_SFTP_*``). The password never reaches the config: the template writes a
reference to ``BACKUPCTL_SFTP_PASSWORD``, which litestream expands from its environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backupctl.kinds.base import Checking, Replica, ReplicaKind, clean_path, split_host_port
from backupctl.redact import EnvRef

if TYPE_CHECKING:
    from backupctl.config.settings import Settings
    from backupctl.versions import Capabilities

PASSWORD_ENV = "BACKUPCTL_SFTP_PASSWORD"  # noqa: S105 - a variable name: litestream expands it at run time


class SftpKind(ReplicaKind):
    name = "sftp"
    litestream_type = "sftp"
    variables = {
        "sftp_host": ("BACKUP_SFTP_HOST",),
        "sftp_user": ("BACKUP_SFTP_USER",),
        "sftp_key_path": ("BACKUP_SFTP_KEY_PATH",),
        "sftp_password": ("BACKUP_SFTP_PASSWORD",),
    }
    secrets = frozenset({"sftp_password"})
    options = ("sftp_host", "sftp_user", "sftp_key_path", "sftp_password_env")
    withheld_variables = ("BACKUP_SFTP_PASSWORD",)

    def check(self, checking: Checking) -> None:
        values = checking.values
        if not values["sftp_host"]:
            checking.add("BACKUP_SFTP_HOST", "an sftp replica needs a host", "set BACKUP_SFTP_HOST=host or host:port")
        if not values["sftp_user"]:
            checking.add("BACKUP_SFTP_USER", "an sftp replica needs a user", "set BACKUP_SFTP_USER")
        if not values["sftp_key_path"] and not values["sftp_password"]:
            checking.add(
                "BACKUP_SFTP_KEY_PATH",
                "an sftp replica needs a key file or a password",
                "set BACKUP_SFTP_KEY_PATH=~/.ssh/id_ed25519 (or BACKUP_SFTP_PASSWORD)",
            )
        password = values["sftp_password"]
        if password and re.search(r"['\x00-\x1f\x7f]", password):
            checking.add(
                "BACKUP_SFTP_PASSWORD",
                "contains a quote or control character, which cannot be passed through litestream's config safely",
                "use a key file (BACKUP_SFTP_KEY_PATH) or a password without ' and control characters",
            )

    def replica(
        self, name: str, remote_path: str, values: Mapping[str, str | None], local_dir: Path, caps: Capabilities
    ) -> Replica:
        key_path = values["sftp_key_path"]
        return Replica(
            kind="sftp",
            litestream_type="sftp",
            path=remote_path,
            sftp_host=values["sftp_host"],
            sftp_user=values["sftp_user"],
            sftp_key_path=str(Path(key_path).expanduser()) if key_path else None,
            sftp_password_env=PASSWORD_ENV if values["sftp_password"] else None,
        )

    def destination(self, replica: Replica) -> str:
        return f"sftp://{replica.sftp_user or ''}@{replica.sftp_host}/{replica.path}"

    def lock_key(self, replica: Replica) -> str:
        return f"sftp://{replica.sftp_user or ''}@{(replica.sftp_host or '').lower()}/{clean_path(replica.path)}"

    def template_values(self, replica: Replica) -> dict[str, Any]:
        return {
            "host": replica.sftp_host,
            "user": replica.sftp_user,
            "key_path": replica.sftp_key_path,
            "password": EnvRef(replica.sftp_password_env) if replica.sftp_password_env else None,
        }

    def environment(self, settings: Settings) -> dict[str, str]:
        password = settings.credentials.sftp_password
        return {PASSWORD_ENV: password} if password else {}

    def address(self, replica: Replica) -> tuple[str, int] | None:
        return split_host_port(replica.sftp_host, 22) if replica.sftp_host else None
