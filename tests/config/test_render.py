"""Rendering litestream.yml: golden files, hostile values, secrets, atomic 0600 writes, errors."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from backupctl.config.render import render, yaml_scalar
from backupctl.config.settings import load_settings
from backupctl.errors import ConfigError, ExitCode
from tests.conftest import ROOT, run_cli

GOLDEN = Path(__file__).parent.parent / "golden"
PLACEHOLDER = "/PROJECT"

SETUPS: dict[str, str] = {
    "local": "BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR=backups\n",
    "s3": "BACKUP_DATABASES=db/app.db\nBACKUP_BUCKET=my-backups\nBACKUP_REGION=eu-west-1\n"
    "BACKUP_ACCESS_KEY_ID=AKIDGOLDEN\nBACKUP_SECRET_ACCESS_KEY=golden-secret-1\n",
    "r2-chora": "R2_ACCOUNT_ID=0123456789abcdef\nR2_BUCKET=chora-backup\nR2_ACCESS_KEY_ID=AKIDCHORA\n"
    "R2_SECRET_ACCESS_KEY=chora-secret-2\nBACKUP_DATABASES=db/chora.db\n",
    "campfire": "AWS_ACCESS_KEY_ID=AKIDCAMP\nAWS_SECRET_ACCESS_KEY=camp-secret-3\nAWS_DEFAULT_REGION=auto\n"
    "LITESTREAM_REPLICA_BUCKET=campfire-backups\n"
    "LITESTREAM_REPLICA_ENDPOINT=https://YOUR-ACCOUNT-ID.r2.cloudflarestorage.com\n"
    "BACKUP_DATABASES=db/production.sqlite3\nBACKUP_PATH=campfire-db\n",
    "sftp": "BACKUP_DATABASES=db/app.db\nBACKUP_REPLICA=sftp\nBACKUP_SFTP_HOST=backup.example.com:22\n"
    "BACKUP_SFTP_USER=litestream\nBACKUP_SFTP_KEY_PATH=/keys/id_ed25519\nBACKUP_PATH=backups/{name}\n",
}
SECRETS = ("golden-secret-1", "chora-secret-2", "camp-secret-3")


def project_with(tmp_path: Path, env_text: str) -> Path:
    (tmp_path / "db").mkdir(parents=True, exist_ok=True)
    (tmp_path / ".env").write_text(env_text)
    return tmp_path


@pytest.mark.parametrize("version", ["0.5.17", "0.3.13"])
@pytest.mark.parametrize("name", sorted(SETUPS))
def test_golden_render(tmp_path: Path, name: str, version: str) -> None:
    proj = project_with(tmp_path, SETUPS[name] + f"LITESTREAM_VERSION={version}\n")
    text = render(load_settings(cwd=proj, environ={})).text.replace(str(proj), PLACEHOLDER)
    golden = GOLDEN / f"{name}-{version}.yml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    for secret in SECRETS:
        assert secret not in text
    doc = yaml.safe_load(text)
    db = doc["dbs"][0]
    if version == "0.5.17":
        assert "replicas" not in db and isinstance(db["replica"], dict)
        assert set(doc["snapshot"]) == {"interval", "retention"}
    else:
        assert "replica" not in db and isinstance(db["replicas"], list)
        assert "retention" in db["replicas"][0] and "snapshot" not in doc


@pytest.mark.parametrize("name", sorted(SETUPS))
def test_real_litestream_reads_what_we_render(tmp_path: Path, name: str, version: str, litestream_bins) -> None:
    """The pinned binary itself parses each config and sees the database with its replica.

    This is the guard against the silent traps: a `replica:` key under 0.3 or `replicas:` under
    0.5 would parse fine in YAML but replicate nothing.
    """
    from backupctl.litestream.runner import Litestream

    proj = project_with(tmp_path, SETUPS[name] + f"LITESTREAM_VERSION={version}\n")
    s = load_settings(cwd=proj, environ={})
    config = tmp_path / "litestream.yml"
    config.write_text(render(s).text)
    result = Litestream(litestream_bins[version], s, config).run("databases", timeout=30)
    lines = [ln.split() for ln in result.stdout.strip().splitlines()]
    assert lines[1][0] == str(s.databases[0].path)
    replica = s.databases[0].replicas[0]
    # 0.5 shows the replica type; 0.3 shows its name, which backupctl sets to the replica kind.
    assert lines[1][1] == (replica.litestream_type if version == "0.5.17" else replica.kind), result.stdout


HOSTILE = [
    "abc #x",
    "key: value",
    "quote \" and ' both",
    "multi\nline\nendpoint: http://evil",
    "0123",
    "yes",
    "~",
    "{{ 7*7 }}",
    "{% raw %}",
    "ünïcødé ✓ 中文",
    "$HOME and ${HOME} and $$",
    "back\\slash",
    "tab\tand\rreturn",
    "- list",
    "&anchor *alias !tag",
    "null",
    " leading and trailing ",
]


def _scalars(node: object) -> list[str]:
    if isinstance(node, dict):
        return [v for value in node.values() for v in _scalars(value)]
    if isinstance(node, list):
        return [v for value in node for v in _scalars(value)]
    return [node] if isinstance(node, str) else []


def _keys(node: object, prefix: str = "") -> set[str]:
    if isinstance(node, dict):
        return {f"{prefix}{k}" for k in node} | {k for key, v in node.items() for k in _keys(v, f"{prefix}{key}.")}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v, prefix)}
    return set()


def _hostile_settings(tmp_path: Path, value: str, version: str):
    (tmp_path / "db").mkdir(exist_ok=True)
    env = {
        "BACKUP_DATABASES": "db/app.db",
        "BACKUP_REPLICA": "s3",
        "BACKUP_BUCKET": value,
        "BACKUP_PATH": value.strip("/") + "/{name}" if value.strip("/") else "x/{name}",
        "BACKUP_REGION": value,
        "BACKUP_ENDPOINT": "https://host.example/" + value,
        "LITESTREAM_VERSION": version,
    }
    return load_settings(cwd=tmp_path, environ=env)


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("version", ["0.5.17", "0.3.13"])
def test_hostile_values_read_back_exactly(tmp_path: Path, value: str, version: str) -> None:
    s = _hostile_settings(tmp_path, value, version)
    text = render(s).text
    assert "$" not in text  # litestream's env expansion has nothing to expand
    doc = yaml.safe_load(text)
    replica = doc["dbs"][0]["replica"] if version == "0.5.17" else doc["dbs"][0]["replicas"][0]
    assert replica["bucket"] == value
    assert replica["region"] == value
    assert replica["endpoint"] == "https://host.example/" + value
    assert replica["path"] == s.databases[0].replicas[0].path
    clean = _keys(yaml.safe_load(render(_hostile_settings(tmp_path, "plain", version)).text))
    assert _keys(doc) == clean  # no value added or changed a key


@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), min_size=1, max_size=40))
def test_fuzz_any_text_reads_back_or_is_refused(tmp_path: Path, value: str) -> None:
    try:
        s = _hostile_settings(tmp_path, value, "0.5.17")
    except ConfigError:
        return  # refused with a clear message is acceptable
    text = render(s).text
    assert "$" not in text
    doc = yaml.safe_load(text)
    replica = doc["dbs"][0]["replica"]
    assert replica["bucket"] == value and replica["region"] == value
    assert _keys(doc) == {"snapshot", "snapshot.interval", "snapshot.retention", "dbs", "dbs.path", "dbs.replica",
                          *(f"dbs.replica.{k}" for k in ("type", "bucket", "path", "region", "endpoint",
                                                          "force-path-style", "sync-interval"))}  # fmt: skip


def test_dollar_survives_litestream_expansion_for_real(tmp_path: Path, version: str, litestream_bins) -> None:
    """A database folder literally named with $HOME, #, quotes and a newline, read by the real binary."""
    from backupctl.litestream.runner import Litestream

    # 0.5 opens the database as a SQLite URI and cuts its path at '#', so settings refuse '#' for 0.5
    # (test_inputs_that_break_later); 0.3 takes it as it is.
    folder = tmp_path / ("we$HOME ird #'\"x" if version == "0.3.13" else "we$HOME ird '\"x")
    folder.mkdir()
    # Through the environment: in a .env, an unquoted " #" starts a comment (dotenv's rule).
    env = {"BACKUP_DATABASES": f"{folder.name}/a.db", "LITESTREAM_VERSION": version, "BACKUP_LOCAL_DIR": "r"}
    s = load_settings(cwd=tmp_path, environ=env)
    config = tmp_path / "litestream.yml"
    config.write_text(render(s).text)
    out = Litestream(litestream_bins[version], s, config).run("databases", timeout=30).stdout
    assert str(folder / "a.db") in out


