"""Files written as the user expects: restored databases keep mode and owner; state files are private
and never written through a symlink; an OSError is a message, not a traceback."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from backupctl.errors import ExitCode
from backupctl.restore import SIDE_MARK
from tests.conftest import Project, count_rows, run_cli
from tests.restore.test_restore import configure, insert, replicating, settings_of, wait_replicated

V5 = "0.5.17"
APP_UID = APP_GID = 4321  # an "app" user that is not the one running backupctl (needs root to set)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _replicated(project: Project, litestream_bins: dict[str, Path], rows: int = 3) -> None:
    configure(project, V5, "file")
    with replicating(settings_of(project), litestream_bins[V5]):
        insert(project.db, rows)
        wait_replicated(project, rows)


def test_restore_force_keeps_the_replaced_files_mode(project: Project, litestream_bins) -> None:
    _replicated(project, litestream_bins)
    os.chmod(project.db, 0o600)
    result = run_cli("restore", "app.db", "--force", cwd=project.dir)
    assert result.returncode == 0, result.stderr
    assert count_rows(project.db) == 3 and _mode(project.db) == 0o600


def test_restore_to_a_new_file_takes_the_live_databases_mode(project: Project, litestream_bins) -> None:
    _replicated(project, litestream_bins)
    os.chmod(project.db, 0o640)
    out = project.dir / "copy.db"
    result = run_cli("restore", "-o", str(out), cwd=project.dir)
    assert result.returncode == 0, result.stderr
    assert _mode(out) == 0o640
    side = run_cli("restore", "--json", cwd=project.dir)  # the database exists: a side file beside it
    assert side.returncode == 0, side.stderr
    (side_file,) = [p for p in project.db.parent.iterdir() if SIDE_MARK in p.name]
    assert _mode(side_file) == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root (as in CI)")
def test_restore_force_as_root_keeps_the_apps_owner(project: Project, litestream_bins) -> None:
    _replicated(project, litestream_bins)
    for f in project.db.parent.iterdir():
        os.chown(f, APP_UID, APP_GID)
    os.chmod(project.db, 0o600)
    result = run_cli("restore", "app.db", "--force", cwd=project.dir)
    assert result.returncode == 0, result.stderr
    st = project.db.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (APP_UID, APP_GID, 0o600)
    out = project.dir / "elsewhere" / "copy.db"
    out.parent.mkdir()
    assert run_cli("restore", "-o", str(out), cwd=project.dir).returncode == 0
    assert (out.stat().st_uid, out.stat().st_gid, _mode(out)) == (APP_UID, APP_GID, 0o600)


def test_supervisor_log_symlink_is_never_followed(project: Project, tmp_path: Path, litestream_bins) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("do not touch\n")
    os.chmod(target, 0o644)
    state_dir = project.dir / ".backupctl"
    state_dir.mkdir()
    (state_dir / "supervisor.log").symlink_to(target)
    result = run_cli("start", "--background", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "symbolic link" in result.stderr and "supervisor.log" in result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert target.read_text() == "do not touch\n" and _mode(target) == 0o644


def test_state_folder_is_private_after_a_start(project: Project, litestream_bins) -> None:
    state_dir = project.dir / ".backupctl"
    state_dir.mkdir(mode=0o755)
    os.chmod(state_dir, 0o755)
    started = run_cli("start", "--background", cwd=project.dir)
    try:
        assert started.returncode == 0, started.stderr
        assert _mode(state_dir) == 0o700
        assert _mode(state_dir / "supervisor.log") == 0o600
    finally:
        assert run_cli("stop", cwd=project.dir).returncode == 0


def test_verifys_temporary_litestream_log_is_private(project: Project, litestream_bins) -> None:
    import subprocess
    import sys
    import time

    tmp = project.dir / ".backupctl" / "tmp"
    proc = subprocess.Popen(
        [sys.executable, "-m", "backupctl", "verify"], cwd=project.dir, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    modes: set[int] = set()
    try:
        while proc.poll() is None:
            for log in tmp.glob("verify-*.log") if tmp.is_dir() else []:
                try:
                    modes.add(_mode(log))
                except FileNotFoundError:
                    pass
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(120)
    assert proc.returncode == 0
    assert modes == {0o600}
    assert _mode(project.dir / ".backupctl") == 0o700 and _mode(tmp) == 0o700
