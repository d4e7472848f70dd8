"""`backupctl serve`: the status report over HTTP (health check, Prometheus metrics, a status page).

A process of its own, never a thread of the supervisor (which stays single-threaded, see
supervisor.py). Its :class:`Monitor` asks the same question as `backupctl status`
(``status.collect_status``) in a background thread every ``refresh_interval`` (the sync
interval, at least 1 s, at most 15 s), and its :class:`Server` answers every request from the
latest report, so a request never waits on a replica and ``/healthz`` turns 503 about one sync
interval after replication stops. Each answer says when its report was computed (``checked_at``
in the body, ``X-Status-Checked-At``). What each path answers is :mod:`backupctl.serve.answers`:

- ``/healthz``: 200 with the report's verdicts when every database is ok, else 503 with the reasons (JSON).
- ``/metrics``: Prometheus text.
- ``/``: a status page for people.
- ``/status.json``: the report exactly as `status --json` prints it.

Binding beyond loopback needs ``BACKUP_HTTP_TOKEN`` (Bearer, or the password of Basic auth),
compared with ``hmac.compare_digest``; without one, or with one that is blank, holds whitespace
or is shorter than 16 characters, `serve` refuses to start (ConfigError, exit 3). With a token
set, every path needs it, on loopback too.

Limits (:class:`Server`): a fixed pool of WORKERS threads answers complete requests; one I/O
thread reads every request, which must arrive whole within REQUEST_DEADLINE of the connection;
beyond MAX_CONNECTIONS open connections, new ones wait in the listen backlog.

On every change of verdict (and on the first report) the refresh loop sends a notification
(``notify.py``) from a thread of its own, so a slow webhook never delays the next refresh.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import io
import ipaddress
import json
import queue
import re
import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backupctl import __version__
from backupctl.checks import notify
from backupctl.checks.status import collect_status
from backupctl.config.settings import Settings
from backupctl.errors import BackupctlError, ConfigError, ConflictError
from backupctl.redact import scrub
from backupctl.serve.answers import StatusSnapshot, health, metrics_text, page_html

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
        self._snapshot = StatusSnapshot(None, None)
        self._last_key: tuple[Any, ...] | None = None
        self._last_verdict: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outbox: queue.Queue[notify.Event] = queue.Queue()  # one sender, so events arrive in order
        self._sender: threading.Thread | None = None

    @property
    def snapshot(self) -> StatusSnapshot:
        return self._snapshot  # replaced whole, never mutated: a reader always sees one consistent report

    def _collect_status(self) -> Any:
        return collect_status(self.settings, self.binary_path)

    def refresh(self) -> StatusSnapshot:
        started = time.monotonic()
        try:
            report = self._collect()
        except BackupctlError as exc:
            return self._refresh_failed(scrub(exc.message, self.settings), started)
        except Exception as exc:  # a bug must not end the server: report it as an error instead
            message = f"internal error while computing the status: {type(exc).__name__}"
            self.log(f"backupctl serve: {message}: {scrub(str(exc), self.settings)}")
            return self._refresh_failed(message, started)
        self._snapshot = StatusSnapshot(report, time.time(), None, time.monotonic() - started)
        key = (int(report.exit_code), *((d.name, d.verdict) for d in report.databases))
        self._changed(report, key, None)
        return self._snapshot

    def _refresh_failed(self, message: str, started: float) -> StatusSnapshot:
        """The last report stands, with the refresh's error beside it."""
        previous = self._snapshot
        self._snapshot = StatusSnapshot(previous.report, previous.computed_at, message, time.monotonic() - started)
        self._changed(None, ("refresh-error",), message)
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