def test_yaml_scalar_types() -> None:
    assert yaml_scalar(True) == "true"
    assert yaml_scalar(3) == "3"
    assert yaml_scalar("a$b") == '"a\\x24b"'
    assert yaml.safe_load(yaml_scalar("a$b")) == "a$b"


def test_setup_writes_0600_atomically_under_umask_022(project) -> None:
    old = os.umask(0o022)
    try:
        result = run_cli("setup", cwd=project.dir)
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    config = project.dir / "litestream.yml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert not [p for p in project.dir.iterdir() if p.name.startswith(".litestream.yml")]


def test_secrets_never_in_file_output_or_errors(project) -> None:
    secret = "Sup3r-Secret-Value-0042"
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_BUCKET="b", BACKUP_SECRET_ACCESS_KEY=secret,
                      BACKUP_ACCESS_KEY_ID="AKIDX", BACKUP_SYNC_INTERVAL="10")  # fmt: skip
    bad = run_cli("setup", cwd=project.dir)
    assert bad.returncode == ExitCode.CONFIG
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_BUCKET="b", BACKUP_SECRET_ACCESS_KEY=secret, BACKUP_ACCESS_KEY_ID="AKIDX"
    )
    good = run_cli("setup", cwd=project.dir)
    printed = run_cli("setup", "--print", cwd=project.dir)
    env = run_cli("env", "--json", cwd=project.dir)
    assert good.returncode == printed.returncode == env.returncode == 0
    for result in (bad, good, printed, env):
        assert secret not in result.stdout + result.stderr
    assert secret not in (project.dir / "litestream.yml").read_text()


