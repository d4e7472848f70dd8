"""Replica kinds: each spec in backupctl/kinds/ is the one place its kind is described, and what it
declares (template, variables, credentials, reachability) is what the rest of backupctl uses."""

from __future__ import annotations

import copy
import pickle
import re
import socket
from pathlib import Path

import pytest

from backupctl import kinds
from backupctl.config.render import render
from backupctl.config.settings import Replica, load_settings
from backupctl.errors import LitestreamError
from backupctl.litestream.runner import Litestream, build_environment, plain_environment
from backupctl.litestream.spawn import move_ca_bundle
from backupctl.versions import capabilities
from tests.conftest import ROOT

# Enough for each kind to be valid; secrets differ so each can be told apart.
KIND_ENV = {
    "file": "BACKUP_LOCAL_DIR=backups\n",
    "s3": "BACKUP_BUCKET=bkt\nBACKUP_ACCESS_KEY_ID=AKIDKINDS\nBACKUP_SECRET_ACCESS_KEY=s3-secret-kinds\n",
    "r2": "R2_ACCOUNT_ID=acc0123\nR2_BUCKET=bkt\nR2_ACCESS_KEY_ID=AKIDR2KINDS\nR2_SECRET_ACCESS_KEY=r2-secret-kinds\n",
    "sftp": "BACKUP_SFTP_HOST=backup.example.com:2222\nBACKUP_SFTP_USER=ls\nBACKUP_SFTP_PASSWORD=sftp-secret-kinds\n",
    "gs": "BACKUP_BUCKET=bkt\nBACKUP_GS_CREDENTIALS_FILE=key.json\n",
    "abs": "BACKUP_BUCKET=container\nBACKUP_ABS_ACCOUNT_NAME=acct\nBACKUP_ABS_ACCOUNT_KEY=abs-secret-kinds\n",
}


def project_for(tmp_path: Path, kind: str, extra: str = "") -> Path:
    (tmp_path / "db").mkdir(exist_ok=True)
    (tmp_path / "key.json").write_text("{}")
    (tmp_path / ".env").write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_REPLICA={kind}\n{KIND_ENV[kind]}{extra}")
    return tmp_path


def test_every_kind_has_a_template_and_documented_variables() -> None:
    example = (ROOT / ".env.example").read_text()
    assert set(kinds.REPLICA_KINDS) == set(KIND_ENV)
    for name, spec in kinds.KINDS.items():
        assert (ROOT / "templates" / spec.template).is_file(), spec.template
        assert name in example.split("BACKUP_REPLICA=")[0], f"{name} is not named in .env.example"
        for chain in spec.variables.values():
            assert all(v in example for v in chain), (name, chain)


@pytest.mark.parametrize("kind", sorted(KIND_ENV))
def test_real_litestream_reads_each_kinds_config(tmp_path: Path, kind: str, version: str, litestream_bins) -> None:
    """Each kind's template, as the spec fills it in, is a replica the pinned litestream accepts,
    and its secret is nowhere in the file."""
    s = load_settings(cwd=project_for(tmp_path, kind, f"LITESTREAM_VERSION={version}\n"), environ={})
    config = tmp_path / "litestream.yml"
    text = render(s).text
    config.write_text(text)
    for secret in s.credentials.secret_values():
        assert secret not in text
    result = Litestream(litestream_bins[version], s, config).run("databases", timeout=30)
    lines = [ln.split() for ln in result.stdout.strip().splitlines()]
    replica = s.databases[0].replicas[0]
    assert lines[1][0] == str(s.databases[0].path)
    assert lines[1][1] == (replica.litestream_type if version == "0.5.17" else replica.kind), result.stdout
    if kind == "gs":
        assert replica.litestream_type == ("gs" if version == "0.5.17" else "gcs")


def test_credentials_reach_litestream_under_its_names_and_backupctls_own_are_withheld(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "key.json").write_text("{}")
    env_text = "BACKUP_DATABASES=db/app.db\nBACKUP_REPLICA=s3,sftp,gs,abs\nLITESTREAM_VERSION=0.3.13\n"
    env_text += "".join(KIND_ENV[k] for k in ("s3", "sftp", "gs", "abs")).replace("BACKUP_BUCKET=container\n", "")
    (tmp_path / ".env").write_text(env_text)
    s = load_settings(cwd=tmp_path, environ={})
    base = {
        "PATH": "/usr/bin",
        "BACKUP_SECRET_ACCESS_KEY": "s3-secret-kinds",
        "R2_SECRET_ACCESS_KEY": "stale",
        "BACKUP_SFTP_PASSWORD": "sftp-secret-kinds",
        "BACKUP_ABS_ACCOUNT_KEY": "abs-secret-kinds",
        "LITESTREAM_ACCESS_KEY_ID": "other",
        "LITESTREAM_CONFIG": "/elsewhere.yml",
    }
    child = build_environment(s, base)
    assert child.env["AWS_ACCESS_KEY_ID"] == "AKIDKINDS"
    assert child.env["AWS_SECRET_ACCESS_KEY"] == "s3-secret-kinds"
    assert child.env["BACKUPCTL_SFTP_PASSWORD"] == "sftp-secret-kinds"
    assert child.env["LITESTREAM_AZURE_ACCOUNT_KEY"] == "abs-secret-kinds"
    assert child.env["GOOGLE_APPLICATION_CREDENTIALS"] == str(tmp_path / "key.json")
    for withheld in ("BACKUP_SECRET_ACCESS_KEY", "R2_SECRET_ACCESS_KEY", "BACKUP_SFTP_PASSWORD", "BACKUP_ABS_ACCOUNT_KEY",
                     "LITESTREAM_ACCESS_KEY_ID", "LITESTREAM_CONFIG"):  # fmt: skip
        assert withheld not in child.env
    said = " ".join(child.notices)
    assert "LITESTREAM_CONFIG" in said and "LITESTREAM_ACCESS_KEY_ID" in said
    assert len(child.notices) == 2, child.notices
    assert sorted(s.credentials.secret_values()) == ["abs-secret-kinds", "s3-secret-kinds", "sftp-secret-kinds"]
    assert "secret" not in repr(s.credentials)
    argv = Litestream(Path("/bin/true"), s).argv("replicate")
    assert not any(secret in " ".join(argv) for secret in s.credentials.secret_values())


