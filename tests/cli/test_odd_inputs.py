"""Odd inputs that used to be taken at face value: a database list naming nothing, database paths
that are no file (a FIFO, a device, /proc), a `.env` that is a FIFO, an absolute replica path, a
notify URL with a password in it, and control characters in file names. Each is tried on a real
project with the real CLI, and each must be refused (or shown) in words that name the setting."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from backupctl.errors import ExitCode
from tests.conftest import Project, run_cli, wait_for

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


# --------------------------------------------------------------------------- 2. databases that are no file


def _socket_file(path: Path) -> Path:
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    return path


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda p: (os.mkfifo(p), p)[1], "is a FIFO (named pipe), not a regular file"),
        (_socket_file, "is a socket, not a regular file"),
        (lambda p: (p.symlink_to("/dev/zero"), p)[1], "(a link to '/dev/zero') is a character device, not a regular file"),
    ],
    ids=["fifo", "socket", "link-to-dev-zero"],
)
def test_a_database_that_is_no_regular_file_is_refused_without_opening_it(project: Project, make, needle: str) -> None:
    odd = make(project.dir / "db" / "odd.db")
    project.env_file.write_text(f"BACKUP_DATABASES=db/odd.db\nBACKUP_LOCAL_DIR={project.replica_dir}\n")
    result = run_cli("setup", cwd=project.dir, timeout=30)  # opening a FIFO would block: a hang fails here
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert f"BACKUP_DATABASES: 'db/odd.db' {needle}" in result.stderr
    assert not (project.dir / "litestream.yml").exists()
    assert odd.is_symlink() or not odd.is_file()


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("/dev/zero", "'/dev/zero' is a character device"),
        ("/proc/self/environ", "'/proc/self/environ' is in /proc, where the kernel makes up every file"),
        ("/proc/self/env*", "matches '/proc/"),
        ("/sys/kernel/not-there.db", "'/sys/kernel/not-there.db' is in /sys"),
        ("db", "'db' is a folder"),
    ],
)
def test_devices_folders_and_kernel_files_are_not_databases(project: Project, value: str, needle: str) -> None:
    project.env_file.write_text(f"BACKUP_DATABASES={value}\nBACKUP_LOCAL_DIR={project.replica_dir}\n")
    for command in (("setup",), ("status",), ("doctor", "--json")):  # --json: a table on a pipe folds the words
        result = run_cli(*command, cwd=project.dir, timeout=30)
        assert result.returncode != 0, (command, result.stdout, result.stderr)
        assert needle in result.stdout + result.stderr, command


def test_a_database_that_does_not_exist_yet_is_still_waited_for(project: Project) -> None:
    """Unchanged: litestream replicates a database once the application creates it."""
    project.env_file.write_text(f"BACKUP_DATABASES=db/later.db\nBACKUP_LOCAL_DIR={project.replica_dir}\n")
    result = run_cli("setup", cwd=project.dir)
    assert result.returncode == 0, result.stderr
    assert "waiting for later.db to be created" in result.stderr


# --------------------------------------------------------------------------- 3. a .env that is no file


def test_a_env_that_is_a_fifo_is_named_for_what_it_is(project: Project) -> None:
    project.env_file.unlink()
    os.mkfifo(project.env_file)
    sub = project.dir / "app"
    sub.mkdir()
    for cwd in (project.dir, sub):  # found by the search upwards too, not skipped as if missing
        result = run_cli("status", cwd=cwd, timeout=30)  # a read of the FIFO would block: a hang fails here
        assert result.returncode == ExitCode.CONFIG, result.stderr
        assert f"{project.env_file} is a FIFO (named pipe), not a regular file" in result.stderr
        assert "no .env found" not in result.stderr and "no such file" not in result.stderr
    named = run_cli("setup", "--env-file", ".env", cwd=project.dir, timeout=30)
    assert named.returncode == ExitCode.CONFIG
    assert f"--env-file .env ({project.env_file}) is a FIFO (named pipe), not a regular file" in named.stderr
    device = run_cli("env", "--json", "--env-file", "/dev/null", cwd=project.dir, timeout=30)
    assert device.returncode == ExitCode.CONFIG
    assert json.loads(device.stdout)["error"]["message"] == (
        "--env-file /dev/null is a character device, not a regular file, so it was not read"
    )
    # The commands about the binary read only the version, and a broken ./.env counts as none there.
    assert run_cli("version", cwd=project.dir, timeout=30).returncode == 0


def test_a_folder_named_env_is_passed_over_as_before(project: Project) -> None:
    """`python -m venv .env` is common: such a folder is not the settings, the search goes on above it."""
    sub = project.dir / "service"
    (sub / ".env").mkdir(parents=True)
    result = run_cli("env", "--json", cwd=sub)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["env_file"] == str(project.env_file)


def test_a_config_that_is_a_fifo_is_named_for_what_it_is(project: Project) -> None:
    os.mkfifo(project.dir / "pipe.yml")
    result = run_cli("status", "--config", "pipe.yml", cwd=project.dir, timeout=30)
    assert result.returncode == ExitCode.CONFIG
    assert "--config pipe.yml is a FIFO (named pipe), not a regular file" in result.stderr


# --------------------------------------------------------------------------- 4. an absolute replica path


@pytest.mark.parametrize("value", ["/etc/passwd", "/backups/{name}", "//x"])
def test_an_absolute_replica_path_is_refused_not_made_relative(project: Project, value: str) -> None:
    project.env_file.write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_BUCKET=b\nBACKUP_PATH={value}\n")
    result = run_cli("setup", "--print", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG, result.stdout
    assert f"BACKUP_PATH: {value!r} is an absolute path, but a replica path is relative" in result.stderr
    assert "inside the bucket" in result.stderr and "without the leading '/'" in result.stderr
    assert value.strip("/") not in result.stdout  # no config naming the stripped path


def test_a_trailing_slash_on_the_replica_path_is_still_fine(project: Project) -> None:
    project.env_file.write_text("BACKUP_DATABASES=db/app.db\nBACKUP_BUCKET=b\nBACKUP_PATH=backups/{name}/\n")
    result = run_cli("setup", "--print", cwd=project.dir)
    assert result.returncode == 0, result.stderr
    assert '"backups/app.db"' in result.stdout


# --------------------------------------------------------------------------- 5. a password in a notify URL

PASSWORD = "Pw-Very-Secret-123"


def _files_holding(root: Path, text: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and text.encode() in path.read_bytes():
                found.append(path)
        except OSError:
            continue
    return found


@pytest.mark.parametrize("variable", ["BACKUP_NOTIFY_URL", "BACKUP_NOTIFY_FAIL_URL"])
def test_a_notify_url_with_a_password_is_refused_without_saying_it(project: Project, isolated_home: Path, variable: str) -> None:
    project.env_file.write_text(
        f"BACKUP_DATABASES=db/app.db\nBACKUP_LOCAL_DIR={project.replica_dir}\n"
        f"{variable}=https://alice:{PASSWORD}@hc-ping.example/ping/1234\n"
    )
    outputs = []
    for command in (("setup",), ("env",), ("env", "--json"), ("status", "--json"), ("doctor",), ("doctor", "--json"),
                    ("start",), ("serve",)):  # fmt: skip
        result = run_cli(*command, cwd=project.dir, timeout=60)
        assert result.returncode != 0, command
        outputs.append(result.stdout + result.stderr)
    setup = outputs[0]
    assert f"{variable}: the URL has a user:password@ part before its host" in setup
    assert "remove the user:password@ part" in setup
    for text in outputs:
        assert PASSWORD not in text and "alice" not in text
    assert not (project.dir / "litestream.yml").exists()
    # Nor in any file backupctl wrote (state, logs): only the .env holds it.
    assert _files_holding(project.dir, PASSWORD) == [project.env_file]
    assert _files_holding(isolated_home, PASSWORD) == []


def test_notify_never_resolves_a_host_holding_a_password(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings made without validation (a library caller) still never send: urllib would resolve
    "alice:<password>@host" as a host name and quote the password in its error."""
    import dataclasses

    from backupctl.checks import notify
    from backupctl.config.settings import Credentials, load_settings

    resolved: list[object] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: resolved.append(a) or [])
    settings = load_settings(project.env_file, environ={})
    url = f"http://alice:{PASSWORD}@127.0.0.1:9/ping"
    settings = dataclasses.replace(settings, credentials=Credentials(notify_url=url, notify_fail_url=url))
    lines: list[str] = []
    for ok in (True, False):
        assert notify.send(settings, notify.Event("verify", ok, "x"), log=lines.append, retry_delays=()) is False
    assert resolved == []
    assert lines and all("user:password@" in line and PASSWORD not in line and "alice" not in line for line in lines)


