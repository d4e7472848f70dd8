"""The secondary replica (``BACKUP_SECONDARY_*``): a second copy of every database, of any kind, in a
place of its own (another bucket, region, provider or folder), with settings of its own.

Litestream 0.3 writes one database to several replicas at once; backupctl names the first by its
kind (as it always has, so single-replica configs stay byte-identical) and this one ``secondary``:
the name ``litestream ... -replica secondary`` takes, and ``--replica secondary`` on restore,
verify, drill and `status --replica-only` (``backupctl.config.replica_views``). Litestream 0.5 allows one
replica per database: asking it for a second is refused at setup, naming the provider-side
alternative (docs/second-replica.md).

Each setting a kind reads has a ``BACKUP_SECONDARY_`` variable named after it (``bucket`` ->
``BACKUP_SECONDARY_BUCKET``, ``r2_account_id`` -> ``BACKUP_SECONDARY_R2_ACCOUNT_ID``), plus
``BACKUP_SECONDARY_REPLICA`` (its type: the switch), ``BACKUP_SECONDARY_PATH`` (default: the
primary's ``BACKUP_PATH``, else the file name) and ``BACKUP_SECONDARY_LOCAL_DIR`` (default:
``BACKUP_LOCAL_DIR``). Nothing else is shared with the primary, except credentials: a credential the
secondary does not set is the primary's.

Its secrets never reach the rendered file either: its template writes references
(``'${BACKUPCTL_SECONDARY_SECRET_ACCESS_KEY}'``) to variables backupctl puts in litestream's
environment, since the primary's credentials already hold the names litestream reads by default
(``AWS_ACCESS_KEY_ID``...). Google Cloud Storage has no per-replica credentials in litestream: a gs
secondary beside a gs primary must share its key file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from backupctl import kinds as replica_kinds
from backupctl.envfile import Origin, read_chains
from backupctl.errors import ConfigError
from backupctl.kinds.base import Checking, Replica, check_remote_path, clean_path, resolve
from backupctl.versions import Capabilities

if TYPE_CHECKING:
    from backupctl.config.settings import Database

PREFIX = "BACKUP_SECONDARY_"
NAME = "secondary"  # its name in litestream.yml
PRIMARY = "primary"  # what --replica calls the first replica
DOC = "docs/second-replica.md"

# Credentials: the primary's count when the secondary sets none of its own ("credentials if they differ").
CREDENTIALS = ("access_key_id", "secret_access_key", "sftp_key_path", "sftp_password", "gs_credentials_file",
               "abs_account_key")  # fmt: skip
# Template key -> (setting, variable litestream's config refers to) of credentials written as references.
_REFS = {
    "s3": {"access_key_id": "access_key_id", "secret_access_key": "secret_access_key"},
    "r2": {"access_key_id": "access_key_id", "secret_access_key": "secret_access_key"},
    "sftp": {"password": "sftp_password"},
    "abs": {"account_key": "abs_account_key"},
}
ENV_PREFIX = "BACKUPCTL_SECONDARY_"


def variables() -> dict[str, tuple[str, ...]]:
    """setting -> its one variable: ``BACKUP_SECONDARY_`` and the setting's name."""
    names = ["replica", "path", "local_dir", *replica_kinds.variables()]
    return {setting: (PREFIX + setting.upper(),) for setting in names}


VARIABLES = variables()
KNOWN_VARIABLES = frozenset(v for chain in VARIABLES.values() for v in chain)
WITHHELD = tuple(VARIABLES[s][0] for s in sorted(replica_kinds.secret_settings()))  # never in litestream's environment


def env_variable(setting: str) -> str:
    """The variable litestream's environment holds a secondary credential in (never a BACKUP_ name)."""
    return ENV_PREFIX + setting.removeprefix("sftp_").removeprefix("abs_").upper()


def refused_on() -> str:
    """What to do instead of a second replica on a Litestream that allows one per database."""
    return (
        "for a second copy, turn on bucket replication at the provider (S3 Cross-Region Replication; R2 and "
        "other providers as they allow), then watch the copy with `status --replica-only` pointed at it "
        f"(BACKUP_BUCKET=<the copy's bucket> backupctl status --replica-only); {DOC} says how. "
        "Or set LITESTREAM_VERSION=0.3.13, which writes to two replicas itself"
    )


