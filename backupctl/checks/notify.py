"""Alerts without a monitoring stack: one HTTP POST per event to a webhook or ping URL.

Two settings, both optional:

- ``BACKUP_NOTIFY_URL`` gets the *good* news: a scheduled verify that restored the backup (from
  the supervisor's forked verify child), and every change of verdict that ends with every
  database ok (from `backupctl serve`).
- ``BACKUP_NOTIFY_FAIL_URL`` gets the *bad* news: a scheduled verify that failed or was
  inconclusive, and every change of verdict that ends with some database not ok.

Why two URLs: a healthchecks.io-style ping URL takes any request as "all good". Sending a
failure there would hide it, so failures never go to ``BACKUP_NOTIFY_URL``. With a ping URL
alone, silence is the alarm (the check's period runs out); set ``BACKUP_NOTIFY_FAIL_URL`` to the
same URL plus ``/fail`` to be told at once. A plain webhook that wants every event gets the same
URL in both settings; the JSON body says ``"ok": true|false`` and what happened.

Every call has a timeout and a few retries (connection errors, 408/429/5xx only). A failure to
notify is logged (the URL shown as scheme and host only: a ping URL is a credential) and never
raised: an unreachable webhook must not take backups down. The body never holds a secret: it is
built from verdicts and reasons, then scrubbed of every secret value the settings know.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from backupctl import __version__
from backupctl.config.settings import Settings, has_userinfo
from backupctl.redact import scrub

Log = Callable[[str], None]

TIMEOUT = 10.0  # seconds per attempt: a webhook slower than this is down for our purposes
RETRY_DELAYS = (1.0, 4.0)  # between attempts: rides out a restart of the receiver, bounded to ~30 s in all
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
OK_VARIABLE, FAIL_VARIABLE = "BACKUP_NOTIFY_URL", "BACKUP_NOTIFY_FAIL_URL"


@dataclass(frozen=True)
class Event:
    """One notification. ``kind``: ``verify`` or ``verdict``; ``ok`` picks the URL."""

    kind: str
    ok: bool
    summary: str  # one line for people (chat webhooks show it)
    details: dict[str, Any] = field(default_factory=dict)

    def document(self, settings: Settings) -> dict[str, Any]:
        return {
            "source": "backupctl",
            "event": self.kind,
            "ok": self.ok,
            "summary": self.summary,
            "text": self.summary,  # the key Slack-compatible webhooks display
            "project": settings.project_dir.name,
            "host": socket.gethostname(),
            "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            **self.details,
        }


def redact(url: str) -> str:
    """A URL as it may appear in a log: scheme and host only (the path of a ping URL is its secret)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    return f"{parts.scheme}://{host}{port}/…"


def problems(settings: Settings) -> list[str]:
    """What is wrong with the notification settings (empty: nothing), one line each."""
    found = []
    for variable, url in ((OK_VARIABLE, settings.credentials.notify_url), (FAIL_VARIABLE, settings.credentials.notify_fail_url)):
        if not url:
            continue
        try:
            parts = urlsplit(url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            valid = False
        if not valid:
            found.append(f"{variable}: not an http(s) URL with a host ({redact(url)}); write it like https://hc-ping.com/<uuid>")
        elif has_userinfo(url):
            # urllib would not log in with it: it would resolve "user:password@host" as a host name,
            # and its error would quote the password. The settings refuse it; this keeps send() from trying.
            found.append(f"{variable}: has a user:password@ part ({redact(url)}); remove it")
    return found


def url_for(settings: Settings, ok: bool) -> tuple[str, str] | None:
    """(url, variable) an event goes to, or None when no URL takes it."""
    url = settings.credentials.notify_url if ok else settings.credentials.notify_fail_url
    return (url, OK_VARIABLE if ok else FAIL_VARIABLE) if url else None


def send(
    settings: Settings,
    event: Event,
    *,
    log: Log,
    timeout: float = TIMEOUT,
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """POST the event as JSON to its URL. True when delivered (or nothing to deliver to); never raises."""
    import urllib.error
    import urllib.request


    target = url_for(settings, event.ok)
    if target is None:
        return True
    url, variable = target
    if problems(settings):
        log(f"backupctl: not notifying: {'; '.join(problems(settings))}")
        return False
    body = scrub(json.dumps(event.document(settings), default=str), settings).encode("utf-8")
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above (http/https only)
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": f"backupctl/{__version__}"},
    )
    last = ""
    for attempt in range(len(retry_delays) + 1):
        if attempt:
            sleep(retry_delays[attempt - 1])
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                response.read(65536)
            return True
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code not in RETRYABLE_STATUS:
                break
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            last = scrub(str(reason) or type(exc).__name__, settings)
    log(f"backupctl: could not notify {variable} ({redact(url)}) of the {event.kind} event: {last}; backups go on")
    return False


def verify_event(record: dict[str, Any]) -> Event:
    """The event for one finished verify (a ``VerifyRecord.to_json()``)."""
    status = str(record.get("status"))
    ok = status == "verified"
    name = record.get("name") or record.get("database")
    summary = f"backupctl: verify of {name}: {status}" + ("" if ok else f" ({record.get('reason')})")
    keep = ("database", "name", "status", "reason", "checked_at")
    return Event("verify", ok, summary, {"verify": {k: record.get(k) for k in keep}})


def continuity_event(proof: dict[str, Any], *, healed: bool = False) -> Event:
    """The event for a continuity check that found a broken chain, or found it whole again."""
    ok = proof.get("verdict") == "whole"
    name = proof.get("name") or proof.get("database")
    if ok:
        summary = f"backupctl: the replica of {name} is whole again" + (" (healed by a fresh snapshot)" if healed else "")
    else:
        summary = f"backupctl: the replica of {name} is NOT whole: {proof.get('reason')}; backupctl is healing it"
    keep = ("database", "name", "verdict", "reason", "checked_at", "differing_pages")
    return Event("continuity", ok, summary, {"continuity": {k: proof.get(k) for k in keep}})


def verdict_event(report: Any | None, previous: str | None, error: str | None = None) -> Event:
    """The event for a change of verdict: ``report`` a StatusReport (None when it could not be computed)."""
    if report is None:
        summary = f"backupctl: status could not be computed: {error}"
        return Event("verdict", False, summary, {"verdict": "error", "previous": previous, "databases": []})
    ok = int(report.exit_code) == 0
    verdict = overall_verdict(report)
    bad = [d for d in report.databases if d.verdict != "ok"]
    if ok:
        summary = f"backupctl: backups ok: {len(report.databases)} database(s) backed up"
    else:
        summary = "backupctl: backups NOT ok: " + "; ".join(f"{d.name} {d.verdict} ({d.reason})" for d in bad)
        if not bad:
            summary += f"supervisor {report.supervisor.state}"
    return Event(
        "verdict",
        ok,
        summary,
        {
            "verdict": verdict,
            "previous": previous,
            "exit_code": int(report.exit_code),
            "checked_at": report.checked_at,
            "databases": [{"name": d.name, "verdict": d.verdict, "reason": d.reason} for d in report.databases],
        },
    )


def overall_verdict(report: Any) -> str:
    """One word for the whole report: ``ok``, else the verdict behind the exit code (error > down > stale)."""
    order = ("broken", "error", "down", "not-initialized", "stale")
    verdicts = {d.verdict for d in report.databases}
    for verdict in order:
        if verdict in verdicts:
            return verdict
    return "ok" if int(report.exit_code) == 0 else "down"
