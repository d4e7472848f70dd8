"""`backupctl serve` under load and abuse, as a real process on loopback.

- Many clients at once all get an answer (the old thread-per-connection server with a backlog of
  5 lost 155 of 1,200 requests to timeouts).
- Clients that trickle their headers are cut off at the request deadline, hold no thread while
  they trickle, and do not keep anyone else from being served.
- A blank token, or one with whitespace or control characters, is refused before anything starts.

The deadline is shortened with serve's hidden ``--request-deadline`` option (tests only; the
default is serve.REQUEST_DEADLINE, 10 s) so that cutting a slow client off takes ~1.5 s, not 10.
"""

from __future__ import annotations

import http.client
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from backupctl.serve.server import WORKERS
from tests.conftest import Project, run_cli, wait_for
from tests.serve.test_monitoring import free_port

DEADLINE = 1.5  # seconds: --request-deadline for these tests
# Threads besides the workers: main, the status refresh, the notifier, the HTTP I/O thread, and slack.
OTHER_THREADS = 6
ANSWER_TIMEOUT = 15.0  # seconds a client waits for one answer: generous, the machine is shared


@dataclass
class Serving:
    proc: subprocess.Popen
    port: int
    log: Path

    def threads(self) -> int:
        return psutil.Process(self.proc.pid).num_threads()

    def stop(self) -> None:
        """SIGTERM: still a clean stop (143), without a traceback, after whatever the test did."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(15) == 143
        assert "Traceback" not in self.log.read_text()


def status_of(port: int, path: str, timeout: float = ANSWER_TIMEOUT) -> int:
    """The HTTP status of GET path, read to the end; OSError (refused, reset, timed out) is raised."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.fixture
def serving(project: Project, litestream_bins: dict[str, Path], tmp_path: Path) -> Iterator[Serving]:
    """`backupctl serve` on a free loopback port, its first status report computed."""
    port, log = free_port(), tmp_path / "serve.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "backupctl", "serve", "--addr", f"127.0.0.1:{port}", "--request-deadline", str(DEADLINE)],
        cwd=project.dir, stdout=subprocess.DEVNULL, stderr=log.open("wb"), stdin=subprocess.DEVNULL,
    )  # fmt: skip

    def ready() -> bool:
        if proc.poll() is not None:
            return True
        try:
            return status_of(port, "/status.json", timeout=2) == 200
        except OSError:
            return False

    try:
        wait_for(ready, 60, 0.1, "serve's first status report")
        assert proc.poll() is None, log.read_text()
        yield Serving(proc, port, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_many_clients_at_once_all_get_an_answer(serving: Serving) -> None:
    clients, paths = 300, ("/healthz", "/metrics", "/status.json", "/healthz")
    expected = {"/healthz": {200, 503}, "/metrics": {200}, "/status.json": {200}}
    start = threading.Barrier(clients)
    peak = [serving.threads()]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], serving.threads())

    def client(_: int) -> list[str]:
        start.wait(60)  # every client connects at the same moment
        failures = []
        for path in paths:
            try:
                code = status_of(serving.port, path)
            except OSError as exc:
                failures.append(f"{path}: {type(exc).__name__}: {exc}")
            else:
                if code not in expected[path]:
                    failures.append(f"{path}: HTTP {code}")
        return failures

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    began = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        failures = [f for found in pool.map(client, range(clients)) for f in found]
    took = time.monotonic() - began
    done.set()
    watcher.join()
    print(f"{clients} clients x {len(paths)} requests: {len(failures)} failures in {took:.1f}s, at most {peak[0]} threads")
    assert failures == [], f"{len(failures)} of {clients * len(paths)} requests failed, e.g. {failures[:5]}"
    assert peak[0] <= WORKERS + OTHER_THREADS, f"{peak[0]} threads: one per connection again?"
    serving.stop()


