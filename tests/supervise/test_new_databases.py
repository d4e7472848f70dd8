"""New databases while running: a database created after `start` under a glob in BACKUP_DATABASES
is picked up by the running supervisor, replicated, shown by `status` and restorable; a file that
matches the glob but is no SQLite database never disturbs it."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from backupctl.config.render import sync_config
from backupctl.config.settings import load_settings
from backupctl.errors import ExitCode
from backupctl.host import locks, state
from backupctl.litestream.runner import Litestream
from backupctl.supervise import supervisor
from backupctl.supervise.dbwatch import DatabaseWatch
from tests.conftest import count_rows, make_db, run_cli
from tests.supervise.test_supervisor import GOOD, FakeClock, FakeProc, _env, _gone, _insert, _kill, _start_bg, _state, _wait_for


def test_the_watch_offers_only_new_sqlite_files_and_names_the_others_once(tmp_path: Path) -> None:
    folder = tmp_path / "tenants"
    known = make_db(folder / "a.db")
    (folder / "empty.db").touch()
    (folder / "notes.db").write_text("not a database\n" * 20)
    new = make_db(folder / "b.db")
    clock, lines = FakeClock(), []
    watch = DatabaseWatch((str(folder / "*.db"),), clock, lines.append, interval=15)

    assert watch.new_databases([known]) == []  # the first scan is one interval after the start
    clock.now = 14.9
    assert watch.new_databases([known]) == []
    clock.now = 15
    assert watch.new_databases([known]) == [new.resolve()]
    assert sorted(Path(line.split()[1]).name for line in lines) == ["empty.db", "notes.db"]
    assert all("not a SQLite database yet" in line for line in lines)

    clock.now = 30  # the same files again: not said twice; an empty file that became a database is taken
    make_db(folder / "empty.db")
    assert watch.new_databases([known, new.resolve()]) == [(folder / "empty.db").resolve()]
    assert len(lines) == 2


def test_the_watch_lists_a_folder_again_only_once_it_changed(tmp_path: Path, monkeypatch) -> None:
    """At 1,000 databases the listing every 15 s was a third of the idle supervisor's CPU: a folder with
    no new entry (and no file waiting to become a database) is not listed again."""
    import glob as globmod

    folder = tmp_path / "tenants"
    known = [make_db(folder / f"t{i}.db").resolve() for i in range(3)]
    listed: list[str] = []
    real = globmod.glob
    monkeypatch.setattr(globmod, "glob", lambda pattern, *a, **k: listed.append(pattern) or real(pattern, *a, **k))
    clock = FakeClock()
    watch = DatabaseWatch((str(folder / "*.db"),), clock, [].append, interval=15)
    watch.new_databases(known)
    for n in range(1, 4):
        clock.now = 15.0 * n
        assert watch.new_databases(known) == []
    assert len(listed) == 1, listed
    clock.now = 60
    new = make_db(folder / "t9.db")
    assert watch.new_databases(known) == [new.resolve()] and len(listed) == 2
    clock.now = 75
    (folder / "wip.db").touch()  # waits to become a database: the folder is listed at every scan meanwhile
    watch.new_databases([*known, new.resolve()])
    clock.now = 90
    make_db(folder / "wip.db")
    assert watch.new_databases([*known, new.resolve()]) == [(folder / "wip.db").resolve()]


def test_a_new_database_restarts_litestream_with_it_without_backoff_or_a_failure(project) -> None:
    tenants = project.dir / "tenants"
    make_db(tenants / "a.db")
    project.write_env(BACKUP_DATABASES="tenants/*.db", BACKUP_LOCAL_DIR=str(project.replica_dir))
    settings = load_settings(project.env_file)
    sync_config(settings)
    new = make_db(tenants / "b.db").resolve()  # created after the settings were loaded (after `start`)
    clock, slept, lines, moves = FakeClock(), [], [], []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("backupctl: replication running") and sum("replication running" in x for x in lines) == 2:
            sup.request_stop(signal.SIGTERM)

    sup = supervisor.Supervisor(
        settings=settings,
        litestream=Litestream(Path("/nonexistent/litestream"), settings),
        state_dir=project.dir / ".backupctl",
        log=log,
        spawn=lambda: FakeProc(clock, GOOD, 30, 0),
        clock=clock,
        sleep=slept.append,
        handle_signals=False,
        source_config=settings.config_path,
        position_check=lambda dbs: {str(db.path) for db in dbs},
        watch_interval=5,
    )
    transition = sup._transition
    sup._transition = lambda new_state: (moves.append(new_state), transition(new_state))[-1]  # type: ignore[method-assign]

    assert sup.run() == ExitCode.TERMINATED
    recorded = _state(project)
    assert str(new) in recorded.databases and recorded.restarts == 0 and slept == []
    assert moves == [state.STARTING, state.RUNNING, state.STOPPING, state.STARTING, state.RUNNING, state.STOPPING, state.STOPPED]
    assert str(new) in (project.dir / ".backupctl" / state.PRIVATE_CONFIG).read_text()
    assert any(f"new database(s) {new}" in line for line in lines)
    assert sum("final sync completed" in line for line in lines) == 2  # before the restart, and at the stop


def test_a_new_database_someone_else_replicates_is_left_alone(project) -> None:
    tenants = project.dir / "tenants"
    make_db(tenants / "a.db")
    project.write_env(BACKUP_DATABASES="tenants/*.db", BACKUP_LOCAL_DIR=str(project.replica_dir))
    settings = load_settings(project.env_file)
    sync_config(settings)
    taken = make_db(tenants / "b.db").resolve()
    other = locks.try_lock(locks.database_lock_path(taken))  # another replicator holds it
    assert other is not None
    clock, lines = FakeClock(), []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("backupctl: not replicating"):
            sup.request_stop(signal.SIGTERM)

    sup = supervisor.Supervisor(
        settings=settings,
        litestream=Litestream(Path("/nonexistent/litestream"), settings),
        state_dir=project.dir / ".backupctl",
        log=log,
        spawn=lambda: FakeProc(clock, GOOD, 30, 0),
        clock=clock,
        handle_signals=False,
        source_config=settings.config_path,
        position_check=lambda dbs: {str(db.path) for db in dbs},
        watch_interval=5,
    )
    try:
        assert sup.run() == ExitCode.TERMINATED
    finally:
        other.release()
    assert [line for line in lines if "not replicating" in line] == [
        f"backupctl: not replicating {taken}: another process replicates it or its replica"
    ]
    assert str(taken) not in _state(project).databases and sum("started litestream" in x for x in lines) == 1


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_database_created_after_start_is_replicated_listed_and_restorable(project, version, tmp_path) -> None:
    tenants = project.dir / "tenants"
    make_db(tenants / "m.db", rows=3)  # the new one sorts before it: the order a fresh load sees
    project.write_env(
        BACKUP_DATABASES="tenants/*.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="1s",
        LITESTREAM_VERSION=version,
    )  # fmt: skip
    running = _start_bg(project)
    try:
        # Not databases (yet): an empty file being created, and a text file that happens to match.
        (tenants / "empty.db").touch()
        (tenants / "notes.db").write_text("not a database\n" * 20)
        new = make_db(tenants / "b.db", rows=7).resolve()

        current = _wait_for(
            lambda: (s := _state(project)).state == state.RUNNING and str(new) in s.databases and s,
            timeout=120,
            what="the supervisor to replicate b.db",
        )
        assert current.pid == running.pid and current.restarts == 0
        assert current.litestream_pid != running.litestream_pid and _gone(running.litestream_pid)
        assert {Path(p).name for p in current.databases} == {"m.db", "b.db"}
        _insert(new, 5, start=7)  # written while the new litestream runs
        log = (project.dir / ".backupctl" / state.LOGFILE).read_text()
        for junk in ("empty.db", "notes.db"):
            assert log.count(f"{junk} matches BACKUP_DATABASES but is not a SQLite database yet") == 1
            (tenants / junk).unlink()  # gone again: status then matches exactly what the supervisor runs

        def listed_ok() -> dict | None:
            result = run_cli("status", "--json", cwd=project.dir, env=_env(project))
            doc = json.loads(result.stdout)
            verdicts = {Path(d["path"]).name: d["verdict"] for d in doc["databases"]}
            return doc if verdicts.get("m.db") == verdicts.get("b.db") == "ok" else None

        doc = _wait_for(listed_ok, timeout=120, what="status --json to list b.db as ok")
        # the supervisor's config was rendered from the same settings `status` loads now: nothing to restart
        assert doc["supervisor"]["pid"] == running.pid and doc["supervisor"]["settings_changed"] is None
        log = (project.dir / ".backupctl" / state.LOGFILE).read_text()
        assert "FATAL" not in log and "exited unexpectedly" not in log

        stopped = run_cli("stop", cwd=project.dir, env=_env(project))
        assert stopped.returncode == 0, stopped.stderr
        assert _gone(running.pid) and _gone(current.litestream_pid)
    finally:
        _kill(running.pid, _state(project).litestream_pid, running.litestream_pid)
    out = tmp_path / "b-restored.db"
    restored = run_cli("restore", "b.db", "-o", str(out), cwd=project.dir, env=_env(project), timeout=180)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert count_rows(out) == 12
