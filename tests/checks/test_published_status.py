"""`status --json` answered from the running supervisor's published look (``checks.published_status``):
the same document as the full path, on real replication with the real pinned litestream, and the
full path whenever the look cannot be proven current."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backupctl.checks import published_status
from backupctl.checks.status import collect_status
from backupctl.config.settings import load_settings
from backupctl.host import state
from backupctl.paths import project_state_dir
from tests.checks.test_status import Running, start_replication, stop
from tests.conftest import kill_pids, make_db, run_cli, wait_for
from tests.litestream.test_listings import insert, write_env


def _project(tmp_path: Path, version: str) -> Path:
    proj = tmp_path / "proj"
    (proj / "db").mkdir(parents=True)
    for name in ("app.db", "queue.db"):
        make_db(proj / "db" / name, rows=3)
    write_env(proj, version, "file", BACKUP_DATABASES="db/*.db")
    return proj


def _published(proj: Path, running: Running) -> dict:
    """Wait for the frame and a look covering every database, and return the frame."""
    state_dir = project_state_dir(proj)  # BACKUPCTL_STATE_DIR's, when set

    def ready() -> bool:
        frame = published_status.read_document(str(state_dir / published_status.FRAME))
        looks = published_status.read_looks(str(state_dir), "observations.json", running.pid, time.time())
        return bool(frame and looks and all("shown_local" in looks[1].get(db["path"], {}) for db in frame["databases"]))

    wait_for(ready, timeout=60, what="the supervisor's frame and a look at every database")
    frame = published_status.read_document(str(state_dir / published_status.FRAME))
    assert frame is not None
    return frame


def _both(proj: Path, binary: Path, database: str | None = None) -> tuple[dict | None, dict]:
    """The published answer and the full one, at one instant, from the project's folder."""
    cwd = os.getcwd()
    os.chdir(proj)
    try:
        now = time.time()
        found = published_status.consult(None, database, os.environ, now)
        fast = found if isinstance(found, dict) else None
        print("published answer:", "used" if fast else found)
        full = collect_status(load_settings(proj / ".env"), binary, database, now=now).to_json()
    finally:
        os.chdir(cwd)
    return fast, full


@pytest.mark.parametrize("version", ["0.5.17", "0.3.13"])
def test_the_published_answer_is_the_full_answer(tmp_path: Path, version: str, litestream_bins: dict[str, Path]) -> None:
    proj = _project(tmp_path, version)
    running = start_replication(proj, litestream_bins[version])
    try:
        frame = _published(proj, running)
        assert [db["name"] for db in frame["databases"]] == ["app.db", "queue.db"]
        fast, full = _both(proj, litestream_bins[version])
        assert fast is not None, "the published look was not used: nothing below compares it"
        assert full["source"] == "supervisor"
        assert fast == full

        # one database by name, and a write the replica catches up with
        insert(proj / "db" / "app.db", 100, 5)
        fast, full = _both(proj, litestream_bins[version], "queue.db")
        assert fast is not None and fast == full and [d["name"] for d in fast["databases"]] == ["queue.db"]

        # the records status shows beside the look: a verify, and a continuity check that found a hole
        state_dir = project_state_dir(proj)
        app = str((proj / "db" / "app.db").resolve())
        state.record_verify(state_dir, app, state.VerifyRecord.failure(app, "app.db", "rows missing"))
        records = json.loads((state_dir / "continuity.json").read_text()) if (state_dir / "continuity.json").exists() else {}
        records[app] = {"verdict": "broken", "reason": "the replica's newest state is no committed state",
                        "checked_at": time.time(), "broken_since": time.time() - 5}  # fmt: skip
        (state_dir / "continuity.json").write_text(json.dumps(records))
        os.chmod(state_dir / "continuity.json", 0o600)
        fast, full = _both(proj, litestream_bins[version])
        assert fast is not None and fast == full
        verdicts = {d["name"]: d["verdict"] for d in fast["databases"]}
        assert verdicts["app.db"] == "broken" and fast["exit_code"] == full["exit_code"] != 0
        assert fast["databases"][0]["last_verify"]["status"] == "failed"
    finally:
        stop(running)
    assert not (project_state_dir(proj) / published_status.FRAME).exists(), "the frame outlived its supervisor"


