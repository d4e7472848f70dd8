"""`doctor`: check everything a working backup needs, and say what to do about each problem.

Each check returns a :class:`Check`: what was looked at, ``ok``/``info``/``warn``/``fail``, what was
found and the fix. ``finding`` is a stable code (documented in docs/doctor-and-cost.md) so scripts
and tests can tell problems apart without parsing prose. The core never raises for a problem it
was asked to find: a broken .env is a failed check, not a crash.

Each replica is probed by its kind's spec (``backupctl.kinds``: S3/R2 write, read and delete a
probe object through botocore, a folder a probe file); doctor adds the clock check from the
S3 servers' Date headers.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

from backupctl.checks import continuity
from backupctl.checks.preflight import DB_MISSING, DB_OK, DB_UNREADABLE, read_database_file
from backupctl.checks.sentinel import clean_up_after_killed_verify
from backupctl.checks.verdicts import epoch_iso
from backupctl.config import replica_views
from backupctl.config.render import render
from backupctl.config.secondary import said_of
from backupctl.config.settings import Database, Replica, Settings, load_settings
from backupctl.errors import BackupctlError
from backupctl.findings import FAIL, INFO, OK, WARN, Check, Report
from backupctl.host import processes, state
from backupctl.litestream import binary
from backupctl.litestream.listings import configured_databases
from backupctl.litestream.runner import Litestream
from backupctl.paths import project_state_dir
from backupctl.redact import cleaner
from backupctl.units import human_size

CONFIG_CHECK_TIMEOUT = 20.0
CLOCK_WARN_SECONDS = 300.0  # a few minutes: logs and point-in-time restores start to mislead
CLOCK_FAIL_SECONDS = 900.0  # SigV4 rejects requests more than 15 minutes off (RequestTimeTooSkewed)
BUSY_TIMEOUT_ADVICE_MS = 5000


def run_doctor(env_file: Path | None = None, *, environ: dict[str, str] | None = None, cwd: Path | None = None) -> Report:
    """Run every check for the project named by env_file (or ./.env). Never raises for a finding."""

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
            + (f" secondary replica {settings.secondary.kind}," if settings.secondary is not None else "")
            + f" Litestream {settings.version}, from {settings.env_file or 'the environment'}",
        )
    )
    for warning in settings.warnings:  # a misspelled name is silently ignored otherwise
        report.checks.append(
            Check("settings", WARN, warning, "rename it to the variable meant, or remove it", finding="unknown-variable")
        )
    clean = cleaner(settings)
    binary_path = _check_binary(settings, report)
    _check_config(settings, binary_path, report, clean)

    cleaned: list[str] = []
    clean_up_after_killed_verify(settings, cleaned.append)
    for line in cleaned:
        report.checks.append(Check("leftovers", INFO, line.removeprefix("backupctl: ")))
    for db in settings.databases:
        _check_database(settings, db, report)
    _check_backups(settings, report)
    server_dates: list[tuple[float, float]] = []
    for db in settings.databases:
        for replica in db.replicas:
            report.checks.append(check_replica(settings, db, replica, server_dates, clean))
    report.checks.append(_check_clock(server_dates))
    return report


# --- what the checks of the backups last found --------------------------------------------------


def _check_backups(settings: Settings, report: Report) -> None:
    """The last continuity verdict and verify of each database, as recorded: doctor looks at the setup,
    but "0 failed" beside a replica that `status` calls broken would be a reassurance nothing proved."""
    state_dir = project_state_dir(settings.project_dir)
    proofs, verifies = continuity.records(state_dir), state.verify_records(state_dir)
    for db in settings.databases:
        proof = proofs.get(str(db.path)) or {}
        verify = verifies.get(str(db.path)) or {}
        subject = str(db.path)
        if proof.get("verdict") == continuity.BROKEN:
            report.checks.append(Check(
                "backups", FAIL,
                f"the last continuity check ({epoch_iso(proof.get('checked_at'))}) found the replica NOT whole: "
                f"{proof.get('reason')}",
                "`backupctl status` says more; a running supervisor heals it with a fresh snapshot (else "
                "`backupctl start`), and `backupctl verify` proves it whole again",
                subject=subject, finding="replica-broken",
            ))  # fmt: skip
        elif verify.get("status") == "failed":
            report.checks.append(Check(
                "backups", FAIL, f"the last verify ({epoch_iso(verify.get('checked_at'))}) failed: {verify.get('reason')}",
                "`backupctl verify` again; `backupctl status` and docs/faults.md say what each failure means",
                subject=subject, finding="verify-failed",
            ))  # fmt: skip
        elif proof.get("verdict") == continuity.WHOLE:
            report.checks.append(Check(
                "backups", INFO, f"proven whole against the live pages at {epoch_iso(proof.get('checked_at'))}",
                subject=subject,
            ))  # fmt: skip
        else:
            report.checks.append(Check(
                "backups", INFO, "no continuity check or verify has proven this replica whole yet",
                "`backupctl verify` restores it and proves it (a running supervisor does so after each start)",
                subject=subject,
            ))  # fmt: skip


# --- binary and config ----------------------------------------------------------------------


def _check_binary(settings: Settings, report: Report) -> Path | None:
    try:
        found = binary.user_binary(settings.version) or binary.cached(settings.version, full=True)
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


def check_replica(
    settings: Settings,
    db: Database,
    replica: Replica,
    server_dates: list[tuple[float, float]] | None = None,
    clean: Callable[[str], str] | None = None,
) -> Check:
    """Probe one replica as its kind does (S3/R2: list, write, read and delete a probe object; file: a probe file).
    A secondary replica is probed with its own credentials (backupctl.config.secondary), and named as such."""
    clean = clean or cleaner(settings)
    dates = server_dates if server_dates is not None else []
    found = replica.spec.probe(replica_views.settings_for(settings, replica), replica, dates, clean)
    if replica.name is not None:
        found = replace(found, subject=f"{found.subject} ({replica_views.label(settings, replica)})",
                        found=said_of(replica, found.found), fix=said_of(replica, found.fix))  # fmt: skip
    return found


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