@pytest.mark.quick
@pytest.mark.parametrize("version", ["0.5.17", "0.3.13"])
def test_the_fast_listings_environment_is_the_one_litestream_gets(tmp_path: Path, version: str) -> None:
    """``plain_environment`` (what the fast listing removes from the caller's environment) gives what
    ``build_environment`` gives a local-folder project, with every variable either touches set; and
    it refuses every kind that needs credentials or an S3 client."""
    s = load_settings(cwd=project_for(tmp_path, "file", f"LITESTREAM_VERSION={version}\n"), environ={})
    names = plain_environment(s)
    assert names is not None and "LITESTREAM_CONFIG" in names and "BACKUP_SECRET_ACCESS_KEY" in names
    base = {name: "x" for name in (*names, "PATH", "HOME", "LITESTREAM_ACCESS_KEY_ID", "AWS_PROFILE")}
    base.update({n: "x" for n in kinds.own_variable_names()})
    assert build_environment(s, base).env == {k: v for k, v in base.items() if k not in names}
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    for extra in ({"AWS_CA_BUNDLE": str(bundle)}, {"AWS_CA_BUNDLE": str(bundle), "SSL_CERT_FILE": "/etc/other.pem"}):
        env = {k: v for k, v in {**base, **extra}.items() if k not in names}
        if capabilities(version).drop_aws_ca_bundle:
            move_ca_bundle(env)
        assert build_environment(s, {**base, **extra}).env == env
    for kind in sorted(set(KIND_ENV) - {"file"}):
        (tmp_path / kind).mkdir()
        other = load_settings(cwd=project_for(tmp_path / kind, kind, f"LITESTREAM_VERSION={version}\n"), environ={})
        assert plain_environment(other) is None, kind


def test_a_replica_has_its_kinds_options_only() -> None:
    file = Replica(kind="file", litestream_type="file", path="/tmp/x")
    assert file.bucket is None and file.sftp_host is None  # another kind's option reads as unset
    with pytest.raises(AttributeError):
        _ = file.no_such_option
    with pytest.raises(TypeError, match="no option sftp_host"):
        Replica(kind="s3", litestream_type="s3", path="p", sftp_host="h")
    with pytest.raises(AttributeError):
        file.path = "/elsewhere"  # type: ignore[misc]
    a = Replica(kind="s3", litestream_type="s3", path="p", bucket="b", endpoint="http://h:1")
    b = Replica(kind="s3", litestream_type="s3", path="p", endpoint="http://h:1", bucket="b")
    assert a == b and hash(a) == hash(b) and len({a, b, file}) == 2
    assert copy.deepcopy(a) == a and pickle.loads(pickle.dumps(a)) == a
    assert a.destination == "s3://b/p at http://h:1" and a.lock_key == "s3://h:1/b/p"


def test_probe_tests_the_address_each_kind_names() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        sftp = Replica(kind="sftp", litestream_type="sftp", path="p", sftp_host=f"127.0.0.1:{port}")
        s3 = Replica(kind="s3", litestream_type="s3", path="p", bucket="b", endpoint=f"http://127.0.0.1:{port}")
        kinds.probe_replica(sftp)
        kinds.probe_replica(s3)
    with pytest.raises(LitestreamError, match=rf"unreachable: 127\.0\.0\.1:{port}"):
        kinds.probe_replica(sftp)
    with pytest.raises(LitestreamError, match="unreachable"):
        kinds.probe_replica(s3)
    kinds.probe_replica(Replica(kind="file", litestream_type="file", path="/nonexistent"))  # nothing to connect to
    kinds.probe_replica(Replica(kind="abs", litestream_type="abs", path="p", bucket="b", abs_account_name="a"))


def test_the_modules_that_use_replicas_ask_the_kinds_instead_of_naming_them() -> None:
    """Adding a kind touches backupctl/kinds/, its template, .env.example and the docs, not these."""
    users = ("config/settings.py", "checks/doctor.py", "commands/cost.py", "litestream/runner.py", "config/render.py")
    for name in (*users, "litestream/listings.py"):
        source = (ROOT / "backupctl" / name).read_text()
        found = re.findall(r"kind\s*(?:==|!=|in)\s*[(\"']|\"(?:sftp|abs|gcs)\"|sftp_\w+|abs_account\w*", source)
        assert not found, (name, found)
