"""A database's verdict in `status`, from plain facts: the one rule both ways of answering use.

``checks.status`` (settings loaded, litestream and the replicas read when needed) and
``checks.published_status`` (the running supervisor's published look, without loading the
settings) both call ``judge``; so the fast answer and the full one cannot disagree on a verdict,
a reason or a lag. This module imports only the standard library, so the fast answer stays fast.
The verdicts themselves are described in ``checks.status``.
"""

from __future__ import annotations

import math
import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: 19 ms of every `status --json`
if TYPE_CHECKING:
    from typing import Any


# A database's verdict in `status` (docs/status.md): plain strings, not a StrEnum (importing enum
# alone cost every `status --json` 4 ms).
OK, STALE, DOWN, NOT_INITIALIZED, ERROR, BROKEN = "ok", "stale", "down", "not-initialized", "error", "broken"


def unrestorable(entry: dict[str, Any], replica_error: str | None) -> bool:
    """The last reading of the replica (in a database's look ``entry``) found backup files but nothing
    that restores (``positions.Window.restorable``: a replica removed under a running litestream)."""
    return replica_error is None and "read_at" in entry and bool(entry.get("newest")) and not entry.get("oldest")


def epoch_iso(epoch: float | None) -> str | None:
    """A time as status shows it: UTC, ISO 8601, ``Z`` (as ``listings.iso``): what
    ``datetime.fromtimestamp(epoch, UTC).isoformat()`` writes (microseconds rounded half to even, left
    out when zero), without importing datetime (2 ms of every `status --json`)."""
    if epoch is None:
        return None
    fraction, whole = math.modf(epoch)
    micros = round(fraction * 1_000_000)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(whole)))
    return f"{text}.{micros:06d}Z" if micros else f"{text}Z"


