"""Replica kinds: one spec per kind (``file``, ``s3``, ``r2``, ``sftp``, ``gs``, ``abs``), and the registry
every other module asks.

Settings take their variables, secrets and checks from here, render the template each spec names,
runner takes litestream's credentials from ``environment``, listings test ``address`` before a slow
call, doctor runs ``probe`` and cost calls ``list_objects`` and reads ``prices``. Adding a kind is a
module in this package and its line in ``_SPECS``, its template in ``templates/replica/``,
``.env.example`` and the docs.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from backupctl.errors import LitestreamError
from backupctl.kinds.abs import AbsKind
from backupctl.kinds.base import Checking, Origin, Prices, Replica, ReplicaKind, StoredObject, register
from backupctl.kinds.file import FileKind
from backupctl.kinds.gs import GsKind
from backupctl.kinds.s3 import R2Kind, S3Kind
from backupctl.kinds.sftp import SftpKind

if TYPE_CHECKING:
    from backupctl.config.settings import Settings

__all__ = ["Checking", "Origin", "Prices", "Replica", "ReplicaKind", "StoredObject"]

# In the order BACKUP_REPLICA's error message lists them.
_SPECS: tuple[ReplicaKind, ...] = (FileKind(), S3Kind(), R2Kind(), SftpKind(), GsKind(), AbsKind())
KINDS: dict[str, ReplicaKind] = register(_SPECS)
REPLICA_KINDS = tuple(KINDS)
PROBE_TIMEOUT = 3.0  # a TCP connect on a healthy network takes milliseconds


def spec(kind: str) -> ReplicaKind:
    return KINDS[kind]


def find(name: str) -> ReplicaKind | None:
    """The kind a BACKUP_REPLICA entry names (any case, aliases like ``gcs`` included), or None."""
    name = name.strip().lower()
    return next((s for s in _SPECS if name == s.name or name in s.aliases), None)


def implied(values: dict[str, str | None]) -> str:
    """The kind BACKUP_REPLICA means when unset: r2 with an R2 account id, s3 with a bucket, else file."""
    ranked = sorted((s for s in _SPECS if s.implied_rank is not None), key=lambda s: s.implied_rank or 0)
    return next(s.name for s in ranked if s.implied_by is None or values.get(s.implied_by))


def variables() -> dict[str, tuple[str, ...]]:
    """Every kind's settings and their variables, each setting once, in kind order."""
    merged: dict[str, tuple[str, ...]] = {}
    for s in _SPECS:
        for setting, chain in s.variables.items():
            if merged.setdefault(setting, chain) != chain:
                raise AssertionError(f"{s.name} declares {setting} with other variables than another kind")
    return merged


def secret_settings() -> frozenset[str]:
    return frozenset().union(*(s.secrets for s in _SPECS))


def masked_settings() -> frozenset[str]:
    return frozenset().union(*(s.masked for s in _SPECS))


def check(checking: Checking) -> None:
    """Each kind in use checks its settings, every kind the form of its values; then what every bucket kind needs."""
    used = [KINDS[k] for k in checking.kinds]
    buckets = [s.name for s in used if s.needs_bucket]
    for s in used:
        s.check(checking)
    for s in _SPECS:
        s.check_values(checking)
    if buckets and not checking.values.get("bucket"):
        checking.add("BACKUP_BUCKET", f"a {'/'.join(buckets)} replica needs a bucket (or container)",
                     "set BACKUP_BUCKET (or R2_BUCKET)")  # fmt: skip


# Credentials a replica's template writes only for a replica with credentials of its own (``Replica.refs``:
# the secondary's), as references to variables litestream expands from its environment.
OWN_CREDENTIAL_KEYS = ("access_key_id", "secret_access_key", "account_key")


def template_values(replica: Replica) -> dict[str, Any]:
    """What a replica's template sees: every key any kind's template reads (None where it does not apply)."""
    from backupctl.redact import EnvRef  # lazy: render imports this registry (as kinds/sftp.py does)

    values = {**_template_keys(), **dict.fromkeys(OWN_CREDENTIAL_KEYS), "kind": replica.kind, "name": replica.config_name,
              "type": replica.litestream_type, "path": replica.path, **replica.spec.template_values(replica)}  # fmt: skip
    values.update({key: EnvRef(variable) for key, variable in replica.refs})
    return values


@cache
def _template_keys() -> dict[str, None]:
    keys: dict[str, None] = {}
    for s in _SPECS:
        keys.update(dict.fromkeys(s.template_values(Replica(s.name, s.litestream_type, ""))))
    return keys


def own_variable_names() -> set[str]:
    """Every variable ``drop_own_variables`` removes, whatever its value."""
    return {name for s in _SPECS for name in (*s.dropped_variables, *s.withheld_variables)}


def drop_own_variables(env: dict[str, str]) -> list[str]:
    """Remove from litestream's ``env`` the variables backupctl reads credentials from; a notice for
    each one dropped with a reason (the others are secrets litestream gets under other names)."""
    notices: list[str] = []
    for s in _SPECS:
        for name, why in s.dropped_variables.items():
            if env.pop(name, None) is not None:
                notices.append(f"not passing {name} to litestream: {why}")
    for s in _SPECS:
        for name in s.withheld_variables:
            env.pop(name, None)
    return notices


def set_credentials(settings: Settings, env: dict[str, str]) -> None:
    """Put every kind's credentials from the settings into litestream's ``env`` (never argv or files)."""
    for s in _SPECS:
        env.update(s.environment(settings))
    if settings.secondary is not None:  # the second replica's own, under the names its config refers to
        env.update(settings.secondary.environment())


def uses_s3_client(settings: Settings) -> bool:
    return any(r.spec.uses_s3_client for db in settings.databases for r in db.replicas)


def probe_replica(replica: Replica, timeout: float = PROBE_TIMEOUT) -> None:
    """Raise LitestreamError if a network replica's endpoint does not accept a connection.

    File replicas and kinds whose endpoint is not a plain host (gs, abs) are not probed.
    """
    import socket

    target = replica.spec.address(replica)
    if target is None:
        return
    host, port = target
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except TimeoutError:
        cause = f"no answer from {host}:{port} within {timeout:g}s"
    except socket.gaierror as exc:
        cause = f"cannot resolve {host}: {exc.strerror}"
    except OSError as exc:
        cause = f"{host}:{port}: {exc.strerror or exc}"
    raise LitestreamError(
        f"replica {replica.destination} is unreachable: {cause}",
        "check the endpoint, the network and that the storage server is running; `backupctl doctor` probes it",
    )


def default_prices() -> dict[str, Prices]:
    """The providers `cost` prices on: every kind with prices, by name."""
    return {s.name: s.prices for s in sorted(_SPECS, key=lambda s: s.name) if s.prices is not None}