# Limits (docs/monitoring.md, "Limits"). An answer comes from memory in milliseconds, so a few
# workers suffice; what must never occupy one is a client still sending its request.
WORKERS = 16  # threads answering complete requests (/metrics may wait up to 2 s on litestream's own endpoint)
MAX_CONNECTIONS = 512  # open at once (being read, queued or answered); further ones wait in the listen backlog
LISTEN_BACKLOG = 1024  # the kernel caps it at net.core.somaxconn (4096 on current Linux, 128 on older ones)
REQUEST_DEADLINE = 10.0  # seconds from accept for the whole request to arrive, however slowly it trickles in
SEND_TIMEOUT = 10.0  # seconds for an answer to be sent: a client that stops reading cannot keep a worker longer
MAX_REQUEST_HEAD = 64 * 1024  # request line and headers; probes, Prometheus and browsers send well under 8 KiB
_HEAD_END = re.compile(rb"\n\r?\n")  # the blank line after the headers (http.server takes bare LF lines too)


def _bare_answer(code: int, reason: str) -> bytes:
    """An answer the I/O thread sends itself, without a worker, just before closing the connection."""
    return f"HTTP/1.0 {code} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()


def _connection_limit() -> int:
    """MAX_CONNECTIONS, or fewer when the process may open fewer files (a socket each; half stay for the rest)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, ValueError, OSError):
        return MAX_CONNECTIONS
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft // 2))


@dataclass(eq=False)  # identity: a connection is kept in a set
class _Connection:
    """An accepted connection: its socket, the client, its request's deadline and what it sent so far."""

    sock: socket.socket
    client: Any
    deadline: float  # time.monotonic() by which the whole request must have arrived
    head: bytearray = field(default_factory=bytearray)


class _RequestReader(io.RawIOBase):
    """http.server's rfile: the head the I/O thread read, then the socket, until the request's deadline.

    A deadline for the whole request, not a timeout per read: each read waits only for what is
    left of it, so a client sending a byte now and then is cut off all the same (TimeoutError,
    which http.server answers by closing the connection). From the socket only a body is read.
    """

    def __init__(self, sock: socket.socket, head: bytes, deadline: float, send_timeout: float) -> None:
        self._sock, self._head, self._deadline, self._send_timeout = sock, memoryview(head), deadline, send_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive within its deadline")
        self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        finally:
            self._sock.settimeout(self._send_timeout)  # what the answer's writes may take