def _epoch(iso_text: str) -> float:
    """The epoch of a time written as ``epoch_iso``/``listings.iso`` write them (``...T...Z``, whole
    seconds or microseconds); any other form through datetime."""
    if len(iso_text) in (20, 27) and iso_text[-1] == "Z" and iso_text[10] == "T" and (len(iso_text) == 20 or iso_text[19] == "."):
        try:
            year, month, day = int(iso_text[0:4]), int(iso_text[5:7]), int(iso_text[8:10])
            hour, minute, second = int(iso_text[11:13]), int(iso_text[14:16]), int(iso_text[17:19])
            micros = int(iso_text[20:26]) if len(iso_text) == 27 else 0
        except ValueError:
            pass
        else:
            seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
            return (seconds * 1_000_000 + micros) / 1_000_000  # one rounding, as datetime's timestamp()
    # lazy: only a time of another form (an offset, fewer digits) needs the general parser
    from datetime import datetime

    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp()


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def judge(
    *,
    name: str,
    path: str,
    destinations: list[str],
    local: dict[str, Any],
    local_key: float | None,
    shown_local: str | None,
    exact_positions: bool,
    entry: dict[str, Any],
    replica_error: str | None,
    supervisor: dict[str, Any],
    threshold: float,
    stall: float,
    now: float,
    unserved: bool = False,
    observed_at: float | None = None,
    verify: dict[str, Any] | None = None,
    proof: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The verdict of one database, as the fields of ``status.DatabaseStatus`` in their order.

    ``local``: ``exists``, ``size``, ``wal_size``, ``updated_at`` (the files, stat'ed now),
    ``initialized`` and ``status`` (litestream's side). ``entry``: the database's observation
    (``observations.record`` has brought it up to date with the reading); ``replica_error``: the
    replica could not be read at the last reading. ``supervisor``: ``running``, ``pid``, ``state``,
    ``last_error``. ``observed_at``: the entry is the running supervisor's look from then.
    ``verify`` and ``proof``: the database's last verify and continuity records."""
    exists, initialized = bool(local["exists"]), bool(local["initialized"])
    running = bool(supervisor["running"])
    replica_pos = entry.get("replica_pos")
    has_reading = "read_at" in entry
    behind: bool | None = entry.get("behind") if has_reading and exists and initialized else None
    behind_since: float | None = float(entry["pending"]["since"]) if behind and entry.get("pending") else None
    if behind and behind_since is None:
        behind_since = now
    unshipped = entry.get("unshipped_since") if running and has_reading else None
    if unshipped is not None:
        behind = True
        behind_since = min(float(unshipped), behind_since if behind_since is not None else now)

    newest = entry.get("newest")
    newest_epoch = _epoch(newest) if newest else None
    lag = (max(0.0, now - behind_since) if behind_since is not None else 0.0) if behind is not None else None
    unread_for = now - float(entry["read_at"]) if has_reading else None
    as_of = f" (the supervisor's look {max(0.0, now - observed_at):.0f}s ago)" if observed_at is not None else ""

    verdict, reason = OK, "the replica holds everything litestream has read of the local database" + as_of
    if not exists:
        verdict, reason = ERROR, f"the database file {path} does not exist"
    elif unserved:
        verdict = DOWN
        reason = (
            f"the running supervisor (pid {supervisor['pid']}) does not replicate it: settings changed since it "
            "started; restart it to apply them (`backupctl stop`, then start)"
        )
    elif local.get("status") == "error":
        verdict, reason = ERROR, "litestream reports an error for this database"
    elif not initialized and replica_error is not None:
        # The unreachable replica is the cause to name, not "never replicated" (docs/status.md: error, exit 12).
        verdict, reason = ERROR, f"cannot read the replica: {replica_error}"
    elif not initialized:
        verdict, reason = NOT_INITIALIZED, "litestream has never replicated this database (start replication)"
    elif not has_reading:
        verdict = ERROR
        reason = f"cannot read the replica: {replica_error or 'no reading'}"
    elif proof is not None and proof.get("verdict") == "broken":
        verdict = BROKEN
        heals = "the supervisor heals it with a full snapshot" if running else "start replication to heal it"
        reason = (
            f"the replica is NOT whole: {proof.get('reason')} "
            f"(found {epoch_iso(proof.get('broken_since') or proof.get('checked_at'))}); "
            f"{heals}; restores of earlier points may miss rows"
        )
    elif not running:
        verdict, reason = DOWN, f"replication is not running (supervisor {supervisor['state']})"
    elif replica_error is None and entry.get("empty"):
        verdict, reason = NOT_INITIALIZED, "the replica is empty"
    elif unrestorable(entry, replica_error):
        # lazy: the wording's home is litestream.rows; `status --json` imports it only to say this
        from backupctl.litestream.rows import UNRESTORABLE

        heals = "the supervisor's continuity check writes a fresh snapshot" if running else "start replication"
        verdict, reason = BROKEN, f"{UNRESTORABLE}; {heals}"
    elif unshipped is not None and now - float(unshipped) > stall:
        verdict = STALE
        last_error = supervisor.get("last_error")
        cause = f"; litestream's last error: {last_error}" if last_error else " (it may be hung)"
        reason = (
            f"litestream has shipped nothing for {now - float(unshipped):.0f}s though the database was written "
            f"(no progress after {stall:g}s){cause}"
        )
    elif behind and lag is not None and lag > threshold:
        verdict, reason = STALE, f"the replica has been behind the local database for {lag:.0f}s (threshold {threshold:g}s)"
    elif replica_error is not None and unread_for is not None and unread_for > threshold:
        verdict = STALE
        reason = f"the replica could not be read for {unread_for:.0f}s (threshold {threshold:g}s): {replica_error}"
    elif replica_error is not None:
        reason = f"replica unreachable now ({replica_error}); position from {epoch_iso(entry['read_at'])}"
    elif behind:
        reason = f"the replica is {lag:.0f}s behind, within the threshold ({threshold:g}s)" + as_of

    return {
        "name": name,
        "path": path,
        "verdict": verdict,
        "reason": reason,
        "destinations": destinations,
        "size": local["size"],
        "wal_size": local["wal_size"] if exists else None,
        "local_position": shown_local,
        "local_updated_at": epoch_iso(local["updated_at"]),
        "replica_position": entry.get("replica_position"),
        "newest_backup": newest,
        # never negative: a backup written while this status read the replicas is newer than `now`
        "newest_backup_age_seconds": round(max(0.0, now - newest_epoch), 1) if newest_epoch is not None else None,
        "behind": behind,
        "behind_since": epoch_iso(behind_since),
        "lag_seconds": round(lag, 1) if lag is not None else None,
        "lag_txids": (
            max(0, int(local_key) - int(replica_pos))
            if exact_positions and local_key is not None and replica_pos is not None
            else None
        ),
        "oldest_restorable": entry.get("oldest"),
        "newest_snapshot": entry.get("newest_snapshot"),
        "snapshot_count": entry.get("snapshot_count"),
        "replica_error": replica_error,
        "replica_read_at": epoch_iso(entry.get("read_at")),
        "last_verify": verify,
        "observed_at": epoch_iso(observed_at),
    }


def local_files(path: str) -> dict[str, Any]:
    """The database's files as status shows them, stat'ed now: whether it exists, its size and its
    -wal's, and the last write to either."""
    size = wal_size = None
    mtimes = []
    for name in (path, path + "-wal"):
        try:
            st = os.stat(name)
        except OSError:
            continue
        mtimes.append(st.st_mtime)
        if name == path:
            size = st.st_size
        else:
            wal_size = st.st_size
    return {"exists": size is not None, "size": size, "wal_size": wal_size or 0, "updated_at": max(mtimes) if mtimes else None}
