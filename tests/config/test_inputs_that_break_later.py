"""Inputs that used to pass setup and break litestream later are refused at setup, with the reason."""

from __future__ import annotations

import pytest

from backupctl.errors import ExitCode
from tests.conftest import make_db, run_cli


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (" 1s", "leading or trailing space"),
        ("1s ", "leading or trailing space"),
        ("9999999999h", "longer than litestream can hold"),
        ("0.0000000001s", "below one nanosecond"),
    ],
)
def test_durations_litestream_cannot_use_are_refused_at_setup(project, value: str, needle: str) -> None:
    config = project.dir / "litestream.yml"
    assert run_cli("setup", cwd=project.dir).returncode == 0
    before = config.read_bytes()
    project.env_file.write_text(
        f'BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={project.replica_dir}\nBACKUP_SYNC_INTERVAL="{value}"\n'
    )
    result = run_cli("setup", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "BACKUP_SYNC_INTERVAL" in result.stderr and needle in result.stderr
    assert config.read_bytes() == before


def test_the_longest_go_duration_is_still_accepted(project) -> None:
    project.env_file.write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={project.replica_dir}\nBACKUP_RETENTION=2562047h\n")
    assert run_cli("setup", "--print", cwd=project.dir).returncode == 0


def test_a_replica_path_climbing_out_with_dot_dot_is_refused(project) -> None:
    project.env_file.write_text("BACKUP_DATABASES=db/app.db\nBACKUP_BUCKET=b\nBACKUP_PATH=../../x/{name}\n")
    result = run_cli("setup", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG
    assert "BACKUP_PATH" in result.stderr and "'..' segment" in result.stderr


@pytest.mark.parametrize("char", ["#", "?"])
def test_a_database_path_with_hash_or_question_mark_is_refused_for_0_5_only(project, char: str) -> None:
    odd = make_db(project.dir / "db" / f"app{char}1.db")
    project.env_file.write_text(f"BACKUP_DATABASES={odd}\nBACKUP_LOCAL_DIR={project.replica_dir}\n")
    refused = run_cli("setup", cwd=project.dir)
    assert refused.returncode == ExitCode.CONFIG
    assert "SQLite URI" in refused.stderr and "0.3.13 takes such paths" in refused.stderr
    accepted = run_cli("setup", cwd=project.dir, env={"LITESTREAM_VERSION": "0.3.13"})
    assert accepted.returncode == 0, accepted.stderr
