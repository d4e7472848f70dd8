"""Contract of the CLI as a whole: documented commands, exit codes, hand-made configs left alone."""

from __future__ import annotations

import re

from backupctl.errors import ExitCode
from tests.conftest import ROOT, run_cli


def test_every_command_is_documented_in_the_readme() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    commands = re.findall(r"^\s{2}([a-z][a-z-]+)\s{2,}", result.stdout.split("Commands:")[1], re.M)
    assert len(commands) >= 20
    readme = (ROOT / "README.md").read_text()
    missing = [c for c in commands if f"`{c}" not in readme and f"backupctl {c}" not in readme]
    assert not missing, missing


def test_every_exit_code_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Exit codes")[1].split("##")[0]
    for code in ExitCode:
        assert re.search(rf"\b{int(code)}\b", table), code


def test_a_hand_written_litestream_yml_is_never_replaced(project) -> None:
    mine = project.dir / "litestream.yml"
    mine.write_text("dbs:\n  - path: /somewhere/else.db\n")
    before = mine.read_bytes()
    result = run_cli("databases", cwd=project.dir)
    assert result.returncode == ExitCode.REFUSED, result.stderr
    assert "not written by backupctl" in result.stderr
    assert mine.read_bytes() == before


def test_an_endpoint_with_a_bad_port_is_a_settings_error(project) -> None:
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_BUCKET="b", BACKUP_ENDPOINT="http://127.0.0.1:99999")
    result = run_cli("status", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG
    assert "BACKUP_ENDPOINT" in result.stderr and "Traceback" not in result.stderr


def test_setup_refuses_a_hand_written_config_and_force_keeps_a_copy(project) -> None:
    mine = project.dir / "litestream.yml"
    mine.write_text("# mine\ndbs: []\n")
    refused = run_cli("setup", cwd=project.dir)
    assert refused.returncode == ExitCode.REFUSED and mine.read_text() == "# mine\ndbs: []\n"
    forced = run_cli("setup", "--force", cwd=project.dir)
    assert forced.returncode == 0, forced.stderr
    (kept,) = project.dir.glob("litestream.yml.bak-*")
    assert kept.read_text() == "# mine\ndbs: []\n"
    assert mine.read_text().startswith("# Written by `backupctl setup`")
    again = run_cli("setup", cwd=project.dir)  # our own file is simply re-rendered
    assert again.returncode == 0 and len(list(project.dir.glob("litestream.yml.bak-*"))) == 1


def test_setup_local_is_remembered_until_a_plain_setup(project) -> None:
    import json

    project.write_env(R2_ACCOUNT_ID="acc", R2_BUCKET="b", R2_ACCESS_KEY_ID="k", R2_SECRET_ACCESS_KEY="secret-1234",
                      BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir))  # fmt: skip

    def replica() -> str:
        doc = json.loads(run_cli("env", "--json", cwd=project.dir).stdout)
        return next(r for r in doc["settings"] if r["setting"] == "replica")["value"]

    assert replica() == "r2"
    assert run_cli("setup", "--local", cwd=project.dir).returncode == 0
    assert replica() == "file"  # every command now agrees on the local folder
    assert 'type: "file"' in (project.dir / "litestream.yml").read_text()
    assert run_cli("setup", cwd=project.dir).returncode == 0
    assert replica() == "r2"
    assert 'type: "s3"' in (project.dir / "litestream.yml").read_text()
