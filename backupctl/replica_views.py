"""Each replica on its own: the settings narrowed to one replica of every database (a *view*), and the
answers that must hold for every replica of a database with several (the secondary replica,
``backupctl.secondary``, or a 0.3 ``BACKUP_REPLICA`` list).

Litestream 0.3 reads a config's replicas together: a plain ``restore`` takes the newest of them, and
``generations`` of a database lists them all, so one unreachable replica fails the reading of both.
A view is the project's settings with each database keeping only the replica asked for; whatever
reads the replicas (listings, restore, verify, drill, the continuity check, `status`) then works on
that replica alone, with a config that names only it (``config_path``, in the state folder, never
the running supervisor's nor litestream.yml) and, for the secondary, its own credentials (doctor's
probe and `cost` talk to its bucket with them).

- ``--replica NAME`` (restore, verify, drill, `status --replica-only`): ``view``.
- `status` of several replicas: each replica's verdicts, read now (the supervisor's look covers them
  together), in one report whose database verdict is the worst of its replicas' (``collect_status``).
- `status --replica-only`: likewise (``collect_replica_status``).
- the continuity check proves each replica whole (``prove_each``), and keeps each replica's verdict
  beside the database's (``continuity.record``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backupctl import secondary as secondary_replica
from backupctl.errors import VERDICT_EXIT, BackupctlError, NotFoundError, worst_exit
from backupctl.settings import Database, Replica, Settings

if TYPE_CHECKING:
    from backupctl.continuity import Proof
    from backupctl.positions import LocalPosition
    from backupctl.replica_status import ReplicaReport
    from backupctl.runner import Litestream
    from backupctl.status import StatusReport

VIEW_CONFIG = "replica-{name}-{digest}.yml"  # in the state folder: a config naming one replica of every database


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
        from backupctl.settings import _KIND_CREDENTIALS

        credentials = dataclasses.replace(
            settings.credentials, replica=tuple((k, v) for k, v in second.credentials if k in _KIND_CREDENTIALS)
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


def config_path(settings: Settings) -> Path:
    """The config of a view (``settings.replica_view``), rendered into the state folder under a name made
    of its text: the supervisor reads through one while `status` (with a changed .env, say) may render
    another, and neither may swap the other's. Never litestream.yml or the supervisor's copy: those name
    every replica."""
    import hashlib

    from backupctl.owned import secure_dir, write_atomic
    from backupctl.paths import project_state_dir
    from backupctl.render import render

    assert settings.replica_view is not None
    folder = secure_dir(project_state_dir(settings.project_dir), what="state folder")
    text = render(settings).text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    path = folder / VIEW_CONFIG.format(name=settings.replica_view, digest=digest)
    if not path.is_file():
        write_atomic(path, text)
    return path


def covered_by_each(
    ls: Litestream,
    databases: list[Database],
    local: dict[str, LocalPosition],
    *,
    timeout: float,
    unreadable_fails: bool,
) -> tuple[set[str], list[BackupctlError]]:
    """The databases (paths as str) each of whose replicas holds its ``local`` position, read one replica
    at a time (a reading of them together fails whole when one cannot be read). A replica that cannot
    be read is passed over, as long as another one holds the position, unless ``unreadable_fails``;
    the errors of those readings come back to be said."""
    from backupctl import positions
    from backupctl.runner import Litestream

    readings: dict[str, list[positions.ReplicaPosition | BackupctlError]] = {str(db.path): [] for db in databases}
    for name in names(ls.settings):
        narrowed = view(ls.settings, name)
        ones = [db for db in narrowed.databases if str(db.path) in readings]
        runner = Litestream(ls.binary, narrowed, config_path(narrowed))
        for path, reading in positions.read_replicas(runner, ones, timeout=timeout).items():
            readings[path].append(reading)
    held: set[str] = set()
    errors: list[BackupctlError] = []
    for path, found in readings.items():
        read = [r for r in found if isinstance(r, positions.ReplicaPosition)]
        errors += [r for r in found if isinstance(r, BackupctlError)]
        enough = bool(read) and (len(read) == len(found) or not unreadable_fails)
        if enough and all(positions.covers(r, local[path], ls.caps.has_ltx) for r in read):
            held.add(path)
    return held, errors


# --------------------------------------------------------------------------- status


_REPLICA_FIELDS = ("verdict", "reason", "newest_backup", "newest_backup_age_seconds", "replica_position", "behind",
                   "lag_seconds", "oldest_restorable", "newest_snapshot", "snapshot_count", "replica_error",
                   "replica_read_at")  # fmt: skip


_REPLICA_ONLY_FIELDS = ("verdict", "reason", "newest_backup", "newest_backup_age_seconds", "oldest_restorable",
                        "restorable_window_seconds", "newest_snapshot", "snapshot_count", "replica_position",
                        "replica_error")  # fmt: skip


def _worst(verdicts: list[str]) -> int:
    """The index of the worst verdict (the first of equals)."""
    worst = worst_exit([VERDICT_EXIT[v] for v in verdicts])
    return next(i for i, v in enumerate(verdicts) if VERDICT_EXIT[v] == worst)


def _combined_reason(parts: list[tuple[str, str, str, str]]) -> str:
    """One reason for a database from its replicas' (label, destination, verdict, reason)."""
    bad = [p for p in parts if p[2] != "ok"]
    good = [f"{name} ok" for name, _, verdict, _ in parts if verdict == "ok"]
    if not bad:
        every = "both" if len(parts) == 2 else "every"
        return f"{', '.join(good)}: {every} replicas hold everything litestream has read of the local database"
    said = [f"{name} {verdict} ({destination}): {reason}" for name, destination, verdict, reason in bad]
    return "; ".join(said + good)


