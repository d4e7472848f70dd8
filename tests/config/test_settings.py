"""Settings: precedence, conventions of both seeds, validation collecting every problem."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from backupctl.config.settings import CHAINS, KNOWN_VARIABLES, load_settings, parse_duration
from backupctl.errors import ConfigError, ExitCode
from backupctl.redact import mask
from tests.conftest import ROOT, make_db, run_cli


def write(dir: Path, text: str) -> Path:
    (dir / "db").mkdir(exist_ok=True)
    env = dir / ".env"
    env.write_text(text)
    return env


def test_chora_env_gives_r2_with_auto_region(tmp_path: Path) -> None:
    write(
        tmp_path,
        "R2_ACCOUNT_ID=acc0123\nR2_BUCKET=chora-backup\nR2_ACCESS_KEY_ID=AKID0000\n"
        "R2_SECRET_ACCESS_KEY=s3cr3t-value\nBACKUP_DATABASES=db/chora.db\n",
    )
    s = load_settings(cwd=tmp_path, environ={})
    (replica,) = s.databases[0].replicas
    assert replica.kind == "r2" and replica.litestream_type == "s3"
    assert replica.endpoint == "https://acc0123.r2.cloudflarestorage.com"
    assert replica.region == "auto"
    assert replica.bucket == "chora-backup"
    assert replica.path == "chora.db"
    assert s.credentials.secret_access_key == "s3cr3t-value"
    assert s.origins["endpoint"].source == "derived"


def test_campfire_env_gives_s3_with_endpoint_and_region(tmp_path: Path) -> None:
    write(
        tmp_path,
        "AWS_ACCESS_KEY_ID=AKIDCAMP\nAWS_SECRET_ACCESS_KEY=campsecret\nAWS_DEFAULT_REGION=auto\n"
        "LITESTREAM_REPLICA_BUCKET=campfire-backups\n"
        "LITESTREAM_REPLICA_ENDPOINT=https://acct.r2.cloudflarestorage.com\n"
        "BACKUP_DATABASES=db/production.sqlite3\nBACKUP_PATH=campfire-db\n",
    )
    s = load_settings(cwd=tmp_path, environ={})
    (replica,) = s.databases[0].replicas
    assert (replica.kind, replica.bucket, replica.region) == ("s3", "campfire-backups", "auto")
    assert replica.endpoint == "https://acct.r2.cloudflarestorage.com"
    assert replica.path == "campfire-db"
    assert s.credentials.access_key_id == "AKIDCAMP"


def test_process_environment_overrides_file_and_file_is_not_interpolated(tmp_path: Path) -> None:
    write(tmp_path, "BACKUP_DATABASES=db/a.db\nBACKUP_BUCKET=from-file\nBACKUP_PATH=p$HOME/{name}\n")
    s = load_settings(cwd=tmp_path, environ={"BACKUP_BUCKET": "from-env"})
    assert s.databases[0].replicas[0].bucket == "from-env"
    assert s.origins["bucket"].source == "environment"
    assert s.databases[0].replicas[0].path == "p$HOME/a.db"


def test_canonical_names_win_over_seed_conventions(tmp_path: Path) -> None:
    write(
        tmp_path,
        "BACKUP_DATABASES=db/a.db\nBACKUP_BUCKET=canon\nR2_BUCKET=r2\nLITESTREAM_REPLICA_BUCKET=camp\n"
        "BACKUP_REGION=eu-west-1\nLITESTREAM_REPLICA_REGION=x\nAWS_DEFAULT_REGION=y\n"
        "BACKUP_REPLICA=s3\n",
    )
    replica = load_settings(cwd=tmp_path, environ={}).databases[0].replicas[0]
    assert (replica.bucket, replica.region) == ("canon", "eu-west-1")


def test_replica_type_is_inferred(tmp_path: Path) -> None:
    write(tmp_path, "BACKUP_DATABASES=db/a.db\n")
    assert load_settings(cwd=tmp_path, environ={}).replica_kinds == ("file",)
    assert load_settings(cwd=tmp_path, environ={"BACKUP_BUCKET": "b"}).replica_kinds == ("s3",)
    env = {"R2_ACCOUNT_ID": "a", "R2_BUCKET": "b", "R2_ACCESS_KEY_ID": "k", "R2_SECRET_ACCESS_KEY": "s"}
    assert load_settings(cwd=tmp_path, environ=env).replica_kinds == ("r2",)


def test_globs_resolve_to_absolute_paths(tmp_path: Path) -> None:
    write(tmp_path, "BACKUP_DATABASES=db/*.sqlite3, other.db\n")
    for name in ("b.sqlite3", "a.sqlite3"):
        (tmp_path / "db" / name).write_bytes(b"")
    s = load_settings(cwd=tmp_path, environ={"BACKUP_PATH": "x/{name}"})
    assert [d.path for d in s.databases] == [
        tmp_path / "db" / "a.sqlite3",
        tmp_path / "db" / "b.sqlite3",
        tmp_path / "other.db",
    ]
    assert all(d.path.is_absolute() for d in s.databases)


def test_local_dir_gets_one_subfolder_per_database(tmp_path: Path) -> None:
    write(tmp_path, "BACKUP_DATABASES=db/a.db,db/b.db\nBACKUP_LOCAL_DIR=backups\n")
    s = load_settings(cwd=tmp_path, environ={})
    assert [d.replicas[0].path for d in s.databases] == [str(tmp_path / "backups" / "a.db"), str(tmp_path / "backups" / "b.db")]


def test_force_local_overrides_cloud_settings(tmp_path: Path) -> None:
    write(tmp_path, "BACKUP_DATABASES=db/a.db\nR2_ACCOUNT_ID=a\nR2_BUCKET=b\n")
    s = load_settings(cwd=tmp_path, environ={}, force_local=True)
    assert s.replica_kinds == ("file",)


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    write(
        tmp_path,
        "BACKUP_DATABASES=nowhere/a.db\nBACKUP_REPLICA=s3,ftp\nBACKUP_SYNC_INTERVAL=10\n"
        "BACKUP_RETENTION=forever\nLITESTREAM_VERSION=0.5.9\nBACKUP_ENDPOINT=ftp://x\n",
    )
    with pytest.raises(ConfigError) as err:
        load_settings(cwd=tmp_path, environ={})
    text = "\n".join(err.value.details)
    for needle in (
        "BACKUP_DATABASES: the folder",
        "unknown replica type 'ftp'",
        "BACKUP_SYNC_INTERVAL: '10' has no unit: litestream would read a bare number as nanoseconds",
        "BACKUP_RETENTION: 'forever' is not a duration",
        "known-bad",
        "BACKUP_ENDPOINT: 'ftp://x' is not an http(s) URL",
        "BACKUP_BUCKET: a s3 replica needs a bucket",
    ):
        assert needle in text, needle
    assert err.value.exit_code == ExitCode.CONFIG


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"BACKUP_REPLICA": "r2", "BACKUP_BUCKET": "b"}, "R2_ACCOUNT_ID: R2 needs the Cloudflare account id"),
        ({"BACKUP_REPLICA": "r2,file", "R2_ACCOUNT_ID": "a", "R2_BUCKET": "b"}, "allows one per database"),
        ({"LITESTREAM_VERSION": "0.4.0"}, "is not a version backupctl pins"),
        ({"LITESTREAM_VERSION": "0.5.3"}, "known-bad"),
        ({"BACKUP_SNAPSHOT_INTERVAL": "0s"}, "is not positive"),
        ({"BACKUP_DATABASES": "db/a.db,db/b.db", "BACKUP_PATH": "same"}, "include {name}"),
        ({"BACKUP_FORCE_PATH_STYLE": "maybe"}, "is not true or false"),
        ({"BACKUP_DATABASES": "db/*.nothing"}, "matches no file"),
        ({"BACKUP_REPLICA": "sftp"}, "BACKUP_SFTP_HOST"),
    ],
)
def test_named_errors(tmp_path: Path, env: dict[str, str], needle: str) -> None:
    write(tmp_path, "BACKUP_DATABASES=db/a.db\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cwd=tmp_path, environ=env)
    assert any(needle in line for line in err.value.details), err.value.details


def test_missing_databases_and_empty_values_count_as_unset(tmp_path: Path) -> None:
    write(tmp_path, "BACKUP_DATABASES=\nBACKUP_BUCKET=\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cwd=tmp_path, environ={"BACKUP_DATABASES": ""})
    assert any("BACKUP_DATABASES: no database to back up" in line for line in err.value.details)


def test_two_replicas_allowed_on_03(tmp_path: Path) -> None:
    write(tmp_path, "BACKUP_DATABASES=db/a.db\n")
    env = {"BACKUP_REPLICA": "r2,file", "R2_ACCOUNT_ID": "a", "R2_BUCKET": "b", "LITESTREAM_VERSION": "v0.3.13",
           "R2_ACCESS_KEY_ID": "k", "R2_SECRET_ACCESS_KEY": "s"}  # fmt: skip
    s = load_settings(cwd=tmp_path, environ=env)
    assert s.version == "0.3.13"
    assert [r.kind for r in s.databases[0].replicas] == ["r2", "file"]


def test_parse_duration() -> None:
    assert parse_duration("10s") == 10
    assert parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25
    for bad in ("10", "", "s", "1d", "-5s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_mask_shows_at_most_last_four() -> None:
    assert mask("abcdefghijklmnop") == "****mnop"
    assert mask("short") == "****"
    assert mask(None) == ""


def test_env_example_and_loader_agree() -> None:
    """Every .env.example key is understood by the loader, and every loader variable is documented."""
    example = (ROOT / ".env.example").read_text()
    keys = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, re.M))
    assert keys <= KNOWN_VARIABLES, keys - KNOWN_VARIABLES
    # Every variable appears in .env.example, as a key or in a comment naming it.
    missing = {v for v in KNOWN_VARIABLES if v not in example}
    assert not missing, missing
    for chain in CHAINS.values():
        assert chain[0] in example


def test_env_command_masks_secrets_and_names_origins(project) -> None:
    secret = "TopSecretValue-XYZ-123456"
    env = dict(
        BACKUP_DATABASES="db/app.db", BACKUP_BUCKET="bkt", BACKUP_SECRET_ACCESS_KEY=secret, BACKUP_ACCESS_KEY_ID="AKIDVISIBLE99"
    )
    project.write_env(**env)
    human = run_cli("env", cwd=project.dir)
    machine = run_cli("env", "--json", cwd=project.dir)
    assert human.returncode == 0 and machine.returncode == 0, human.stderr
    for result in (human, machine):
        assert secret not in result.stdout + result.stderr
        assert "AKIDVISIBLE99" not in result.stdout + result.stderr
    import json

    doc = json.loads(machine.stdout)
    rows = {r["setting"]: r for r in doc["settings"]}
    assert rows["secret_access_key"]["value"] == "****3456"
    assert rows["bucket"]["variable"] == "BACKUP_BUCKET"
    assert rows["sync_interval"]["source"] == "default"


def test_a_rails_8_app_takes_the_env_example_as_it_is(tmp_path: Path) -> None:
    """Rails 8 keeps its databases in storage/ (not storage/db/): the example and the hint say so."""
    app = tmp_path / "rails-app"
    make_db(app / "storage" / "production.sqlite3")
    (app / ".env").write_text((ROOT / ".env.example").read_text())
    setup = run_cli("setup", cwd=app)
    assert setup.returncode == 0, setup.stderr
    assert f"{app / 'storage' / 'production.sqlite3'} -> file://" in setup.stderr
    (app / ".env").write_text("BACKUP_DATABASES=\n")
    missing = run_cli("setup", cwd=app)
    assert missing.returncode == ExitCode.CONFIG
    assert "e.g. storage/production.sqlite3 (Rails 8)" in missing.stderr and "storage/db" not in missing.stderr
