"""`backupctl serve`, notifications and `status --replica-only`, against real parts only.

One scenario with several steps (a real supervisor started by `start --background`, its real
litestream, a private SeaweedFS on loopback, `serve` as a real process, a webhook receiver on
loopback, the status page in headless Chromium), plus a few fast checks of the CLI's refusals
and the service definitions.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.checks.test_status import private_s3  # noqa: F401 - the fixture: a SeaweedFS of our own, safe to stop
from tests.conftest import S3_SECRET, S3Server, kill_pids, make_db, processes_mentioning, run_cli, wait_for
from tests.litestream.test_listings import insert, write_env

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync")  # fmt: skip
TOKEN = "monitor-token-" + "x7Qp2LmZ9v"  # >= 16 characters, as serve requires
# What a person sees: the verdict badge's background colour (templates/serve/status.html.j2).
VERDICT_COLOURS = {
    "ok": "rgba(26, 127, 55, 1)",
    "stale": "rgba(154, 103, 0, 1)",
    "down": "rgba(207, 34, 46, 1)",
    "not-initialized": "rgba(207, 34, 46, 1)",
    "error": "rgba(130, 7, 30, 1)",
}


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook receiver on loopback: records (path, JSON body) of every POST."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.raw: list[bytes] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.raw.append(body)
                received.events.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def find(self, path: str, **want) -> dict | None:
        for got_path, event in list(self.events):
            if got_path == path and all(event.get(k) == v for k, v in want.items()):
                return event
        return None

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get(url: str, *, token: str | None = TOKEN, basic: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if basic:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"anyone:{basic}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()
    except (urllib.error.URLError, OSError):
        return 0, {}, b"{}"  # not listening (yet)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    return wait_for(predicate, timeout, interval, what)


def healthz(base: str) -> tuple[int, dict]:
    code, _, body = get(base + "/healthz")
    return code, json.loads(body)


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def iso_epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def start_serve(proj: Path, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "backupctl", "serve", "--addr", f"127.0.0.1:{port}"],
        cwd=proj, stdout=subprocess.DEVNULL, stderr=log.open("wb"), stdin=subprocess.DEVNULL,
    )  # fmt: skip


def browser_missing() -> str | None:
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return f"{CHROMIUM} or {CHROMEDRIVER} not found: apt-get install chromium chromium-driver (.ci/run does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the test extras)"
    return None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator:
    """Headless Chromium from Debian's packages, driven by Selenium (never downloads a browser).

    None where it cannot run: the scenario then checks everything else and ends as skipped, saying why.
    """
    if browser_missing():
        yield None
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, "--window-size=412,915", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)  # a phone-sized window: the page must read there
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log")), options=options)
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Bearer {TOKEN}"}})
        yield driver
    finally:
        driver.quit()


def page_state(driver, base: str, shot: Path) -> dict:
    """Load the page, screenshot it, and read what a person sees: the verdicts, their colours, the texts."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/")
    driver.save_screenshot(str(shot))
    badge = driver.find_element(By.CSS_SELECTOR, "tr.db .verdict")
    banner = driver.find_element(By.ID, "overall")
    return {
        "verdict": badge.text,
        "colour": badge.value_of_css_property("background-color"),
        "banner": banner.text,
        "banner_colour": banner.value_of_css_property("background-color"),
        "row": driver.find_element(By.CSS_SELECTOR, "tr.db").text,
        "overflows": driver.execute_script("return document.documentElement.scrollWidth > window.innerWidth + 1"),
        "resources": driver.execute_script("return performance.getEntriesByType('resource').length"),
        "html": driver.page_source,
    }


# --------------------------------------------------------------------------- the scenario


