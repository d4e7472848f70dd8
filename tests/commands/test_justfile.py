"""`backupctl justfile`: the chora `just backup-*` recipes in an app's own justfile.

Real `just` (the one bootstrap installs into .venv/bin), the real backupctl from PATH, real
litestream replicating to a local folder. The app has its own `default` and `test` recipes: they
must stay the app's.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backupctl.commands import just_recipes
from backupctl.errors import ExitCode
from tests.conftest import ROOT, Project, count_rows, insert_rows, run_cli

BIN = Path(sys.executable).parent
JUST = BIN / "just" if (BIN / "just").is_file() else shutil.which("just")
needs_just = pytest.mark.skipif(JUST is None, reason="no `just` binary (scripts/bootstrap.py installs it into .venv/bin)")
APP_JUSTFILE = "default:\n    @echo app default\n\ntest:\n    @echo app tests\n"


def path_env() -> dict[str, str]:
    """PATH with this environment's bin first: the recipes run `backupctl` (and tests `just`) from PATH."""
    return {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def just(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(JUST), *args], cwd=cwd, env={**os.environ, **path_env()}, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def recipes(justfile: Path) -> dict[str, dict]:
    """Recipes as just itself parses them: name -> {"doc", "parameters", "attributes", "private"}."""
    done = just("--justfile", str(justfile), "--dump", "--dump-format", "json", cwd=justfile.parent)
    assert done.returncode == 0, done.stderr
    dump = json.loads(done.stdout)
    return {
        name: {
            "doc": recipe["doc"],
            "parameters": [(p["name"], p["kind"]) for p in recipe["parameters"]],
            "private": recipe["private"],
        }
        for name, recipe in dump["recipes"].items()
    }


def app_with_recipes(project: Project) -> str:
    """The project as an app with its own justfile, backup.just written and imported. Returns the import line."""
    (project.dir / "justfile").write_text(APP_JUSTFILE)
    written = run_cli("justfile", "--write", cwd=project.dir, env=path_env())
    assert written.returncode == 0, written.stderr
    line = written.stdout.strip()
    assert line == "import 'backup.just'", written.stdout
    with (project.dir / "justfile").open("a") as handle:
        handle.write(f"\n{line}\n")
    return line


# --------------------------------------------------------------------------- the file itself


@needs_just
def test_backup_just_holds_backupctl_s_backup_recipes_and_nothing_else(tmp_path: Path) -> None:
    path = tmp_path / "backup.just"
    path.write_text(just_recipes.render_backup_just(just_recipes.installed_just()))
    ours = recipes(ROOT / "justfile")
    theirs = recipes(path)
    # The chora names and every backup-* recipe of backupctl's own justfile, with the same arguments and docs.
    chora = {"backup-setup", "backup-start", "backup-start-bg", "backup-stop", "backup-status", "backup-restore",
             "backup-local", "backup-snapshots"}  # fmt: skip
    assert chora <= set(theirs)
    assert theirs == {name: recipe for name, recipe in ours.items() if name.startswith("backup-")}
    # No variable, alias or setting of its own to leak into the app's justfile; no default recipe.
    empty = tmp_path / "empty.just"
    empty.write_text("")
    dump, bare = (json.loads(just("--justfile", str(f), "--dump", "--dump-format", "json", cwd=tmp_path).stdout)
                  for f in (path, empty))  # fmt: skip
    assert dump["assignments"] == {} and dump["aliases"] == {} and dump.get("modules", {}) == {}
    assert dump["settings"] == bare["settings"]
    assert "[default]" not in path.read_text() and "default" not in theirs


@needs_just
def test_a_just_older_than_1_54_gets_the_recipes_without_continue(tmp_path: Path) -> None:
    # An unknown attribute would make just refuse the whole file, and the app's justfile with it.
    old = just_recipes.render_backup_just((1, 40, 0))
    assert "[continue]" not in old and "(1.40.0) is older than 1.54" in old
    assert "\n[continue]\n" in just_recipes.render_backup_just(None)  # no just yet: written for a current one
    path = tmp_path / "backup.just"
    path.write_text(old)
    assert set(recipes(path)) == {name for name in recipes(ROOT / "justfile") if name.startswith("backup-")}
    assert just_recipes.parse_just_version("just 1.59.0\n") == (1, 59, 0) and just_recipes.parse_just_version("") is None


def test_write_refuses_a_different_backup_just_and_force_keeps_a_copy(project: Project) -> None:
    printed = run_cli("justfile", cwd=project.dir, env=path_env())
    assert printed.returncode == 0 and "backup-start:" in printed.stdout
    assert "import 'backup.just'" in printed.stderr  # the data on stdout is the file alone
    target = project.dir / "backup.just"
    assert not target.exists()

    first = run_cli("justfile", "--write", cwd=project.dir / "db", env=path_env())  # from a subfolder: beside the .env
    assert first.returncode == 0, first.stderr
    assert target.read_text() == printed.stdout
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # the app's source file, not private state
    again = run_cli("justfile", "--write", cwd=project.dir, env=path_env())
    assert again.returncode == 0 and "unchanged" in again.stderr

    target.write_text("# my own recipes\n")
    refused = run_cli("justfile", "--write", cwd=project.dir, env=path_env())
    assert refused.returncode == ExitCode.REFUSED and "--force" in refused.stderr
    assert target.read_text() == "# my own recipes\n"
    forced = run_cli("justfile", "--write", "--force", cwd=project.dir, env=path_env())
    assert forced.returncode == 0, forced.stderr
    assert target.read_text() == printed.stdout
    kept = list(project.dir.glob("backup.just.bak-*"))
    assert len(kept) == 1 and kept[0].read_text() == "# my own recipes\n"
    assert not list(project.dir.glob(".backup.just.*.tmp"))


def test_the_import_line_is_relative_to_the_justfile_just_finds(project: Project) -> None:
    # A monorepo: the justfile one folder up, the app (and its .env) in a subfolder.
    root_justfile = project.dir.parent / "justfile"
    root_justfile.write_text("default:\n    @echo root\n")
    written = run_cli("justfile", "--write", cwd=project.dir, env=path_env())
    assert written.returncode == 0 and written.stdout.strip() == "import 'app/backup.just'", written
    root_justfile.write_text("import 'app/backup.just'\ndefault:\n    @echo root\n")
    again = run_cli("justfile", "--write", cwd=project.dir, env=path_env())
    assert again.returncode == 0 and again.stdout == "" and "already imports it" in again.stderr


# --------------------------------------------------------------------------- the recipes, run by just


@needs_just
def test_backup_recipes_run_in_the_app_folder_and_leave_the_app_s_recipes_alone(project: Project, tmp_path: Path) -> None:
    app_with_recipes(project)
    sub = project.dir / "lib" / "deep"
    sub.mkdir(parents=True)
    assert just(cwd=project.dir).stdout == "app default\n"  # a bare `just` is still the app's default
    assert just("test", cwd=sub).stdout == "app tests\n"  # and `test` the app's own

    setup = just("backup-setup", cwd=project.dir)
    assert setup.returncode == 0 and (project.dir / "litestream.yml").is_file(), setup.stderr
    started = just("backup-start-bg", cwd=sub)  # from a subfolder: just finds the app's justfile
    try:
        assert started.returncode == 0, started.stderr
        insert_rows(project.db, 5)
        status = just("backup-status", "--json", cwd=sub)
        assert json.loads(status.stdout)["supervisor"]["running"], status.stdout
    finally:
        stopped = just("backup-stop", cwd=sub)
    assert stopped.returncode == 0 and "final sync completed" in stopped.stderr, stopped.stderr
    assert not list(sub.iterdir())  # nothing written where just was called from
    restored = tmp_path / "restored.db"
    done = just("backup-restore", "-o", str(restored), cwd=sub)
    assert done.returncode == 0, done.stderr
    assert count_rows(restored) == 5


def _start_in_foreground(project: Project) -> tuple[subprocess.Popen[str], list[str]]:
    """`just backup-start` in a process group of its own (as a terminal runs it), once it replicates."""
    proc = subprocess.Popen(
        [str(JUST), "backup-start"], cwd=project.dir, env={**os.environ, **path_env()}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "replication running" in line:
            return proc, lines
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("".join(lines))


@needs_just
@pytest.mark.parametrize("how", ["ctrl-c", "backup-stop"])
def test_a_clean_stop_ends_backup_start_quietly(project: Project, tmp_path: Path, how: str) -> None:
    app_with_recipes(project)
    proc, lines = _start_in_foreground(project)
    try:
        insert_rows(project.db, 9)  # shipped by the final sync, if not sooner
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: just, the recipe and backupctl all get it
        else:
            stopped = just("backup-stop", cwd=project.dir)  # SIGTERM to the foreground supervisor alone
            assert stopped.returncode == 0, stopped.stderr
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = "".join(lines) + err
    assert proc.returncode == 0, err
    assert "final sync completed" in err, err
    assert "error:" not in err and "recipe `backup-start`" not in err and "interrupted" not in err, err
    restored = tmp_path / "restored.db"
    assert just("backup-restore", "-o", str(restored), cwd=project.dir).returncode == 0
    assert count_rows(restored) == 9


def test_start_exits_zero_on_a_clean_stop_only_when_asked_and_the_final_sync_completed(
    project: Project, litestream_bins, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether the final sync completed is the supervisor's verdict (tests/supervise/test_supervisor.py); this is
    # what start makes of it: 0 only for a signal stop whose final sync completed, and only when asked.
    from backupctl.commands import launch
    from backupctl.config.settings import load_settings
    from backupctl.host import state

    settings = load_settings(project.env_file)
    outcome: dict[str, object] = {}

    def run(self) -> int:  # Supervisor.run, standing in for a whole supervision
        self.status = state.SupervisorState(final_sync=outcome["final_sync"])
        return int(outcome["code"])

    monkeypatch.setattr("backupctl.supervise.supervisor.Supervisor.run", run)
    for code in (ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        for final_sync in (True, False, None):
            outcome.update(code=code, final_sync=final_sync)
            for asked in (False, True):
                got = launch.run_foreground(settings, None, restore_if_missing=False, background_child=False,
                                            log=lambda _: None, report=None, exit_zero_on_clean_stop=asked)  # fmt: skip
                assert got == (0 if asked and final_sync else code), (code, final_sync, asked)
    outcome.update(code=ExitCode.SUPERVISOR, final_sync=True)  # anything but a signal stop is left as it is
    assert launch.run_foreground(settings, None, restore_if_missing=False, background_child=False, log=lambda _: None,
                                 report=None, exit_zero_on_clean_stop=True) == ExitCode.SUPERVISOR  # fmt: skip


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
