"""`status` answered from the running supervisor's looks, and never an old "ok" from a stale one.

One project through writes, a crash of litestream, an aged look, `--fresh` and a reboot, on
0.5.17 and 0.3.13 (the real binary, a file replica, real signals).
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from backupctl.checks.observations import OBSERVATIONS
from backupctl.checks.published_status import MAX_AGE
from backupctl.host import state
from tests.conftest import Project, count_rows, kill_pids, processes_mentioning, run_cli, wait_for
from tests.conftest import insert_rows as insert

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("nothing_left_running")]


def status(project: Project, *flags: str) -> tuple[int, dict]:
    result = run_cli("status", "--json", *flags, cwd=project.dir)
    return result.returncode, json.loads(result.stdout)


def caught_up_from_the_supervisor(project: Project):
    """The supervisor's look, once it shows the replica holding what the live reading says the
    database has (the live reading of the same moment is the reference)."""
    code, doc = status(project)
    if doc["source"] != "supervisor" or code != 0:
        return None
    _, live = status(project, "--fresh")
    ours, theirs = doc["databases"][0], live["databases"][0]
    if live["source"] != "live" or ours["local_position"] != theirs["local_position"]:
        return None
    if ours["replica_position"] != theirs["replica_position"] or ours["behind"] is not False:
        return None
    return doc


def test_status_reads_the_supervisors_looks_and_falls_back_when_they_are_stale(project: Project, version: str) -> None:
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="1s",
        LITESTREAM_VERSION=version,
    )  # fmt: skip
    state_dir = project.dir / ".backupctl"
    insert(project.db, 5)
    # Nothing runs: status reads for itself, and says so.
    code, doc = status(project)
    assert doc["source"] == "live" and doc["observed_at"] is None and doc["databases"][0]["observed_at"] is None
    pids: list[int | None] = []
    try:
        started = run_cli("start", "--background", cwd=project.dir, timeout=60)
        assert started.returncode == 0, started.stderr
        sup = state.read_supervisor_state(state_dir)
        pids += [sup.pid, sup.litestream_pid]

        # Writes, then the supervisor's look catches up: same positions as a live reading.
        for round_ in range(3):
            insert(project.db, 10)
            doc = wait_for(lambda: caught_up_from_the_supervisor(project), 60, what=f"the look to catch up ({round_})")
            db = doc["databases"][0]
            assert db["verdict"] == "ok" and "supervisor's look" in db["reason"], db
            assert doc["observed_at"] == db["observed_at"]
            published = json.loads((state_dir / OBSERVATIONS).read_text())
            assert published["supervisor_pid"] == sup.pid

        # A stuck supervisor (SIGSTOP) looks no more: once its last look is older than MAX_AGE,
        # status reads for itself. The look's age is set back rather than waited for.
        os.kill(sup.pid, signal.SIGSTOP)
        try:
            old = time.time() - MAX_AGE - 5
            os.utime(state_dir / OBSERVATIONS, (old, old))
            code, doc = status(project)
            assert doc["source"] == "live" and code == 0, doc
        finally:
            os.kill(sup.pid, signal.SIGCONT)
        wait_for(lambda: status(project)[1]["source"] == "supervisor", 60, what="the next look")

        # litestream crashes: the supervisor restarts it; its looks start again with the new run.
        os.kill(sup.litestream_pid, signal.SIGKILL)

        def restarted_child() -> state.SupervisorState | None:
            now = state.read_supervisor_state(state_dir)
            fresh = now and now.state == "running" and now.litestream_pid not in (None, sup.litestream_pid)
            return now if fresh else None

        restarted = wait_for(restarted_child, 60, what="litestream restarted")
        pids.append(restarted.litestream_pid)
        insert(project.db, 3)
        wait_for(lambda: caught_up_from_the_supervisor(project), 60, what="the look after the restart")

        # A reboot: everything SIGKILLed. The look left behind belongs to a dead supervisor.
        for pid in (sup.pid, restarted.litestream_pid):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not any("replicate" in (p.info["cmdline"] or []) for p in processes_mentioning(str(project.dir))), 30,
                 what="every process to be gone")  # fmt: skip
        code, doc = status(project)
        assert doc["source"] == "live" and code == 11 and doc["databases"][0]["verdict"] == "down", doc

        started = run_cli("start", "--background", cwd=project.dir, timeout=60)
        assert started.returncode == 0, started.stderr
        pids += [state.read_supervisor_state(state_dir).pid, state.read_supervisor_state(state_dir).litestream_pid]
        wait_for(lambda: caught_up_from_the_supervisor(project), 60, what="the look after the reboot")
        stopped = run_cli("stop", cwd=project.dir, timeout=120)
        assert stopped.returncode == 0, stopped.stderr
        assert not (state_dir / OBSERVATIONS).exists()  # the looks end with the run they describe
        code, doc = status(project)
        assert doc["source"] == "live" and doc["databases"][0]["verdict"] == "down"
    finally:
        kill_pids(*pids)
    out = project.dir.parent / "restored.db"
    assert run_cli("restore", "-o", str(out), cwd=project.dir).returncode == 0
    assert count_rows(out) == 38