def test_an_s3_endpoint_with_a_password_is_refused_without_saying_it(project: Project) -> None:
    """The same mistake in BACKUP_ENDPOINT, which is no secret setting: `env` and litestream.yml would show it."""
    project.env_file.write_text(f"BACKUP_DATABASES=db/app.db\nBACKUP_BUCKET=b\nBACKUP_ENDPOINT=http://bob:{PASSWORD}@127.0.0.1:9\n")
    for command in (("setup", "--print"), ("env", "--json")):
        result = run_cli(*command, cwd=project.dir)
        assert result.returncode == ExitCode.CONFIG, command
        assert "BACKUP_ENDPOINT: the URL has a user:password@ part" in result.stdout + result.stderr
        assert PASSWORD not in result.stdout + result.stderr and "bob" not in result.stdout + result.stderr


# --------------------------------------------------------------------------- 6. control characters in names

ODD_NAME = "new\nline.db"
ESCAPED = "new\\nline.db"


def test_shown_escapes_control_characters_once() -> None:
    from backupctl.display import shown

    assert shown("plain päth/ünïcode.db") == "plain päth/ünïcode.db"
    assert shown("a\nb\tc\rd\x1b[31me\x7f\u202ef\udcff") == "a\\nb\\tc\\rd\\x1b[31me\\x7f\\u202ef\\udcff"
    assert shown(shown("a\nb\x1b")) == shown("a\nb\x1b")  # a message escaped where it was made passes a sink unchanged


