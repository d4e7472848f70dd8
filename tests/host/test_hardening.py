"""Hardening (docs/security.md): nothing written through a planted link, no folder another user can
write, no signal to a process that is not backupctl's or litestream's.

Each test reproduces an attack on a real project with the real CLI. The second-user cases need root
(to act as another uid) and skip elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from backupctl.errors import ExitCode
from backupctl.host import locks, processes
from tests.conftest import Project, count_rows, insert_rows, kill_pids, run_cli, wait_for
from tests.restore.test_restore import settings_of

OTHER_UID = 4321  # a second, unprivileged user (needs root to act as it)
# Every file backupctl writes in a project's state folder (.backupctl/).
STATE_FILES = (
    "supervisor.json", "supervisor.yml", "supervisor.log", "litestream.out", "observations.json", "continuity.json",
    "verify.json", "drill.json", "project.json", "config.stamp", "preview.yml", "snapshot.yml", "status.json", "local-mode",
)  # fmt: skip


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _clean_failure(result: subprocess.CompletedProcess[str]) -> None:
    """A refusal is a message with a hint and exit 3, never a traceback."""
    assert result.returncode == ExitCode.CONFIG, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr


class Targets:
    """Files a planted link points at, with their content and mode before the attack."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.before: dict[Path, tuple[bytes, int]] = {}
        self.links: list[Path] = []

    def plant(self, at: Path) -> None:
        """A link at ``at``; a file already there moves to the target (so a config backupctl wrote
        stays recognisably its own, and `setup` may replace it)."""
        target = self.folder / f"target-{len(self.before)}"
        if at.exists() and not at.is_symlink():
            target.write_bytes(at.read_bytes())
            at.unlink()
        else:
            target.write_bytes(f"precious {len(self.before)}: {at.name}\n".encode())
        os.chmod(target, 0o640)
        self.before[target] = (target.read_bytes(), _mode(target))
        at.parent.mkdir(parents=True, exist_ok=True)
        at.symlink_to(target)
        self.links.append(at)

    def plant_folder(self, at: Path) -> Path:
        target = self.folder / f"folder-{len(self.links)}"
        target.mkdir()
        at.symlink_to(target, target_is_directory=True)
        self.links.append(at)
        return target

    def assert_untouched(self) -> None:
        for target, (content, mode) in self.before.items():
            assert target.read_bytes() == content and _mode(target) == mode, target
        for folder in self.folder.iterdir():
            if folder.is_dir():
                assert list(folder.iterdir()) == [], f"something was written through the link into {folder}"


def test_planted_links_on_every_file_change_no_target(project: Project, tmp_path: Path, litestream_bins) -> None:
    """Links on every state file, the lock files, the written config and the temporary folder: the whole
    sequence either works around each link (a rename replaces the link itself) or refuses cleanly."""
    targets = Targets(tmp_path / "targets")
    state_dir = project.dir / ".backupctl"
    assert run_cli("setup", cwd=project.dir).returncode == 0  # litestream.yml is backupctl's own
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="2s")
    for name in STATE_FILES:
        targets.plant(state_dir / name)
    targets.plant_folder(state_dir / "tmp")
    targets.plant(project.dir / "litestream.yml")
    settings = settings_of(project)
    db = settings.databases[0]
    targets.plant(locks.database_lock_path(db.path))
    targets.plant(locks.replica_lock_path(db.replicas[0]))

    results = {}
    for command in (["setup", "--local"], ["setup"], ["start", "--background"], ["status"], ["verify"], ["stop"],
                    ["restore", "-o", str(tmp_path / "out.db")], ["service", "systemd", "--install"]):  # fmt: skip
        result = run_cli(*command, cwd=project.dir, timeout=180)
        results[command[0]] = result.returncode
        assert result.returncode in (0, ExitCode.CONFIG, ExitCode.STATUS_DOWN, ExitCode.NOT_FOUND, ExitCode.VERIFY_FAILED), (
            command, result.returncode, result.stderr)  # fmt: skip
        assert "Traceback" not in result.stderr, result.stderr
        if result.returncode == ExitCode.CONFIG:
            assert "symbolic link" in result.stderr, result.stderr
    targets.assert_untouched()
    # setup replaced the links of the files it writes whole (the config, its stamp, the local-mode mark)
    assert results["setup"] == 0
    assert not (project.dir / "litestream.yml").is_symlink() and "dbs:" in (project.dir / "litestream.yml").read_text()
    # start refused on the links of the files it appends to or locks, naming one
    assert results["start"] == ExitCode.CONFIG
    assert not any(p.info["cmdline"] and "litestream" in p.info["cmdline"][0] for p in psutil.process_iter(["cmdline"])
                   if str(project.dir) in " ".join(p.info["cmdline"] or []))  # fmt: skip


