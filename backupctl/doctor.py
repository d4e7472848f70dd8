"""`doctor`: check everything a working backup needs, and say what to do about each problem.

Each check returns a :class:`Check`: what was looked at, ``ok``/``info``/``warn``/``fail``, what was
found and the fix. ``finding`` is a stable code (documented in docs/doctor-and-cost.md) so scripts
and tests can tell problems apart without parsing prose. The core never raises for a problem it
was asked to find: a broken .env is a failed check, not a crash.

The replica probe talks to S3/R2 through botocore (SigV4 signing and the servers' error codes are
not something to hand-roll). It lists, writes, reads and deletes one small object with a unique
name under the replica's prefix, and removes it even when a later step fails.
"""

from __future__ import annotations

import email.utils
import os
import shlex
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backupctl.errors import DOCTOR_EXIT, BackupctlError, ExitCode
from backupctl.settings import Database, Replica, Settings, mask

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
_RANK = {OK: 0, INFO: 0, WARN: 1, FAIL: 2}

CONFIG_CHECK_TIMEOUT = 20.0
S3_CONNECT_TIMEOUT = 3.0
S3_READ_TIMEOUT = 10.0
CLOCK_WARN_SECONDS = 300.0  # a few minutes: logs and point-in-time restores start to mislead
CLOCK_FAIL_SECONDS = 900.0  # SigV4 rejects requests more than 15 minutes off (RequestTimeTooSkewed)
PROBE_PREFIX = ".backupctl-doctor-probe-"
BUSY_TIMEOUT_ADVICE_MS = 5000


@dataclass
class Check:
    """One finding. ``finding`` is None when all is well, else a stable code like ``no-such-bucket``."""

    name: str
    status: str
    found: str
    fix: str = ""
    subject: str | None = None
    finding: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def worst(self) -> str:
        return max((c.status for c in self.checks), key=lambda s: _RANK[s], default=OK)

    @property
    def exit_code(self) -> ExitCode:
        return DOCTOR_EXIT.get(self.worst, ExitCode.OK)

    def counts(self) -> dict[str, int]:
        counts = {OK: 0, INFO: 0, WARN: 0, FAIL: 0}
        for check in self.checks:
            counts[check.status] += 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.worst != FAIL,
            "exit_code": int(self.exit_code),
            "worst": self.worst,
            "counts": self.counts(),
            "checks": [c.to_json() for c in self.checks],
        }


def run_doctor(env_file: Path | None = None, *, environ: dict[str, str] | None = None, cwd: Path | None = None) -> Report:
    """Run every check for the project named by env_file (or ./.env). Never raises for a finding."""
    from backupctl.settings import load_settings

    report = Report()
    try:
        settings = load_settings(env_file, environ=environ, cwd=cwd)
    except BackupctlError as exc:
        report.checks.append(
            Check(
                "settings",
                FAIL,
                exc.message + (": " + "; ".join(exc.details) if exc.details else ""),
                exc.hint,
                finding="settings-invalid",
            )
        )
        return report
    names = ", ".join(db.name for db in settings.databases)
    report.checks.append(
        Check(
            "settings",
            OK,
            f"{len(settings.databases)} database(s) ({names}), replica {'/'.join(settings.replica_kinds)},"
            f" Litestream {settings.version}, from {settings.env_file or 'the environment'}",
        )
    )
    for warning in settings.warnings:  # a misspelled name is silently ignored otherwise
        report.checks.append(
            Check("settings", WARN, warning, "rename it to the variable meant, or remove it", finding="unknown-variable")
        )
    clean = _cleaner(settings)
    binary_path = _check_binary(settings, report)
    _check_config(settings, binary_path, report, clean)
    from backupctl.verify import clean_up_after_killed_verify

    cleaned: list[str] = []
    clean_up_after_killed_verify(settings, cleaned.append)
    for line in cleaned:
        report.checks.append(Check("leftovers", INFO, line.removeprefix("backupctl: ")))
    for db in settings.databases:
        _check_database(settings, db, report)
    server_dates: list[tuple[float, float]] = []
    for db in settings.databases:
        for replica in db.replicas:
            report.checks.append(check_replica(settings, db, replica, server_dates, clean))
    report.checks.append(_check_clock(server_dates))
    return report


