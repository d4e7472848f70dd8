"""Words and output that tell the truth: help, completion, durations, tables and pipes, status and
restore reports. Every test runs the real CLI (under a pseudo-terminal where a terminal matters)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backupctl.errors import ExitCode
from backupctl.host import state
from tests.conftest import S3_KEY, Project, make_db, run_cli
from tests.restore.test_restore import configure, insert, replicating, settings_of, wait_replicated

V5 = "0.5.17"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_tty(*args: str, cwd: Path, columns: int = 80, timeout: float = 60, stream: str = "stdout") -> tuple[int, str]:
    """The CLI with ``stream`` (stdout or stderr) on a pseudo-terminal `columns` wide, the other one
    captured apart; its exit code and what the terminal showed, ANSI stripped."""
    master, slave = pty.openpty()
    env = dict(os.environ, COLUMNS=str(columns), LINES="50", TERM="xterm")
    streams = {"stdout": slave, "stderr": subprocess.PIPE}
    if stream == "stderr":
        streams = {"stdout": subprocess.DEVNULL, "stderr": slave}
    proc = subprocess.Popen([sys.executable, "-m", "backupctl", *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, **streams)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        proc.wait(timeout)
        os.close(master)
    return proc.returncode, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace")).replace("\r\n", "\n")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- help, completion, flags


@pytest.mark.parametrize("command", ["setup", "start", "status", "restore", "verify", "stop", "ltx"])
def test_help_has_no_literal_backslash(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0
    assert "\\[" not in result.stdout and "[env var: BACKUPCTL_ENV_FILE]" in result.stdout


@pytest.mark.parametrize("command", ["setup", "start", "status", "restore", "verify"])
def test_help_shows_examples(command: str) -> None:
    assert f"Examples:\n    backupctl {command}" in run_cli(command, "--help").stdout


def test_restore_help_says_it_takes_a_path_and_arguments_have_help() -> None:
    text = run_cli("restore", "--help").stdout
    assert "restore [OPTIONS] [DB|PATH]" in text and "is where to restore to" in " ".join(text.split())  # however wrapped
    assert "Positional arguments" not in text  # listed once
    assert "[DB]  A database by path or file name" in run_cli("status", "--help").stdout


def test_shell_completion_is_enabled() -> None:
    assert "--install-completion" in run_cli("--help").stdout
    # --show-completion names the shell it runs under (a user's bash), whatever runs the tests (just uses sh)
    shown = subprocess.run(["bash", "-c", '"$0" -m backupctl --show-completion; exit $?', sys.executable],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert shown.returncode == 0 and "_backupctl_completion" in shown.stdout, shown.stderr
    env = {"_BACKUPCTL_COMPLETE": "complete_bash", "COMP_WORDS": "backupctl sta", "COMP_CWORD": "1"}
    assert set(run_cli(env=env).stdout.split()) == {"start", "status"}


def test_duration_flags_take_go_durations(project: Project) -> None:
    assert run_cli("stop", "--timeout", "30s", cwd=project.dir).returncode == 0
    assert run_cli("stop", "--timeout", "1m30s", cwd=project.dir).returncode == 0
    bad = run_cli("stop", "--timeout", "3x", cwd=project.dir)
    assert bad.returncode == ExitCode.USAGE and "not a duration" in bad.stderr


# --------------------------------------------------------------------------- status


def test_status_of_an_unreachable_replica_is_an_error_naming_it(project: Project) -> None:
    port = _closed_port()
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_REPLICA="s3", BACKUP_BUCKET="b", BACKUP_ENDPOINT=f"http://127.0.0.1:{port}",
        BACKUP_ACCESS_KEY_ID=S3_KEY, BACKUP_SECRET_ACCESS_KEY="not-used-secret",
    )  # fmt: skip
    result = run_cli("status", "--json", cwd=project.dir)
    assert result.returncode == ExitCode.STATUS_ERROR, result.stdout
    (db,) = json.loads(result.stdout)["databases"]
    assert db["verdict"] == "error" and "refused" in db["reason"].lower()


def test_status_on_a_terminal_says_where_the_backups_go_in_local_mode(project: Project, litestream_bins) -> None:
    """chora's R2 .env switched to a local folder (`just backup-local`): status must not pass for R2."""
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir), R2_ACCOUNT_ID="acc0123",
        R2_BUCKET="chora-backup", R2_ACCESS_KEY_ID="AKID0000", R2_SECRET_ACCESS_KEY="s3cr3t-value",
    )  # fmt: skip
    assert run_cli("setup", "--local", cwd=project.dir).returncode == 0
    shown = run_tty("status", cwd=project.dir)[1]
    assert f"file://{project.replica_dir}/app.db" in shown and "r2.cloudflarestorage" not in shown, shown
    assert "local mode: a plain `backupctl setup` goes back to the .env's replica" in shown
    assert all(len(line) <= 80 or len(max(line.split(), key=len)) > 60 for line in shown.splitlines()), shown
    # Many databases share one line: the folder their replicas are in.
    for n in range(4):
        make_db(project.dir / "db" / f"tenant-{n}.db")
    project.write_env(BACKUP_DATABASES="db/*.db", BACKUP_LOCAL_DIR=str(project.replica_dir))
    many = run_tty("status", cwd=project.dir)[1]
    assert f"5 databases -> one replica each under\n  file://{project.replica_dir}/\n" in many, many
    assert "tenant-0.db ->" not in many


