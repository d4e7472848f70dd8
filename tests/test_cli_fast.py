"""The JSON reads answered without typer answer exactly as the typer commands do.

One project replicating to a local folder (the real litestream, 0.5.17 and 0.3.13): every fast
form, stopped and running, against the same command forced through typer; then the mistakes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from backupctl.cli import fast
from backupctl.cli.app import app
from tests.conftest import Project, run_cli, wait_for

pytestmark = pytest.mark.usefixtures("nothing_left_running")

THROUGH_TYPER = (
    "import sys; import backupctl.cli.fast as f; f.answer = lambda args: None; "
    "from backupctl.cli import main; raise SystemExit(main(sys.argv[1:]))"
)
WITHOUT_TYPER = (
    "import sys; from backupctl.cli import main; code = main(sys.argv[1:]); "
    "assert 'typer' not in sys.modules and 'click' not in sys.modules, 'typer was loaded'; raise SystemExit(code)"
)


def run(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)  # fmt: skip


def comparable(stdout: str) -> dict:
    """A JSON answer without what changes from one second to the next."""
    doc = json.loads(stdout)
    doc.pop("checked_at", None)
    doc.pop("observed_at", None)
    for db in doc.get("databases", []):
        for key in ("newest_backup_age_seconds", "lag_seconds", "reason", "behind_since", "replica_read_at", "observed_at"):
            db.pop(key, None)
    if isinstance(doc.get("supervisor"), dict):
        doc["supervisor"].pop("uptime_seconds", None)
    return doc


def test_every_fast_option_is_its_typer_commands_option() -> None:
    group = typer.main.get_command(app)
    for command, (values, flags, takes_db, _needed) in fast.FORMS.items():
        params = group.commands[command].params  # type: ignore[attr-defined]
        names = {opt for p in params for opt in p.opts}
        assert set(values) | set(flags) <= names, command
        assert takes_db == any(p.param_type_name == "argument" for p in params), command


def test_fast_forms_answer_as_typer_does_stopped_and_running(project: Project, version: str) -> None:
    project.write_env(
        BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir), BACKUP_SYNC_INTERVAL="1s",
        LITESTREAM_VERSION=version,
    )  # fmt: skip
    forms = [["databases", "--json"], ["snapshots", "--json"], ["wal", "--json", "app.db"],
             ["generations", "--json"], ["status", "app.db", "--json", "--fresh"]]  # fmt: skip
    if version.startswith("0.5"):
        forms.append(["ltx", "--level", "9", "--json"])
    # Stopped, before any backup: status says so, listings are empty, both ways alike.
    for form in forms:
        ours, theirs = run(WITHOUT_TYPER, *form, cwd=project.dir), run(THROUGH_TYPER, *form, cwd=project.dir)
        assert ours.returncode == theirs.returncode, (form, ours.stderr, theirs.stderr)
        assert comparable(ours.stdout) == comparable(theirs.stdout), form
    started = run_cli("start", "--background", cwd=project.dir, timeout=90)
    assert started.returncode == 0, started.stderr
    try:
        wait_for(lambda: run_cli("status", "--json", cwd=project.dir).returncode == 0, 60, what="status ok")
        for form in forms:
            ours, theirs = run(WITHOUT_TYPER, *form, cwd=project.dir), run(THROUGH_TYPER, *form, cwd=project.dir)
            assert ours.returncode == theirs.returncode == 0, (form, ours.stderr, theirs.stderr)
            assert comparable(ours.stdout) == comparable(theirs.stdout), form
        snapshots = json.loads(run(WITHOUT_TYPER, "snapshots", "--json", cwd=project.dir).stdout)
        assert snapshots["databases"][0]["snapshots"], "a running replica holds a snapshot"
        # The supervisor's look is what a plain `status --json` reads, without typer too.
        seen = wait_for(lambda: json.loads(run(WITHOUT_TYPER, "status", "--json", cwd=project.dir).stdout)["source"]
                        == "supervisor", 60, what="the supervisor's look")  # fmt: skip
        assert seen
    finally:
        assert run_cli("stop", cwd=project.dir).returncode == 0


def test_mistakes_get_typers_answer_or_the_same_error(project: Project) -> None:
    # Not a fast form: typer parses and reports (usage errors exit 2), whether or not it looks close.
    for form in (["status", "--json", "--bogus"], ["status", "--json", "a.db", "b.db"], ["ltx", "--json", "--level"],
                 ["status", "--json", "--env-file"]):  # fmt: skip
        assert fast.parse(form) is None, form
        assert run_cli(*form, cwd=project.dir).returncode == 2, form
    assert fast.parse(["status"]) is None and fast.parse(["status", "--help", "--json"]) is None
    # A fast form with a bad value: the same JSON error and exit code as through typer.
    for form in (["status", "--json", "nope.db"], ["ltx", "--json", "--level", "12"],
                 ["databases", "--json", "--env-file", str(project.dir / "missing.env")],
                 ["snapshots", "--json", "--config", str(project.dir / "missing.yml")]):  # fmt: skip
        assert fast.parse(form) is not None, form
        ours, theirs = run(WITHOUT_TYPER, *form, cwd=project.dir), run(THROUGH_TYPER, *form, cwd=project.dir)
        assert ours.returncode == theirs.returncode and ours.returncode not in (0, 1, 2), (form, ours.stderr)
        assert json.loads(ours.stdout) == json.loads(theirs.stdout), form
        assert json.loads(ours.stdout)["ok"] is False and "Traceback" not in ours.stderr