def _cleaner(settings: Settings) -> Callable[[str], str]:
    """Masks secrets (and the access key id, half of a credential) in anything shown to the user."""
    from backupctl.runner import scrub

    key_id = settings.credentials.access_key_id

    def clean(text: str) -> str:
        text = scrub(text, settings)
        if key_id and len(key_id) >= 4:
            text = text.replace(key_id, mask(key_id))
        return text

    return clean


# --- binary and config ----------------------------------------------------------------------


def _check_binary(settings: Settings, report: Report) -> Path | None:
    from backupctl import binary

    try:
        found = binary.user_binary(settings.version) or binary.cached(settings.version)
    except BackupctlError as exc:
        report.checks.append(Check("binary", FAIL, exc.message, exc.hint, finding="binary-broken"))
        return None
    if found is None:
        report.checks.append(
            Check(
                "binary",
                FAIL,
                f"Litestream {settings.version} is not installed for this platform",
                "run `backupctl install` (it downloads the pinned build and checks its sha256)",
                finding="binary-missing",
            )
        )
        return None
    if not found.verified and found.source != "user":
        report.checks.append(
            Check(
                "binary",
                FAIL,
                f"{found.path} does not match the pinned sha256 of Litestream {settings.version} (tampered or corrupted); "
                "backupctl refuses to run it",
                "reinstall it: backupctl install --force",
                finding="binary-tampered",
            )
        )
        return None
    if not found.verified:
        report.checks.append(
            Check(
                "binary",
                WARN,
                f"{found.path} ({found.source}) reports Litestream {settings.version} but its sha256 is not the pinned one",
                f"unset {binary.USER_BIN_ENV} and run `backupctl install` to use the verified build",
                finding="binary-unverified",
            )
        )
    else:
        report.checks.append(Check("binary", OK, f"Litestream {found.version} at {found.path}, sha256 matches the pin"))
    return found.path


def _check_config(settings: Settings, binary_path: Path | None, report: Report, clean: Callable[[str], str]) -> None:
    from backupctl.listings import configured_databases
    from backupctl.render import render
    from backupctl.runner import Litestream

    try:
        text = render(settings).text
    except BackupctlError as exc:
        report.checks.append(Check("config", FAIL, exc.message, exc.hint, finding="config-render-failed"))
        return
    if binary_path is not None:
        fd, tmp_name = tempfile.mkstemp(prefix="backupctl-doctor-", suffix=".yml")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            result = Litestream(binary_path, settings, config_path=tmp).run(
                "databases", timeout=CONFIG_CHECK_TIMEOUT, check=False
            )
            listed = {d.path for d in configured_databases(settings, binary_path, config_path=tmp, check=False)}
            missing = [db.name for db in settings.databases if str(db.path) not in listed]
            if result.returncode != 0 or missing:
                lines = [clean(ln) for ln in (result.stderr + "\n" + result.stdout).splitlines() if ln.strip()][-4:]
                report.checks.append(
                    Check(
                        "config",
                        FAIL,
                        f"litestream rejected the rendered config (exit {result.returncode}): " + " | ".join(lines),
                        "fix the setting or template it names; `backupctl setup --print` shows the config",
                        finding="config-rejected",
                    )
                )
                return
        except BackupctlError as exc:
            report.checks.append(Check("config", FAIL, clean(exc.message), exc.hint, finding="config-rejected"))
            return
        finally:
            tmp.unlink(missing_ok=True)
        accepted = (
            f"Litestream {settings.version} accepts the rendered config and lists all {len(settings.databases)} database(s)"
        )
    else:
        accepted = "the config renders (not checked by litestream: no binary)"
    try:
        current = settings.config_path.read_text("utf-8")
    except OSError:
        current = None
    if current is None:
        report.checks.append(
            Check("config", INFO, f"{accepted}; {settings.config_path} is not written yet", "`backupctl setup` writes it")
        )
    elif current != text:
        report.checks.append(
            Check(
                "config",
                WARN,
                f"{accepted}, but {settings.config_path} is out of date with the settings",
                "run `backupctl setup`, then restart replication (`backupctl stop` and `backupctl start`) if it runs",
                finding="config-outdated",
            )
        )
    else:
        report.checks.append(Check("config", OK, f"{accepted}; {settings.config_path} is up to date"))


# --- databases --------------------------------------------------------------------------------


