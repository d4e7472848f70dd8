"""Odd inputs that used to be taken at face value: a database list naming nothing, database paths
that are no file (a FIFO, a device, /proc), a `.env` that is a FIFO, an absolute replica path, a
notify URL with a password in it, and control characters in file names. Each is tried on a real
project with the real CLI, and each must be refused (or shown) in words that name the setting."""

from __future__ import annotations

import json

import pytest

from backupctl.errors import ExitCode
from tests.conftest import Project, run_cli

NO_DATABASE = "BACKUP_DATABASES: no database to back up"


# --------------------------------------------------------------------------- 1. a list naming nothing


@pytest.mark.parametrize("value", [",", " , ", "\t", ", ,\t,"])
def test_a_database_list_of_only_separators_is_refused_like_an_empty_one(project: Project, value: str) -> None:
    project.env_file.write_text(f"BACKUP_DATABASES='{value}'\nBACKUP_LOCAL_DIR={project.replica_dir}\n")
    setup = run_cli("setup", cwd=project.dir)
    assert setup.returncode == ExitCode.CONFIG, setup.stderr
    assert NO_DATABASE in setup.stderr
    assert not (project.dir / "litestream.yml").exists()
    # The rest refuse too, instead of "replicating" nothing and reporting it healthy.
    start = run_cli("start", cwd=project.dir, timeout=60)
    assert start.returncode == ExitCode.CONFIG and NO_DATABASE in start.stderr
    assert "replicating" not in start.stdout + start.stderr
    status = run_cli("status", "--json", cwd=project.dir)
    assert status.returncode == ExitCode.CONFIG
    assert any(NO_DATABASE in line for line in json.loads(status.stdout)["error"]["details"])
    doctor = run_cli("doctor", "--json", cwd=project.dir)
    assert doctor.returncode != 0 and NO_DATABASE in doctor.stdout


def test_an_empty_entry_beside_a_database_is_skipped(project: Project) -> None:
    """`a.db,` (a trailing comma) and `,,` between names still back up every database named."""
    project.env_file.write_text(f"BACKUP_DATABASES=' db/app.db , , '\nBACKUP_LOCAL_DIR={project.replica_dir}\n")
    result = run_cli("databases", "--json", cwd=project.dir)
    assert result.returncode == 0, result.stderr
    assert [d["path"] for d in json.loads(result.stdout)["databases"]] == [str(project.db)]
