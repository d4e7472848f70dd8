"""Service definitions checked by the tools that read them: systemd-analyze for units, the compose-spec
JSON schema for compose files, honcho (a real Procfile manager) running the Procfile line, and the
Dockerfile that the compose service must agree with (user, folders, healthcheck timing).

There is no Docker engine here: the compose file is checked against the schema `docker compose`
itself validates with, and its layout against the Dockerfile, not run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
import yaml

from backupctl.commands import service
from backupctl.commands.service import render_service
from backupctl.config.settings import load_settings
from tests.commands.test_service import HOSTILE
from tests.conftest import ROOT, Project, count_rows, insert_rows, make_db, run_cli, wait_for

BIN = Path(sys.executable).parent


@pytest.fixture
def hostile_settings(tmp_path: Path):
    proj = tmp_path / HOSTILE
    make_db(proj / "storage" / "db" / "production.sqlite3")
    (proj / ".env").write_text(f"BACKUP_DATABASES=storage/db/production.sqlite3\nBACKUP_LOCAL_DIR={tmp_path / 'rep'}\n")
    return load_settings(proj / ".env")


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip()) for ln in joined.splitlines() if ln.strip()]


# systemd ---------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here (Debian: systemd)")
@pytest.mark.parametrize("command", ["start", "serve"])
@pytest.mark.parametrize("system_user", [None, "root"])
def test_systemd_analyze_verifies_the_units(hostile_settings, tmp_path: Path, command: str, system_user: str | None) -> None:
    environ = {"BACKUPCTL_LITESTREAM_BIN": str(tmp_path / f"bin {HOSTILE}" / "litestream")}
    rendered = render_service("systemd", hostile_settings, command=command, system_user=system_user, environ=environ)
    unit = tmp_path / "units" / f"{rendered.name}.service"
    unit.parent.mkdir()
    unit.write_text(rendered.text)
    # A user manager needs a runtime folder even to verify; this machine may have no session of its own.
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    argv = ["systemd-analyze", *([] if system_user else ["--user"]), "verify", str(unit)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    # verify exits 0 with warnings for unknown keys or bad values: whatever it says about our unit fails too
    ours = [ln for ln in (res.stdout + res.stderr).splitlines() if rendered.name in ln or unit.name in ln]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr


# compose ---------------------------------------------------------------------------------------


def _compose_schema() -> dict:
    # check-jsonschema (a test extra) vendors compose-spec's schema/compose-spec.json with its license
    # and sha256, and keeps it current: the schema `docker compose config` validates against.
    vendored = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(vendored.read_text("utf-8"))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"command": "serve"},
        {"data": "campfire_storage", "container_user": "1001:1001"},
        {"image": "registry.example.com/myapp-backupctl:0.5.17"},
        {"data": "HOST"},
    ],
)
def test_compose_files_follow_the_compose_spec(hostile_settings, tmp_path: Path, options: dict) -> None:
    import jsonschema

    if options.get("data") == "HOST":
        options = {**options, "data": str(hostile_settings.project_dir / "storage")}
    environ = {"BACKUPCTL_LITESTREAM_BIN": str(tmp_path / f"bin {HOSTILE}" / "litestream")}
    doc = yaml.safe_load(render_service("compose", hostile_settings, environ=environ, **options).text)
    schema = _compose_schema()
    jsonschema.validators.validator_for(schema)(schema).validate(doc)

    (name, svc), *others = doc["services"].items()
    assert not others
    mounts = svc["volumes"]
    binds = [m for m in mounts if m["type"] == "bind"]
    # Of the project only the .env, read-only, and the data folder when one was named
    project_binds = [m for m in binds if m["source"].startswith(".")]
    assert project_binds[0] == {"type": "bind", "source": "./.env", "target": "/data/.env", "read_only": True}
    assert [m["target"] for m in project_binds[1:]] == (["/data/storage"] if "data" in options and "/" in options["data"] else [])
    # Every named volume it mounts is declared, and nothing else is
    assert {m["source"] for m in mounts if m["type"] == "volume"} == set(doc["volumes"])
    uid, gid = (options.get("container_user") or "1000:1000").split(":")
    assert svc["user"] == f"{uid}:{gid}"
    if "image" in options:
        assert svc["image"] == options["image"] and "build" not in svc
    else:
        assert svc["build"]["args"] == {
            "LITESTREAM_VERSION": hostile_settings.version,
            "BACKUPCTL_UID": uid,
            "BACKUPCTL_GID": gid,
        }
        assert (hostile_settings.project_dir / svc["build"]["context"] / "Dockerfile").is_file()
    assert svc["healthcheck"]["start_period"] == service.HEALTHCHECK["start_period"]
    assert all(p.startswith("/data/storage/") for p in svc["environment"]["BACKUP_DATABASES"].split(","))
    if name == "backupctl-serve":
        assert svc["pid"] == "service:backupctl"  # sees the supervisor's processes, as `status` must


def test_the_dockerfile_agrees_with_the_compose_service() -> None:
    steps = _dockerfile()
    args = dict(a.split("=", 1) for k, a in steps if k == "ARG" and "=" in a)
    assert (int(args["BACKUPCTL_UID"]), int(args["BACKUPCTL_GID"])) == (service.IMAGE_UID, service.IMAGE_GID)
    run = " ".join(a for k, a in steps if k == "RUN")
    assert 'useradd --uid "$BACKUPCTL_UID" --gid "$BACKUPCTL_GID"' in run
    # Every folder the compose service mounts a named volume on is made, and owned by the user, in the image
    mkdir = re.search(r"mkdir -p ([^&]+)", run).group(1).split()
    chown = re.search(r"chown backupctl:backupctl ([^&]+)", run).group(1).split()
    for folder in (service.CONTAINER_DATA, service.CONTAINER_STATE):
        assert folder in mkdir and folder in chown
    assert next(a for k, a in steps if k == "WORKDIR") == service.CONTAINER_DIR
    health, command = next(a for k, a in steps if k == "HEALTHCHECK").split(" CMD ", 1)
    assert json.loads(command) == service.HEALTHCHECK_ARGV
    flags = dict(f.removeprefix("--").split("=", 1) for f in shlex.split(health))
    assert flags == {
        "interval": service.HEALTHCHECK["interval"],
        "timeout": service.HEALTHCHECK["timeout"],
        "start-period": service.HEALTHCHECK["start_period"],
        "retries": str(service.HEALTHCHECK["retries"]),
    }


# Procfile --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_honcho_runs_the_procfile_line_and_stops_it_after_the_final_sync(
    project: Project, tmp_path: Path, litestream_bins, nothing_left_running
) -> None:
    res = run_cli("service", "procfile", cwd=project.dir)
    assert res.returncode == 0, res.stderr
    (project.dir / "Procfile").write_text(res.stdout)
    # backupctl from PATH, as on a teammate's machine: this venv's bin first
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = tmp_path / "honcho.log"
    with log.open("w") as out:
        honcho = subprocess.Popen(
            [str(BIN / "honcho"), "--no-colour", "start"], cwd=project.dir, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(
            lambda: "replication running" in log.read_text() or honcho.poll() is not None,
            timeout=120,
            what="the supervisor under honcho to confirm replication",
        )
        assert honcho.poll() is None, log.read_text()
        assert run_cli("status", cwd=project.dir).returncode == 0, log.read_text()
        insert_rows(project.db, 25)
        honcho.send_signal(signal.SIGTERM)  # honcho passes SIGTERM to the process group: the supervisor's final sync
        honcho.wait(timeout=60)
    finally:
        if honcho.poll() is None:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
    text = log.read_text()
    assert "final sync completed" in text, text
    restored = tmp_path / "restored.db"
    res = run_cli("restore", "-o", str(restored), cwd=project.dir, timeout=120)
    assert res.returncode == 0, res.stderr
    assert count_rows(restored) == 25