def test_the_cli_answers_from_the_look_without_loading_the_settings(tmp_path: Path, litestream_bins: dict[str, Path]) -> None:
    proj = _project(tmp_path, "0.5.17")
    running = start_replication(proj, litestream_bins["0.5.17"])
    try:
        _published(proj, running)
        probe = (
            "import sys, json\n"
            "from backupctl.cli import main\n"
            "code = main(['status', '--json'])\n"
            "heavy = ['typer', 'click', 'jinja2', 'psutil', 'dotenv', 'rich', 'dataclasses',\n"
            "         'backupctl.config.settings', 'backupctl.litestream.runner', 'backupctl.checks.status']\n"
            "print(json.dumps({'code': code, 'loaded': [m for m in heavy if m in sys.modules]}), file=sys.stderr)\n"
        )
        res = subprocess.run([sys.executable, "-c", probe], cwd=proj, capture_output=True, text=True, timeout=60)
        seen = json.loads(res.stderr.strip().splitlines()[-1])
        document = json.loads(res.stdout)
        assert seen == {"code": 0, "loaded": []}, res.stderr
        assert document["source"] == "supervisor" and document["ok"] is True
        assert [d["verdict"] for d in document["databases"]] == ["ok", "ok"]
    finally:
        stop(running)


def test_anything_unproven_takes_the_full_path(tmp_path: Path, litestream_bins: dict[str, Path]) -> None:
    binary = litestream_bins["0.5.17"]
    proj = _project(tmp_path, "0.5.17")
    running = start_replication(proj, binary)
    try:
        _published(proj, running)
        assert _both(proj, binary)[0] is not None

        # a variable exported in the caller's environment: other settings, perhaps
        os.environ["BACKUP_STALE_AFTER"] = "5m"
        try:
            fast, full = _both(proj, binary)
            assert fast is None and full["stale_after_seconds"] == 300
        finally:
            del os.environ["BACKUP_STALE_AFTER"]
        assert _both(proj, binary)[0] is not None

        # a new database in the glob's folder: the full path shows it (not replicated by this supervisor)
        make_db(proj / "db" / "new.db", rows=1)
        fast, full = _both(proj, binary)
        assert fast is None
        assert "new.db" in [d["name"] for d in full["databases"]]
        (proj / "db" / "new.db").unlink()

        # the .env edited: the full path says the settings changed
        with open(proj / ".env", "a") as fh:
            fh.write("BACKUP_SYNC_INTERVAL=3s\n")
        fast, full = _both(proj, binary)
        assert fast is None and full["supervisor"]["settings_changed"]

        # a forged frame naming another process
        frame_path = project_state_dir(proj) / published_status.FRAME
        frame = json.loads(frame_path.read_text())
        frame["supervisor"]["start_ticks"] += 1
        frame_path.write_text(json.dumps(frame))
        assert published_status.answer(str(proj / ".env"), None, os.environ, time.time()) is None
    finally:
        kill_pids(running.pid, running.litestream_pid)
    # killed: its frame is left behind, and names a process that is gone
    wait_for(lambda: _both(proj, binary)[1]["supervisor"]["running"] is False, timeout=30, what="the kill to show")
    assert (project_state_dir(proj) / published_status.FRAME).exists()
    assert _both(proj, binary)[0] is None


def _watchable(folder: Path) -> bool:
    from backupctl.host.watch import LOCAL_FILE_SYSTEMS, file_system_type, mounts

    return file_system_type(str(folder), mounts()) in LOCAL_FILE_SYSTEMS


