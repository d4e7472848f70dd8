"""Process records, liveness and replica keys: the pieces `start`, `stop`, `status` and `verify` agree on."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import psutil

from backupctl import processes, state
from backupctl.settings import Replica


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


def test_a_record_is_believed_only_for_its_own_process(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
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
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
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
    state.claim(shared, a)
    state.claim(shared, a)
    try:
        state.claim(shared, b)
    except ConfigError as exc:
        assert str(a.resolve()) in exc.message and "BACKUPCTL_STATE_DIR" in exc.hint
    else:
        raise AssertionError("a second project took over the state folder")
    a.rmdir()  # the owner is gone: the folder is free again
    state.claim(shared, b)
    assert state.read_json(shared / state.OWNERFILE) == {"project": str(b.resolve())}


def test_this_process_is_alive_by_its_own_record(tmp_path: Path) -> None:
    me = processes.register(processes.SUPERVISOR, os.getpid(), project=tmp_path)
    try:
        assert me is not None and me.alive() and me.create_time == psutil.Process().create_time()
    finally:
        processes.unregister(me)
    assert not me.file.exists()