def test_slow_clients_are_cut_off_at_the_deadline_and_hold_no_thread(serving: Serving) -> None:
    slow_count, trickle = 3 * WORKERS + 50, 0.25  # more slow clients than workers; a header line every 0.25 s
    slow: dict[socket.socket, float] = {}  # socket -> when it connected
    for _ in range(slow_count):
        sock = socket.create_connection(("127.0.0.1", serving.port), timeout=5)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the blank line that ends the head never comes
        sock.setblocking(False)
        slow[sock] = time.monotonic()
    cut_after: dict[socket.socket, float] = {}  # socket -> seconds from its connect to the server's close
    answered_408 = 0
    others_served: list[int] = []
    threads: list[int] = []
    try:
        until = time.monotonic() + DEADLINE + 10  # generous: they should all be gone just after DEADLINE
        while len(cut_after) < slow_count and time.monotonic() < until:
            still = [s for s in slow if s not in cut_after]
            readable, _, _ = select.select(still, [], [], 0)
            for sock in readable:  # the server answered (408) or closed: read until the end
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                answered_408 += data.startswith(b"HTTP/1.0 408")
                if not data or b"408" in data:
                    cut_after[sock] = time.monotonic() - slow[sock]
            for sock in (s for s in still if s not in cut_after):
                try:
                    sock.send(b"X-Slow: 1\r\n")  # far more often than any per-read timeout would allow
                except OSError:
                    cut_after[sock] = time.monotonic() - slow[sock]
            threads.append(serving.threads())
            if not cut_after:  # while every slow client is still connected, everyone else is served
                others_served.append(status_of(serving.port, "/healthz", timeout=5))
            time.sleep(trickle)
    finally:
        for sock in slow:
            sock.close()
    print(
        f"{slow_count} slow clients: {len(cut_after)} cut off after {min(cut_after.values(), default=0):.2f}"
        f"-{max(cut_after.values(), default=0):.2f}s ({answered_408} told 408); {len(others_served)} other "
        f"requests served meanwhile; at most {max(threads)} threads"
    )
    assert len(cut_after) == slow_count, f"{slow_count - len(cut_after)} slow clients still connected"
    assert min(cut_after.values()) >= DEADLINE - 0.1, "cut off before the deadline"
    assert len(others_served) >= 2 and set(others_served) <= {200, 503}
    assert max(threads) <= WORKERS + OTHER_THREADS, f"{max(threads)} threads for {slow_count} slow clients"
    assert status_of(serving.port, "/metrics") == 200  # and nothing is left stuck afterwards
    serving.stop()


@pytest.mark.parametrize(
    "token",
    [" " * 16, "\t" * 24, "correct horse battery staple", "abcdefghijklmnop\x07qrst"],
    ids=["spaces", "tabs", "inner-spaces", "control-char"],
)
def test_a_blank_or_spaced_token_is_refused(project: Project, token: str) -> None:
    # Refused on loopback too (a token, once set, guards every path): before the binary, before listening.
    res = run_cli("serve", "--addr", f"127.0.0.1:{free_port()}", cwd=project.dir, env={"BACKUP_HTTP_TOKEN": token}, timeout=30)
    output = res.stdout + res.stderr
    assert res.returncode == 3, output
    assert "BACKUP_HTTP_TOKEN" in res.stderr and "Traceback" not in output
    assert ("is blank" if not token.strip() else "contains whitespace or a control character") in res.stderr
    assert token not in output  # the value is never shown, nor a recognisable part of it
    assert not token.strip() or token.strip()[:8] not in output


def test_a_blank_token_in_the_env_file_is_refused(project: Project) -> None:
    project.env_file.write_text(project.env_file.read_text() + f'BACKUP_HTTP_TOKEN="{" " * 16}"\n')
    res = run_cli("serve", cwd=project.dir, timeout=30)
    assert res.returncode == 3 and "BACKUP_HTTP_TOKEN is blank" in res.stderr, res.stderr
    assert "Traceback" not in res.stdout + res.stderr
