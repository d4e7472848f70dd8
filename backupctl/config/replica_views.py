"""Each replica on its own: the settings narrowed to one replica of every database (a *view*).

Litestream 0.3 reads a config's replicas together: a plain ``restore`` takes the newest of them, and
``generations`` of a database lists them all, so one unreachable replica fails the reading of both.
A view is the project's settings with each database keeping only the replica asked for (the
secondary replica, ``backupctl.config.secondary``, or a type of a 0.3 ``BACKUP_REPLICA`` list); whatever
reads the replicas (listings, restore, verify, drill, the continuity check, `status`) then works on
that replica alone: ``host.config_in_use.config_for_reading`` gives a view a config that names only it (never
the running supervisor's nor litestream.yml), and the secondary's view carries its own credentials
(doctor's probe and `cost` talk to its bucket with them).

Who asks: ``--replica NAME`` (restore, verify, drill, `status --replica-only`); `status` and
`status --replica-only` of several replicas, a verdict each (``status``, ``replica_status``); the
continuity check of each replica (``continuity``); a start confirmed by the replicas that can be read
(``confirm``). This module only builds views and names replicas: it imports none of them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from backupctl.config import secondary as secondary_replica
from backupctl.config.settings import KIND_CREDENTIALS, Database, Replica, Settings
from backupctl.errors import VERDICT_EXIT, NotFoundError, worst_exit


def several(settings: Settings) -> bool:
    """Does some database have more than one replica?"""
    return any(len(db.replicas) > 1 for db in settings.databases)


def names(settings: Settings) -> list[str]:
    """The config names of the replicas every database has, in order (``s3``, ``secondary``...)."""
    first = settings.databases[0].replicas if settings.databases else ()
    return [r.config_name for r in first]


def label(settings: Settings, replica: Replica | str) -> str:
    """What backupctl calls a replica: ``primary`` and ``secondary`` when there is a secondary, else its
    config name (a BACKUP_REPLICA list's kind). ``--replica`` takes either."""
    name = replica if isinstance(replica, str) else replica.config_name
    if settings.secondary is not None and name != secondary_replica.NAME:
        return secondary_replica.PRIMARY
    return name


def labels(settings: Settings) -> list[str]:
    """Every replica's label, in config order (also from a view: its settings still say what there is)."""
    if settings.secondary is not None:
        return [secondary_replica.PRIMARY, secondary_replica.NAME]
    return list(settings.replica_kinds)


def resolve(settings: Settings, wanted: str) -> str:
    """The config name of the replica ``wanted`` names (``primary``, ``secondary`` or a config name).
    Raises NotFoundError (exit 8) naming the replicas there are."""
    known = names(settings)
    word = wanted.strip().lower()
    if word == secondary_replica.PRIMARY and known and known[0] != secondary_replica.NAME:  # (not a secondary's view)
        return known[0]
    if word in known:
        return word
    configured = ", ".join(f"{label(settings, n)} ({n})" if label(settings, n) != n else n for n in known) or "none"
    hint = "name one of them"
    if word == secondary_replica.NAME:
        hint = f"no secondary replica is configured: set {secondary_replica.PREFIX}REPLICA ({secondary_replica.DOC})"
    raise NotFoundError(f"no replica {wanted!r} in the configuration (configured: {configured})", hint)


def view(settings: Settings, wanted: str) -> Settings:
    """``settings`` narrowed to the replica ``wanted`` names of every database (see the module docstring).
    With one replica there is nothing to narrow: the settings themselves."""
    name = resolve(settings, wanted)
    if not several(settings) or settings.replica_view == name:
        return settings
    databases = tuple(
        dataclasses.replace(db, replicas=tuple(r for r in db.replicas if r.config_name == name)) for db in settings.databases
    )
    changes: dict[str, Any] = {"databases": databases, "replica_view": name}
    second = settings.secondary
    if name == secondary_replica.NAME and second is not None:
        # Its own credentials and settings where a kind reads the primary's (doctor's probe, cost, origins in errors).
        credentials = dataclasses.replace(
            settings.credentials, replica=tuple((k, v) for k, v in second.credentials if k in KIND_CREDENTIALS)
        )
        changes.update(
            credentials=credentials,
            values={**settings.values, **second.values},
            origins={**settings.origins, **second.origins},
            replica_kinds=(second.kind,),
        )
    return dataclasses.replace(settings, **changes)


def settings_for(settings: Settings, replica: Replica) -> Settings:
    """The settings to reach ``replica`` with: the secondary's view for the secondary (its credentials),
    else ``settings``."""
    if replica.name == secondary_replica.NAME and settings.replica_view != secondary_replica.NAME and several(settings):
        return view(settings, secondary_replica.NAME)
    return settings


def view_label(settings: Settings) -> str | None:
    """The label of the replica a view keeps (None: not a view)."""
    return label(settings, settings.replica_view) if settings.replica_view is not None else None


def worst(verdicts: list[str]) -> int:
    """The index of the worst of several replicas' verdicts (the first of equals): the database's."""
    code = worst_exit([VERDICT_EXIT[v] for v in verdicts])
    return next(i for i, v in enumerate(verdicts) if VERDICT_EXIT[v] == code)


def combined_reason(parts: list[tuple[str, str, str, str]]) -> str:
    """One reason for a database from its replicas' (label, destination, verdict, reason)."""
    bad = [p for p in parts if p[2] != "ok"]
    good = [f"{name} ok" for name, _, verdict, _ in parts if verdict == "ok"]
    if not bad:
        every = "both" if len(parts) == 2 else "every"
        return f"{', '.join(good)}: {every} replicas hold everything litestream has read of the local database"
    said = [f"{name} {verdict} ({destination}): {reason}" for name, destination, verdict, reason in bad]
    return "; ".join(said + good)


def proof_key(database: str, replica: str | None) -> str:
    """Where continuity.json keeps a verdict: the database's path, ``path#label`` for one replica of it."""
    return database if replica is None else f"{database}#{replica}"


def proof_of(proofs: dict[str, dict[str, Any]], settings: Settings, db: Database) -> dict[str, Any] | None:
    """The continuity verdict `status` reads for ``db`` of ``settings`` (a view: its replica's)."""
    return proofs.get(proof_key(str(db.path), view_label(settings)))