def test_an_idle_local_folder_reading_stands_until_the_folder_changes(tmp_path: Path, litestream_bins: dict[str, Path]) -> None:
    """A reading older than MAX_AGE is used when the local folder it read is unchanged since; a file
    added to it ends that, and the supervisor, which watches the folder, reads it again at its next look."""
    binary = litestream_bins["0.5.17"]
    proj = _project(tmp_path, "0.5.17")
    running = start_replication(proj, binary)
    try:
        _published(proj, running)
        state_dir = project_state_dir(proj)

        def entry_now() -> dict:
            looks = published_status.read_looks(str(state_dir), "observations.json", running.pid, time.time())
            assert looks is not None
            return looks[1][str((proj / "db" / "app.db").resolve())]

        def standing() -> dict | None:
            entry = entry_now()
            aged = float(entry["read_at"]) + published_status.MAX_AGE + 5
            return entry if published_status.reading_current(entry, aged) else None

        # litestream may still write into the folder after a look (its compactions): a look after the last one stands
        entry = wait_for(standing, timeout=90, what="a look whose witness the folder still matches")
        root = entry["witness"][0]
        assert root == str(proj.parent / "replicas" / "app.db")
        later = float(entry["read_at"]) + published_status.MAX_AGE + 5
        # on a witness of all its folders alone (no watch: macOS, a network folder), a reading this old
        # stands while every folder is unchanged, and no longer once one changes
        unwatched = {key: value for key, value in entry.items() if key != "watched"}
        unwatched["witness"] = published_status.folder_witness(root)
        assert published_status.reading_current(unwatched, later)
        level = next(p for p in sorted((Path(root) / "ltx").iterdir()) if p.is_dir())
        planted = level / "planted"
        planted_at = time.time()
        planted.write_bytes(b"")
        try:
            assert not published_status.reading_current(unwatched, later)
            assert published_status.reading_current(unwatched, float(entry["read_at"]) + 1)
            if not sys.platform.startswith("linux") or not _watchable(Path(root)):
                return  # no inotify, or not a local file system: the witness is all there is
            # the supervisor watches the folders (host.watch): its witness is of the replica's own folder, the
            # watch stands for the rest; told of the change, its next look reads the replica again
            assert entry.get("watched") is True and entry["witness"][1] == [""]
            reread = wait_for(lambda: (e := entry_now()).get("watched") and float(e["read_at"]) >= planted_at and e,
                              timeout=60, what="the supervisor's look to read the changed folder again")  # fmt: skip
            assert published_status.reading_current(reread, float(reread["read_at"]) + published_status.MAX_AGE + 5)
        finally:
            planted.unlink()
    finally:
        stop(running)


def test_a_stopped_supervisor_leaves_no_frame_and_the_full_path_says_so(tmp_path: Path, litestream_bins: dict[str, Path]) -> None:
    binary = litestream_bins["0.5.17"]
    proj = _project(tmp_path, "0.5.17")
    running = start_replication(proj, binary)
    _published(proj, running)
    os.kill(running.litestream_pid or 0, signal.SIGSTOP)  # a hung litestream: the look goes on
    try:
        time.sleep(3)  # past LISTED_TIME_SLACK after the last backup, so the write is known to be unshipped
        con = sqlite3.connect(proj / "db" / "app.db")
        con.execute("INSERT INTO items (body) VALUES ('unshipped')")
        con.commit()
        con.close()
        def seen() -> bool:
            fast, full = _both(proj, binary)
            return bool(fast) and fast["databases"][0]["behind"] is True

        wait_for(seen, timeout=60, what="the look to see the unshipped write")
        fast, full = _both(proj, binary)
        assert fast is not None and fast == full
    finally:
        os.kill(running.litestream_pid or 0, signal.SIGCONT)
        stop(running)
    res = run_cli("status", "--json", cwd=proj)
    assert res.returncode != 0 and json.loads(res.stdout)["supervisor"]["running"] is False
    assert not (project_state_dir(proj) / published_status.FRAME).exists()


