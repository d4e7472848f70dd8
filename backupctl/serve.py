"""`backupctl serve`: the status report over HTTP (health check, Prometheus metrics, a status page).

A process of its own, never a thread of the supervisor (which stays single-threaded, see
supervisor.py). It asks the same question as `backupctl status` (``status.collect_status``)
in a background thread every ``refresh_interval`` (the sync interval, at least 1 s, at most
15 s) and answers every request from the latest report, so a request never waits on a
replica and ``/healthz`` turns 503 about one sync interval after replication stops. Each
answer says when its report was computed (``checked_at`` in the body, ``X-Status-Checked-At``).

- ``/healthz``: 200 with the report's verdicts when every database is ok, else 503 with the
  reasons (JSON). Also 503 while no report exists yet, or when the latest one is older than
  ``report_max_age`` (the refresh itself is stuck: we no longer know).
- ``/metrics``: Prometheus text (``prometheus_client``), see ``metrics_text``.
- ``/``: a status page for people, refreshing by itself, no external assets.
- ``/status.json``: the report exactly as `status --json` prints it.

Binding beyond loopback needs ``BACKUP_HTTP_TOKEN`` (Bearer, or the password of Basic auth),
compared with ``hmac.compare_digest``; without one `serve` refuses to start (ConfigError, exit
3). With a token set, every path needs it, on loopback too. Pages and metrics show database
names, paths, verdicts, reasons and destinations (bucket and host, as `status` does), never a
credential.

On every change of verdict (and on the first report) the refresh loop sends a notification
(``notify.py``) from a thread of its own, so a slow webhook never delays the next refresh.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backupctl import notify, state
from backupctl.errors import ConfigError, ConflictError
from backupctl.listings import LISTING_TIMEOUT
from backupctl.paths import project_state_dir
from backupctl.settings import Settings

Log = Callable[[str], None]

DEFAULT_ADDR = "127.0.0.1:9091"
ADDR_VARIABLE, TOKEN_VARIABLE = "BACKUP_HTTP_ADDR", "BACKUP_HTTP_TOKEN"
MIN_REFRESH, MAX_REFRESH = 1.0, 15.0  # never busier than once a second; never blind for longer than 15 s
MIN_TOKEN_LENGTH = 16
LITESTREAM_METRICS_TIMEOUT = 2.0  # seconds: a scrape must not hang on litestream's own endpoint
VERDICTS = ("ok", "stale", "down", "not-initialized", "error")
SUPERVISOR_STATES = (state.STARTING, state.RUNNING, state.BACKOFF, state.FATAL, state.STOPPING, state.STOPPED)

# Recorded checks exposed per database as backupctl_last_<kind>_* metrics and on the page:
# kind -> (reader of the last record by database path or name, the statuses that count as success).
# A restore drill's record plugs in with one line: "drill": (state.last_drill, {"passed"}).
CHECKS: dict[str, tuple[Callable[[Path, str], dict[str, Any] | None], frozenset[str]]] = {
    "verify": (state.last_verify, frozenset({"verified"})),
}


def refresh_interval(settings: Settings) -> float:
    """Seconds between two status reports: the sync interval, clamped to 1 s .. 15 s."""
    return min(max(settings.sync_seconds, MIN_REFRESH), MAX_REFRESH)


def report_max_age(interval: float) -> float:
    """A report older than this means the refresh is stuck (replica reads time out after LISTING_TIMEOUT)."""
    return max(60.0, 2 * LISTING_TIMEOUT + 3 * interval)


# --------------------------------------------------------------------------- binding


@dataclass(frozen=True)
class BindAddress:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False  # a host name: could resolve to anything

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def parse_addr(text: str, source: str = "--addr") -> BindAddress:
    """``127.0.0.1:9091``, ``[::1]:9091``, ``0.0.0.0:9091`` or ``:9091`` (every interface)."""
    raw = text.strip()
    hint = f"write {source} as HOST:PORT, like 127.0.0.1:9091 (loopback) or 0.0.0.0:9091 (needs {TOKEN_VARIABLE})"
    if raw.startswith("["):
        host, sep, port = raw[1:].partition("]:")
    else:
        host, sep, port = raw.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{source} {text!r} is not HOST:PORT with a port from 1 to 65535", hint)
    host = host or "0.0.0.0"  # noqa: S104 - ":9091" means every interface; a token is then required
    if any(c.isspace() for c in host) or "/" in host:
        raise ConfigError(f"{source} {text!r} has no valid host", hint)
    return BindAddress(host, int(port))


def check_exposure(addr: BindAddress, token: str | None, source: str) -> None:
    """Refuse a non-loopback address without a token, and a token too short to resist guessing."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{TOKEN_VARIABLE} is shorter than {MIN_TOKEN_LENGTH} characters",
            "generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    if not addr.loopback and not token:
        raise ConfigError(
            f"{source} {addr.host}:{addr.port} is reachable beyond this machine, and {TOKEN_VARIABLE} is not set",
            f"set {TOKEN_VARIABLE} in the .env (python3 -c 'import secrets; print(secrets.token_urlsafe(32))'), "
            "or bind to loopback: --addr 127.0.0.1:9091",
        )