def test_user_template_printing_a_secret_is_refused(project) -> None:
    secret = "Another-Secret-7777"
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_BUCKET="b", BACKUP_SECRET_ACCESS_KEY=secret, BACKUP_ACCESS_KEY_ID="AKIDX"
    )
    assert run_cli("templates", "eject", cwd=project.dir).returncode == 0
    main = project.dir / "backupctl-templates" / "litestream.yml.j2"
    # A template author cannot reach credentials: they are not in the template context at all.
    main.write_text(main.read_text() + "# {{ secret_access_key }}\n")
    result = run_cli("setup", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG
    assert "secret_access_key" in result.stderr and "is undefined" in result.stderr
    assert secret not in result.stdout + result.stderr


def test_ejected_templates_are_used(project) -> None:
    assert run_cli("templates", "eject", cwd=project.dir).returncode == 0
    again = run_cli("templates", "eject", cwd=project.dir)
    assert again.returncode == ExitCode.REFUSED
    partial = project.dir / "backupctl-templates" / "replica" / "file.j2"
    partial.write_text(partial.read_text() + "# custom partial\n")
    result = run_cli("setup", "--print", cwd=project.dir)
    assert result.returncode == 0 and "# custom partial" in result.stdout


@pytest.mark.parametrize(
    ("env_text", "needle"),
    [
        ("BACKUP_DATABASES=db/app.db\nBACKUP_SYNC_INTERVAL=10\n", "BACKUP_SYNC_INTERVAL"),
        ("BACKUP_DATABASES=db/app.db\nBACKUP_REPLICA=s3\n", "BACKUP_BUCKET"),
        ("BACKUP_DATABASES=db/app.db\nBACKUP_REPLICA=tape\n", "unknown replica type"),
        ("BACKUP_DATABASES=db/app.db\nLITESTREAM_VERSION=0.5.9\n", "known-bad"),
        ("BACKUP_DATABASES=missing/app.db\n", "does not exist"),
        ("BACKUP_DATABASES=db/app.db\nBACKUP_REPLICA=r2\nR2_BUCKET=b\n", "R2_ACCOUNT_ID"),
        ("BACKUP_DATABASES=db/app.db\nBACKUP_BUCKET=b\nBACKUP_ENDPOINT=s3.example.com\n", "not an http(s) URL"),
        ("BACKUP_DATABASES=db/app.db\nBACKUP_REPLICA=s3,file\nBACKUP_BUCKET=b\n", "allows one per database"),
    ],
)
def test_failed_setup_names_the_problem_and_keeps_the_file(project, env_text: str, needle: str) -> None:
    config = project.dir / "litestream.yml"
    config.write_bytes(b"# the user's existing config\n")
    before = config.read_bytes()
    project.env_file.write_text(env_text)
    result = run_cli("setup", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert config.read_bytes() == before


def test_json_errors_are_json(project) -> None:
    project.env_file.write_text("BACKUP_DATABASES=db/app.db\nBACKUP_SYNC_INTERVAL=10\n")
    result = run_cli("env", "--json", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["error"]["kind"] == "config" and doc["error"]["exit_code"] == 3
    assert any("BACKUP_SYNC_INTERVAL" in d for d in doc["error"]["details"])


def test_env_file_option_and_output_option(tmp_path: Path) -> None:
    proj = project_with(tmp_path / "p", SETUPS["local"])
    out = tmp_path / "elsewhere" / "ls.yml"
    result = run_cli("setup", "--env-file", str(proj / ".env"), "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(out.read_text())["dbs"][0]["path"] == str(proj / "db" / "app.db")
    missing = run_cli("setup", "--env-file", "nope.env", cwd=tmp_path)
    assert missing.returncode == ExitCode.CONFIG and "nope.env" in missing.stderr


def test_chora_print_points_at_r2(tmp_path: Path) -> None:
    proj = project_with(tmp_path, SETUPS["r2-chora"])
    result = run_cli("setup", "--print", cwd=proj)
    assert result.returncode == 0
    replica = yaml.safe_load(result.stdout)["dbs"][0]["replica"]
    assert replica["endpoint"] == "https://0123456789abcdef.r2.cloudflarestorage.com"
    assert replica["region"] == "auto"


def test_templates_ship_in_the_wheel() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'"templates" = "backupctl/templates"', text)
