"""What `backupctl serve` answers, computed from the latest status report (a :class:`StatusSnapshot`).

- :func:`health`: ``/healthz``, 200 only for a fresh report in which every database is ok, else
  503 with the reasons; also 503 while no report exists yet, or when the latest one is older than
  :func:`report_max_age` (the refresh itself is stuck: we no longer know).
- :func:`metrics_text`: ``/metrics``, Prometheus text (``prometheus_client``); with
  ``BACKUP_LITESTREAM_METRICS_ADDR`` litestream's own metrics are passed on
  (:func:`litestream_metrics`).
- :func:`page_html`: ``/``, a status page for people, refreshing by itself, no external assets.

Pure functions of the snapshot, the settings and the time (``now`` is injectable): the HTTP
server in :mod:`backupctl.serve.server` only picks one and sends what it returns. They show database
names, paths, verdicts, reasons and destinations (bucket and host, as `status` does), never a
credential.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backupctl.checks import notify
from backupctl.config.render import default_templates_dir
from backupctl.config.settings import Settings
from backupctl.host import state
from backupctl.litestream.listings import LISTING_TIMEOUT
from backupctl.paths import project_state_dir

LITESTREAM_METRICS_TIMEOUT = 2.0  # seconds: a scrape must not hang on litestream's own endpoint
VERDICTS = ("ok", "stale", "down", "not-initialized", "error", "broken")
SUPERVISOR_STATES = (state.STARTING, state.RUNNING, state.BACKOFF, state.FATAL, state.STOPPING, state.STOPPED)


# Recorded checks exposed per database as backupctl_last_<kind>_* metrics and on the page:
# kind -> (reader of the last record by database path or name, the statuses that count as success).
# A restore drill's record plugs in with one line: "drill": (state.last_drill, {"passed"}).
CHECKS: dict[str, tuple[Callable[[Path, str], dict[str, Any] | None], frozenset[str]]] = {
    "verify": (state.last_verify, frozenset({"verified"})),
}


def report_max_age(interval: float) -> float:
    """A report older than this means the refresh is stuck (replica reads time out after LISTING_TIMEOUT)."""
    return max(60.0, 2 * LISTING_TIMEOUT + 3 * interval)


@dataclass(frozen=True)
class StatusSnapshot:
    """The latest status report and when it was computed (or why it could not be)."""

    report: Any | None  # status.StatusReport
    computed_at: float | None  # epoch seconds; None: nothing computed yet
    error: str | None = None  # the last refresh failed (the report, if any, is an older one)
    seconds: float = 0.0  # how long computing it took


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if epoch else None


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def health(snapshot: StatusSnapshot, interval: float, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of ``/healthz``: 200 only for a fresh report in which every database is ok."""
    now = time.time() if now is None else now
    report = snapshot.report
    if report is None or snapshot.computed_at is None:
        reason = snapshot.error or "starting: the first status report is being computed"
        return 503, {"ok": False, "verdict": "unknown", "reasons": [reason], "checked_at": None, "age_seconds": None}
    age = round(now - snapshot.computed_at, 1)
    body: dict[str, Any] = {
        "ok": int(report.exit_code) == 0,
        "verdict": notify.overall_verdict(report),
        "exit_code": int(report.exit_code),
        "checked_at": report.checked_at,
        "age_seconds": age,
        "supervisor": {"state": report.supervisor.state, "running": report.supervisor.running},
        "databases": [{"name": d.name, "verdict": d.verdict, "reason": d.reason} for d in report.databases],
        "reasons": [f"{d.name}: {d.verdict}: {d.reason}" for d in report.databases if d.verdict != "ok"],
    }
    if not report.databases and not report.supervisor.running:
        body["reasons"].append(f"replication is not running (supervisor {report.supervisor.state})")
    limit = report_max_age(interval)
    if snapshot.error:
        # collect_status turns replica trouble into verdicts; an exception is worse (binary, config): say so now.
        body["ok"] = False
        body["reasons"].append(f"the status could not be computed: {snapshot.error} (the verdicts are {age:.0f}s old)")
    elif age > limit:
        body["ok"] = False
        body["reasons"].append(f"the status could not be refreshed for {age:.0f}s (limit {limit:g}s)")
    return (200 if body["ok"] else 503), body


