"""`cost`: a monthly estimate for R2 and for S3 from what the replica really holds.

Inputs are measured, not guessed: each replica's kind lists its objects (``backupctl.kinds``:
botocore for S3/R2, a folder walk for file replicas) to get its size and, from the objects'
timestamps inside the retention window, how many objects and bytes it receives per day. The
providers priced are the kinds that declare prices (R2 and S3), at their published prices by
default, overridable (``--price r2.storage_gb_month=0.02`` or ``BACKUPCTL_PRICES``).

The arithmetic lives in :func:`price_usage`, a pure function; every assumption it makes is
listed in the report's ``assumptions`` so a reader can disagree with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from backupctl.config.replica_views import settings_for
from backupctl.config.settings import Database, Replica, Settings, parse_duration
from backupctl.errors import ConfigError
from backupctl.kinds import default_prices
from backupctl.kinds.base import Prices as Prices
from backupctl.kinds.base import StoredObject as StoredObject

PRICES_ENV = "BACKUPCTL_PRICES"
DAY = 86400.0
MONTH_SECONDS = 30 * DAY  # a billing month, for both providers
GB = 1024**3  # providers bill storage per GB of 2^30 bytes
MIN_PROJECTION_WINDOW = 3600.0  # below an hour of history, growth is not extrapolated to the retention


# Each kind with prices declares its provider's published ones (backupctl/kinds/s3.py: R2 and S3).
DEFAULT_PRICES: dict[str, Prices] = default_prices()
PRICE_KEYS = tuple(f.name for f in fields(Prices))


def parse_price_overrides(items: Iterable[str], base: dict[str, Prices] | None = None) -> dict[str, Prices]:
    """Apply ``provider.key=value`` overrides (e.g. ``s3.egress_gb=0.05``) to the default prices."""
    prices = dict(base or DEFAULT_PRICES)
    for item in items:
        name, sep, raw = item.strip().partition("=")
        provider, dot, key = name.strip().lower().partition(".")
        if not sep or not dot or provider not in prices or key not in PRICE_KEYS:
            raise ConfigError(
                f"price override {item.strip()!r} is not PROVIDER.KEY=VALUE",
                f"PROVIDER is {' or '.join(prices)}; KEY is one of {', '.join(PRICE_KEYS)}; e.g. r2.storage_gb_month=0.015",
            )
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0:  # also rejects nan
            raise ConfigError(
                f"price override {item.strip()!r}: {raw!r} is not a non-negative number", "write a number like 0.02"
            )
        prices[provider] = replace(prices[provider], **{key: value})
    return prices


def list_replica(settings: Settings, replica: Replica) -> list[StoredObject] | None:
    """Every object of a replica, as its kind lists it (S3/R2 via botocore, file via a folder walk); None
    for kinds not listed."""
    return replica.spec.list_objects(settings, replica)


@dataclass
class ReplicaUsage:
    database: str
    destination: str
    kind: str
    objects: int
    bytes: int
    oldest: float | None
    newest: float | None
    age_days: float
    window_days: float  # the span the rates are measured over: min(age, retention)
    objects_in_window: int
    bytes_in_window: int
    objects_per_day: float
    bytes_per_day: float


def measure(
    db: Database, replica: Replica, objects: list[StoredObject], retention_s: float, sync_s: float, now: float
) -> ReplicaUsage:
    """Size and write rate of one replica from its listing."""
    total = sum(o.size for o in objects)
    if not objects:
        return ReplicaUsage(db.name, replica.destination, replica.kind, 0, 0, None, None, 0.0, 0.0, 0, 0, 0.0, 0.0)
    oldest = min(o.modified for o in objects)
    newest = max(o.modified for o in objects)
    age = max(now - oldest, 0.0)
    window = min(retention_s, max(age, sync_s))
    recent = [o for o in objects if o.modified >= now - window]
    in_bytes = sum(o.size for o in recent)
    return ReplicaUsage(
        database=db.name,
        destination=replica.destination,
        kind=replica.kind,
        objects=len(objects),
        bytes=total,
        oldest=oldest,
        newest=newest,
        age_days=age / DAY,
        window_days=window / DAY,
        objects_in_window=len(recent),
        bytes_in_window=in_bytes,
        objects_per_day=len(recent) / (window / DAY),
        bytes_per_day=in_bytes / (window / DAY),
    )


def price_usage(usage: dict[str, Any], p: Prices) -> dict[str, Any]:
    """The monthly bill for one provider, line by line (USD, unrounded)."""
    stored_gb = usage["stored_bytes"] / GB
    storage = max(0.0, stored_gb - p.free_storage_gb) * p.storage_gb_month
    writes = max(0.0, usage["writes_per_month"] / 1e6 - p.free_writes_million) * p.writes_per_million
    writes_busy = max(0.0, usage["writes_per_month_if_busy"] / 1e6 - p.free_writes_million) * p.writes_per_million
    reads = max(0.0, usage["reads_per_month"] / 1e6 - p.free_reads_million) * p.reads_per_million
    egress = usage["egress_bytes_per_month"] / GB * p.egress_gb
    projected = usage["projected_stored_bytes"]
    return {
        "storage": storage,
        "writes": writes,
        "reads": reads,
        "egress": egress,
        "monthly_total": storage + writes + reads + egress,
        "monthly_total_if_busy": storage + writes_busy + reads + egress,
        "storage_at_retention": None if projected is None else max(0.0, projected / GB - p.free_storage_gb) * p.storage_gb_month,
        # One full restore, outside the free tiers: download everything once, one GET per object.
        "restore_egress": usage["restore_bytes"] / GB * p.egress_gb,
        "restore_once": usage["restore_bytes"] / GB * p.egress_gb + usage["restore_reads"] / 1e6 * p.reads_per_million,
        "currency": "USD",
    }


def estimate_cost(settings: Settings, prices: dict[str, Prices] | None = None, now: float | None = None) -> dict[str, Any]:
    """Measure every replica and price the total on R2 and on S3. Raises LitestreamError if a listing fails."""
    prices = prices or DEFAULT_PRICES
    retention_s = parse_duration(settings.retention)
    sync_s = settings.sync_seconds
    notes: list[str] = []
    replicas: list[ReplicaUsage] = []
    for db in settings.databases:
        for replica in db.replicas:
            objects = list_replica(settings_for(settings, replica), replica)  # a secondary: its own credentials
            if objects is None:
                notes.append(f"{replica.destination}: {replica.kind} replicas are not measured")
                continue
            replicas.append(measure(db, replica, objects, retention_s, sync_s, now if now is not None else time.time()))
    for r in replicas:
        if r.objects == 0:
            notes.append(f"{r.destination} holds nothing yet: start replication (`backupctl start`) and measure again")
        elif r.age_days * DAY < MIN_PROJECTION_WINDOW:
            notes.append(
                f"{r.destination} is only {r.age_days * DAY / 60:.0f} minutes old: rates are extrapolated from a short"
                " window and include the first full snapshot, so they overstate a quiet database"
            )
    stored = sum(r.bytes for r in replicas)
    objects = sum(r.objects for r in replicas)
    writes = sum(r.objects_per_day for r in replicas) * (MONTH_SECONDS / DAY)
    busy = len(replicas) * MONTH_SECONDS / sync_s
    verifies = MONTH_SECONDS / parse_duration(settings.verify_interval) if settings.verify_interval else 0.0
    drills = MONTH_SECONDS / parse_duration(settings.drill_interval) if settings.drill_interval else 0.0
    projected: float | None = 0.0
    for r in replicas:
        if r.objects == 0:
            continue
        if projected is None or r.age_days * DAY < MIN_PROJECTION_WINDOW:
            projected = None
            continue
        remaining_days = max(0.0, retention_s / DAY - r.age_days)
        projected += r.bytes + r.bytes_per_day * remaining_days
    usage = {
        "stored_bytes": stored,
        "stored_gb": stored / GB,
        "objects": objects,
        "retention_days": retention_s / DAY,
        "sync_interval_seconds": sync_s,
        "writes_per_month": writes,
        "writes_per_month_if_busy": busy,
        "bytes_written_per_month": sum(r.bytes_per_day for r in replicas) * (MONTH_SECONDS / DAY),
        "verifies_per_month": verifies,
        "drills_per_month": drills,
        "reads_per_month": (verifies + drills) * objects,
        "egress_bytes_per_month": (verifies + drills) * stored,
        "restore_bytes": stored,
        "restore_reads": objects,
        "projected_stored_bytes": projected,
    }
    assumptions = [
        "a month is 30 days; 1 GB is 2^30 bytes",
        "writes_per_month: objects the replica received inside the observation window (min of its age and the"
        " retention), scaled to a month; objects already removed by compaction or retention are not seen, so for"
        " a busy database this is a lower bound",
        "writes_per_month_if_busy: each sync with changes uploads at least one object, so a database written"
        f" to in every {settings.sync_interval} sync interval makes at least this many uploads",
        "reads: Litestream reads the replica only to restore; each verify"
        + (f" (every {settings.verify_interval})" if settings.verify_interval else " (none scheduled)")
        + " is one full restore, and so is each drill"
        + (f" (every {settings.drill_interval})" if settings.drill_interval else " (none scheduled)"),
        "a full restore downloads at most the whole replica, one GET per object",
        "storage_at_retention: the current size plus the observed bytes per day until the replica is as old"
        " as the retention (null under an hour of history)",
        "deletes are free on both providers; S3's free egress allowance is not counted",
    ]
    return {
        "prices": {name: asdict(p) for name, p in prices.items()},
        "replicas": [asdict(r) for r in replicas],
        "usage": usage,
        "estimates": {name: price_usage(usage, p) for name, p in prices.items()},
        "assumptions": assumptions,
        "notes": notes,
    }