class _SocketWriter(io.BufferedIOBase):
    """http.server's wfile: each write is sent whole (sendall), within the socket's timeout (SEND_TIMEOUT)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes


class Server:
    """The HTTP side: one I/O thread reads requests, a fixed pool of workers answers them from ``monitor.snapshot``.

    Not ThreadingHTTPServer: it starts a thread per connection, and that thread waits for the
    client's request. 300 clients behind its 5-connection backlog lost 1 request in 8 to timeouts,
    and a client sending a header line every few seconds held its thread for ever (177 of them
    held 177 threads). Here the I/O thread reads every request's head without blocking, against
    a deadline counted from accept; only complete requests reach a worker, so a slow or stalled
    client costs a socket and a few bytes until its deadline, never a thread. Beyond
    MAX_CONNECTIONS open connections nothing more is accepted: new ones wait in the listen backlog.
    One request per connection (HTTP/1.0), so no idle keep-alive connection holds anything either.
    """

    def __init__(
        self,
        settings: Settings,
        monitor: Monitor,
        addr: BindAddress,
        token: str | None,
        log: Log,
        *,
        deadline: float = REQUEST_DEADLINE,
        workers: int = WORKERS,
    ) -> None:

        self._handler = _handler_class(settings, monitor, token, log)
        self._log = log
        self.deadline = deadline
        self.workers = workers
        self.max_connections = _connection_limit()
        try:
            listener = socket.socket(socket.AF_INET6 if ":" in addr.host else socket.AF_INET, socket.SOCK_STREAM)
        except OSError as exc:
            raise ConflictError(
                f"cannot listen on {addr.host}:{addr.port}: {exc.strerror or exc}", "choose another address with --addr"
            ) from None
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart can bind again at once
            listener.bind((addr.host, addr.port))
            listener.listen(LISTEN_BACKLOG)
        except OSError as exc:
            listener.close()
            raise ConflictError(
                f"cannot listen on {addr.host}:{addr.port}: {scrub(exc.strerror or str(exc), settings)}",
                f"another process uses the port, or the address is not this machine's: choose one with --addr or {ADDR_VARIABLE}",
            ) from None
        listener.setblocking(False)
        self._listener = listener
        # A worker that frees a connection slot, or shutdown(), wakes the I/O thread from select().
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._queue: queue.SimpleQueue[_Connection | None] = queue.SimpleQueue()  # complete requests, for the workers
        self._lock = threading.Lock()
        self._open = 0  # connections accepted and not yet closed
        self._running = False
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._workers: list[threading.Thread] = []
        self.addr = addr
        host, port = listener.getsockname()[:2]
        self.bound = BindAddress(str(host), int(port))  # port 0 picks a free one (tests)

    # ----------------------------------------------------------------- the I/O thread

    def serve_forever(self) -> None:
        """Accept and read requests until shutdown(); each complete one goes to a worker."""
        with self._lock:
            if self._stopping.is_set():
                return
            self._running = True
        for n in range(self.workers):
            worker = threading.Thread(target=self._work, name=f"http-worker-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)
        selector = selectors.DefaultSelector()
        selector.register(self._wake_r, selectors.EVENT_READ)
        reading: set[_Connection] = set()
        accepting, paused_until = False, 0.0
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                # Read without the lock: a stale count only shifts the decision by one turn of the loop.
                want = self._open < self.max_connections and now >= paused_until
                if want != accepting:
                    if want:
                        selector.register(self._listener, selectors.EVENT_READ)
                    else:
                        selector.unregister(self._listener)
                    accepting = want
                wake_at = min((c.deadline for c in reading), default=None)
                if paused_until > now:
                    wake_at = paused_until if wake_at is None else min(wake_at, paused_until)
                try:
                    for key, _ in selector.select(None if wake_at is None else max(0.0, wake_at - now)):
                        if key.fileobj is self._listener:
                            paused_until = self._accept(selector, reading)
                        elif key.fileobj is self._wake_r:
                            self._drain_wake()
                        else:
                            self._read(selector, reading, key.data)
                except Exception as exc:  # a bug here must not leave a process that listens but never answers
                    self._log(f"backupctl serve: internal error in the HTTP server: {type(exc).__name__}: {exc}")
                    self._stopping.wait(0.1)  # and must not spin if it repeats
                now = time.monotonic()
                for conn in [c for c in reading if c.deadline <= now]:
                    # However it trickled in, this request had its time: slowloris ends here.
                    self._drop(selector, reading, conn, _bare_answer(408, "Request Timeout"))
        finally:
            for conn in list(reading):
                self._drop(selector, reading, conn)
            selector.close()
            self._stopped.set()

    def _accept(self, selector: selectors.BaseSelector, reading: set[_Connection]) -> float:
        """Accept what waits, up to the limit. Returns until when to stop accepting (0.0: no pause)."""
        for _ in range(64):  # then read the others: a flood of connects must not starve requests half read
            if self._open >= self.max_connections:
                break
            try:
                sock, client = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionAbortedError:
                continue
            except OSError:
                # Out of file descriptors (EMFILE, ENFILE): the listener stays readable, so pause
                # rather than spin; the connection waits in the backlog meanwhile.
                return time.monotonic() + 0.1
            sock.setblocking(False)
            conn = _Connection(sock, client, time.monotonic() + self.deadline)
            with self._lock:
                self._open += 1
            selector.register(sock, selectors.EVENT_READ, conn)
            reading.add(conn)
        return 0.0

    def _read(self, selector: selectors.BaseSelector, reading: set[_Connection], conn: _Connection) -> None:
        """Read what the client sent; a complete head goes to the workers, a client that left is closed."""
        try:
            data = conn.sock.recv(16384)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(selector, reading, conn)
            return
        start = max(0, len(conn.head) - 2)  # the blank line may begin in what came before
        conn.head += data
        if _HEAD_END.search(conn.head, start):
            selector.unregister(conn.sock)
            reading.discard(conn)
            self._queue.put(conn)
        elif len(conn.head) > MAX_REQUEST_HEAD:
            self._drop(selector, reading, conn, _bare_answer(431, "Request Header Fields Too Large"))

    def _drop(self, selector: selectors.BaseSelector, reading: set[_Connection], conn: _Connection, answer: bytes = b"") -> None:
        """Close a connection still being read, after a short answer if there is one."""
        selector.unregister(conn.sock)
        reading.discard(conn)
        if answer:
            try:
                conn.sock.send(answer)  # best effort: the socket is non-blocking, a full buffer loses it
            except OSError:
                pass
        self._close(conn)

    def _close(self, conn: _Connection) -> None:
        try:
            conn.sock.close()
        finally:
            with self._lock:
                self._open -= 1
                freed_the_last_slot = self._open == self.max_connections - 1
            if freed_the_last_slot:
                self._wake()  # the I/O thread stopped accepting at the limit: it may accept again

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:
            pass  # the buffer is full (a wake-up is pending anyway), or shutdown closed it

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    # ----------------------------------------------------------------- the workers

    def _work(self) -> None:
        """Answer complete requests until shutdown() sends None."""
        while (conn := self._queue.get()) is not None:
            try:
                conn.sock.settimeout(SEND_TIMEOUT)  # blocking again, with a limit for the answer's writes
                self._handler(conn, conn.client, self)
            except Exception as exc:  # one broken answer must not end the worker
                if not isinstance(exc, ConnectionError | TimeoutError):  # a client that left is not news
                    self._log(f"backupctl serve: error answering {conn.client[0]}: {type(exc).__name__}")
            finally:
                try:
                    conn.sock.shutdown(socket.SHUT_WR)  # the answer leaves before the close, as socketserver does
                except OSError:
                    pass
                self._close(conn)

    def shutdown(self) -> None:
        """Stop accepting, close what is being read, let the workers finish what they hold."""
        with self._lock:
            self._stopping.set()
            running = self._running
        if running:
            self._wake()
            self._stopped.wait(5)
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(1)  # daemon threads: one stuck on a slow client does not delay the exit for long
        for sock in (self._listener, self._wake_r, self._wake_w):
            sock.close()


def _handler_class(settings: Settings, monitor: Monitor, token: str | None, log: Log) -> type:
    from http.server import BaseHTTPRequestHandler


    class Handler(BaseHTTPRequestHandler):
        server_version = f"backupctl/{__version__}"
        sys_version = ""
        # One request per connection: the deadline counted from accept covers exactly one request,
        # and no idle keep-alive connection waits in a worker (also http.server's default).
        protocol_version = "HTTP/1.0"

        def setup(self) -> None:
            # ``request`` is a _Connection whose head the I/O thread has read (Server): any further
            # read (a body) still counts against the same deadline.
            conn: _Connection = self.request
            self.connection = conn.sock
            self.rfile = io.BufferedReader(_RequestReader(conn.sock, bytes(conn.head), conn.deadline, SEND_TIMEOUT))
            self.wfile = _SocketWriter(conn.sock)

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
    request_deadline: float | None = None,
) -> None:
    """Serve until ``stop`` is set. Raises ConfigError (exposure, notify settings) or ConflictError (port).

    ``request_deadline``: seconds for a whole request to arrive; None is REQUEST_DEADLINE. Only tests
    pass a shorter one, so that cutting off a slow client does not take 10 s.
    """
    token = settings.credentials.http_token
    check_exposure(addr, token, addr_source)
    bad = notify.problems(settings)
    if bad:
        raise ConfigError(bad[0], "fix the URL in the .env, or unset it", details=bad[1:])
    interval = refresh_interval(settings)
    monitor = Monitor(settings, binary_path, interval=interval, log=log)
    server = Server(settings, monitor, addr, token, log, deadline=request_deadline or REQUEST_DEADLINE)
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
