"""`backupctl serve`: the status report over HTTP (health check, Prometheus metrics, a status page).

A process of its own, never a thread of the supervisor (which stays single-threaded, see
supervisor.py). Its :class:`Monitor` asks the same question as `backupctl status`
(``status.collect_status``) in a background thread every ``refresh_interval`` (the sync
interval, at least 1 s, at most 15 s), and its :class:`Server` answers every request from the
latest report, so a request never waits on a replica and ``/healthz`` turns 503 about one sync
interval after replication stops. Each answer says when its report was computed (``checked_at``
in the body, ``X-Status-Checked-At``). What each path answers is :mod:`backupctl.serve_answers`:

- ``/healthz``: 200 with the report's verdicts when every database is ok, else 503 with the reasons (JSON).
- ``/metrics``: Prometheus text.
- ``/``: a status page for people.
- ``/status.json``: the report exactly as `status --json` prints it.

Binding beyond loopback needs ``BACKUP_HTTP_TOKEN`` (Bearer, or the password of Basic auth),
compared with ``hmac.compare_digest``; without one `serve` refuses to start (ConfigError, exit
3). With a token set, every path needs it, on loopback too.

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
from pathlib import Path
from typing import Any

from backupctl import notify
from backupctl.errors import ConfigError, ConflictError
from backupctl.serve_answers import Snapshot, health, metrics_text, page_html
from backupctl.settings import Settings

Log = Callable[[str], None]

DEFAULT_ADDR = "127.0.0.1:9091"
ADDR_VARIABLE, TOKEN_VARIABLE = "BACKUP_HTTP_ADDR", "BACKUP_HTTP_TOKEN"
MIN_REFRESH, MAX_REFRESH = 1.0, 15.0  # never busier than once a second; never blind for longer than 15 s
MIN_TOKEN_LENGTH = 16


def refresh_interval(settings: Settings) -> float:
    """Seconds between two status reports: the sync interval, clamped to 1 s .. 15 s."""
    return min(max(settings.sync_seconds, MIN_REFRESH), MAX_REFRESH)


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


def bind_address(settings: Settings, addr: str | None) -> tuple[BindAddress, str]:
    """Where to listen and what said so: ``addr`` (``--addr``), else BACKUP_HTTP_ADDR, else the default."""
    if addr is not None:
        where, source = addr, "--addr"
    elif settings.values.get("http_addr"):
        where, source = str(settings.values["http_addr"]), ADDR_VARIABLE
    else:
        where, source = DEFAULT_ADDR, "--addr"
    return parse_addr(where, source), source


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be BACKUP_HTTP_TOKEN, or None. Never quotes the token: it is a secret.

    A token is one word of visible characters, at least MIN_TOKEN_LENGTH long. Blank is refused
    first (16 spaces pass a length check but guard nothing), then any whitespace or control
    character: clients and proxies strip or fold whitespace in header values and cannot send
    control characters at all, so such a token would never match, or match something shorter.
    """
    if not token.strip():
        return f"{TOKEN_VARIABLE} is blank (empty or only whitespace)"
    if any(c.isspace() or not c.isprintable() for c in token):
        return f"{TOKEN_VARIABLE} contains whitespace or a control character"
    if len(token) < MIN_TOKEN_LENGTH:
        return f"{TOKEN_VARIABLE} is shorter than {MIN_TOKEN_LENGTH} characters"
    return None


def check_exposure(addr: BindAddress, token: str | None, source: str) -> None:
    """Refuse a non-loopback address without a token, and a token that is blank, not one word, or too short."""
    problem = token_problem(token) if token is not None else None
    if problem:
        raise ConfigError(
            problem,
            f"use {MIN_TOKEN_LENGTH} or more visible characters without spaces; "
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