@dataclass(frozen=True)
class Secondary:
    """The secondary replica's validated settings (the kind's settings as its ``replica()`` reads them)."""

    kind: str
    values: dict[str, str | None] = field(repr=False)
    origins: dict[str, Origin] = field(repr=False)
    path: str | None  # BACKUP_SECONDARY_PATH, else BACKUP_PATH (cleaned); None: the file name
    local_dir: Path
    credentials: tuple[tuple[str, str], ...] = field(repr=False)  # (setting, value), own or the primary's

    def replica(self, name: str, caps: Capabilities) -> Replica:
        """Its replica of the database file ``name``."""
        remote_path = self.path.replace("{name}", name) if self.path else name
        built = replica_kinds.spec(self.kind).replica(name, remote_path, self.values, self.local_dir, caps)
        held = dict(self.credentials)
        refs = tuple((key, env_variable(setting)) for key, setting in _REFS.get(self.kind, {}).items() if held.get(setting))
        return built.renamed(NAME, refs)

    def environment(self) -> dict[str, str]:
        """What litestream's environment holds for it: its credentials under the names its config refers to."""
        held = dict(self.credentials)
        env = {env_variable(setting): held[setting] for setting in _REFS.get(self.kind, {}).values() if held.get(setting)}
        if self.kind == "gs" and self.values.get("gs_credentials_file"):
            env["GOOGLE_APPLICATION_CREDENTIALS"] = str(self.values["gs_credentials_file"])
        return env

    def shown(self) -> list[tuple[str, str, Origin | None]]:
        """(setting, value, origin) of each setting it has, for `backupctl env` (secrets not masked here)."""
        rows = [("replica", self.kind, self.origins.get("replica"))]
        if self.path is not None:
            rows.append(("path", self.path, self.origins.get("path") or Origin("BACKUP_PATH", "the primary's")))
        if self.kind == "file":
            rows.append(("local_dir", str(self.local_dir), self.origins.get("local_dir") or Origin(None, "the primary's")))
        rows += [(s, v, self.origins.get(s)) for s, v in self.values.items() if v is not None]
        return rows


def read(
    environ: Mapping[str, str],
    file_values: Mapping[str, str],
    source_name: str,
    primary: Checking,
    caps: Capabilities,
    local_dir: Path,
    databases: int,
) -> Secondary | None:
    """The secondary replica the settings ask for, or None. Every problem goes to ``primary.problems``
    (``primary`` is the settings' own check, after the primary's kinds were checked)."""
    values, origins = read_chains(VARIABLES, environ, file_values, source_name, lambda setting: None)
    given = sorted(VARIABLES[s][0] for s, v in values.items() if v is not None)
    if not given:
        return None
    if not caps.multiple_replicas:  # whatever else is set or missing: 0.5 writes no second replica at all
        named = PREFIX + "REPLICA" if values["replica"] is not None else given[0]
        primary.add(
            named,
            f"asks for a second replica of every database, but Litestream {caps.version} allows one per database",
            refused_on(),
        )
        return None
    raw = values["replica"]
    if raw is None:
        primary.add(
            PREFIX + "REPLICA",
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set, but not the secondary replica's type",
            f"set {PREFIX}REPLICA to one of {', '.join(replica_kinds.REPLICA_KINDS)}, or remove the secondary's settings",
        )
        return None
    spec = replica_kinds.find(raw)
    if spec is None:
        what = "names one replica type, not a list" if "," in raw else f"{raw.strip()!r} is not a replica type"
        primary.add(PREFIX + "REPLICA", what, f"use one of {', '.join(replica_kinds.REPLICA_KINDS)}")
        return None
    if len(primary.kinds) > 1:
        primary.add(
            PREFIX + "REPLICA",
            f"a secondary replica cannot be added to BACKUP_REPLICA's list ({','.join(primary.kinds)})",
            f"keep one type in BACKUP_REPLICA and give the other its own {PREFIX}* settings",
        )
        return None
    kind = spec.name
    # The kind's settings as its checks and replica() read them: the secondary's own, else the primary's credentials.
    own: dict[str, str | None] = {setting: values.get(setting) for setting in replica_kinds.variables()}
    own_origins = {setting: origins[setting] for setting in own if setting in origins}
    for setting in CREDENTIALS:
        if own[setting] is None and primary.values.get(setting):
            own[setting] = primary.values[setting]
            if setting in primary.origins:
                own_origins[setting] = primary.origins[setting]
    checking = Checking(own, own_origins, (kind,), primary.project_dir)
    spec.check(checking)
    spec.check_values(checking)
    checking.problems = [_secondary_names(problem) for problem in checking.problems]  # a kind's checks name the primary's
    if spec.needs_bucket and not own["bucket"]:
        checking.add(PREFIX + "BUCKET", f"a secondary {kind} replica needs a bucket (or container) of its own",
                     f"set {PREFIX}BUCKET")  # fmt: skip
    for setting in _REFS.get(kind, {}).values():
        value = own[setting]
        # sftp's own check says it of its password already
        if value and re.search(r"['\x00-\x1f\x7f]", value) and setting != "sftp_password":
            source = _variable_of(own_origins, setting)
            whose = "" if source == VARIABLES[setting][0] else f"is unset, and the primary's {source}, used instead, "
            checking.add(
                VARIABLES[setting][0],
                whose + "contains a quote or control character, which cannot be passed through litestream's config safely",
                f"set {VARIABLES[setting][0]} to a credential without ' and control characters",
            )
    if kind == "gs" and "gs" in primary.kinds and own["gs_credentials_file"] != primary.values.get("gs_credentials_file"):
        checking.add(
            PREFIX + "GS_CREDENTIALS_FILE",
            "differs from the primary's: litestream reads one Google key file for every replica it writes",
            f"use the primary's key file for both (leave {PREFIX}GS_CREDENTIALS_FILE unset), or give one of them another kind",
        )
    check_remote_path(checking, PREFIX + "PATH", values["path"], databases)
    primary.problems.extend(checking.problems)
    if checking.problems:
        return None
    path = values["path"] if values["path"] is not None else primary.values.get("path")
    return Secondary(
        kind=kind,
        values=own,
        origins={**own_origins, **{s: o for s, o in origins.items() if s not in own_origins}},
        path=path.strip("/") if path else None,
        local_dir=resolve(values["local_dir"], primary.project_dir) if values["local_dir"] else local_dir,
        credentials=tuple((s, v) for s in CREDENTIALS if (v := own[s])),
    )