def _assert_escaped(text: str, what: str) -> None:
    assert ODD_NAME not in text, f"{what} printed the newline raw:\n{text}"
    assert ESCAPED in text, f"{what} did not name the database:\n{text}"


def test_a_newline_in_a_database_name_is_shown_escaped_and_kept_in_json(project: Project, nothing_left_running) -> None:
    from tests.conftest import make_db

    odd = make_db(project.dir / "db" / ODD_NAME, rows=3)
    project.db.unlink()
    project.env_file.write_text(f"BACKUP_DATABASES=db/*.db\nBACKUP_LOCAL_DIR={project.replica_dir}\nBACKUP_SYNC_INTERVAL=1s\n")
    for command in (("setup",), ("env",), ("databases",), ("status",), ("doctor",)):
        result = run_cli(*command, cwd=project.dir)
        assert result.returncode in (0, 11), (command, result.stderr)  # 11: not replicated yet
        _assert_escaped(result.stdout + result.stderr, command[0])
    missing = run_cli("status", "nope", cwd=project.dir)
    assert missing.returncode != 0 and f"(configured: {ESCAPED})" in missing.stderr
    _assert_escaped(missing.stderr, "an error")
    # --json keeps the real name: a program needs the exact file.
    doc = json.loads(run_cli("databases", "--json", cwd=project.dir).stdout)
    assert [d["path"] for d in doc["databases"]] == [str(odd)]

    started = run_cli("start", "--background", cwd=project.dir, timeout=120)
    try:
        assert started.returncode == 0, started.stderr
        status = run_cli("status", cwd=project.dir)
        assert status.returncode == 0, status.stdout + status.stderr
        _assert_escaped(status.stdout, "status")
        log = project.dir / ".backupctl" / "supervisor.log"
        wait_for(lambda: f"continuity of {ESCAPED}" in log.read_text(), what="the continuity check after the start")
    finally:
        assert run_cli("stop", cwd=project.dir, timeout=120).returncode == 0
    assert ODD_NAME not in log.read_text()  # a name cannot fake a line of the log
    restored = run_cli("restore", "-o", str(project.dir / "out") + "/", cwd=project.dir, timeout=120)
    assert restored.returncode == 0, restored.stderr
    _assert_escaped(restored.stderr, "restore")
    assert (project.dir / "out" / ODD_NAME).is_file()
    refused = run_cli("restore", "-o", str(project.dir / "out") + "/", cwd=project.dir, timeout=120)
    assert refused.returncode != 0
    _assert_escaped(refused.stderr, "restore's refusal")


def test_restore_of_a_database_not_configured_with_o_is_not_found_and_names_the_configured(project: Project) -> None:
    """With -o the argument can only name the database: one that is not configured is exit 8, as README says
    of a database that is not there, and the answer lists the ones that are."""
    out = project.dir / "x.db"
    proc = run_cli("restore", "nosuch.db", "-o", str(out), cwd=project.dir)
    assert proc.returncode == ExitCode.NOT_FOUND, proc.stderr
    assert "'nosuch.db' is not a configured database (configured: app.db)" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