def metrics_text(snapshot: StatusSnapshot, settings: Settings, interval: float, now: float | None = None) -> bytes:
    """The Prometheus exposition (text format 0.0.4) of the latest report.

    Labels are ``database`` (the file name, unique per project), plus ``verdict``, ``state`` or
    ``status`` on the one-hot families; never a path, URL or credential. Ages are computed at
    scrape time from the timestamps in the report; a value the report does not know (no
    reading of the replica yet, 0.3 has no TXIDs) is left out rather than exported as 0.
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    now = time.time() if now is None else now
    report = snapshot.report
    families: list[GaugeMetricFamily] = []
    passed_on = b""

    def family(name: str, doc: str, labels: tuple[str, ...] = ("database",), unit: str = "") -> GaugeMetricFamily:
        found = GaugeMetricFamily(f"backupctl_{name}", doc, labels=list(labels), unit=unit)
        families.append(found)
        return found

    fresh = snapshot.computed_at is not None and now - snapshot.computed_at <= report_max_age(interval)
    family("status_up", "1 when a status report exists and is recent enough to trust", ()).add_metric([], 1.0 if fresh else 0.0)
    if settings.values.get("litestream_metrics_addr"):
        answered, passed_on = litestream_metrics(settings)
        up = family("litestream_metrics_up", "1 when litestream's own /metrics answered (BACKUP_LITESTREAM_METRICS_ADDR)", ())
        up.add_metric([], 1.0 if answered else 0.0)
    if report is not None and snapshot.computed_at is not None:
        family("status_ok", "1 when every database is ok (backupctl status exits 0)", ()).add_metric(
            [], 1.0 if int(report.exit_code) == 0 else 0.0
        )
        what = "what backupctl status would exit with (0 ok, 10 stale, 11 down, 12 error, 13 broken)"
        family("status_exit_code", what, ()).add_metric([], float(int(report.exit_code)))
        family("status_checked_timestamp_seconds", "when this report was taken (checked_at of status --json)", ()).add_metric(
            [], _epoch(report.checked_at) or snapshot.computed_at
        )
        family("status_refresh_duration_seconds", "how long computing the report took", ()).add_metric([], snapshot.seconds)

        sup = report.supervisor
        family("supervisor_running", "1 when the supervisor runs (state starting or running)", ()).add_metric(
            [], 1.0 if sup.running else 0.0
        )
        st = family("supervisor_state", "the supervisor's state (one series per state, 1 for the current one)", ("state",))
        for name in SUPERVISOR_STATES:
            st.add_metric([name], 1.0 if sup.state == name else 0.0)
        family("supervisor_restarts", "litestream restarts by the current supervisor", ()).add_metric([], float(sup.restarts))
        if sup.uptime_seconds is not None:
            family("supervisor_uptime_seconds", "how long the current litestream has run", ()).add_metric([], sup.uptime_seconds)

        ok = family("database_ok", "1 when the database's verdict is ok")
        verdict = family("database_verdict", "the database's verdict (one series per verdict, 1 for the current one)",
                         ("database", "verdict"))  # fmt: skip
        behind = family("replica_behind", "1 when the replica does not yet hold the local database's position")
        lag = family("replica_lag_seconds", "how long the replica has been behind the local database (0 when caught up)")
        lag_tx = family("replica_lag_txids", "how many TXIDs the replica is behind (litestream 0.5 only)")
        newest = family("newest_backup_timestamp_seconds", "time of the newest file in the replica")
        newest_age = family("newest_backup_age_seconds", "age of the newest file in the replica, at scrape time")
        oldest = family("restorable_oldest_timestamp_seconds", "the oldest point the database can be restored to")
        window = family("restorable_window_seconds", "newest backup minus oldest restorable point")
        snaps = family("snapshots", "snapshots in the replica")
        size = family("database_size_bytes", "size of the local database file")
        wal = family("wal_size_bytes", "size of the local -wal file")
        for d in report.databases:
            labels = [d.name]
            ok.add_metric(labels, 1.0 if d.verdict == "ok" else 0.0)
            for name in VERDICTS:
                verdict.add_metric([d.name, name], 1.0 if d.verdict == name else 0.0)
            if d.behind is not None:
                behind.add_metric(labels, 1.0 if d.behind else 0.0)
            if d.lag_seconds is not None:
                lag.add_metric(labels, d.lag_seconds)
            if d.lag_txids is not None:
                lag_tx.add_metric(labels, float(d.lag_txids))
            newest_ts, oldest_ts = _epoch(d.newest_backup), _epoch(d.oldest_restorable)
            if newest_ts is not None:
                newest.add_metric(labels, newest_ts)
                newest_age.add_metric(labels, max(0.0, now - newest_ts))
            if oldest_ts is not None:
                oldest.add_metric(labels, oldest_ts)
            if newest_ts is not None and oldest_ts is not None:
                window.add_metric(labels, max(0.0, newest_ts - oldest_ts))
            if d.snapshot_count is not None:
                snaps.add_metric(labels, float(d.snapshot_count))
            if d.size is not None:
                size.add_metric(labels, float(d.size))
            if d.wal_size is not None:
                wal.add_metric(labels, float(d.wal_size))

        state_dir = project_state_dir(settings.project_dir)
        for kind, (reader, good) in CHECKS.items():
            success = family(f"last_{kind}_success", f"1 when the last {kind} succeeded ({', '.join(sorted(good))})")
            when = family(f"last_{kind}_timestamp_seconds", f"when the last {kind} finished")
            result = family(f"last_{kind}_status", f"the last {kind}'s result (1 for the recorded one)", ("database", "status"))
            for d in report.databases:
                record = reader(state_dir, d.path) or reader(state_dir, d.name)
                if not record:
                    continue
                success.add_metric([d.name], 1.0 if record.get("status") in good else 0.0)
                if isinstance(record.get("checked_at"), int | float):
                    when.add_metric([d.name], float(record["checked_at"]))
                result.add_metric([d.name, str(record.get("status"))], 1.0)

    class _Report:
        def collect(self):  # noqa: ANN202 - prometheus_client's collector protocol
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Report())
    return generate_latest(registry) + passed_on


def litestream_metrics(settings: Settings, timeout: float = LITESTREAM_METRICS_TIMEOUT) -> tuple[bool, bytes]:
    """litestream's own exposition from BACKUP_LITESTREAM_METRICS_ADDR (its ``addr:``), passed on as it is.

    (False, b"") when it does not answer (no supervisor running, or one started before the setting)
    or answers something that is not Prometheus text: one broken source never breaks the scrape.
    """
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    host, _, port = str(settings.values["litestream_metrics_addr"]).rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - every interface: ask it on loopback
        host = "127.0.0.1"
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http URL built above
            body = response.read(4 * 1024 * 1024)
        text = body.decode("utf-8")
        names = {f.name for f in text_string_to_metric_families(text)}
    except (OSError, ValueError, UnicodeDecodeError):
        return False, b""
    if any(name.startswith("backupctl_") for name in names):
        return False, b""  # would collide with ours
    return True, body if body.endswith(b"\n") else body + b"\n"


def words(seconds: float | None) -> str:
    """An age in words: "just now", "42 seconds", "5 minutes", "3 hours", "2 days"."""
    if seconds is None:
        return "never"
    s = max(0, int(seconds))
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if s >= size:
            n = s // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return "0 seconds"


def ago(epoch: float | None, now: float) -> str:
    if epoch is None:
        return "never"
    delta = now - epoch
    if abs(delta) < 1:
        return "just now"
    return f"{words(delta)} ago" if delta > 0 else f"in {words(-delta)}"


def _lag_text(d: Any, now: float) -> str:
    """The replica column: caught up, how far behind, or unreadable since when."""
    if d.replica_error:
        return f"cannot be read now (last read {ago(_epoch(d.replica_read_at), now)})"
    if d.lag_seconds is None:
        return "unknown"
    if not d.behind:
        return "caught up"
    return f"{words(d.lag_seconds)} behind" + (f" ({d.lag_txids} TXIDs)" if d.lag_txids else "")


def page_html(snapshot: StatusSnapshot, settings: Settings, interval: float, now: float | None = None) -> str:
    """The status page: one row per database, colour for the verdict, ages in words; refreshes itself."""
    import jinja2


    now = time.time() if now is None else now
    code, body = health(snapshot, interval, now)
    report = snapshot.report
    rows = []
    state_dir = project_state_dir(settings.project_dir)
    for d in report.databases if report is not None else []:
        newest_ts, oldest_ts = _epoch(d.newest_backup), _epoch(d.oldest_restorable)
        checks = []
        for kind, (reader, good) in CHECKS.items():
            record = reader(state_dir, d.path) or reader(state_dir, d.name)
            when = record.get("checked_at") if record else None
            checks.append({
                "kind": kind,
                "status": record.get("status") if record else None,
                "good": bool(record and record.get("status") in good),
                "ago": ago(float(when), now) if isinstance(when, int | float) else "never",
                "at": _iso(float(when)) if isinstance(when, int | float) else None,
                "reason": record.get("reason") if record and record.get("status") not in good else None,
            })  # fmt: skip
        rows.append({
            "name": d.name,
            "path": d.path,
            "verdict": d.verdict,
            "reason": d.reason,
            "destinations": d.destinations,
            "newest_ago": ago(newest_ts, now),
            "newest_at": d.newest_backup,
            "oldest_ago": ago(oldest_ts, now),
            "oldest_at": d.oldest_restorable,
            "window": words(newest_ts - oldest_ts) if newest_ts is not None and oldest_ts is not None else None,
            "lag": _lag_text(d, now),
            "checks": checks,
        })  # fmt: skip
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(default_templates_dir() / "serve")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    sup = report.supervisor if report is not None else None
    return env.get_template("status.html.j2").render(
        project=settings.project_dir.name,
        ok=code == 200,
        verdict=body["verdict"],
        reasons=body["reasons"],
        checked_ago=ago(snapshot.computed_at, now) if snapshot.computed_at else None,
        checked_at=body.get("checked_at"),
        refresh=max(5, int(round(interval))),  # a person reads it: not every second
        supervisor=None if sup is None else {
            "state": sup.state, "running": sup.running, "pid": sup.pid, "restarts": sup.restarts,
            "uptime": words(sup.uptime_seconds) if sup.uptime_seconds is not None else None,
        },
        litestream_version=report.litestream_version if report is not None else settings.version,
        rows=rows,
    )  # fmt: skip