def authorized(header: str | None, token: str | None) -> bool:
    """True without a token; else the Authorization header must carry it (Bearer, or Basic's password)."""
    if not token:
        return True
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    given = ""
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            given = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return False
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


# --------------------------------------------------------------------------- the latest report


@dataclass(frozen=True)
class Snapshot:
    """The latest status report and when it was computed (or why it could not be)."""

    report: Any | None  # status.StatusReport
    computed_at: float | None  # epoch seconds; None: nothing computed yet
    error: str | None = None  # the last refresh failed (the report, if any, is an older one)
    seconds: float = 0.0  # how long computing it took


class Monitor:
    """Recomputes the status report every ``interval`` seconds in a thread of its own."""

    def __init__(
        self,
        settings: Settings,
        binary_path: Path,
        *,
        interval: float,
        log: Log,
        collect: Callable[[], Any] | None = None,
        notify_changes: bool = True,
    ) -> None:
        self.settings = settings
        self.binary_path = binary_path
        self.interval = interval
        self.log = log
        self.notify_changes = notify_changes
        self._collect = collect or self._collect_status
        self._snapshot = Snapshot(None, None)
        self._last_key: tuple[Any, ...] | None = None
        self._last_verdict: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outbox: queue.Queue[notify.Event] = queue.Queue()  # one sender, so events arrive in order
        self._sender: threading.Thread | None = None

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot  # replaced whole, never mutated: a reader always sees one consistent report

    def _collect_status(self) -> Any:
        from backupctl.status import collect_status

        return collect_status(self.settings, self.binary_path)

    def refresh(self) -> Snapshot:
        from backupctl.errors import BackupctlError
        from backupctl.runner import scrub

        started = time.monotonic()
        try:
            report = self._collect()
        except BackupctlError as exc:
            message = scrub(exc.message, self.settings)
            self._snapshot = Snapshot(self._snapshot.report, self._snapshot.computed_at, message, time.monotonic() - started)
            self._changed(None, ("refresh-error",), message)
            return self._snapshot
        except Exception as exc:  # a bug must not end the server: report it as an error instead
            message = f"internal error while computing the status: {type(exc).__name__}"
            self.log(f"backupctl serve: {message}: {scrub(str(exc), self.settings)}")
            self._snapshot = Snapshot(self._snapshot.report, self._snapshot.computed_at, message, time.monotonic() - started)
            self._changed(None, ("refresh-error",), message)
            return self._snapshot
        self._snapshot = Snapshot(report, time.time(), None, time.monotonic() - started)
        key = (int(report.exit_code), *((d.name, d.verdict) for d in report.databases))
        self._changed(report, key, None)
        return self._snapshot

    def _changed(self, report: Any | None, key: tuple[Any, ...], error: str | None) -> None:
        if key == self._last_key:
            return
        previous = self._last_verdict
        self._last_key = key
        self._last_verdict = notify.overall_verdict(report) if report is not None else "error"
        # The first report counts as a change too: a monitor that starts on a failure says so.
        self.log(f"backupctl serve: verdict {previous or '(start)'} -> {self._last_verdict}")
        if self.notify_changes:
            # Sent from a thread of its own: a slow webhook (timeout, retries) never delays the next refresh.
            self._outbox.put(notify.verdict_event(report, previous, error))
            if self._sender is None:
                self._sender = threading.Thread(target=self._send_all, name="notify", daemon=True)
                self._sender.start()

    def _send_all(self) -> None:
        while True:
            notify.send(self.settings, self._outbox.get(), log=self.log)

    def run(self) -> None:
        """Refresh until ``stop()``: one report right away, then one every ``interval`` seconds."""
        while not self._stop.is_set():
            started = time.monotonic()
            self.refresh()
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="status-refresh", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


# --------------------------------------------------------------------------- answers


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z") if epoch else None