def collect_status(
    settings: Settings,
    binary_path: Path | Callable[[], Path],
    database: str | None,
    *,
    timeout: float,
    now: float | None,
) -> StatusReport:
    """`status` of databases with several replicas: each replica read now through its view, then one
    verdict per database, the worst of its replicas', with each replica's in ``replicas``."""
    from backupctl import status

    now = time.time() if now is None else now
    reports = [
        (n, status.collect_status(view(settings, n), binary_path, database, timeout=timeout, now=now, fresh=True))
        for n in names(settings)
    ]
    first = reports[0][1]
    # the supervisor as the whole settings see it (a view's would call them changed since it started)
    merged = dataclasses.replace(first, databases=[], supervisor=status.supervisor_info(settings, now))
    for i, base in enumerate(first.databases):
        per = [(n, report.databases[i]) for n, report in reports]
        worst = per[_worst([d.verdict for _, d in per])][1]
        parts = [(label(settings, n), ", ".join(d.destinations), d.verdict, d.reason) for n, d in per]
        replicas = [
            {"name": label(settings, n), "destination": ", ".join(d.destinations), **{f: getattr(d, f) for f in _REPLICA_FIELDS}}
            for n, d in per
        ]
        merged.databases.append(
            dataclasses.replace(
                worst,
                verdict=worst.verdict,
                reason=_combined_reason(parts),
                destinations=[dest for _, d in per for dest in d.destinations],
                # the local side is one database: read with the first replica, as litestream knows it
                local_position=base.local_position,
                size=base.size,
                wal_size=base.wal_size,
                local_updated_at=base.local_updated_at,
                replicas=replicas,
            )
        )
    return merged


def collect_replica_status(
    settings: Settings, binary_path: Path, database: str | None, *, timeout: float, now: float | None
) -> ReplicaReport:
    """`status --replica-only` of several replicas: each read through its view; a database's verdict is
    the worst of its replicas', each replica's in ``replicas``."""
    from backupctl import replica_status

    now = time.time() if now is None else now
    reports = [
        (n, replica_status.collect_replica_status(view(settings, n), binary_path, database, timeout=timeout, now=now))
        for n in names(settings)
    ]
    first = reports[0][1]
    merged = dataclasses.replace(first, databases=[])
    for i in range(len(first.databases)):
        per = [(n, report.databases[i]) for n, report in reports]
        worst = per[_worst([d.verdict for _, d in per])][1]
        parts = [(label(settings, n), ", ".join(d.destinations), d.verdict, d.reason) for n, d in per]
        bad = [f"{name} {verdict} ({dest}): {reason}" for name, dest, verdict, reason in parts if verdict != "ok"]
        good = [f"{name} ok: {reason}" for name, _, verdict, reason in parts if verdict == "ok"]
        merged.databases.append(
            dataclasses.replace(
                worst,
                reason="; ".join(bad + good),
                destinations=[dest for _, d in per for dest in d.destinations],
                replicas=[
                    {
                        "name": label(settings, n),
                        "destination": ", ".join(d.destinations),
                        **{f: getattr(d, f) for f in _REPLICA_ONLY_FIELDS},
                    }
                    for n, d in per
                ],  # fmt: skip
            )
        )
    return merged


# --------------------------------------------------------------------------- continuity


def prove_each(ls: Litestream, db: Database, work_dir: Path, **options: Any) -> Proof:
    """The continuity check of a database with several replicas: each replica proven through its view,
    one verdict for the database (broken if one is, whole if all are, else undecided), each replica's in
    ``replicas`` (``continuity.record`` keeps them too, for `status` of each replica)."""
    from backupctl.continuity import BROKEN, UNDECIDED, WHOLE, Proof, prove
    from backupctl.runner import Litestream

    started = time.time()
    subs: dict[str, Proof] = {}
    for name in names(ls.settings):
        narrowed = view(ls.settings, name)
        one = next(d for d in narrowed.databases if d.path == db.path)
        subs[label(ls.settings, name)] = prove(Litestream(ls.binary, narrowed, config_path(narrowed)), one, work_dir, **options)
    verdicts = [p.verdict for p in subs.values()]
    verdict = BROKEN if BROKEN in verdicts else WHOLE if all(v == WHOLE for v in verdicts) else UNDECIDED
    reason = "; ".join(f"{name} {p.verdict}: {p.reason}" for name, p in subs.items())
    proof = Proof(str(db.path), db.name, verdict, reason, started)
    proof.seconds = round(sum(p.seconds for p in subs.values()), 2)
    proof.replicas = {name: p.to_json() for name, p in subs.items()}
    return proof


def mark(proof: Proof, settings: Settings) -> Proof:
    """A proof of one replica of a database with several (``settings`` is its view): named by its label."""
    if settings.replica_view is not None:
        proof.replica = label(settings, settings.replica_view)
    return proof


def proof_key(database: str, replica: str | None) -> str:
    """Where continuity.json keeps a verdict: the database's path, ``path#label`` for one replica of it."""
    return database if replica is None else f"{database}#{replica}"


def proof_of(proofs: dict[str, dict[str, Any]], settings: Settings, db: Database) -> dict[str, Any] | None:
    """The continuity verdict `status` reads for ``db`` of ``settings`` (a view: its replica's)."""
    replica = label(settings, settings.replica_view) if settings.replica_view is not None else None
    return proofs.get(proof_key(str(db.path), replica))
