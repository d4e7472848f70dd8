"""Disaster recovery on a new machine: which databases the replica holds.

On a new machine ``BACKUP_DATABASES=storage/production*.sqlite3`` matches no local file: the
databases are only in the replica. Each database's replica path is derived from its file name
(``BACKUP_PATH`` with ``{name}``; a file replica is always ``BACKUP_LOCAL_DIR/<name>``), so the
names can be read back from the replica: the entries found where ``{name}`` stands. A glob's
file-name part is matched against them (its folder part must be a plain folder), and every
match becomes a database at ``<the glob's folder>/<name>``.

Restoring them is backupctl.restore's job (the staged, checked restore; ``restore_if_missing`` for
`start --restore-if-missing`); this module only decides which databases there are.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path

from backupctl.config.replica_views import settings_for
from backupctl.config.settings import Replica, Settings
from backupctl.errors import BackupctlError, ConfigError, LitestreamError, NoBackupError, NotFoundError
from backupctl.kinds import probe_replica
from backupctl.kinds.s3 import open_s3_client
from backupctl.redact import scrub

NAME_MARK = "{name}"
LIST_TIMEOUT = 30.0  # seconds per S3 request; an unreachable endpoint is found by the TCP probe first


def resolve_databases(settings: Settings, *, note: Callable[[str], None] | None = None) -> Settings:
    """``settings`` plus every database a ``BACKUP_DATABASES`` glob matches in the replica.

    Settings loaded with ``replica_globs=True`` keep globs that matched nothing locally; this
    resolves them against the names the replica holds. A glob that matches nothing locally and
    nothing in the replica raises NotFoundError (exit 8) naming the glob and the replica.
    Without globs the settings are returned as they are (no replica is read).

    When a glob matched local files and the replica cannot be listed (unreachable, or a kind or
    ``BACKUP_PATH`` that cannot be listed by name), ``note`` given means: say so through it and
    go on with the local files (`start` must not be kept down by a listing); without ``note``
    the error is raised.
    """
    if not settings.globs:
        return settings
    held: list[str] | None = None
    failure: BackupctlError | None = None
    added: list[Path] = []
    for pattern in settings.globs:
        folder, base = Path(pattern).parent, Path(pattern).name
        local = [db for db in settings.databases if fnmatchcase(db.name, base) and db.path.parent == folder.resolve()]
        if glob.has_magic(str(folder)):
            if local:
                continue  # resolved locally, as before; only the file-name part can be read from a replica
            raise ConfigError(
                f"BACKUP_DATABASES: the glob {pattern!r} has a wildcard in its folder part",
                "restore can resolve only the file-name part against the replica; put the wildcard in the file name",
            )
        if held is None and failure is None:
            try:
                held = replica_names(settings)
            except BackupctlError as exc:
                failure = exc
        if failure is not None:
            # A replica that cannot be listed by name (sftp/gs/abs, no {name}) leaves a glob that
            # matched locally as it was; an unreachable one too for `start` (with a note).
            if not local or (isinstance(failure, LitestreamError) and note is None):
                raise failure
            if isinstance(failure, LitestreamError) and note is not None:
                note(f"the replica was not read for {pattern!r} ({failure.message}); using the local files")
            continue
        matches = sorted(name for name in held or [] if fnmatchcase(name, base))
        if not matches and not local:
            where = ", ".join(r.destination for r in _name_replicas(settings))
            # An empty replica is a first deploy (`restore --if-replica-exists` passes over it); a replica
            # holding other names is a pattern or a replica setting that points elsewhere.
            raise (NotFoundError if held else NoBackupError)(
                f"BACKUP_DATABASES: {pattern!r} matches no local file and no database in the replica ({where})",
                "check the pattern and the replica settings (BACKUP_PATH, BACKUP_BUCKET, BACKUP_LOCAL_DIR); "
                f"the replica holds: {', '.join(held) or 'nothing'}",
            )
        added.extend(folder.resolve() / name for name in matches)
    return settings.with_databases(added)


def replica_names(settings: Settings) -> list[str]:
    """The database names the replica holds (where ``{name}`` stands in its path), sorted."""
    names: set[str] = set()
    for replica in _name_replicas(settings):
        names.update(_names_in(settings, replica))
    return sorted(names)


def _name_replicas(settings: Settings) -> tuple[Replica, ...]:
    """The replicas of a database named ``{name}``: their paths show where names stand."""
    probe = settings.with_databases([Path("/") / NAME_MARK]).databases[-1]
    return probe.replicas


def _names_in(settings: Settings, replica: Replica) -> set[str]:
    if NAME_MARK not in replica.path:
        raise ConfigError(
            f"BACKUP_PATH {replica.path!r} has no {NAME_MARK}: the replica holds one database and its name "
            "cannot be read from it, so a glob in BACKUP_DATABASES cannot be resolved against it",
            "name the database file in BACKUP_DATABASES (no glob) to restore it",
        )
    before, after = replica.path.split(NAME_MARK, 1)
    suffix = after.split("/", 1)[0]  # text after {name} inside its own path segment
    if replica.spec.local_folder:
        folder = Path(before)
        try:
            entries = [p.name for p in folder.iterdir() if p.is_dir()]
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise LitestreamError(
                f"cannot list the replica folder {folder}: {exc.strerror}", "check BACKUP_LOCAL_DIR and its permissions"
            ) from None
        return {e.removesuffix(suffix) for e in entries if e.endswith(suffix) and e != suffix}
    if replica.kind in ("s3", "r2"):
        folders = _s3_folders(settings_for(settings, replica), replica, before)  # a secondary: its own credentials
        return {e.removesuffix(suffix) for e in folders if e.endswith(suffix) and e != suffix}
    raise ConfigError(
        f"a glob in BACKUP_DATABASES cannot be resolved against a {replica.kind} replica",
        "name each database file in BACKUP_DATABASES instead of a glob",
    )


def _s3_folders(settings: Settings, replica: Replica, prefix: str) -> list[str]:
    """The 'folder' names directly under ``prefix`` in the bucket (S3 common prefixes)."""
    from botocore.exceptions import BotoCoreError, ClientError


    probe_replica(replica)
    client = open_s3_client(settings, replica, read_timeout=LIST_TIMEOUT, attempts=3)
    found: list[str] = []
    try:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=replica.bucket, Prefix=prefix, Delimiter="/"):
            for entry in page.get("CommonPrefixes") or []:
                found.append(entry["Prefix"][len(prefix) :].rstrip("/"))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise LitestreamError(
            scrub(f"cannot list replica {replica.destination}: {error.get('Code')}: {error.get('Message')}", settings),
            "check the bucket, the credentials and the endpoint; `backupctl doctor` probes them",
        ) from None
    except BotoCoreError as exc:
        raise LitestreamError(
            scrub(f"cannot list replica {replica.destination}: {exc}", settings),
            "check the endpoint and the network; `backupctl doctor` probes them",
        ) from None
    return [f for f in found if f]
