"""Service definitions: every value quoted for its format, even hostile paths."""

from __future__ import annotations

import plistlib
import shlex
from pathlib import Path

import pytest
import yaml

from backupctl.commands.service import Mount, backupctl_command, render_service
from backupctl.config.settings import load_settings
from backupctl.errors import ConfigError
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


def test_compose_service_survives_yaml_and_compose_interpolation(hostile_project, tmp_path: Path) -> None:
    # The only host paths left in the compose file are the user's own binary and a folder outside the
    # project: give both the hostile name, so that YAML quoting and compose's $$ are both exercised.
    binary = tmp_path / f"bin {HOSTILE}" / "litestream"
    environ = {"BACKUPCTL_LITESTREAM_BIN": str(binary)}
    doc = yaml.safe_load(
        render_service("compose", hostile_project, image="me/app:1", data=str(tmp_path / HOSTILE / "db"), environ=environ).text
    )
    svc = doc["services"]["backupctl"]
    unescape = lambda v: v.replace("$$", "$")  # noqa: E731 - compose's own unescaping
    assert svc["command"] == ["backupctl", "start", "--restore-if-missing"]  # the .env is found in /data
    assert "build" not in svc  # a named image is run as it is
    assert svc["restart"] == "unless-stopped" and svc["stop_grace_period"] == "65s" and svc["image"] == "me/app:1"
    assert svc["healthcheck"]["test"] == ["CMD", "backupctl", "status", "--json"]
    assert svc["working_dir"] == "/data" and svc["user"] == "1000:1000"
    mounts = {m["target"]: m for m in svc["volumes"]}
    assert mounts["/data/.env"] == {"type": "bind", "source": "./.env", "target": "/data/.env", "read_only": True}
    assert mounts["/data/storage"]["source"] == "./db"  # a host folder inside the project: relative to the compose file
    assert (
        unescape(mounts["/opt/backupctl/litestream"]["source"]) == str(binary)
        and mounts["/opt/backupctl/litestream"]["read_only"]
    )
    assert svc["environment"]["BACKUPCTL_LITESTREAM_BIN"] == "/opt/backupctl/litestream"
    assert svc["environment"]["BACKUP_DATABASES"] == "/data/storage/app.db"
    assert all(unescape(v).count("$") == v.count("$") // 2 for m in svc["volumes"] for v in m.values() if isinstance(v, str))


def test_procfile_line_runs_backupctl_from_path_with_a_relative_env_file(hostile_project, tmp_path: Path) -> None:
    binary = tmp_path / f"bin {HOSTILE}" / "litestream"
    text = render_service("procfile", hostile_project, environ={"BACKUPCTL_LITESTREAM_BIN": str(binary)}).text
    name, _, command = text.strip().partition(": ")
    assert name == "backup"
    assert shlex.split(command) == [
        "env", f"LITESTREAM_VERSION={hostile_project.version}", f"BACKUPCTL_LITESTREAM_BIN={binary}",
        "backupctl", "start", "--env-file", ".env",
    ]  # fmt: skip
    assert str(hostile_project.project_dir) not in text  # nothing of this machine but the binary the user chose


def test_every_definition_carries_the_pinned_version_and_the_users_binary(hostile_project, tmp_path: Path) -> None:
    binary = tmp_path / f"bin {HOSTILE}" / "litestream"
    environ = {"BACKUPCTL_LITESTREAM_BIN": str(binary), "BACKUPCTL_ALLOW_VERSION_MISMATCH": "1"}
    expected = {"LITESTREAM_VERSION": hostile_project.version, "BACKUPCTL_LITESTREAM_BIN": str(binary),
                "BACKUPCTL_ALLOW_VERSION_MISMATCH": "1"}  # fmt: skip
    unit = render_service("systemd", hostile_project, environ=environ).text
    assigned = dict(
        word.split("=", 1)
        for line in unit.splitlines()
        if line.startswith("Environment=")
        for word in _systemd_split(line[len("Environment=") :])
    )
    assert assigned == {"PYTHONUNBUFFERED": "1", **expected}
    plist = plistlib.loads(render_service("launchd", hostile_project, environ=environ).text.encode())
    assert plist["EnvironmentVariables"] == expected
    line = render_service("procfile", hostile_project, environ=environ).text
    assert [w for w in shlex.split(line.partition(": ")[2]) if "=" in w] == [f"{k}={v}" for k, v in expected.items()]
    svc = yaml.safe_load(render_service("compose", hostile_project, environ=environ).text)["services"]["backupctl"]
    assert svc["environment"]["LITESTREAM_VERSION"] == hostile_project.version
    assert svc["environment"]["BACKUPCTL_ALLOW_VERSION_MISMATCH"] == "1"
    without = render_service("systemd", hostile_project, environ={}).text
    assert "BACKUPCTL_LITESTREAM_BIN" not in without and f'"LITESTREAM_VERSION={hostile_project.version}"' in without


def test_user_and_system_units(hostile_project) -> None:
    user = render_service("systemd", hostile_project).text
    # network-online.target does nothing in a user unit: it is not there (only a comment says why)
    assert "network-online" not in "".join(ln for ln in user.splitlines() if not ln.startswith("#"))
    assert "WantedBy=default.target" in user and "User=" not in user
    system = render_service("systemd", hostile_project, system_user="deploy").text
    for line in ("User=deploy", "WantedBy=multi-user.target", "Wants=network-online.target", "After=network-online.target"):
        assert line in system.splitlines()
    # The header names the command that installs this very unit.
    assert render_service("systemd", hostile_project, command="serve").text.startswith(
        "# systemd user unit for backupctl serve (install: backupctl service systemd --serve --install)"
    )
    assert (
        "(install, as root: backupctl service systemd --system --user-name deploy --serve --install)"
        in render_service("systemd", hostile_project, command="serve", system_user="deploy").text.splitlines()[0]
    )
    with pytest.raises(ConfigError):
        render_service("systemd", hostile_project, system_user="bad name")
    # systemd-analyze flags a unit run as nobody ("Special user nobody configured, this is not safe!")
    with pytest.raises(ConfigError, match="special user"):
        render_service("systemd", hostile_project, system_user="nobody")


def test_system_unit_install_needs_root_and_an_existing_user(hostile_project, tmp_path: Path, monkeypatch) -> None:
    from backupctl.commands import service
    from backupctl.errors import RefusedError

    monkeypatch.setattr(service, "SYSTEMD_SYSTEM_DIR", tmp_path / "etc-systemd-system")
    rendered = render_service("systemd", hostile_project, system_user="root")
    with pytest.raises(RefusedError) as refused:
        service.install_systemd_unit(rendered, print_command=["backupctl", "service", "systemd", "--system"], euid=1000)
    target = tmp_path / "etc-systemd-system" / f"{rendered.name}.service"
    assert refused.value.hint == f"run: backupctl service systemd --system | sudo tee {target} > /dev/null"
    assert not (tmp_path / "etc-systemd-system").exists()
    path = service.install_systemd_unit(rendered, euid=0)
    assert path == tmp_path / "etc-systemd-system" / f"{rendered.name}.service" and path.read_text() == rendered.text
    assert path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(ConfigError, match="no user"):
        service.install_systemd_unit(render_service("systemd", hostile_project, system_user="no-such-user-xq"), euid=0)


def test_a_newline_in_a_path_is_refused(tmp_path: Path) -> None:
    proj = tmp_path / "bad\nname"
    make_db(proj / "db" / "app.db")
    (proj / ".env").write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={tmp_path / 'rep'}\n")
    with pytest.raises(ConfigError):
        render_service("systemd", load_settings(proj / ".env"))


def test_service_cli_prints_and_installs_a_user_unit(project, isolated_home: Path) -> None:
    env = {"BACKUPCTL_ENV_FILE": str(project.env_file)}
    printed = run_cli("service", "procfile", cwd=project.dir, env=env)
    assert printed.returncode == 0 and printed.stdout.startswith("backup: env LITESTREAM_VERSION=")
    installed = run_cli("service", "systemd", "--install", cwd=project.dir, env=env)
    assert installed.returncode == 0, installed.stderr
    units = list((isolated_home / ".config" / "systemd" / "user").glob("backupctl-*.service"))
    assert len(units) == 1 and "ExecStart=" in units[0].read_text()
    refused = run_cli("service", "compose", "--install", cwd=project.dir, env=env)
    assert refused.returncode == 7


def test_service_cli_refuses_options_of_another_kind(project) -> None:
    for args, words in (
        (["systemd", "--data", "x"], "--data"),
        (["compose", "--system", "--user-name", "deploy"], "--system"),
        (["systemd", "--user-name", "deploy"], "without --system"),
        (["procfile", "--container-user", "1000:1000"], "--container-user"),
        (["systemd", "--system"], "--system needs --user-name"),
    ):
        res = run_cli("service", *args, cwd=project.dir)
        assert res.returncode == 2 and words in res.stderr, (args, res.stderr)
    bad = run_cli("service", "compose", "--container-user", "rails", cwd=project.dir)
    assert bad.returncode == 3 and "UID:GID" in bad.stderr


def test_launchd_log_goes_to_the_state_dir_override(hostile_project, tmp_path: Path, monkeypatch) -> None:
    default = plistlib.loads(render_service("launchd", hostile_project).text.encode())
    assert default["StandardOutPath"] == str(hostile_project.project_dir / ".backupctl" / "launchd.log")
    monkeypatch.setenv("BACKUPCTL_STATE_DIR", str(tmp_path / "state"))
    plist = plistlib.loads(render_service("launchd", hostile_project).text.encode())
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == str((tmp_path / "state" / "launchd.log").resolve())


def test_compose_builds_the_repository_dockerfile_with_the_pinned_litestream(hostile_project) -> None:
    from backupctl import __version__
    from backupctl.commands.service import image_source

    doc = yaml.safe_load(render_service("compose", hostile_project).text)
    svc = doc["services"]["backupctl"]
    assert image_source() is not None and (image_source() / "Dockerfile").is_file()
    context = svc["build"]["context"]
    assert not Path(context).is_absolute() and (hostile_project.project_dir / context).resolve() == image_source()
    assert svc["build"]["args"] == {
        "LITESTREAM_VERSION": hostile_project.version,
        "BACKUPCTL_UID": "1000",
        "BACKUPCTL_GID": "1000",
    }
    assert svc["image"] == f"backupctl:{__version__}-litestream-{hostile_project.version}"
    mounts = {m["target"]: m for m in svc["volumes"]}
    assert mounts["/replica"]["source"] == str(hostile_project.local_dir)  # the folder replica
    assert svc["environment"]["BACKUP_LOCAL_DIR"] == "/replica"
    other = yaml.safe_load(render_service("compose", hostile_project, container_user="1001:1002").text)["services"]["backupctl"]
    assert other["user"] == "1001:1002" and other["build"]["args"]["BACKUPCTL_UID"] == "1001"
    assert other["image"] != svc["image"]  # never the tag of an image built for another user


@pytest.mark.parametrize(
    ("databases", "data", "root", "inside"),
    [
        # Campfire: the volume is storage/, the database one folder deeper, as in the app's /rails/storage
        ("storage/db/production.sqlite3", None, "storage", "/data/storage/db/production.sqlite3"),
        ("storage/production*.sqlite3", None, "storage", "/data/storage/production*.sqlite3"),  # Rails 8: a glob stays one
        ("app.sqlite3", None, ".", "/data/storage/app.sqlite3"),
        ("storage/db/production.sqlite3", "./storage/db", "storage/db", "/data/storage/production.sqlite3"),
    ],
)
def test_compose_data_layout(tmp_path: Path, databases: str, data: str | None, root: str, inside: str, monkeypatch) -> None:
    from backupctl.commands.service import compose_layout, data_root

    proj = tmp_path / "app"
    for name in ("storage/db/production.sqlite3", "storage/production.sqlite3", "app.sqlite3"):
        make_db(proj / name)
    (proj / ".env").write_text(f"BACKUP_DATABASES={databases}\nLITESTREAM_REPLICA_BUCKET=backups\n")
    monkeypatch.chdir(proj)
    settings = load_settings(proj / ".env")
    layout = compose_layout(settings, data, environ={})
    assert layout.environment["BACKUP_DATABASES"] == inside
    data_mount = next(m for m in layout.mounts if m.target == "/data/storage")
    if data is None:
        assert data_root(settings) == str(proj / root).rstrip("/.") and data_mount == Mount("volume", "storage", "/data/storage")
        assert layout.volumes == ["storage", "backupctl-state"]
    else:
        assert data_mount == Mount("bind", f"./{root}", "/data/storage") and layout.volumes == ["backupctl-state"]
    project_files = [m for m in layout.mounts if m.type == "bind"]
    # nothing else of the project
    assert project_files == [Mount("bind", "./.env", "/data/.env", True), *([data_mount] if data else [])]


def test_compose_refuses_a_data_folder_without_the_databases(hostile_project, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not inside the data folder"):
        render_service("compose", hostile_project, data=str(tmp_path / "elsewhere"))
    with pytest.raises(ConfigError, match="neither a volume name nor a path"):
        render_service("compose", hostile_project, data="no good")
