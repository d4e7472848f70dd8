"""600 databases under `ulimit -n 1024`: no traceback, ever; with only the soft limit at 1024 it runs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from backupctl.errors import ExitCode
from tests.conftest import processes_mentioning, run_cli

MANY = 600


def _many(tmp_path: Path) -> Path:
    proj = tmp_path / "many"
    (proj / "db").mkdir(parents=True)
    for i in range(MANY):
        con = sqlite3.connect(proj / "db" / f"d{i:03}.db")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE t (x)")
        con.commit()
        con.close()
    (proj / ".env").write_text(f"BACKUP_DATABASES=db/*.db\nBACKUP_LOCAL_DIR={tmp_path / 'replicas'}\nBACKUP_PATH={{name}}\n")
    return proj


def _start_under(limit: str, proj: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'ulimit {limit} 1024 && exec "$0" -m backupctl start --background', sys.executable],
        cwd=proj, env=dict(os.environ), capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_600_databases_with_a_soft_limit_of_1024_start(tmp_path: Path, litestream_bins) -> None:
    proj = _many(tmp_path)
    try:
        result = _start_under("-Sn", proj)
        assert result.returncode == 0, result.stderr[-2000:]
        assert "replicating in the background" in result.stderr
    finally:
        assert run_cli("stop", cwd=proj, timeout=200).returncode == 0
    assert not processes_mentioning(str(proj))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_600_databases_with_a_hard_limit_of_1024_fail_cleanly(tmp_path: Path, litestream_bins) -> None:
    proj = _many(tmp_path)
    try:
        result = _start_under("-n", proj)
    finally:
        run_cli("stop", cwd=proj)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "Too many open files" in result.stderr and "ulimit -n" in result.stderr
    assert result.returncode in (ExitCode.CONFIG, ExitCode.SUPERVISOR)
    assert not processes_mentioning(str(proj))
