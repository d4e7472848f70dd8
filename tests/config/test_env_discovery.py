"""The project's .env is found from any subfolder (as git finds .git); unknown names are warned about."""

from __future__ import annotations

import json

from backupctl.errors import ExitCode
from tests.conftest import run_cli


def test_commands_find_the_env_from_a_subfolder(project) -> None:
    sub = project.dir / "app" / "models"
    sub.mkdir(parents=True)
    setup = run_cli("setup", cwd=sub)
    assert setup.returncode == 0, setup.stderr
    assert (project.dir / "litestream.yml").is_file() and not (sub / "litestream.yml").exists()
    env = json.loads(run_cli("env", "--json", cwd=sub).stdout)
    assert env["env_file"] == str(project.env_file) and env["databases"][0]["path"] == str(project.db)


def test_templates_eject_from_a_subfolder_writes_where_setup_looks(project) -> None:
    sub = project.dir / "config"
    sub.mkdir()
    assert run_cli("templates", "eject", cwd=sub).returncode == 0
    assert (project.dir / "backupctl-templates").is_dir() and not (sub / "backupctl-templates").exists()
    setup = run_cli("setup", cwd=sub)
    assert setup.returncode == 0 and "from your templates" in setup.stderr


def test_no_env_anywhere_says_where_it_looked(tmp_path) -> None:
    lonely = tmp_path / "nowhere" / "deep"
    lonely.mkdir(parents=True)
    result = run_cli("status", cwd=lonely)
    assert result.returncode == ExitCode.CONFIG
    # the cause first: every missing setting (no database to back up) follows from the missing .env
    assert result.stderr.startswith(f"error: no .env found in {lonely} or any folder above it"), result.stderr
    assert result.stderr.index("no .env found") < result.stderr.index("no database to back up")
    assert "--env-file" in result.stderr and ".env.example" not in result.stderr
    error = json.loads(run_cli("env", "--json", cwd=lonely).stdout)["error"]
    assert error["message"].startswith("no .env found") and "BACKUP_DATABASES" in error["details"][0]


def test_misspelled_variables_are_named_with_the_likely_meaning(project) -> None:
    project.env_file.write_text(
        "BACKUP_DATABASE=db/app.db\nBACKUP_SYNC_INTERVALL=1s\nBACKUP_REPLCIA=file\nR2_BUKCET=b\nUNRELATED_THING=1\n"
    )
    failed = run_cli("setup", cwd=project.dir)
    assert failed.returncode == ExitCode.CONFIG
    for typo, meant in (
        ("BACKUP_DATABASE", "BACKUP_DATABASES"),
        ("BACKUP_SYNC_INTERVALL", "BACKUP_SYNC_INTERVAL"),
        ("BACKUP_REPLCIA", "BACKUP_REPLICA"),
        ("R2_BUKCET", "R2_BUCKET"),
    ):
        assert f"{typo} (in {project.env_file}) is not a variable backupctl reads" in failed.stderr
        assert f"did you mean {meant}?" in failed.stderr
    assert "UNRELATED_THING" not in failed.stderr
    # with valid settings it is a warning on stderr, and --json stays clean JSON on stdout
    project.env_file.write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={project.replica_dir}\n")
    ok = run_cli("env", "--json", cwd=project.dir, env={"LITESTREAM_VERSON": "0.3.13"})
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    assert "LITESTREAM_VERSON (in environment)" in ok.stderr and "did you mean LITESTREAM_VERSION?" in ok.stderr


def test_doctor_warns_about_a_misspelled_name(project) -> None:
    project.env_file.write_text(project.env_file.read_text() + "BACKUP_RETENTON=72h\n")
    doc = json.loads(run_cli("doctor", "--json", cwd=project.dir).stdout)
    (check,) = [c for c in doc["checks"] if c.get("finding") == "unknown-variable"]
    assert check["status"] == "warn" and "did you mean BACKUP_RETENTION?" in check["found"]


def test_a_misspelled_aws_name_is_named_but_other_aws_tools_variables_are_not(project) -> None:
    """Campfire's .env gives the key pair as AWS_*: a typo there left backupctl without a secret, silently."""
    project.env_file.write_text(
        f"BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={project.replica_dir}\nBACKUP_REPLICA=file\n"
        "LITESTREAM_REPLICA_BUCKET=campfire-backups\nAWS_ACCESS_KEY_ID=AKIAEXAMPLE\nAWS_SECRET_ACCES_KEY=secret\n"
        "AWS_DEFAULT_REGION=auto\nAWS_PROFILE=campfire\nAWS_CA_BUNDLE=/etc/ssl/certs/ca.pem\nAWS_S3_REGION=eu-west-1\n"
        "AWS_BUCKET=campfire-files\nAWS_ACCESS_KEY=legacy-tool\nR2_SECRET_ACCES_KEY=x\nLITESTREAM_REPLICA_BUCKT=y\n"
    )
    environ = {"AWS_SESSION_TOKEN": "t", "AWS_DEFAULT_OUTPUT": "json", "AWS_DEFAULT_PROFILE": "p", "AWS_REGOIN": "auto"}
    ok = run_cli("env", "--json", cwd=project.dir, env=environ)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True, ok.stderr
    for typo, where, meant in (
        ("AWS_SECRET_ACCES_KEY", project.env_file, "AWS_SECRET_ACCESS_KEY"),
        ("R2_SECRET_ACCES_KEY", project.env_file, "R2_SECRET_ACCESS_KEY"),
        ("LITESTREAM_REPLICA_BUCKT", project.env_file, "LITESTREAM_REPLICA_BUCKET"),
        ("AWS_REGOIN", "environment", "AWS_REGION"),
    ):
        assert f"{typo} (in {where}) is not a variable backupctl reads, so it is ignored; did you mean {meant}?" in ok.stderr
    # Other AWS tools' names are theirs; AWS_ACCESS_KEY beside AWS_ACCESS_KEY_ID is not a typo of it.
    for name in ("AWS_PROFILE", "AWS_CA_BUNDLE", "AWS_S3_REGION", "AWS_BUCKET", "AWS_ACCESS_KEY ", "AWS_SESSION_TOKEN",
                 "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_OUTPUT", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID"):  # fmt: skip
        assert name not in ok.stderr, (name, ok.stderr)
    # Without the real name set, the near miss is what it looks like: the key id backupctl never got.
    project.env_file.write_text(project.env_file.read_text().replace("AWS_ACCESS_KEY_ID=AKIAEXAMPLE\n", ""))
    alone = run_cli("env", "--json", cwd=project.dir)
    assert "AWS_ACCESS_KEY (in" in alone.stderr and "did you mean AWS_ACCESS_KEY_ID?" in alone.stderr