def _epoch(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def health(snapshot: Snapshot, interval: float, now: float | None = None) -> tuple[int, dict[str, Any]]:
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


def metrics_text(snapshot: Snapshot, settings: Settings, interval: float, now: float | None = None) -> bytes:
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
        family("status_exit_code", "what backupctl status would exit with (0 ok, 10 stale, 11 down, 12 error)", ()).add_metric(
            [], float(int(report.exit_code))
        )
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


# --------------------------------------------------------------------------- the page


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


def page_html(snapshot: Snapshot, settings: Settings, interval: float, now: float | None = None) -> str:
    """The status page: one row per database, colour for the verdict, ages in words; refreshes itself."""
    import jinja2

    from backupctl.render import default_templates_dir

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


# --------------------------------------------------------------------------- the server


class Server:
    """The HTTP side: a ThreadingHTTPServer answering from ``monitor.snapshot``."""

    def __init__(self, settings: Settings, monitor: Monitor, addr: BindAddress, token: str | None, log: Log) -> None:
        import socket
        from http.server import ThreadingHTTPServer

        from backupctl.runner import scrub

        handler = _handler_class(settings, monitor, token, log)

        class _HTTPServer(ThreadingHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in addr.host else socket.AF_INET

            def handle_error(self, request: Any, client_address: Any) -> None:
                import sys

                exc = sys.exc_info()[1]
                if not isinstance(exc, ConnectionError | TimeoutError):  # a client that left is not news
                    log(f"backupctl serve: error answering {client_address[0]}: {type(exc).__name__}")

        try:
            self.httpd = _HTTPServer((addr.host, addr.port), handler)
        except OSError as exc:
            raise ConflictError(
                f"cannot listen on {addr.host}:{addr.port}: {scrub(exc.strerror or str(exc), settings)}",
                f"another process uses the port, or the address is not this machine's: choose one with --addr or {ADDR_VARIABLE}",
            ) from None
        self.addr = addr
        host, port = self.httpd.server_address[:2]
        self.bound = BindAddress(str(host), int(port))  # port 0 picks a free one (tests)

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.5)

    def shutdown(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler_class(settings: Settings, monitor: Monitor, token: str | None, log: Log) -> type:
    from http.server import BaseHTTPRequestHandler

    from backupctl import __version__

    class Handler(BaseHTTPRequestHandler):
        server_version = f"backupctl/{__version__}"
        sys_version = ""
        timeout = 30  # seconds a client may take to send its request: a stalled one must not hold a thread forever

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # no access log: a probe every few seconds would drown the useful lines

        def _send(self, code: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
            checked = monitor.snapshot.report.checked_at if monitor.snapshot.report is not None else None
            if checked:
                self.send_header("X-Status-Checked-At", checked)
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, code: int, document: dict[str, Any]) -> None:
            self._send(code, (json.dumps(document, indent=2, default=str) + "\n").encode(), "application/json")

        def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
            self.do_GET()

        def do_GET(self) -> None:  # noqa: N802
            if not authorized(self.headers.get("Authorization"), token):
                self._send(
                    401,
                    b'{"ok": false, "error": "authentication required: send BACKUP_HTTP_TOKEN as a Bearer token"}\n',
                    "application/json",
                    {"WWW-Authenticate": 'Basic realm="backupctl", charset="UTF-8"'},
                )
                return
            path = self.path.split("?", 1)[0]
            snapshot = monitor.snapshot
            try:
                if path in ("/healthz", "/health"):
                    code, body = health(snapshot, monitor.interval)
                    self._json(code, body)
                elif path == "/metrics":
                    from prometheus_client import CONTENT_TYPE_LATEST

                    self._send(200, metrics_text(snapshot, settings, monitor.interval), CONTENT_TYPE_LATEST)
                elif path == "/status.json":
                    if snapshot.report is None:
                        self._json(503, {"ok": False, "error": snapshot.error or "no status report yet"})
                    else:
                        self._json(200, snapshot.report.to_json())
                elif path in ("/", "/index.html"):
                    html = page_html(snapshot, settings, monitor.interval)
                    self._send(200, html.encode("utf-8"), "text/html; charset=utf-8")
                else:
                    self._json(404, {"ok": False, "error": "no such page: try / /healthz /metrics /status.json"})
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as exc:  # one broken answer must not end the server
                log(f"backupctl serve: internal error answering {path}: {type(exc).__name__}: {exc}")
                try:
                    self._json(500, {"ok": False, "error": f"internal error: {type(exc).__name__}"})
                except OSError:
                    pass

        def do_POST(self) -> None:  # noqa: N802
            self._json(405, {"ok": False, "error": "read-only: use GET"})

    return Handler


def run(
    settings: Settings,
    binary_path: Path,
    addr: BindAddress,
    *,
    addr_source: str,
    log: Log,
    stop: threading.Event,
    on_ready: Callable[[BindAddress, float], None] | None = None,
) -> None:
    """Serve until ``stop`` is set. Raises ConfigError (exposure, notify settings) or ConflictError (port)."""
    token = settings.credentials.http_token
    check_exposure(addr, token, addr_source)
    bad = notify.problems(settings)
    if bad:
        raise ConfigError(bad[0], "fix the URL in the .env, or unset it", details=bad[1:])
    interval = refresh_interval(settings)
    monitor = Monitor(settings, binary_path, interval=interval, log=log)
    server = Server(settings, monitor, addr, token, log)
    monitor.start()
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    try:
        if on_ready is not None:
            on_ready(server.bound, interval)
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        monitor.stop()