def wal_command(path: Path) -> str:
    """The exact shell command that switches a database to WAL mode (it persists in the file)."""
    return f"sqlite3 {shlex.quote(str(path))} 'PRAGMA journal_mode=WAL;'"


def _check_database(settings: Settings, db: Database, report: Report) -> None:
    from backupctl.preflight import DB_MISSING, DB_OK, DB_UNREADABLE, read_database_file

    subject = str(db.path)
    found = read_database_file(db.path)
    if found.kind == DB_MISSING:
        report.checks.append(
            Check(
                "database",
                FAIL,
                "the database file does not exist (litestream would wait for it and back up nothing)",
                "fix BACKUP_DATABASES, or start the application once so it creates the database",
                subject=subject,
                finding="db-missing",
            )
        )
        return
    if found.kind == DB_UNREADABLE:
        report.checks.append(
            Check(
                "database",
                FAIL,
                f"cannot read it: {found.error}",
                "check its permissions",
                subject=subject,
                finding="db-unreadable",
            )
        )
        return
    if found.kind != DB_OK:  # not SQLite, or empty (doctor has always counted an empty file as not SQLite)
        report.checks.append(
            Check(
                "database",
                FAIL,
                "the file is not an SQLite database (no SQLite header)",
                "point BACKUP_DATABASES at the SQLite file itself",
                subject=subject,
                finding="db-not-sqlite",
            )
        )
        return
    report.checks.append(Check("database", OK, f"SQLite database, {human_size(db.path.stat().st_size)}", subject=subject))
    # Header bytes 18 and 19 (file format write/read version) are 2 in WAL mode, 1 in rollback mode:
    # read without opening a connection, so doctor never takes a lock on a live database.
    if found.wal_mode:
        report.checks.append(Check("wal mode", OK, "journal_mode is WAL", subject=subject))
    else:
        report.checks.append(
            Check(
                "wal mode",
                FAIL,
                "the database is not in WAL mode; Litestream needs WAL to replicate",
                f"stop the application, then run: {wal_command(db.path)}",
                subject=subject,
                finding="db-not-wal",
            )
        )
    report.checks.append(
        Check(
            "busy timeout",
            INFO,
            "Litestream briefly takes SQLite's write lock to checkpoint; without a busy timeout the application "
            "gets 'database is locked'",
            f"have every connection set PRAGMA busy_timeout={BUSY_TIMEOUT_ADVICE_MS} "
            f"(Rails: timeout: {BUSY_TIMEOUT_ADVICE_MS} in config/database.yml)",
            subject=subject,
        )
    )
    report.checks.append(_check_replicators(settings, db))
    report.checks.append(_check_disk(db))


def _check_replicators(settings: Settings, db: Database) -> Check:
    from backupctl import processes

    subject = str(db.path)
    found = processes.replicators_of(db.path)
    ours = [r for r in found if r.ours]
    outsiders = [r for r in found if not r.ours]
    supervisors = {r.pid for r in ours if r.record and r.record.role == processes.SUPERVISOR}
    # A supervisor and its litestream are one replicator; anything beyond that is a second one.
    replicating = [r for r in ours if not (r.record and r.record.parent_pid in supervisors)]
    if not outsiders and len(replicating) <= 1:
        if replicating:
            return Check("replicators", OK, f"{replicating[0].describe()}; no other replicator", subject=subject)
        return Check("replicators", OK, "no replicator is running on it right now", subject=subject)
    pids = ", ".join(str(r.pid) for r in outsiders) or ", ".join(str(r.pid) for r in replicating[1:])
    if outsiders and replicating:
        text = f"{replicating[0].describe()} replicates it, and so does litestream pid {pids} outside backupctl"
    elif outsiders:
        text = (
            f"litestream pid {pids} (not started by backupctl) already replicates it; "
            "starting backupctl would make two replicators"
        )
    else:
        text = "; ".join(r.describe() for r in replicating) + " all replicate it"
    return Check(
        "replicators",
        FAIL,
        text + " (two replicators on one database corrupt the replica chain)",
        f"keep one: stop pid {pids} (and remove it from your Procfile, systemd unit or sidecar), then let backupctl replicate",
        subject=subject,
        finding="second-replicator",
    )