def test_status_verify_column_reads_the_verify_record(project: Project, litestream_bins) -> None:
    state_dir = project.dir / ".backupctl"

    def verified(status: str, ago: float) -> state.VerifyRecord:
        return state.VerifyRecord(str(project.db), project.db.name, status, "", time.time() - ago)

    state.record_verify(state_dir, str(project.db), verified("verified", 185))
    piped = run_cli("status", cwd=project.dir)
    header, row = piped.stdout.splitlines()[:2]
    cells = dict(zip(header.split("\t"), row.split("\t"), strict=True))
    assert re.fullmatch(r"verified 3m0\ds ago", cells["verify"]), cells
    state.record_verify(state_dir, str(project.db), verified("failed", 7300))
    row = run_cli("status", cwd=project.dir).stdout.splitlines()[1]
    assert any(re.fullmatch(r"FAILED 2h0[12]m ago", cell) for cell in row.split("\t")), row
    state.record_verify(state_dir, str(project.db), verified("inconclusive", 0))
    assert "inconclusive" in run_cli("status", cwd=project.dir).stdout.splitlines()[1].split("\t")


def test_status_takes_config(project: Project, litestream_bins) -> None:
    assert run_cli("setup", cwd=project.dir).returncode == 0
    mine = project.dir / "mine.yml"
    mine.write_bytes((project.dir / "litestream.yml").read_bytes())
    for command in ("status", "databases", "ltx", "snapshots", "generations"):
        result = run_cli(command, "--config", str(mine), "--json", cwd=project.dir)
        assert result.returncode in (0, ExitCode.STATUS_DOWN), (command, result.stderr)
        assert json.loads(result.stdout)
    missing = run_cli("status", "--config", "nope.yml", cwd=project.dir)
    assert missing.returncode == ExitCode.CONFIG and "--config nope.yml: no such file" in missing.stderr


def _watch(project: Project, *extra: str) -> tuple[list[str], subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "backupctl", "status", "--watch", "--interval", "1s", *extra],
        cwd=project.dir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while len([x for x in lines if x.strip()]) < 4 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    return lines, proc


def test_status_watch_streams_json_lines_and_ctrl_c_ends_quietly(project: Project, litestream_bins) -> None:
    lines, proc = _watch(project, "--json")
    try:
        docs = [json.loads(line) for line in lines if line.strip()]
        assert len(docs) >= 2 and all("databases" in d for d in docs)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "error" not in err and "interrupted" not in err


def test_status_watch_piped_prints_every_refresh(project: Project, litestream_bins) -> None:
    lines, proc = _watch(project)
    try:
        assert sum(1 for x in lines if x.startswith("database\tverdict")) >= 2, lines
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


# --------------------------------------------------------------------------- tables and pipes, restore reports