def test_links_removed_the_sequence_works_and_every_link_stays_a_link(project: Project, tmp_path: Path, litestream_bins) -> None:
    """With a link left only on the files written whole, the full sequence succeeds: each link is replaced
    by backupctl's own file and no target changes."""
    targets = Targets(tmp_path / "targets")
    state_dir = project.dir / ".backupctl"
    assert run_cli("setup", cwd=project.dir).returncode == 0  # litestream.yml is backupctl's own
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="2s")
    for name in ("supervisor.json", "supervisor.yml", "observations.json", "continuity.json", "verify.json",
                 "config.stamp", "status.json", "local-mode"):  # fmt: skip
        targets.plant(state_dir / name)
    targets.plant(project.dir / "litestream.yml")
    for command in (["setup"], ["start", "--background"]):
        result = run_cli(*command, cwd=project.dir, timeout=180)
        assert result.returncode == 0, (command, result.stderr)
    try:
        insert_rows(project.db, 5)
        wait_for(lambda: run_cli("status", cwd=project.dir).returncode == 0, 60, 0.5, "status ok")
        assert run_cli("verify", cwd=project.dir, timeout=180).returncode == 0
    finally:
        stopped = run_cli("stop", cwd=project.dir, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    out = tmp_path / "out.db"
    assert run_cli("restore", "-o", str(out), cwd=project.dir, timeout=180).returncode == 0
    assert count_rows(out) == count_rows(project.db)
    targets.assert_untouched()
    still_links = sorted(link.name for link in targets.links if link.is_symlink())
    # what the sequence wrote replaced its link; only files it had no reason to write are links still
    assert set(still_links) <= {"local-mode", "status.json", "continuity.json"}, still_links


def test_a_state_folder_that_is_a_link_is_refused(project: Project, tmp_path: Path, litestream_bins) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (project.dir / ".backupctl").symlink_to(elsewhere, target_is_directory=True)
    for command in (["setup"], ["start", "--background"], ["status"]):
        result = run_cli(*command, cwd=project.dir)
        _clean_failure(result)
        assert ".backupctl" in result.stderr and "symbolic link" in result.stderr
    assert list(elsewhere.iterdir()) == []
    # --json: the refusal is one JSON error object
    doc = json.loads(run_cli("status", "--json", cwd=project.dir).stdout)
    assert doc["ok"] is False and doc["error"]["kind"] == "unsafe-path"


def test_folders_are_private_whatever_the_umask(project: Project, isolated_home: Path, litestream_bins) -> None:
    env = dict(os.environ)
    started = subprocess.run(
        [sys.executable, "-m", "backupctl", "start", "--background"], cwd=project.dir, env=env, capture_output=True,
        text=True, timeout=180, preexec_fn=lambda: os.umask(0), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        unit = subprocess.run(
            [sys.executable, "-m", "backupctl", "service", "systemd", "--install"], cwd=project.dir, env=env,
            capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.umask(0), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert unit.returncode == 0, unit.stderr
        state_home = isolated_home / ".local" / "state" / "backupctl"
        for folder in (state_home, state_home / "locks", state_home / "procs", project.dir / ".backupctl",
                       isolated_home / ".config" / "systemd" / "user"):  # fmt: skip
            assert _mode(folder) == 0o700, folder
        for record in (state_home / "procs").iterdir():
            assert _mode(record) == 0o600, record
        for lock in (state_home / "locks").iterdir():
            assert _mode(lock) & 0o022 == 0, lock
    finally:
        assert run_cli("stop", cwd=project.dir).returncode == 0


def test_a_state_folder_others_can_write_is_refused(project: Project, isolated_home: Path, litestream_bins) -> None:
    assert run_cli("setup", cwd=project.dir).returncode == 0
    locks_dir = isolated_home / ".local" / "state" / "backupctl" / "locks"
    locks_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(locks_dir, 0o777)
    result = run_cli("start", "--background", cwd=project.dir)
    _clean_failure(result)
    assert str(locks_dir) in result.stderr and "chmod 700" in result.stderr
    os.chmod(locks_dir, 0o700)
    state_dir = project.dir / ".backupctl"
    os.chmod(state_dir, 0o775)
    result = run_cli("status", cwd=project.dir)
    _clean_failure(result)
    assert ".backupctl" in result.stderr and "other users" in result.stderr


def test_a_forged_supervisor_record_gets_nothing_signalled(project: Project, tmp_path: Path, litestream_bins) -> None:
    """A record naming an unrelated `sleep` (right pid, start time and argv): stop leaves it alone."""
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        record = processes.register(processes.SUPERVISOR, sleeper.pid, project=project.dir, background=True)
        assert record is not None and record.file.exists()
        result = run_cli("stop", cwd=project.dir)
        assert result.returncode == 0, result.stderr
        time.sleep(0.5)
        assert sleeper.poll() is None, "stop signalled a process that is not backupctl"
    finally:
        kill_pids(sleeper.pid)
        sleeper.wait()


def test_a_forged_litestream_record_gets_no_process_group_killed(project: Project, tmp_path: Path, litestream_bins) -> None:
    """A forged orphan `litestream` record (dead parent, pdeathsig) naming a shell that leads a process
    group: start neither waits for it nor kills its group."""
    group = subprocess.Popen(["sh", "-c", "sleep 120 & sleep 120 & wait"], start_new_session=True)
    try:
        wait_for(lambda: len(psutil.Process(group.pid).children()) == 2, 10, 0.05, "the group's children")
        members = [group.pid] + [c.pid for c in psutil.Process(group.pid).children()]
        record = processes.register(processes.LITESTREAM, group.pid, project=project.dir, databases=[project.db])
        assert record is not None
        forged = {**json.loads(record.file.read_text()), "parent_pid": 1, "parent_create_time": 0.0,
                  "parent_start_ticks": 0, "pdeathsig": True}  # fmt: skip
        record.file.write_text(json.dumps(forged))
        os.chmod(record.file, 0o600)
        began = time.monotonic()
        result = run_cli("start", "--background", cwd=project.dir, timeout=180)
        took = time.monotonic() - began
        try:
            assert result.returncode == 0, result.stderr
            assert all(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in members)
            assert "stopping" not in result.stderr, result.stderr  # it was never taken for an orphan of ours
        finally:
            assert run_cli("stop", cwd=project.dir).returncode == 0
        print(f"start took {took:.1f}s")
    finally:
        os.killpg(group.pid, signal.SIGKILL)
        group.wait()


# --------------------------------------------------------------------------- a second local user

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="acting as a second user needs root (as in CI)")


def _other_users_folder() -> Path:
    """A folder the second user owns, outside pytest's root-only temporary tree."""
    folder = Path(tempfile.mkdtemp(prefix="backupctl-other-"))
    os.chmod(folder, 0o755)
    os.chown(folder, OTHER_UID, OTHER_UID)
    return folder


def _as_other_user(code: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], user=OTHER_UID, group=OTHER_UID, extra_groups=[], capture_output=True, text=True,
        timeout=30, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


@needs_root
def test_a_state_home_another_user_owns_is_refused(project: Project, tmp_path: Path, litestream_bins) -> None:
    """`sudo -E` (or a shared BACKUPCTL_HOME): root's backupctl would write into a folder the other user
    controls, where a link can be planted. It refuses, naming the folder and the fix."""
    theirs = _other_users_folder()
    try:
        planted = tmp_path / "root-only"
        planted.write_text("root's secret\n")
        os.chmod(planted, 0o600)
        (theirs / "locks").mkdir()
        os.chown(theirs / "locks", OTHER_UID, OTHER_UID)
        digest_lock = locks.database_lock_path(project.db).name
        (theirs / "locks" / digest_lock).symlink_to(planted)
        result = run_cli("start", "--background", cwd=project.dir, env={"BACKUPCTL_HOME": str(theirs)})
        _clean_failure(result)
        assert str(theirs) in result.stderr and f"uid {OTHER_UID}" in result.stderr
        assert planted.read_text() == "root's secret\n" and _mode(planted) == 0o600
        # the same for a project state folder the other user owns
        state_dir = project.dir / ".backupctl"
        state_dir.mkdir(exist_ok=True)
        os.chown(state_dir, OTHER_UID, OTHER_UID)
        result = run_cli("status", cwd=project.dir)
        _clean_failure(result)
        assert ".backupctl" in result.stderr and "chown" in result.stderr
    finally:
        shutil.rmtree(theirs, ignore_errors=True)


@needs_root
def test_a_second_user_cannot_plant_anything_even_under_umask_000(project: Project, isolated_home: Path, litestream_bins) -> None:
    """Root starts with umask 000; the second user then tries to plant a link in each folder backupctl
    made, and to forge a record: every attempt is denied by the folders' modes."""
    probe = _as_other_user("print('ok')", cwd="/")
    if probe.returncode != 0:
        pytest.skip(f"this Python cannot run as uid {OTHER_UID}: {probe.stderr.strip()[:200]}")
    # Let the second user reach the folders (pytest's tree is root-only), as a shared machine would.
    for folder in [isolated_home, *isolated_home.parents, project.dir, *project.dir.parents]:
        if str(folder).startswith(tempfile.gettempdir() + "/") and folder.is_dir():
            os.chmod(folder, _mode(folder) | 0o055)
    started = subprocess.run(
        [sys.executable, "-m", "backupctl", "start", "--background"], cwd=project.dir, capture_output=True, text=True,
        timeout=180, preexec_fn=lambda: os.umask(0), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        state_home = isolated_home / ".local" / "state" / "backupctl"
        for folder in (state_home / "locks", state_home / "procs", project.dir / ".backupctl"):
            attempt = _as_other_user(
                f"import os; os.symlink('/etc/shadow', {str(folder / 'planted')!r})", cwd="/",
            )  # fmt: skip
            assert attempt.returncode != 0 and "PermissionError" in attempt.stderr, (folder, attempt.stderr)
            assert not os.path.lexists(folder / "planted")
    finally:
        assert run_cli("stop", cwd=project.dir).returncode == 0


@pytest.mark.parametrize("form", ["url", "nested-url", "config"])
def test_a_foreign_litestream_writing_our_replica_location_is_found(
    project: Project, tmp_path: Path, litestream_bins, form: str
) -> None:
    """A raw litestream replicating *another* database into this project's replica location (or a folder
    around it): `start` refuses, naming it, instead of making two writers of one replica."""
    from tests.conftest import make_db

    other = make_db(tmp_path / "other" / "other.db", rows=1)
    ours = settings_of(project).databases[0].replicas[0]
    if form == "url":
        argv = ["replicate", str(other), f"file://{ours.path}"]
    elif form == "nested-url":
        argv = ["replicate", str(other), f"file://{project.replica_dir}"]
    else:
        config = tmp_path / "other" / "litestream.yml"
        config.write_text(f"dbs:\n  - path: {other}\n    replica:\n      type: file\n      path: {ours.path}\n")
        argv = ["replicate", "-config", str(config)]
    raw = subprocess.Popen([str(litestream_bins["0.5.17"]), *argv], cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: any(f.path == str(other) for f in psutil.Process(raw.pid).open_files()), 20, 0.1,
                 "the raw litestream to open its database")  # fmt: skip
        refused = run_cli("start", "--background", cwd=project.dir, timeout=60)
        assert refused.returncode == ExitCode.CONFLICT, refused.stderr
        assert f"pid {raw.pid}" in refused.stderr and "not started by backupctl" in refused.stderr
        assert processes.supervisor_of(project.dir) is None
    finally:
        raw.terminate()
        raw.wait(60)
    started = run_cli("start", "--background", cwd=project.dir, timeout=90)  # once it is gone, start works
    assert started.returncode == 0, started.stderr
    assert run_cli("stop", cwd=project.dir).returncode == 0


def test_status_never_rests_on_a_replica_reading_older_than_30s(project: Project, litestream_bins) -> None:
    """The supervisor re-reads an unchanged database's replica only now and then: a deleted replica must
    show in `status` at once, not minutes later. Its reading is made old by hand (as minutes of an idle
    database would), then the replica is deleted."""
    from backupctl.checks import observations

    assert run_cli("start", "--background", cwd=project.dir, timeout=120).returncode == 0
    try:
        insert_rows(project.db, 3)

        def settled() -> bool:
            # ok, and litestream's start-up snapshot written: a replica deleted before it would be made whole
            # again by that snapshot, and `status` would rightly say ok
            result = run_cli("status", "--json", cwd=project.dir)
            return result.returncode == 0 and json.loads(result.stdout)["databases"][0]["snapshot_count"] >= 1

        wait_for(settled, 60, 0.5, "status ok, with the start-up snapshot")
        shutil.rmtree(project.replica_dir)
        path = project.dir / ".backupctl" / observations.OBSERVATIONS
        # The supervisor publishes a look every 2 s or more: paused meanwhile, it cannot write its own
        # (recent) reading over the old one before `status` reads it.
        supervisor = json.loads((project.dir / ".backupctl" / "supervisor.json").read_text())["pid"]
        os.kill(supervisor, signal.SIGSTOP)
        try:
            document = json.loads(path.read_text())
            for entry in document["databases"].values():
                entry["read_at"] = time.time() - 240
            path.write_text(json.dumps(document))
            result = run_cli("status", "--json", cwd=project.dir)
        finally:
            os.kill(supervisor, signal.SIGCONT)
        doc = json.loads(result.stdout)
        assert doc["source"] == "supervisor"  # the supervisor's look, with the old replica reading redone
        (verdict,) = doc["databases"]
        assert result.returncode != 0 and verdict["verdict"] != "ok", verdict
        assert verdict["replica_read_at"] and verdict["replica_read_at"] >= doc["checked_at"][:19], verdict
    finally:
        run_cli("stop", cwd=project.dir, timeout=120)


def test_start_is_refused_while_a_restore_replaces_the_database(project: Project, litestream_bins) -> None:
    """`restore --force` holds the database's lock from its first step to its swap: a `start` meanwhile
    would replicate the old file, then the swapped one. The restore is paused (SIGSTOP) mid-way so the
    overlap is certain."""
    insert_rows(project.db, 20)
    assert run_cli("start", "--background", cwd=project.dir, timeout=120).returncode == 0
    wait_for(lambda: run_cli("status", cwd=project.dir).returncode == 0, 60, 0.5, "status ok")
    assert run_cli("stop", cwd=project.dir, timeout=120).returncode == 0
    restore = subprocess.Popen([sys.executable, "-m", "backupctl", "restore", "app.db", "--force"], cwd=project.dir,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        lock = locks.database_lock_path(project.db)
        wait_for(lambda: restore.poll() is not None or locks.holder(lock) == restore.pid, 60, 0.01, "the restore's lock")
        assert restore.poll() is None, restore.communicate()
        restore.send_signal(signal.SIGSTOP)
        refused = run_cli("start", "--background", cwd=project.dir, timeout=60)
        assert refused.returncode == ExitCode.CONFLICT, refused.stderr
        assert f"pid {restore.pid}" in refused.stderr and "restore" in refused.stderr, refused.stderr
        restore.send_signal(signal.SIGCONT)
        out, err = restore.communicate(timeout=120)
        assert restore.returncode == 0, err
    finally:
        restore.send_signal(signal.SIGCONT)
        kill_pids(restore.pid)
    assert count_rows(project.db) == 20
    started = run_cli("start", "--background", cwd=project.dir, timeout=120)
    assert started.returncode == 0, started.stderr
    assert run_cli("stop", cwd=project.dir, timeout=120).returncode == 0