def _check_disk(db: Database) -> Check:
    subject = str(db.path)
    size = db.path.stat().st_size
    wal = db.path.with_name(db.path.name + "-wal")
    if wal.exists():
        size += wal.stat().st_size
    places = {"the database's folder": db.path.parent, "the temp folder": Path(tempfile.gettempdir())}
    devices: dict[int, list[str]] = {}
    for label, folder in places.items():
        try:
            devices.setdefault(folder.stat().st_dev, []).append(label)
        except OSError:
            continue
    problems, notes = [], []
    for labels in devices.values():
        folder = places[labels[0]]
        free = shutil.disk_usage(folder).free
        needed = size * len(labels)  # a snapshot beside the database, a restore in the temp folder
        notes.append(f"{human_size(free)} free in {' and '.join(labels)}")
        if free < needed:
            problems.append(f"{human_size(free)} free in {' and '.join(labels)} ({folder}), about {human_size(needed)} needed")
    if problems:
        return Check(
            "free disk",
            FAIL,
            "not enough room for a snapshot: " + "; ".join(problems),
            "free disk space (a snapshot and a restore each need about the database's size)",
            subject=subject,
            finding="disk-low",
        )
    return Check("free disk", OK, f"database {human_size(size)}; " + ", ".join(notes), subject=subject)


# --- replicas ---------------------------------------------------------------------------------


def open_s3_client(
    settings: Settings,
    replica: Replica,
    *,
    connect_timeout: float = S3_CONNECT_TIMEOUT,
    read_timeout: float = S3_READ_TIMEOUT,
    attempts: int = 1,
) -> Any:
    """A botocore S3 client for this replica with the settings' credentials, as litestream would use them.

    AWS_CA_BUNDLE (which breaks litestream 0.5) is fine for botocore and is honoured. Raises
    ImportError when botocore is missing.
    """
    import botocore.session
    from botocore.config import Config

    session = botocore.session.Session()
    creds = settings.credentials
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": attempts, "mode": "standard"},
        s3={"addressing_style": "path" if replica.force_path_style else "auto"},
        signature_version="s3v4",
        # Plain requests that every S3-compatible store understands (R2, MinIO, SeaweedFS).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="backupctl",
    )
    return session.create_client(
        "s3",
        region_name=replica.region or "us-east-1",
        endpoint_url=replica.endpoint or None,
        aws_access_key_id=creds.access_key_id or None,
        aws_secret_access_key=creds.secret_access_key or None,
        config=config,
    )


def replica_prefix(replica: Replica) -> str:
    path = replica.path.strip("/")
    return f"{path}/" if path else ""


def check_replica(
    settings: Settings,
    db: Database,
    replica: Replica,
    server_dates: list[tuple[float, float]] | None = None,
    clean: Callable[[str], str] | None = None,
) -> Check:
    """Probe one replica: list, write, read and delete a probe object (file: a probe file)."""
    clean = clean or _cleaner(settings)
    if replica.kind == "file":
        return check_replica_folder(replica)
    if replica.kind in ("s3", "r2"):
        return _probe_s3(settings, replica, server_dates if server_dates is not None else [], clean)
    return Check(
        "replica access",
        INFO,
        f"{replica.kind} replicas are not probed by doctor",
        "run `backupctl verify` to prove the replica restores",
        subject=replica.destination,
        finding="replica-not-probed",
    )


def check_replica_folder(replica: Replica) -> Check:
    """A local-folder replica: writable (writes, reads back and removes a probe file)."""
    folder = Path(replica.path)
    subject = replica.destination
    if not folder.exists():
        parent = next((p for p in folder.parents if p.exists()), None)
        if parent is not None and parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return Check(
                "replica access", OK, f"{folder} does not exist yet; litestream can create it under {parent}", subject=subject
            )
        return Check(
            "replica access",
            FAIL,
            f"{folder} does not exist and cannot be created ({parent} is not writable)",
            f"create it (mkdir -p {shlex.quote(str(folder))}) with write access for this user, or change BACKUP_LOCAL_DIR",
            subject=subject,
            finding="replica-not-writable",
        )
    if not folder.is_dir():
        return Check(
            "replica access",
            FAIL,
            f"{folder} is not a folder",
            "change BACKUP_LOCAL_DIR",
            subject=subject,
            finding="replica-not-writable",
        )
    probe = folder / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        probe.write_bytes(b"backupctl doctor probe\n")
        ok = probe.read_bytes() == b"backupctl doctor probe\n"
        probe.unlink()
    except OSError as exc:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        return Check(
            "replica access",
            FAIL,
            f"cannot write to {folder}: {exc.strerror}",
            f"give this user write access to {folder}, or change BACKUP_LOCAL_DIR",
            subject=subject,
            finding="replica-not-writable",
        )
    if not ok:
        return Check(
            "replica access",
            FAIL,
            f"a file written to {folder} read back different",
            "check the disk",
            subject=subject,
            finding="replica-not-writable",
        )
    return Check("replica access", OK, f"{folder} is writable (wrote, read and removed a probe file)", subject=subject)