def test_a_state_folder_named_by_the_environment_is_read_when_this_project_claimed_it(
    tmp_path: Path, litestream_bins: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compose service names its state folder (BACKUPCTL_STATE_DIR): its healthcheck gets the
    published answer too, and another project naming the same folder does not."""
    binary = litestream_bins["0.5.17"]
    monkeypatch.setenv("BACKUPCTL_STATE_DIR", str(tmp_path / "state" / "project"))
    proj = _project(tmp_path, "0.5.17")
    running = start_replication(proj, binary)
    try:
        _published(proj, running)
        fast, full = _both(proj, binary)
        assert fast is not None and fast == full
        other = tmp_path / "other"
        other.mkdir()
        (other / ".env").write_text((proj / ".env").read_text())
        found = published_status.consult(str(other / ".env"), None, os.environ, time.time())
        assert isinstance(found, str) and "not claimed by this project" in found
    finally:
        stop(running)


def test_a_witness_holds_while_no_folder_of_the_replica_changes(tmp_path: Path) -> None:
    """folder_witness against the file system alone: every folder below the root is in it, a file added
    or removed in any of them breaks it, a root removed and made again breaks even a fresh reading,
    and a witness of another shape (a look written by another version) never holds."""
    root = tmp_path / "replica"
    (root / "ltx" / "0").mkdir(parents=True)
    (root / "ltx" / "9").mkdir()
    witness = published_status.folder_witness(str(root))
    assert witness[0] == str(root) and witness[1] == ["", "ltx", "ltx/0", "ltx/9"]
    assert published_status.witness_holds(witness)
    read = {"witness": witness, "read_at": time.time() - published_status.MAX_AGE - 5}
    assert published_status.reading_current(read, time.time())

    planted = root / "ltx" / "9" / "0000000000000001-0000000000000001.ltx"
    planted.write_bytes(b"x")
    assert not published_status.witness_holds(witness)
    assert not published_status.reading_current(read, time.time())
    assert published_status.reading_current({**read, "read_at": time.time()}, time.time())  # young: stands
    planted.unlink()

    again = published_status.folder_witness(str(root))
    (root / "ltx" / "0").rmdir()
    assert not published_status.witness_holds(again)
    for shape in ([[str(root), [1, 2, 3, 4, 5]]], [str(root), ["ltx"], "1:2:3:4:5"], "x", None):
        assert not published_status.witness_holds(shape)

    gone = published_status.folder_witness(str(root))
    os.rename(root, tmp_path / "moved")
    root.mkdir()  # made anew, as litestream's next write would
    fresh = {"witness": gone, "read_at": time.time()}
    assert not published_status.reading_current(fresh, time.time())


def test_the_settings_key_sees_a_glob_as_glob_does(tmp_path: Path) -> None:
    """config.inputs matches BACKUP_DATABASES's globs itself (without glob's imports): the same files
    as glob.glob, hidden ones and sub-folders included or left out alike."""
    import glob

    from backupctl.config.inputs import _matches

    folder = tmp_path / "dbs"
    (folder / "sub.db").mkdir(parents=True)
    for name in ("a.db", "b.db", ".hidden.db", "a.db-wal", "c.sqlite", "[x].db"):
        (folder / name).write_bytes(b"")
    (folder / "link.db").symlink_to(folder / "gone")
    for name in ("*.db", "?.db", ".*.db", "[ab].db", "a.db", "missing.db", "*", "[[]x].db"):
        pattern = str(folder / name)
        assert _matches(pattern) == sorted(glob.glob(pattern)), name
    assert _matches(str(tmp_path / "nowhere" / "*.db")) == []


def test_a_wildcard_matches_as_fnmatch_does() -> None:
    import fnmatch
    import random

    from backupctl.config.inputs import _wildcard_match

    rng = random.Random(4)
    for _ in range(20000):
        pattern = "".join(rng.choice("ab.*?") for _ in range(rng.randint(0, 7)))
        name = "".join(rng.choice("ab.") for _ in range(rng.randint(0, 9)))
        assert _wildcard_match(pattern, name) == fnmatch.fnmatchcase(name, pattern), (pattern, name)
    for _ in range(20000):  # `*` alone (its own shorter way, inputs._star_match)
        pattern = "".join(rng.choice("ab.**") for _ in range(rng.randint(0, 7)))
        name = "".join(rng.choice("ab.") for _ in range(rng.randint(0, 9)))
        assert _wildcard_match(pattern, name) == fnmatch.fnmatchcase(name, pattern), (pattern, name)
