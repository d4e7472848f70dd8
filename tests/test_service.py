"""Service definitions: every value quoted for its format, even hostile paths."""

from __future__ import annotations

import plistlib
import shlex
from pathlib import Path

import pytest
import yaml

from backupctl.errors import ConfigError
from backupctl.service import backupctl_command, render_service
from backupctl.settings import load_settings
from tests.conftest import make_db, run_cli

HOSTILE = 'we$ird %h "q" \\ <x>&'


@pytest.fixture
def hostile_project(tmp_path: Path):
    proj = tmp_path / HOSTILE
    make_db(proj / "db" / "app.db")
    (proj / ".env").write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={tmp_path / 'rep'}\nBACKUP_STOP_TIMEOUT=50s\n")
    return load_settings(proj / ".env")


def _expected_argv(settings) -> list[str]:
    return [*backupctl_command(), "start", "--env-file", str(settings.env_file)]


def _systemd_split(value: str) -> list[str]:
    """systemd's ExecStart rules for our output: double-quoted words, C escapes, %% and $$."""
    words = shlex.split(value.replace("$$", "$"), posix=True)
    return [w.replace("%%", "%") for w in words]


def test_systemd_unit_quotes_paths_and_outlasts_the_stop_timeout(hostile_project) -> None:
    text = render_service("systemd", hostile_project).text
    exec_line = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    assert _systemd_split(exec_line[len("ExecStart=") :]) == _expected_argv(hostile_project)
    assert "%h" not in text.replace("%%h", "")  # no specifier left for systemd to expand
    assert "Restart=on-failure" in text and "KillMode=mixed" in text
    assert "TimeoutStopSec=65" in text  # 50s stop timeout + margin
    workdir = next(line for line in text.splitlines() if line.startswith("WorkingDirectory="))
    assert workdir == "WorkingDirectory=" + str(hostile_project.project_dir).replace("%", "%%")


def test_launchd_plist_is_valid_xml_with_exact_arguments(hostile_project) -> None:
    plist = plistlib.loads(render_service("launchd", hostile_project).text.encode())
    assert plist["ProgramArguments"] == _expected_argv(hostile_project)
    assert plist["WorkingDirectory"] == str(hostile_project.project_dir)
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["ExitTimeOut"] == 65


def test_compose_service_survives_yaml_and_compose_interpolation(hostile_project) -> None:
    doc = yaml.safe_load(render_service("compose", hostile_project, image="me/app:1").text)
    svc = doc["services"]["backupctl"]
    unescape = lambda v: v.replace("$$", "$")  # noqa: E731 - compose's own unescaping
    assert [unescape(a) for a in svc["command"]] == [
        "backupctl", "start", "--restore-if-missing", "--env-file", str(hostile_project.env_file)
    ]  # fmt: skip
    assert "build" not in svc  # a named image is run as it is
    assert svc["restart"] == "unless-stopped" and svc["stop_grace_period"] == "65s" and svc["image"] == "me/app:1"
    assert svc["healthcheck"]["test"][:3] == ["CMD", "backupctl", "status"]
    assert unescape(svc["working_dir"]) == str(hostile_project.project_dir)
    assert all(v.count("$") % 2 == 0 for v in svc["volumes"])


def test_procfile_line_is_shell_quoted(hostile_project) -> None:
    text = render_service("procfile", hostile_project).text
    name, _, command = text.strip().partition(": ")
    assert name == "backup" and shlex.split(command) == _expected_argv(hostile_project)


def test_a_newline_in_a_path_is_refused(tmp_path: Path) -> None:
    proj = tmp_path / "bad\nname"
    make_db(proj / "db" / "app.db")
    (proj / ".env").write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={tmp_path / 'rep'}\n")
    with pytest.raises(ConfigError):
        render_service("systemd", load_settings(proj / ".env"))


def test_service_cli_prints_and_installs_a_user_unit(project, isolated_home: Path) -> None:
    env = {"BACKUPCTL_ENV_FILE": str(project.env_file)}
    printed = run_cli("service", "procfile", cwd=project.dir, env=env)
    assert printed.returncode == 0 and printed.stdout.startswith("backup: ")
    installed = run_cli("service", "systemd", "--install", cwd=project.dir, env=env)
    assert installed.returncode == 0, installed.stderr
    units = list((isolated_home / ".config" / "systemd" / "user").glob("backupctl-*.service"))
    assert len(units) == 1 and "ExecStart=" in units[0].read_text()
    refused = run_cli("service", "compose", "--install", cwd=project.dir, env=env)
    assert refused.returncode == 7


def test_launchd_log_goes_to_the_state_dir_override(hostile_project, tmp_path: Path, monkeypatch) -> None:
    default = plistlib.loads(render_service("launchd", hostile_project).text.encode())
    assert default["StandardOutPath"] == str(hostile_project.project_dir / ".backupctl" / "launchd.log")
    monkeypatch.setenv("BACKUPCTL_STATE_DIR", str(tmp_path / "state"))
    plist = plistlib.loads(render_service("launchd", hostile_project).text.encode())
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == str((tmp_path / "state" / "launchd.log").resolve())


def test_compose_builds_the_repository_dockerfile_with_the_pinned_litestream(hostile_project) -> None:
    from backupctl import __version__
    from backupctl.service import image_source

    doc = yaml.safe_load(render_service("compose", hostile_project).text)
    svc = doc["services"]["backupctl"]
    assert image_source() is not None and (image_source() / "Dockerfile").is_file()
    assert svc["build"] == {"context": str(image_source()), "args": {"LITESTREAM_VERSION": hostile_project.version}}
    assert svc["image"] == f"backupctl:{__version__}-litestream-{hostile_project.version}"
    assert str(hostile_project.local_dir) in [v.replace("$$", "$").split(":")[0] for v in svc["volumes"]]  # the folder replica
