"""One project through its life: idle restarts, a reboot, foreground services, neighbours and intruders.

Each test is a sequence of real commands on real processes (the real pinned litestream, real
SQLite, real signals), on 0.5.17 and 0.3.13: the failures users met lived between commands.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from backupctl.errors import ExitCode
from backupctl.host import processes, state
from tests.conftest import Project, count_rows, kill_pids, make_db, processes_mentioning, run_cli, wait_for
from tests.conftest import insert_rows as insert

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("nothing_left_running")]
BIN = Path(sys.executable).parent


def supervisor_state(project: Project) -> state.SupervisorState | None:
    return state.read_supervisor_state(project.dir / ".backupctl")


def litestreams_on(db: Path) -> list[psutil.Process]:
    """Every litestream replicate process whose command line or config is about this project."""
    found = []
    for proc in processes_mentioning(str(db.parent.parent)):
        cmd = proc.info["cmdline"] or []
        if cmd and Path(cmd[0]).name == "litestream" and "replicate" in cmd:
            found.append(proc)
    return found


def restored_rows(project: Project, name: str) -> int:
    out = project.dir.parent / name
    result = run_cli("restore", "-o", str(out), cwd=project.dir)
    assert result.returncode == 0, result.stderr
    return count_rows(out)


def stop(project: Project) -> subprocess.CompletedProcess[str]:
    result = run_cli("stop", cwd=project.dir, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def test_ten_idle_restarts_a_reboot_and_a_verify(project: Project, version: str) -> None:
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="1s",
        LITESTREAM_VERSION=version,
    )  # fmt: skip
    insert(project.db, 5)
    pids: list[int | None] = []
    try:
        for cycle in range(10):
            started = run_cli("start", "--background", cwd=project.dir, timeout=60)
            assert started.returncode == 0, f"cycle {cycle}: {started.stderr}"
            current = supervisor_state(project)
            pids += [current.pid, current.litestream_pid]
            # confirmed by position, within seconds, although an idle database logs nothing
            assert current.confirmed_at - current.child_started_at < 10, f"cycle {cycle}"
            stopped = stop(project)
            assert "final sync completed" in stopped.stderr, f"cycle {cycle}: {stopped.stderr}"
            assert litestreams_on(project.db) == []

        # A reboot: supervisor and litestream SIGKILLed together, with rows committed just before.
        assert run_cli("start", "--background", cwd=project.dir, timeout=60).returncode == 0
        current = supervisor_state(project)
        insert(project.db, 7)
        for pid in (current.pid, current.litestream_pid):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: litestreams_on(project.db) == [], 30, what="every process to be gone")
        status = run_cli("status", "--json", cwd=project.dir)
        assert status.returncode == ExitCode.STATUS_DOWN, status.stdout
        after = run_cli("start", "--background", cwd=project.dir, timeout=60)
        assert after.returncode == 0, after.stderr
        pids += [supervisor_state(project).pid, supervisor_state(project).litestream_pid]
        assert len(litestreams_on(project.db)) == 1

        # verify relies on the running supervisor, and `status` shows the verify that was recorded
        verified = run_cli("verify", cwd=project.dir, timeout=120)
        assert verified.returncode == 0, verified.stderr + verified.stdout
        table = run_cli("status", cwd=project.dir, env={"COLUMNS": "200"})
        assert table.returncode == 0, table.stderr + table.stdout
        assert "verified" in table.stdout and "FAILED" not in table.stdout, table.stdout
        assert stop(project).stderr.count("final sync completed") == 1
    finally:
        kill_pids(*pids)
    assert restored_rows(project, "after-reboot.db") == 12


def test_a_running_supervisor_is_untouched_by_reads_and_setup(project: Project, tmp_path: Path) -> None:
    insert(project.db, 3)
    pids: list[int | None] = []
    try:
        assert run_cli("start", "--background", cwd=project.dir, timeout=60).returncode == 0
        current = supervisor_state(project)
        pids += [current.pid, current.litestream_pid]
        running_config = Path(current.config_path)
        before = running_config.read_bytes()
        # a second database in the .env while it runs
        make_db(project.dir / "db" / "extra.db", rows=1)
        project.write_env(
            BACKUP_DATABASES="db/app.db,db/extra.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="1s"
        )
        rendered = project.dir / "litestream.yml"
        rendered_before = rendered.read_bytes()
        for args in (["status", "--json"], ["databases", "--json"], ["snapshots", "--json"], ["generations", "--json"]):
            run_cli(*args, cwd=project.dir)
            assert running_config.read_bytes() == before, args
            assert rendered.read_bytes() == rendered_before, args  # read commands never write litestream.yml
        doc = json.loads(run_cli("status", "--json", cwd=project.dir).stdout)
        assert "settings changed" in doc["supervisor"]["settings_changed"]
        extra = next(d for d in doc["databases"] if d["name"] == "extra.db")
        assert extra["verdict"] == "down" and "restart it to apply" in extra["reason"]
        assert run_cli("setup", cwd=project.dir).returncode == 0
        assert rendered.read_bytes() != rendered_before  # setup writes litestream.yml ...
        assert running_config.read_bytes() == before  # ... and the running supervisor keeps its own copy
        stop(project)
    finally:
        kill_pids(*pids)


def test_foreground_supervisors_are_seen_by_status_and_the_service_healthcheck(project: Project, version: str) -> None:
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="1s",
        LITESTREAM_VERSION=version,
    )  # fmt: skip
    insert(project.db, 2)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

    def status_ok() -> bool:
        result = run_cli("status", "--json", cwd=project.dir)
        return result.returncode == 0 and json.loads(result.stdout)["databases"][0]["verdict"] == "ok"

    # 1. `backupctl start` in a terminal of its own (setsid): status sees it; `stop` stops it
    fg = subprocess.Popen(["setsid", str(BIN / "backupctl"), "start"], cwd=project.dir, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(status_ok, 30, 0.5, "status to say ok for a foreground supervisor")
        doc = json.loads(run_cli("status", "--json", cwd=project.dir).stdout)
        assert doc["supervisor"]["mode"] == "foreground" and doc["supervisor"]["pid"] == fg.pid
        compose = yaml.safe_load(run_cli("service", "compose", cwd=project.dir).stdout)
        test = compose["services"]["backupctl"]["healthcheck"]["test"]
        assert test[0] == "CMD"
        health = subprocess.run(test[1:], cwd=project.dir, env=env, capture_output=True, text=True, timeout=60)
        assert health.returncode == 0, health.stdout + health.stderr
        stopped = stop(project)
        assert "final sync completed" in stopped.stderr
        assert fg.wait(30) == ExitCode.TERMINATED
    finally:
        kill_pids(fg.pid)

    # 2. systemd's ExecStart, run with the unit's environment only (env -i, HOME, the unit's variables and
    #    the INVOCATION_ID systemd gives every service): `stop` leaves it to systemd unless --force
    unit = run_cli("service", "systemd", cwd=project.dir).stdout
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    unit_env = ["HOME=" + os.environ["HOME"], "PYTHONUNBUFFERED=1", "BACKUPCTL_CACHE_DIR=" + os.environ["BACKUPCTL_CACHE_DIR"],
                "INVOCATION_ID=0123456789abcdef"]  # fmt: skip
    service = subprocess.Popen(["setsid", "env", "-i", *unit_env, *argv], cwd="/",
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(status_ok, 30, 0.5, "status to say ok for the systemd unit's command")
        health = subprocess.run(test[1:], cwd=project.dir, env=env, capture_output=True, text=True, timeout=60)
        assert health.returncode == 0, health.stdout + health.stderr
        refused = run_cli("stop", cwd=project.dir)
        assert refused.returncode == ExitCode.REFUSED and "systemd" in refused.stderr and "--force" in refused.stderr
        assert service.poll() is None
        forced = run_cli("stop", "--force", cwd=project.dir, timeout=120)
        assert forced.returncode == 0 and "final sync completed" in forced.stderr, forced.stderr
        service.wait(30)
    finally:
        kill_pids(service.pid)
    assert processes.supervisor_of(project.dir) is None


def test_second_replicators_are_refused(project: Project, litestream_bins: dict[str, Path], tmp_path: Path) -> None:
    insert(project.db, 4)
    assert run_cli("setup", cwd=project.dir).returncode == 0
    # 1. a raw litestream replicating the database
    raw = subprocess.Popen([str(litestream_bins["0.5.17"]), "replicate", "-config", str(project.dir / "litestream.yml")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: any(f.path == str(project.db) for f in psutil.Process(raw.pid).open_files()), 20,
                 what="the raw litestream to open the database")  # fmt: skip
        for args in (["start"], ["start", "--background"]):
            refused = run_cli(*args, cwd=project.dir, timeout=60)
            assert refused.returncode == ExitCode.CONFLICT, refused.stderr
            assert str(raw.pid) in refused.stderr and "litestream replicate -config" in refused.stderr
    finally:
        raw.terminate()
        raw.wait(60)

    # 2. a SIGKILLed verify: its temporary replicator never stays beside a supervisor
    verify = subprocess.Popen([sys.executable, "-m", "backupctl", "verify"], cwd=project.dir,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    temporary = wait_for(lambda: processes.records(role=processes.VERIFY_REPLICATOR), 30, what="verify's replicator")
    verify.kill()
    verify.wait()
    pids: list[int | None] = [temporary[0].pid]
    try:
        started = run_cli("start", "--background", cwd=project.dir, timeout=90)
        assert started.returncode == 0, started.stderr
        pids += [supervisor_state(project).pid, supervisor_state(project).litestream_pid]
        assert len(litestreams_on(project.db)) == 1
        con = sqlite3.connect(project.db)
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        con.close()
        assert "_backupctl_verify" not in tables
        stop(project)
    finally:
        kill_pids(*pids)


def test_neighbour_projects_never_share_a_replica_or_a_state_folder(project: Project, tmp_path: Path) -> None:
    insert(project.db, 2)
    neighbour = tmp_path / "neighbour"
    make_db(neighbour / "db" / "app.db", rows=1)
    (tmp_path / "link-to-replicas").symlink_to(project.replica_dir.parent / project.replica_dir.name)
    pids: list[int | None] = []
    try:
        assert run_cli("start", "--background", cwd=project.dir, timeout=60).returncode == 0
        pids += [supervisor_state(project).pid, supervisor_state(project).litestream_pid]
        for spelling in (f"../{project.replica_dir.name}", str(tmp_path / "link-to-replicas")):
            (neighbour / ".env").write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={spelling}\n")
            refused = run_cli("start", "--background", cwd=neighbour, timeout=60)
            assert refused.returncode == ExitCode.CONFLICT, spelling + refused.stderr
            assert "replica" in refused.stderr and str(project.dir.resolve()) in refused.stderr
        # one BACKUPCTL_STATE_DIR for both: the second project is told, and cannot stop the first
        shared = {"BACKUPCTL_STATE_DIR": str(tmp_path / "shared-state")}
        (neighbour / ".env").write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={tmp_path / 'own-replica'}\n")
        assert run_cli("status", "--json", cwd=project.dir, env=shared).returncode in (0, ExitCode.STATUS_DOWN)
        other = run_cli("stop", cwd=neighbour, env=shared)
        assert other.returncode == ExitCode.CONFIG and "belongs to the project" in other.stderr
        assert not psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
        stop(project)
    finally:
        kill_pids(*pids)
    assert restored_rows(project, "mine.db") == 2
    assert sorted(p.name for p in project.replica_dir.iterdir()) == ["app.db"]


def test_a_second_background_start_says_already_running_unless_the_settings_differ(project: Project) -> None:
    """`start --background` is how people and scripts make sure replication runs: the same supervisor
    running with the same settings is a yes (exit 0, naming it); with other settings it is still a no."""
    pids: list[int | None] = []
    try:
        assert run_cli("start", "--background", cwd=project.dir, timeout=60).returncode == 0
        current = supervisor_state(project)
        pids += [current.pid, current.litestream_pid]
        again = run_cli("start", "--background", cwd=project.dir, timeout=60)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr and f"pid {current.pid}" in again.stderr, again.stderr
        assert "starting the background supervisor" not in again.stderr  # nothing was launched
        spelled = run_cli("start", "-b", "-config", str(project.dir / "litestream.yml"), cwd=project.dir, timeout=60)
        assert spelled.returncode == 0 and "already running" in spelled.stderr, spelled.stderr  # the very same config
        # other settings: a restart would apply them, so "running" would be a lie; it names the supervisor
        changed = run_cli("start", "--background", cwd=project.dir, env={"BACKUP_SYNC_INTERVAL": "7s"}, timeout=60)
        assert changed.returncode == ExitCode.CONFLICT, changed.stderr
        assert "other settings" in changed.stderr and f"pid {current.pid}" in changed.stderr, changed.stderr
        mine = project.dir / "mine.yml"
        mine.write_text((project.dir / "litestream.yml").read_text())
        own = run_cli("start", "--background", "--config", str(mine), cwd=project.dir, timeout=60)
        assert own.returncode == ExitCode.CONFLICT and "other settings" in own.stderr, own.stderr
        foreground = run_cli("start", cwd=project.dir, timeout=60)  # a foreground start cannot be "already" anything
        assert foreground.returncode == ExitCode.CONFLICT, foreground.stderr
        assert supervisor_state(project).pid == current.pid and len(litestreams_on(project.db)) == 1
        stop(project)
    finally:
        kill_pids(*pids)