@pytest.mark.s3
@pytest.mark.slow
@pytest.mark.timeout(420)
def test_serve_tells_when_backups_stop(
    litestream_bins: dict[str, Path], tmp_path: Path, private_s3: S3Server, browser  # noqa: F811
) -> None:
    proj = tmp_path / "app"
    db = make_db(proj / "db" / "app.db", rows=5)
    receiver = Receiver()
    ok_path, fail_path = f"/ok-{uuid.uuid4().hex}", f"/fail-{uuid.uuid4().hex}"
    bucket = private_s3.create_bucket("monitoring")
    write_env(
        proj, "0.5.17", "s3", bucket=bucket, endpoint=private_s3.endpoint,
        BACKUP_STALE_AFTER="1s", BACKUP_VERIFY_INTERVAL="3s", BACKUP_HTTP_TOKEN=TOKEN,
        BACKUP_NOTIFY_URL=receiver.url + ok_path, BACKUP_NOTIFY_FAIL_URL=receiver.url + fail_path,
        BACKUP_LITESTREAM_METRICS_ADDR=f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve_log = tmp_path / "serve.log"
    serve: subprocess.Popen | None = None
    measured: dict[str, float] = {}
    try:
        started = run_cli("start", "--background", cwd=proj, timeout=90)
        assert started.returncode == 0, started.stderr
        serve = start_serve(proj, port, serve_log)

        # 1. 200 while replicating; the token is required (Bearer, or Basic's password), compared exactly.
        code, body = wait_until(lambda: (r := healthz(base))[0] == 200 and r, 60, "/healthz 200")
        assert body["verdict"] == "ok" and body["databases"][0]["verdict"] == "ok" and body["checked_at"]
        for kwargs in ({"token": None}, {"token": TOKEN + "x"}, {"token": TOKEN[:-1]}, {"token": None, "basic": "wrong"}):
            for path in ("/healthz", "/metrics", "/", "/status.json"):
                refused, headers, _ = get(base + path, **kwargs)
                assert refused == 401 and "Basic" in headers.get("WWW-Authenticate", ""), (path, kwargs, refused)
        assert get(base + "/healthz", token=None, basic=TOKEN)[0] in (200, 503)

        # 2. /metrics parses with prometheus-client's parser and agrees with the report it came from and with
        #    `status --json` (both computed by collect_status; a fresh CLI call can be a moment newer).
        def consistent() -> tuple[dict, dict] | None:
            _, _, text = get(base + "/metrics")
            _, _, doc = get(base + "/status.json")
            samples, doc = metric_samples(text.decode()), json.loads(doc)
            same_report = abs(samples[("backupctl_status_checked_timestamp_seconds", ())] - iso_epoch(doc["checked_at"])) < 0.01
            return (samples, doc) if same_report and doc["exit_code"] == 0 else None

        samples, doc = wait_until(consistent, 60, "a scrape and a report of one ok refresh", interval=0.3)
        (d,) = doc["databases"]
        label = (("database", "app.db"),)
        assert samples[("backupctl_status_ok", ())] == 1 and samples[("backupctl_status_exit_code", ())] == 0
        assert samples[("backupctl_database_ok", label)] == 1
        assert samples[("backupctl_database_verdict", (("database", "app.db"), ("verdict", "ok")))] == 1
        assert samples[("backupctl_database_verdict", (("database", "app.db"), ("verdict", "stale")))] == 0
        assert samples[("backupctl_replica_lag_seconds", label)] == d["lag_seconds"]
        assert samples[("backupctl_replica_lag_txids", label)] == d["lag_txids"]
        assert samples[("backupctl_newest_backup_timestamp_seconds", label)] == iso_epoch(d["newest_backup"])
        assert samples[("backupctl_restorable_oldest_timestamp_seconds", label)] == iso_epoch(d["oldest_restorable"])
        assert samples[("backupctl_snapshots", label)] == d["snapshot_count"]
        assert samples[("backupctl_supervisor_running", ())] == 1
        assert samples[("backupctl_supervisor_state", (("state", "running"),))] == 1
        assert samples[("backupctl_supervisor_restarts", ())] == doc["supervisor"]["restarts"]
        # litestream's own metrics (its `addr:`), passed on as they are.
        assert samples[("backupctl_litestream_metrics_up", ())] == 1
        by_db = (("db", str(db)),)  # the parser names counters' samples *_total
        assert samples[("litestream_sync_count_total", by_db)] >= 1 and samples[("litestream_txid", by_db)] >= 1
        age = samples[("backupctl_newest_backup_age_seconds", label)]
        assert abs(age - (time.time() - iso_epoch(d["newest_backup"]))) < 5  # computed at scrape time
        cli = run_cli("status", "--json", cwd=proj, timeout=60)
        status = json.loads(cli.stdout)
        assert {x["verdict"] for x in status["databases"]} <= {"ok", "stale"}  # 1s threshold: a verify write can flap it
        assert status["databases"][0]["oldest_restorable"] == d["oldest_restorable"]
        assert status["supervisor"]["pid"] == doc["supervisor"]["pid"] and status["databases"][0]["name"] == "app.db"

        # 3. The page in a real browser, ok state: what a person sees is "ok" in green.
        seen = browser and wait_until(lambda: (p := page_state(browser, base, tmp_path / "page-ok.png"))["verdict"] == "ok" and p,
                          60, "the page to show ok", interval=0.5)  # fmt: skip
        if seen:
            assert seen["colour"] == VERDICT_COLOURS["ok"] and seen["banner_colour"] == VERDICT_COLOURS["ok"]
            assert "All backed up" in seen["banner"] and "ago" in seen["row"] and "of history" in seen["row"]
            assert seen["resources"] == 0 and not seen["overflows"], seen  # no external assets; fits a phone's width
            assert TOKEN not in seen["html"] and S3_SECRET not in seen["html"]

        # 4. The webhook got a scheduled verify's success and the first verdict (ok), on the good-news URL.
        verify_event = wait_until(lambda: receiver.find(ok_path, event="verify", ok=True), 90, "a verify notification")
        assert verify_event["verify"]["status"] == "verified" and verify_event["verify"]["name"] == "app.db"
        assert receiver.find(ok_path, event="verdict", verdict="ok")

        # 5. status --replica-only from a machine with the .env but not the database.
        laptop = tmp_path / "laptop"
        laptop.mkdir()
        shutil.copy(proj / ".env", laptop / ".env")
        replica = run_cli("status", "--replica-only", "--json", cwd=laptop, timeout=60)
        assert replica.returncode == 0, replica.stdout + replica.stderr
        (r,) = json.loads(replica.stdout)["databases"]
        assert not (laptop / "db").exists() and r["verdict"] == "ok" and r["newest_backup"] and r["oldest_restorable"]
        assert r["newest_backup_age_seconds"] >= 0 and r["restorable_window_seconds"] >= 0 and r["snapshot_count"] >= 1
        table = run_cli("status", "--replica-only", cwd=laptop, timeout=60)
        assert table.returncode == 0 and "app.db" in table.stdout and "ago" in table.stdout

        # 6. Supervisor and litestream SIGKILLed: 503 (down) within about a sync interval (1s) plus a refresh.
        sup = status["supervisor"]
        assert sup["pid"] and sup["litestream_pid"]
        killed_at = time.monotonic()
        kill_pids(sup["pid"], sup["litestream_pid"])
        code, body = wait_until(lambda: (r := healthz(base))[0] == 503 and r, 30, "/healthz 503 after SIGKILL", 0.05)
        measured["503 after SIGKILL (s)"] = round(time.monotonic() - killed_at, 2)
        assert body["verdict"] == "down" and body["reasons"], body
        wait_until(lambda: receiver.find(fail_path, event="verdict", verdict="down", ok=False), 30, "a 'down' notification")

        # 7. Replication back, then the S3 server stopped (and the database written): 503 again.
        kill_pids(*(p.pid for p in processes_mentioning(str(proj)) if p.pid != serve.pid))  # an orphaned verify child
        restarted = run_cli("start", "--background", cwd=proj, timeout=90)
        assert restarted.returncode == 0, restarted.stderr
        wait_until(lambda: healthz(base)[0] == 200, 60, "/healthz 200 after the restart", 0.2)
        stopping_at = time.monotonic()
        private_s3.stop()
        stopped_at = time.monotonic()
        insert(db, 100, 5)
        code, body = wait_until(lambda: (r := healthz(base))[0] == 503 and r, 60, "/healthz 503 with S3 stopped", 0.05)
        measured["503 after the S3 server stopped (s)"] = round(time.monotonic() - stopped_at, 2)
        measured["S3 server's own stop (s)"] = round(stopped_at - stopping_at, 2)
        assert body["verdict"] in ("stale", "error") and body["reasons"], body
        time.sleep(3)  # not a passing flap (1s threshold): it stays failing while S3 is down
        code, body = healthz(base)
        assert code == 503, body
        # S3 is down: the replica is unreadable, once the supervisor's next look has tried it
        wait_until(lambda: json.loads(get(base + "/status.json")[2])["databases"][0]["replica_error"], 30,
                   "the replica error on the status page", 0.2)  # fmt: skip
        assert receiver.find(fail_path, event="verdict", ok=False)

        # 8. The page in the failing state: the verdict /healthz gives, in its colour (not green).
        seen = browser and wait_until(
            lambda: (p := page_state(browser, base, tmp_path / "page-failing.png"))["verdict"] != "ok" and p,
            30, "the page to show the failure", interval=0.5)  # fmt: skip
        if seen:
            assert seen["verdict"] in ("stale", "error") and seen["colour"] == VERDICT_COLOURS[seen["verdict"]], seen
            assert seen["banner"].startswith(("STALE", "ERROR")) and seen["banner_colour"] != VERDICT_COLOURS["ok"]
            assert "cannot be read now" in seen["row"]

        # 9. Nothing secret in anything served or sent; serve stops on SIGTERM with 143.
        everything = b"".join(receiver.raw) + get(base + "/metrics")[2] + get(base + "/healthz")[2] + get(base + "/")[2]
        for secret in (TOKEN, S3_SECRET, ok_path, fail_path):
            assert secret.encode() not in everything, secret
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(15) == 143
        log_text = serve_log.read_text()
        assert TOKEN not in log_text and ok_path not in log_text and "Traceback" not in log_text
        print(f"\nmeasured: {measured}")
        (tmp_path / "measured.json").write_text(json.dumps(measured))
        if browser is None:
            pytest.skip(f"everything but the status page in a browser was checked: {browser_missing()}")
    finally:
        if serve is not None and serve.poll() is None:
            serve.kill()
            serve.wait()
        receiver.close()
        kill_pids(*(p.pid for p in processes_mentioning(str(proj))))


# --------------------------------------------------------------------------- fast checks


def test_serve_refuses_an_open_address_without_a_token(tmp_path: Path, project) -> None:
    res = run_cli("serve", "--addr", f"0.0.0.0:{free_port()}", cwd=project.dir, timeout=30)
    assert res.returncode == 3, res.stderr
    assert "BACKUP_HTTP_TOKEN" in res.stderr and "Traceback" not in res.stderr
    project.env_file.write_text(project.env_file.read_text() + "BACKUP_HTTP_ADDR=[::]:9091\nBACKUP_HTTP_TOKEN=short\n")
    res = run_cli("serve", cwd=project.dir, timeout=30)
    assert res.returncode == 3 and "shorter than 16" in res.stderr and "short\n" not in res.stderr
    res = run_cli("serve", "--addr", "nonsense", cwd=project.dir, timeout=30)
    assert res.returncode == 3 and "--addr" in res.stderr


def test_serve_says_when_the_port_is_taken(project) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        res = run_cli("serve", "--addr", f"127.0.0.1:{taken.getsockname()[1]}", cwd=project.dir, timeout=60)
    assert res.returncode == 6 and "cannot listen" in res.stderr, res.stderr


def test_service_definitions_for_serve(project) -> None:
    import yaml

    from backupctl.commands.service import render_service
    from backupctl.config.settings import load_settings

    settings = load_settings(project.env_file)
    unit = render_service("systemd", settings, command="serve")
    assert unit.name.endswith("-serve") and "backup status over HTTP" in unit.text
    exec_line = next(line for line in unit.text.splitlines() if line.startswith("ExecStart="))
    assert '"serve" "--env-file"' in exec_line and "SuccessExitStatus=130 143" in unit.text
    compose = yaml.safe_load(render_service("compose", settings, command="serve").text)
    assert compose["services"]["backupctl-serve"]["command"][:2] == ["backupctl", "serve"]
    assert render_service("procfile", settings, command="serve").text.startswith("backup-status: ")
    res = run_cli("service", "procfile", "--serve", cwd=project.dir)
    assert res.returncode == 0 and " serve --env-file " in res.stdout


def test_notify_retries_then_gives_up_quietly(project) -> None:
    """A webhook that fails: retried on 5xx, logged with the URL reduced to its host, never raised."""
    from backupctl.checks import notify
    from backupctl.config.settings import load_settings

    calls: list[str] = []

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            calls.append(self.path)
            self.send_response(503 if len(calls) < 3 else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        secret_path = f"/ping/{uuid.uuid4()}"
        url = f"http://127.0.0.1:{server.server_address[1]}{secret_path}"
        env = {"BACKUP_NOTIFY_URL": url, "BACKUP_NOTIFY_FAIL_URL": url}
        settings = load_settings(project.env_file, environ={**os.environ, **env})
        lines: list[str] = []
        event = notify.Event("verify", False, "verify of app.db: failed")
        assert notify.send(settings, event, log=lines.append, retry_delays=(0.01, 0.01, 0.01)) is False
        assert calls == [secret_path] * 3  # 503, 503, then 404: not retried further
        assert len(lines) == 1 and "HTTP 404" in lines[0] and secret_path not in lines[0]
        # Nothing listening: a connection error, retried, logged, not raised.
        server.shutdown()
        server.server_close()
        assert notify.send(settings, event, log=lines.append, retry_delays=(0.01,), timeout=2) is False
        assert len(lines) == 2 and secret_path not in lines[1]
    finally:
        server.server_close()


def test_health_is_503_when_the_refresh_is_stuck_or_failing(project) -> None:
    """A report too old to trust, or a refresh that fails, is never answered with 200."""
    from backupctl.checks.status import StatusReport, SupervisorInfo
    from backupctl.config.settings import load_settings
    from backupctl.errors import LitestreamError
    from backupctl.serve.answers import StatusSnapshot as Snapshot
    from backupctl.serve.answers import health, report_max_age, words
    from backupctl.serve.server import Monitor

    report = StatusReport("2026-12-01T00:00:00Z", "0.5.17", 60.0, SupervisorInfo("running", True, 1, 2, 5.0, 0, None))
    now = time.time()
    assert health(Snapshot(report, now - 1), 1.0, now)[0] == 200
    code, body = health(Snapshot(report, now - report_max_age(1.0) - 1), 1.0, now)
    assert code == 503 and "could not be refreshed" in body["reasons"][-1]
    assert health(Snapshot(None, None), 1.0, now)[0] == 503
    code, body = health(Snapshot(report, now - 1, error="the litestream binary is gone"), 1.0, now)
    assert code == 503 and "binary is gone" in body["reasons"][-1]

    def failing() -> StatusReport:
        raise LitestreamError(f"replica unreachable (secret {S3_SECRET})")

    env = {**os.environ, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    lines: list[str] = []
    monitor = Monitor(load_settings(project.env_file, environ=env), Path("/nonexistent"), interval=1.0, log=lines.append,
                      collect=failing, notify_changes=False)  # fmt: skip
    snapshot = monitor.refresh()
    assert snapshot.report is None and S3_SECRET not in (snapshot.error or "") and "replica unreachable" in snapshot.error
    assert health(snapshot, 1.0)[0] == 503 and lines == ["backupctl serve: verdict (start) -> error"]
    assert [words(s) for s in (0, 1, 59, 60, 7200, 90000)] == ["0 seconds", "1 second", "59 seconds", "1 minute",
                                                              "2 hours", "1 day"]  # fmt: skip


def test_litestream_metrics_addr_is_checked_and_rendered(project) -> None:
    from backupctl.config.render import render
    from backupctl.config.settings import load_settings
    from backupctl.errors import ConfigError

    for bad in ("9090", "localhost:99999", "a b:90"):
        with pytest.raises(ConfigError) as caught:
            load_settings(project.env_file, environ={**os.environ, "BACKUP_LITESTREAM_METRICS_ADDR": bad})
        assert "BACKUP_LITESTREAM_METRICS_ADDR" in caught.value.details[0]
    settings = load_settings(project.env_file, environ={**os.environ, "BACKUP_LITESTREAM_METRICS_ADDR": "127.0.0.1:9090"})
    assert 'addr: "127.0.0.1:9090"' in render(settings).text
    assert "addr:" not in render(load_settings(project.env_file)).text


@pytest.mark.slow
def test_replica_only_on_a_machine_without_the_database_litestream_03(litestream_bins: dict[str, Path], tmp_path: Path) -> None:
    """0.3 stats the database before reading a replica: --replica-only works without it all the same."""
    proj = tmp_path / "app"
    make_db(proj / "db" / "app.db", rows=3)
    write_env(proj, "0.3.13", "file")
    try:
        assert run_cli("start", "--background", cwd=proj, timeout=90).returncode == 0
        assert run_cli("stop", cwd=proj, timeout=90).returncode == 0
        laptop = tmp_path / "laptop"
        laptop.mkdir()
        (laptop / ".env").write_text((proj / ".env").read_text().replace("db/app.db", "storage/db/app.db"))
        res = run_cli("status", "--replica-only", "--json", cwd=laptop, timeout=60)
        assert res.returncode == 0, res.stdout + res.stderr
        (r,) = json.loads(res.stdout)["databases"]
        assert r["verdict"] == "ok" and r["newest_backup"] and r["replica_position"] and r["snapshot_count"] >= 1
        assert not (laptop / "storage").exists()  # nothing created where the database would be
        empty = tmp_path / "empty"
        empty.mkdir()
        (empty / ".env").write_text((laptop / ".env").read_text().replace(str(tmp_path / "replicas"), str(tmp_path / "none")))
        res = run_cli("status", "--replica-only", "--json", cwd=empty, timeout=60)
        assert res.returncode == 11 and json.loads(res.stdout)["databases"][0]["verdict"] == "not-initialized", res.stdout
    finally:
        kill_pids(*(p.pid for p in processes_mentioning(str(proj))))
