"""The listings run from the running supervisor's frame (``cli.quick_listing``): the same documents as
the full path (``cli.answers``), with the real pinned litestream on a real replica, and the full path
whenever the frame cannot vouch for the settings, the binary or the config."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backupctl.checks import published_status
from backupctl.cli import answers, quick_listing
from backupctl.config.settings import load_settings
from backupctl.paths import project_state_dir
from tests.checks.test_published_status import _project
from tests.checks.test_status import start_replication, stop
from tests.conftest import run_cli, wait_for
from tests.litestream.test_listings import insert

COMMANDS = ["databases", "ltx", "snapshots", "wal", "generations"]


def _full(proj: Path, command: str, database: str | None, level: str) -> dict:
    settings = load_settings(proj / ".env")
    if command == "databases":
        return answers.databases_document(settings, None)
    what = answers.listing(command, settings, level)
    return answers.listing_document(settings, answers.listing_results(settings, database, None, what), what)


def _both(proj: Path, command: str, database: str | None = None, level: str = "all") -> tuple[dict | str, dict]:
    """The quick answer (or why there is none) and the full one, from the project's folder. Litestream
    compacts as it runs, so the full answer is taken before and after: the pair is used once they agree."""
    cwd = os.getcwd()
    os.chdir(proj)
    try:
        for _ in range(10):
            before = _full(proj, command, database, level)
            quick = quick_listing.consult(command, None, database, level, os.environ)
            after = _full(proj, command, database, level)
            if before == after:
                return quick, after
            time.sleep(0.5)
    finally:
        os.chdir(cwd)
    raise AssertionError(f"the replica's listing of {command} never held still for one comparison")


def _ready(proj: Path) -> dict:
    path = project_state_dir(proj) / published_status.FRAME
    wait_for(lambda: (published_status.read_document(str(path)) or {}).get("listing"), timeout=60, what="the frame")
    frame = published_status.read_document(str(path))
    assert frame is not None
    return frame


@pytest.mark.parametrize("command", COMMANDS)
def test_the_quick_listing_is_the_full_listing(tmp_path: Path, command: str, litestream_bins: dict[str, Path]) -> None:
    proj = _project(tmp_path, "0.5.17")
    running = start_replication(proj, litestream_bins["0.5.17"])
    try:
        frame = _ready(proj)
        assert frame["listing"]["config"] == str(project_state_dir(proj) / "supervisor.yml")
        insert(proj / "db" / "app.db", 100, 20)
        wait_for(lambda: _both(proj, "ltx", "app.db")[1]["databases"][0]["ltx"], timeout=60, what="a replicated write")
        for database in ([None] if command == "databases" else ["app.db", "db/queue.db", str(proj / "db" / "app.db")]):
            quick, full = _both(proj, command, database)
            assert isinstance(quick, dict), quick
            assert quick == full
        if command == "ltx":
            for level in ("0", "9"):
                quick, full = _both(proj, command, "queue", level)
                assert isinstance(quick, dict) and quick == full
            # a level written another way than the plain form is the full path's (it reads 09 as 9)
            assert isinstance(quick_listing.consult("ltx", str(proj / ".env"), "app.db", "09", os.environ), str)
        if command != "databases":
            assert "several databases" in str(quick_listing.consult(command, str(proj / ".env"), None, "all", os.environ))
            missing = quick_listing.consult(command, str(proj / ".env"), "nope.db", "all", os.environ)
            assert "not a configured database" in str(missing)
    finally:
        stop(running)
    gone = quick_listing.consult(command, str(proj / ".env"), "app.db", "all", os.environ)
    assert isinstance(gone, str), "a listing was answered from a supervisor that has stopped"


def test_the_cli_lists_from_the_frame_and_falls_back_when_it_cannot_vouch(
    tmp_path: Path, litestream_bins: dict[str, Path]
) -> None:
    proj = _project(tmp_path, "0.5.17")
    running = start_replication(proj, litestream_bins["0.5.17"])
    try:
        _ready(proj)
        probe = (
            "import sys, json\n"
            "from backupctl.cli import main\n"
            "code = main(sys.argv[1:])\n"
            "heavy = ['typer', 'click', 'jinja2', 'psutil', 'dotenv', 'rich', 'dataclasses',\n"
            "         'backupctl.config.settings', 'backupctl.litestream.runner', 'backupctl.litestream.listings']\n"
            "print(json.dumps({'code': code, 'loaded': [m for m in heavy if m in sys.modules]}), file=sys.stderr)\n"
        )

        def cli(*args: str, env: dict[str, str] | None = None) -> tuple[dict, dict]:
            res = subprocess.run([sys.executable, "-c", probe, *args], cwd=proj, capture_output=True, text=True, timeout=60,
                                 env=env)  # fmt: skip
            return json.loads(res.stderr.strip().splitlines()[-1]), json.loads(res.stdout)

        seen, doc = cli("ltx", "db/app.db", "--json")
        assert seen == {"code": 0, "loaded": []} and doc["databases"][0]["name"] == "app.db" and doc["databases"][0]["ltx"]
        seen, doc = cli("databases", "--json")
        assert seen == {"code": 0, "loaded": []} and [d["name"] for d in doc["databases"]] == ["app.db", "queue.db"]

        # litestream writes its first snapshot (level 9) after its level-0 files: on a busy machine, after the frame
        wait_for(lambda: cli("snapshots", "app.db", "--json")[1]["databases"][0]["snapshots"], 60, what="a snapshot")
        # an environment other than the supervisor's (AWS_CA_BUNDLE is one litestream's depends on): the full path
        seen, doc = cli("snapshots", "app.db", "--json", env={**os.environ, "AWS_CA_BUNDLE": str(tmp_path / "other.pem")})
        assert seen["code"] == 0 and "backupctl.config.settings" in seen["loaded"] and doc["databases"][0]["snapshots"]

        # the config the supervisor runs rewritten since the frame: the settings are loaded, the answer is the same
        config = project_state_dir(proj) / "supervisor.yml"
        os.utime(config)
        assert "changed since" in str(quick_listing.consult("ltx", str(proj / ".env"), "app.db", "all", os.environ))
        seen, slow = cli("ltx", "db/app.db", "--json")
        assert seen["code"] == 0 and "backupctl.config.settings" in seen["loaded"]
        assert slow["databases"][0]["name"] == "app.db" and slow["databases"][0]["ltx"]

        # a database that is not configured: the full path's error, as before
        res = run_cli("ltx", "nope.db", "--json", cwd=proj)
        assert res.returncode != 0 and json.loads(res.stdout)["ok"] is False and "nope.db" in res.stdout
    finally:
        stop(running)


def test_03_quick_listings_are_the_full_listings(tmp_path: Path, litestream_bins: dict[str, Path]) -> None:
    """0.3's text tables, parsed by the same rows on both paths; its `ltx` and edited settings are the full path's."""
    proj = _project(tmp_path, "0.3.13")
    running = start_replication(proj, litestream_bins["0.3.13"])
    try:
        _ready(proj)
        insert(proj / "db" / "app.db", 100, 20)
        wait_for(lambda: _both(proj, "wal", "app.db")[1]["databases"][0]["wal"], timeout=60, what="a replicated write")
        for command in ("databases", "snapshots", "wal", "generations"):
            quick, full = _both(proj, command, None if command == "databases" else "app.db")
            assert isinstance(quick, dict), (command, quick)
            assert quick == full
            assert full["databases"][0].get(command, ["rows"]), f"nothing listed: {command} compares nothing"
        assert "no ltx listing" in str(quick_listing.consult("ltx", str(proj / ".env"), "app.db", "all", os.environ))
        res = run_cli("ltx", "app.db", "--json", cwd=proj)
        assert res.returncode != 0 and "ltx" in json.loads(res.stdout)["error"]["message"]
        with (proj / ".env").open("a") as fh:
            fh.write("# edited\n")
        changed = quick_listing.consult("databases", str(proj / ".env"), None, "all", os.environ)
        assert "settings' inputs changed" in str(changed)
    finally:
        stop(running)