def test_tables_fit_80_columns_and_pipes_get_every_identifier(project: Project, litestream_bins, tmp_path) -> None:
    configure(project, V5, "file")
    long_dir = tmp_path / ("replicas-in-a-folder-with-a-long-name-" * 2) / "backups"
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(long_dir), BACKUP_SYNC_INTERVAL="1s")
    with replicating(settings_of(project), litestream_bins[V5]):
        insert(project.db, 3)
        wait_replicated(project, 3)
    replica_url = f"file://{long_dir}/app.db"
    for command in ("ltx", "status", "databases", "snapshots"):
        shown = run_tty(command, cwd=project.dir)[1]
        assert shown.strip() and "…" not in shown, (command, shown)
        # Only a line holding a path or URL too long for the terminal by itself may be wider: it is
        # printed whole for the terminal to wrap, never cut.
        assert all(len(line) <= 80 or len(max(line.split(), key=len)) > 60 for line in shown.splitlines()), (command, shown)
        if command == "status":  # where the backups go, whole, under the table
            assert replica_url in shown and "local mode" not in shown, shown
    assert "0000000000000001-0000000000000001" in run_tty("ltx", cwd=project.dir)[1]
    assert replica_url in run_tty("databases", cwd=project.dir)[1]
    piped = run_cli("ltx", cwd=project.dir).stdout.splitlines()
    assert piped[0] == "database\tlevel\ttxids\tsize\ttimestamp"
    assert all(len(line.split("\t")) == 5 for line in piped) and "\t0000000000000001-0000000000000001\t" in piped[1]
    assert replica_url in run_cli("databases", cwd=project.dir).stdout.splitlines()[1].split("\t")
    # doctor, drill, cost and the replica-only status, piped: tab-separated and complete, no boxes
    for command, header in ((["doctor"], "status\tcheck\tsubject\tfound\tfix"),
                            (["drill"], "database\tresult\tsize\trestore\tnewest state\tRPO\ttables"),
                            (["cost"], "item\tR2\tS3"),
                            (["status", "--replica-only"],
                             "database\treplica\tnewest backup\trestorable since\twindow\tsnapshots")):  # fmt: skip
        lines = run_cli(*command, cwd=project.dir, timeout=180).stdout.splitlines()
        assert lines and lines[0] == header, (command, lines)
        assert all(line.count("\t") == header.count("\t") for line in lines), (command, lines)
        assert not any(ch in "".join(lines) for ch in "│┃━─…"), (command, lines)
        if command == ["doctor"]:  # the long replica path is whole, not broken mid-word
            assert any(str(long_dir) in line for line in lines), lines

    # a txid restore reports that point in time, not "latest"
    out = tmp_path / "at-txid-1.db"
    restored = run_cli("restore", "-o", str(out), "--txid", "1", "--json", cwd=project.dir)
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["restores"][0]["point_in_time"].startswith("txid 0000000000000001")
    shown = run_cli("restore", "-o", str(tmp_path / "again.db"), "--txid", "1", cwd=project.dir)
    assert "point in time: txid 0000000000000001" in shown.stderr and "point in time: latest" not in shown.stderr
    dry = run_cli("restore", "-o", str(tmp_path / "x.db"), "--txid", "1", "--dry-run", cwd=project.dir)
    assert "point in time: txid 0000000000000001" in dry.stderr


def test_restore_dry_run_on_an_empty_replica_exits_like_the_restore(project: Project, litestream_bins) -> None:
    dry = run_cli("restore", "--dry-run", cwd=project.dir)
    real = run_cli("restore", "-o", str(project.dir / "out.db"), cwd=project.dir)
    assert real.returncode == ExitCode.NOT_FOUND
    assert dry.returncode == ExitCode.NOT_FOUND and "holds no backup" in dry.stderr


def test_no_aws_ca_bundle_note_for_a_local_folder_replica(project: Project, litestream_bins, tmp_path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not used\n")
    started = run_cli("start", "--background", cwd=project.dir, env={"AWS_CA_BUNDLE": str(bundle)})
    try:
        assert started.returncode == 0, started.stderr
        assert "AWS_CA_BUNDLE" not in started.stderr
    finally:
        assert run_cli("stop", cwd=project.dir).returncode == 0


def test_verify_progress_names_the_replication_wait(project: Project, litestream_bins) -> None:
    """The spinner said "writing the sentinel row" through the whole wait for replication."""
    code, text = run_tty("verify", cwd=project.dir, columns=200, timeout=120, stream="stderr")
    assert code == 0, text[-2000:]
    assert "waiting for litestream to replicate it" in text