_CODES_BY_STEP = {"list": "s3:ListBucket", "write": "s3:PutObject", "read": "s3:GetObject", "delete": "s3:DeleteObject"}


def _probe_s3(
    settings: Settings, replica: Replica, server_dates: list[tuple[float, float]], clean: Callable[[str], str]
) -> Check:
    subject = replica.destination
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return Check(
            "replica access",
            WARN,
            "cannot probe the replica: botocore is not installed",
            "reinstall backupctl (pip install --force-reinstall backupctl) to get its botocore dependency",
            subject=subject,
            finding="s3-library-missing",
        )
    try:
        client = open_s3_client(settings, replica)
    except BotoCoreError as exc:
        return _s3_failure(settings, replica, "connect", exc, clean)
    bucket = replica.bucket or ""
    key = f"{replica_prefix(replica)}{PROBE_PREFIX}{uuid.uuid4().hex}"
    body = b"backupctl doctor probe: safe to delete\n"
    step = "list"
    written = False

    def note_date(meta: dict[str, Any] | None) -> None:
        raw = ((meta or {}).get("HTTPHeaders") or {}).get("date")
        if raw and not server_dates:
            try:
                server_dates.append((email.utils.parsedate_to_datetime(raw).timestamp(), time.time()))
            except (TypeError, ValueError):
                pass

    try:
        resp = client.list_objects_v2(Bucket=bucket, Prefix=replica_prefix(replica), MaxKeys=1)
        note_date(resp.get("ResponseMetadata"))
        step = "write"
        client.put_object(Bucket=bucket, Key=key, Body=body)
        written = True
        step = "read"
        got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        if got != body:
            return Check(
                "replica access",
                FAIL,
                "the probe object read back different from what was written",
                "check the endpoint: it may be a proxy that rewrites content",
                subject=subject,
                finding="probe-failed",
            )
        step = "delete"
        client.delete_object(Bucket=bucket, Key=key)
        step = "confirm"
        left = client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1).get("KeyCount", 0)
        written = bool(left)
    except (ClientError, BotoCoreError) as exc:
        if isinstance(exc, ClientError):
            note_date(exc.response.get("ResponseMetadata"))
        return _s3_failure(settings, replica, step, exc, clean, leftover=key if written else None)
    finally:
        if written:
            try:
                client.delete_object(Bucket=bucket, Key=key)
            except Exception:  # noqa: S110 - best effort; the failure is already being reported
                pass
    if written:
        return Check(
            "replica access",
            WARN,
            f"the probe object {key} is still listed after deletion",
            "the store may list deleted objects for a while; check again later",
            subject=subject,
            finding="probe-left-behind",
        )
    return Check(
        "replica access",
        OK,
        f"listed, wrote, read and deleted a probe object under s3://{bucket}/{replica_prefix(replica)}"
        " (s3:ListBucket, PutObject, GetObject and DeleteObject all work)",
        subject=subject,
    )


