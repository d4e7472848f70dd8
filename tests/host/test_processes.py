"""Process records, liveness and replica keys: the pieces `start`, `stop`, `status` and `verify` agree on."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from backupctl import paths
from backupctl.config.settings import Replica
from backupctl.host import processes
from backupctl.owned import read_json


def s3(endpoint: str | None, bucket: str = "b", path: str = "app/db", region: str | None = None) -> Replica:
    return Replica(kind="s3", litestream_type="s3", path=path, bucket=bucket, endpoint=endpoint, region=region)


def test_replica_keys_name_a_place_not_a_spelling(tmp_path: Path) -> None:
    one = {s3(e).lock_key for e in ("http://H:9000", "http://h:9000/", "HTTP://h:9000//")}
    assert len(one) == 1
    assert s3("https://x.r2.cloudflarestorage.com:443/").lock_key == s3("https://X.r2.cloudflarestorage.com").lock_key
    assert s3("http://h:9000").lock_key != s3("http://h:9001").lock_key
    assert s3("http://h:9000", path="/app//db/").lock_key == s3("http://h:9000").lock_key
    assert s3(None, region="eu-west-1").lock_key != s3(None).lock_key  # AWS: the region is the endpoint
    real = tmp_path / "replica"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    spellings = [str(real / "app.db"), str(tmp_path / "x" / ".." / "replica" / "app.db"), str(tmp_path / "link" / "app.db")]
    keys = {Replica(kind="file", litestream_type="file", path=p).lock_key for p in spellings}
    assert keys == {f"file://{real.resolve()}/app.db"}


def test_overlapping_replica_locations_are_one_place() -> None:
    assert processes._overlaps("file:///r/app.db", "file:///r/app.db")
    assert processes._overlaps("file:///r", "file:///r/app.db")
    assert not processes._overlaps("file:///r/app.db", "file:///r/app.db2")


def backupctl_lookalike(tmp_path: Path) -> subprocess.Popen:
    """A Python process whose command line is that of a `backupctl` console script (it only sleeps)."""
    script = tmp_path / "bin" / "backupctl"
    script.parent.mkdir(exist_ok=True)
    script.write_text("import time\ntime.sleep(60)\n")
    return subprocess.Popen([sys.executable, str(script)])


def test_a_record_is_believed_only_for_its_own_process(tmp_path: Path) -> None:
    sleeper = backupctl_lookalike(tmp_path)
    try:
        record = processes.register(processes.SUPERVISOR, sleeper.pid, project=tmp_path, databases=[tmp_path / "a.db"])
        assert record is not None and record.alive()
        assert processes.supervisor_of(tmp_path) == record
        assert processes.replicators_of(tmp_path / "a.db", scan=False)[0].record == record
        # same pid and start time, another command line: another program
        other = dataclasses.replace(record, argv=["sleep", "60"])
        assert not other.alive()
        # same pid and command line, another start time: a reused pid
        assert not dataclasses.replace(record, create_time=record.create_time - 5, start_ticks=None).alive()
        if record.start_ticks is not None:  # Linux: the start time since boot decides, whatever the wall clock says
            assert not dataclasses.replace(record, start_ticks=record.start_ticks - 500).alive()
            assert dataclasses.replace(record, create_time=record.create_time + 3).alive()
        # a record naming another project's folder is not this project's supervisor
        assert processes.supervisor_of(tmp_path / "elsewhere") is None
    finally:
        sleeper.kill()
        sleeper.wait()
    assert processes.supervisor_of(tmp_path) is None  # dead: the record is pruned as it is read
    assert not record.file.exists()


def test_a_killed_verify_leaves_a_record_to_clean_up_after(tmp_path: Path) -> None:
    child = backupctl_lookalike(tmp_path)
    record = processes.register(processes.VERIFY, child.pid, project=tmp_path, databases=[tmp_path / "a.db"])
    child.kill()
    child.wait()
    assert processes.records(role=processes.VERIFY) == []  # not alive ...
    assert record.file.exists()  # ... but kept for the cleanup
    assert [r.pid for r in processes.leftovers(processes.VERIFY, tmp_path)] == [child.pid]
    assert not record.file.exists()


def test_a_shared_state_folder_belongs_to_its_first_project(tmp_path: Path) -> None:
    from backupctl.errors import ConfigError

    shared, a, b = tmp_path / "state", tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    paths.claim(shared, a)
    paths.claim(shared, a)
    try:
        paths.claim(shared, b)
    except ConfigError as exc:
        assert str(a.resolve()) in exc.message and "BACKUPCTL_STATE_DIR" in exc.hint
    else:
        raise AssertionError("a second project took over the state folder")
    a.rmdir()  # the owner is gone: the folder is free again
    paths.claim(shared, b)
    assert read_json(shared / paths.OWNERFILE) == {"project": str(b.resolve())}


def test_this_process_is_alive_by_its_own_record(tmp_path: Path) -> None:
    me = processes.register(processes.SUPERVISOR, os.getpid(), project=tmp_path)
    try:
        assert me is not None and me.create_time == psutil.Process().create_time()
        assert processes.is_alive(me.pid, me.create_time, me.argv, me.start_ticks)
        # ... but pytest is not backupctl: a supervisor record for it is never acted on
        assert not me.alive() and processes.supervisor_of(tmp_path) is None
    finally:
        processes.unregister(me)
    assert not me.file.exists()


def test_a_forged_record_gets_no_process_signalled(tmp_path: Path) -> None:
    """A record naming `sleep` (pid, start time and argv all right) is not believed; nor is a record
    file that is not the user's own 0600 file, nor a record whose executable changed."""
    sleeper = subprocess.Popen(["sleep", "60"])
    lookalike = backupctl_lookalike(tmp_path)
    try:
        for role in (processes.SUPERVISOR, processes.LITESTREAM):
            forged = processes.register(role, sleeper.pid, project=tmp_path, databases=[tmp_path / "a.db"])
            assert forged is not None and forged.file.exists()
            assert processes.is_alive(forged.pid, forged.create_time, forged.argv, forged.start_ticks)
            assert not forged.alive()
            assert processes.records(project=tmp_path) == []  # not believed, and pruned
            assert not forged.file.exists()
        from backupctl.supervise.background import stop_supervisor

        forged = processes.register(processes.SUPERVISOR, sleeper.pid, project=tmp_path)
        assert stop_supervisor(forged, tmp_path / "state", 5).was_running is False
        assert sleeper.poll() is None  # never signalled
        # the right program, but a record file others could have written: not read at all
        record = processes.register(processes.SUPERVISOR, lookalike.pid, project=tmp_path)
        assert record is not None and processes.supervisor_of(tmp_path) == record
        os.chmod(record.file, 0o644)
        assert processes.supervisor_of(tmp_path) is None
        os.chmod(record.file, 0o600)
        assert processes.supervisor_of(tmp_path) == record
        # a record whose recorded executable is not the one running
        assert not dataclasses.replace(record, exe="/usr/bin/env").alive()
        # a record file that is a link to a real record is not followed
        link = record.file.with_name(f"{processes.SUPERVISOR}-1.json")
        link.symlink_to(record.file)
        assert [r.pid for r in processes.records(project=tmp_path)] == [lookalike.pid]
        link.unlink()
        processes.unregister(record)
    finally:
        for proc in (sleeper, lookalike):
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_process_sent_sigkill_is_dead_at_once() -> None:
    """Right after kill(SIGKILL) returns, /proc still says the process runs ("R") until the kernel has
    torn it down; a `status` asked in that moment (a reboot's kills under load) must not believe it."""
    import signal

    from backupctl.host import liveness

    proc = subprocess.Popen(["sleep", "30"])
    try:
        ticks = liveness.start_ticks(proc.pid)
        assert ticks is not None and liveness.alive_from_proc(proc.pid, ticks) is True
        os.kill(proc.pid, signal.SIGSTOP)  # stopped is still alive
        assert liveness.alive_from_proc(proc.pid, ticks) is True
        os.kill(proc.pid, signal.SIGKILL)
        assert liveness.alive_from_proc(proc.pid, ticks) is False  # whatever /proc's state letter says yet
    finally:
        proc.kill()
        proc.wait()
    assert liveness.alive_from_proc(proc.pid, ticks) is False