def check_place(primary: Replica, secondary: Replica, checking: Checking) -> None:
    """The secondary must be somewhere else than the primary: one place written by two replicas is one copy."""
    # AWS bucket names are global: one bucket named with two regions is still one bucket.
    aws = all(r.kind == "s3" and not r.endpoint for r in (primary, secondary))
    same_bucket = aws and (primary.bucket, clean_path(primary.path)) == (secondary.bucket, clean_path(secondary.path))
    if primary.lock_key != secondary.lock_key and not same_bucket:
        return
    setting = {"file": "local_dir"}.get(secondary.kind, "bucket")
    checking.add(
        VARIABLES[setting][0],
        f"the secondary replica is the same place as the primary ({secondary.destination}): one copy, not two",
        f"give it a place of its own ({PREFIX}BUCKET, {PREFIX}PATH or {PREFIX}LOCAL_DIR)",
    )


def _variable_of(origins: Mapping[str, Origin], setting: str) -> str:
    origin = origins.get(setting)
    return origin.variable if origin and origin.variable else VARIABLES[setting][0]


# The variables a kind's checks name for a setting, as the secondary names them: a kind's checks are
# written for the primary's variables (R2_ACCOUNT_ID, BACKUP_ENDPOINT...).
_RENAMES = {variable: VARIABLES[setting][0] for setting, chain in replica_kinds.variables().items() for variable in chain}
_RENAMES["BACKUP_LOCAL_DIR"] = VARIABLES["local_dir"][0]  # a folder replica's (not a kind's variable)
_RENAME = re.compile(r"\b(" + "|".join(sorted(map(re.escape, _RENAMES), key=len, reverse=True)) + r")\b")


def _secondary_names(problem: str) -> str:
    """A kind's problem as the secondary's: its variables named ``BACKUP_SECONDARY_*`` (an inherited
    credential keeps the primary's name only in its origin, never in what to set)."""
    return _RENAME.sub(lambda m: _RENAMES[m.group(1)], problem)


def said_of(replica: Replica, text: str) -> str:
    """What a kind says of a replica (a probe's finding, its fix), with the secondary's variables for
    the secondary: kinds name the primary's (``change BACKUP_LOCAL_DIR``)."""
    return _secondary_names(text) if replica.name == NAME else text


def check_rendered(databases: Sequence[Database], text: str) -> None:
    """Raise ConfigError when a rendered config lost the secondary replica's name or its credentials'
    references: templates ejected before the secondary existed name every replica by its kind (two
    replicas of one name, which litestream refuses) and would hand it the primary's credentials."""
    replicas = [r for db in databases for r in db.replicas if r.name == NAME]
    if not replicas:
        return
    wanted = {f'name: "{NAME}"'} | {f"'${{{variable}}}'" for r in replicas for _, variable in r.refs}
    missing = sorted(w for w in wanted if w not in text)
    if missing:
        raise ConfigError(
            "the templates do not write the secondary replica as it must be: " + ", ".join(missing) + " is missing",
            "copy the default templates again (`backupctl templates eject --force`) and redo your changes there: "
            "the 0.3 template names each replica with {{ r.name }}, and s3.j2/r2.j2/abs.j2 write its own credentials",
        )