def _s3_failure(
    settings: Settings, replica: Replica, step: str, exc: Exception, clean: Callable[[str], str], leftover: str | None = None
) -> Check:
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ReadTimeoutError,
        SSLError,
    )

    subject = replica.destination
    bucket = replica.bucket
    endpoint = replica.endpoint or "AWS S3"
    key_var = _variable(settings, "access_key_id", "BACKUP_ACCESS_KEY_ID")
    secret_var = _variable(settings, "secret_access_key", "BACKUP_SECRET_ACCESS_KEY")
    left = f" (the probe object {leftover} may be left behind; delete it)" if leftover else ""

    def fail(finding: str, found: str, fix: str) -> Check:
        return Check("replica access", FAIL, clean(found) + left, fix, subject=subject, finding=finding)

    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
        return fail(
            "endpoint-unreachable",
            f"cannot reach {endpoint}: {exc}",
            "check BACKUP_ENDPOINT (R2: https://<account-id>.r2.cloudflarestorage.com), the network and any firewall",
        )
    if isinstance(exc, SSLError):
        return fail(
            "tls-error",
            f"TLS failed with {endpoint}: {exc}",
            "check the endpoint's certificate, or AWS_CA_BUNDLE / SSL_CERT_FILE",
        )
    if isinstance(exc, NoCredentialsError):
        return fail(
            "no-credentials",
            "no credentials were found for the replica",
            "set BACKUP_ACCESS_KEY_ID and BACKUP_SECRET_ACCESS_KEY (or R2_ACCESS_KEY_ID / R2_SECRET_ACCESS_KEY)",
        )
    if not isinstance(exc, ClientError):
        return fail("probe-failed", f"{step} failed: {exc}", "run `backupctl doctor` again; if it persists, check the endpoint")
    error = exc.response.get("Error") or {}
    code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
    message = str(error.get("Message") or "")
    if code in ("NoSuchBucket", "404") and step == "list":
        return fail(
            "no-such-bucket",
            f"bucket {bucket!r} does not exist at {endpoint}",
            f"create the bucket (R2: dashboard → R2 → Create bucket; S3: aws s3 mb s3://{bucket}), or fix BACKUP_BUCKET",
        )
    if code == "SignatureDoesNotMatch":
        return fail(
            "signature-mismatch",
            f"the server knows access key {mask(settings.credentials.access_key_id)} but the secret does not match it",
            f"copy the secret access key again into {secret_var} (it is shown only once when the token is created)",
        )
    if code in ("InvalidAccessKeyId", "InvalidAccessKeyID"):
        return fail(
            "unknown-access-key",
            f"the server does not know access key {mask(settings.credentials.access_key_id)}",
            f"check {key_var}: the token may be deleted, or belong to another account or endpoint",
        )
    if code == "RequestTimeTooSkewed":
        return fail(
            "clock-skew",
            "the server rejected the request because this machine's clock is off",
            "sync the clock (timedatectl set-ntp true, or chrony/ntpd)",
        )
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
        permission = _CODES_BY_STEP.get(step, "access")
        if step == "write":
            return fail(
                "read-only",
                "the credentials can list the bucket but not write to it (AccessDenied on PutObject"
                + (f": {message})" if message else ")"),
                "give the key write access: R2 token permission 'Object Read & Write'; S3 policy allowing "
                "s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket on the bucket",
            )
        return fail(
            f"{step}-denied",
            f"AccessDenied on {permission} ({step} step){': ' + message if message else ''}",
            f"allow {permission} for these credentials on bucket {bucket!r} "
            "(all four are needed: s3:ListBucket, s3:PutObject, s3:GetObject, s3:DeleteObject)",
        )
    return fail(
        "probe-failed",
        f"{step} failed with {code}{': ' + message if message else ''}",
        "check the bucket, endpoint and credentials; `backupctl env` shows what is in use",
    )


def _variable(settings: Settings, setting: str, default: str) -> str:
    origin = settings.origins.get(setting)
    return origin.variable if origin and origin.variable else default


def _check_clock(server_dates: Iterable[tuple[float, float]]) -> Check:
    dates = list(server_dates)
    if not dates:
        return Check("clock", INFO, "not compared: no S3 server answered with a Date header")
    server, local = dates[0]
    skew = local - server
    # The Date header has one-second resolution; allow for it and for the round trip.
    what = f"this machine's clock is {abs(skew):.0f}s {'ahead of' if skew > 0 else 'behind'} the S3 server's"
    if abs(skew) >= CLOCK_FAIL_SECONDS:
        return Check(
            "clock",
            FAIL,
            what,
            "sync the clock (timedatectl set-ntp true, or chrony/ntpd): S3 rejects requests more than 15 minutes off",
            finding="clock-skew",
        )
    if abs(skew) >= CLOCK_WARN_SECONDS:
        return Check(
            "clock",
            WARN,
            what,
            "sync the clock (timedatectl set-ntp true, or chrony/ntpd); point-in-time restores use timestamps",
            finding="clock-skew",
        )
    return Check("clock", OK, f"within {max(abs(skew), 1):.0f}s of the S3 server's clock")


def human_size(n: float) -> str:
    """1536 -> "1.5 KB": the one size formatter (doctor, and the CLI through cli.common.human_size)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"
