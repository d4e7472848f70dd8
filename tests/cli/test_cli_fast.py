"""The JSON reads answered without typer answer exactly as the typer commands do.

One project replicating to a local folder (the real litestream, 0.5.17 and 0.3.13): every fast
form, stopped and running, against the same command forced through typer; then the mistakes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest
import typer.main
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from backupctl.cli import fast, options
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


# Forms typer knows too; `start --foreground-child` is the detached supervisor's alone (the launcher
# builds its argv), so typer has no such option.
USER_FORMS = sorted(c for c in fast.FORMS if c != "start")


def test_both_parsers_build_each_option_from_its_one_declaration() -> None:
    """Spellings, flag or value, environment variable, default and help: typer's option is the fast
    parser's, read from the same declaration (cli/options.py)."""
    group = typer.main.get_command(app)
    for command in USER_FORMS:
        form = fast.FORMS[command]
        params = {p.name: p for p in group.commands[command].params}  # type: ignore[attr-defined]
        for option in form.options:
            param = params[option.dest]
            assert set(param.opts) | set(param.secondary_opts) == set(option.flags), (command, option)
            assert param.is_flag == (not option.takes_value), (command, option)
            assert param.envvar == option.envvar, (command, option)
            assert param.help == option.help, (command, option)
            if option.takes_value:
                assert param.default == option.default, (command, option)
        assert form.takes_db == any(p.param_type_name == "argument" for p in params.values()), command
    start = {o for p in group.commands["start"].params for o in p.opts}  # type: ignore[attr-defined]
    assert options.RESTORE_IF_MISSING.flags[0] in start and options.FOREGROUND_CHILD.flags[0] not in start


def test_the_detached_supervisors_argv_is_a_fast_form() -> None:
    """What commands/launch.py builds for `start --background` is parsed here, whole: else typer would
    get an option it does not have."""
    argv = ["start", "--foreground-child", "--env-file", "/p/.env", "--config", "/p/l.yml", "--restore-if-missing"]
    assert fast.parse(argv) == ("start", {"foreground_child": True, "env_file": "/p/.env", "config": "/p/l.yml",
                                          "restore_if_missing": True}, None)  # fmt: skip
    assert fast.parse(["start", "--restore-if-missing"]) is None  # a person's start: typer's


def test_an_absent_option_takes_its_environment_variable_then_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """As click does: BACKUPCTL_ENV_FILE when --env-file is absent (an empty one counts as unset), the
    option over the variable, and --level's default."""
    monkeypatch.setenv("BACKUPCTL_ENV_FILE", "/from/env.env")
    for argv in (["status", "--json"], ["ltx", "--json"], ["ltx", "--json", "--env-file", "given.env"]):
        parsed = fast.parse(argv)
        assert parsed is not None
        assert {k: str(v) for k, v in parsed[1].items() if k in ("env_file", "level")} == {
            k: str(v) for k, v in click_params(argv).items() if k in ("env_file", "level") and v is not None
        }, argv
    monkeypatch.setenv("BACKUPCTL_ENV_FILE", "")
    assert "env_file" not in fast.parse(["status", "--json"])[1]
    assert click_params(["status", "--json"])["env_file"] is None


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
            # The replica moves while litestream runs (a sync, a compaction between the two reads): the two
            # ways must agree on one reading, so a pair that straddles a change is read again.
            for _attempt in range(5):
                ours, theirs = run(WITHOUT_TYPER, *form, cwd=project.dir), run(THROUGH_TYPER, *form, cwd=project.dir)
                assert ours.returncode == theirs.returncode == 0, (form, ours.stderr, theirs.stderr)
                if comparable(ours.stdout) == comparable(theirs.stdout):
                    break
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


def click_params(argv: list[str]) -> dict[str, object]:
    """What click itself reads from ``argv`` (a command and its arguments), as the typer command gets it."""
    group = typer.main.get_command(app)
    command = group.commands[argv[0]]  # type: ignore[attr-defined]
    ctx = command.make_context(argv[0], list(argv[1:]), parent=click.Context(group, info_name="backupctl"))
    return {name: value if value is None or isinstance(value, bool) else str(value) for name, value in ctx.params.items()}


def plain_form(command: str, options: dict[str, str | bool], database: str | None) -> list[str]:
    """The form the fast parser understood, spelled the one way nobody can read otherwise."""
    by_dest = {option.dest: option for option in fast.FORMS[command].options}
    argv = [command]
    for key, value in options.items():
        argv += [by_dest[key].flags[0]] if value is True else [by_dest[key].flags[0], str(value)]
    return argv + ([database] if database is not None else [])


# Every spelling click knows, and those it reads another way than it looks: glued, doubled, empty, `--`.
TOKENS = ["--json", "--fresh", "--level", "--level=9", "--level=-1", "9", "all", "-1", "--config", "-c", "--config=x.yml",
          "--config=", "-c=x.yml", "-cx.yml", "-c=", "x.yml", "=x.yml", "--env-file", "--env-file=e.env", "e.env", "app.db",
          "", "-", "--", "--bogus", "--json=1", "-h", "--help", "--foreground-child", "--restore-if-missing", "--js",
          "-config", "-config=x.yml", "-fresh", "-json"]  # fmt: skip


@st.composite
def fast_looking_argv(draw: st.DrawFn) -> list[str]:
    """A command of the fast path, the flag its form needs somewhere, and up to five tokens around it."""
    command = draw(st.sampled_from(USER_FORMS))
    needed = fast.FORMS[command].needs.flags[0]
    rest = draw(st.lists(st.sampled_from(TOKENS), max_size=5))
    rest.insert(draw(st.integers(0, len(rest))), needed)
    return [command, *rest]


@hsettings(max_examples=500, deadline=None)
@given(argv=fast_looking_argv())
def test_whatever_the_fast_parser_answers_click_reads_the_same(argv: list[str]) -> None:
    # Soundness: a form answered without typer is one click accepts, with the same values as its plain
    # spelling; anything else (click reads it otherwise, or rejects it) must be left to typer.
    command, rest = argv[0], argv[1:]
    parsed = fast.parse([command, *rest])
    if parsed is None:
        return
    try:
        read = click_params([command, *rest])
    except click.exceptions.ClickException as exc:
        pytest.fail(f"the fast parser answered {[command, *rest]} but click rejects it: {exc.format_message()}")
    assert read == click_params(plain_form(*parsed)), [command, *rest]


def test_a_short_option_takes_no_equals_sign() -> None:
    # click reads `-c=PATH` as the path "=PATH" and `-cPATH` as "PATH": never the fast parser's to guess.
    assert click_params(["status", "--json", "-c=x.yml"])["config"] == "=x.yml"
    for form in (["status", "--json", "-c=x.yml"], ["snapshots", "--json", "-cx.yml"], ["status", "--json", ""]):
        assert fast.parse(form) is None, form
    assert fast.parse(["status", "--json", "--config=x.yml"]) == ("status", {"json_": True, "config": "x.yml"}, None)


def test_every_argv_form_gets_the_same_answer_with_and_without_the_fast_path(project: Project) -> None:
    assert run_cli("setup", cwd=project.dir).returncode == 0
    mine = project.dir / "mine.yml"
    mine.write_text((project.dir / "litestream.yml").read_text())
    env, yml = str(project.env_file), str(mine)
    # (argv, answered by the fast path?) Every option the fast path reads, in every spelling click knows.
    table: list[tuple[list[str], bool]] = [
        (["status", "--json"], True),
        (["status", "--json", "--config", yml], True),
        (["status", "--json", f"--config={yml}"], True),
        (["status", "--json", "-c", yml], True),
        (["status", "--json", f"-c={yml}"], False),  # click: the file "=mine.yml" (no such file, exit 3)
        (["status", "--json", f"-c{yml}"], False),
        (["status", "--json", "-c"], False),
        (["status", "--json", "--config"], False),
        (["status", "--json", "--config="], False),
        (["status", "--json", "-c", "--fresh"], False),  # click: the file "--fresh"
        (["status", "--json", "-c", yml, "--config", yml], False),
        (["status", "--json", "--env-file", env], True),
        (["status", "--json", f"--env-file={env}"], True),
        (["status", "--json", "--env-file", env, "--env-file", env], False),
        (["status", "--json", "--json"], False),
        (["status", "--json", "--fresh", "--fresh"], False),
        (["status", "--json=1"], False),
        (["status", "--json", "--bogus"], False),
        (["status", "--js"], False),
        (["status", "app.db", "--json"], True),
        (["status", "--json", "app.db", "--fresh"], True),
        (["status", "--json", "--", "app.db"], False),
        (["status", "--json", "--"], False),
        (["status", "--json", ""], False),
        (["status", "--json", "-"], False),
        (["--json", "status"], False),
        (["databases", "--json", "-c", yml], True),
        (["databases", "--json", f"-c={yml}"], False),
        (["databases", "--json", "app.db"], False),
        (["snapshots", "--json", f"--config={yml}", "app.db"], True),
        (["wal", "-c", yml, "--json"], True),
        (["generations", "--json", f"-c={yml}"], False),
        (["ltx", "--json", "--level", "9"], True),
        (["ltx", "--json", "--level=9"], True),
        (["ltx", "--json", "--level=-1"], True),
        (["ltx", "--json", "--level", "-1"], False),
        (["ltx", "--json", "--level"], False),
        (["ltx", "--json", "--level", "all", "--level", "9"], False),
        (["start", "--foreground-child", "--bogus"], False),
        # litestream's spellings: typer reads them (as --config), the fast path leaves them all to it
        (["status", "--json", "-config", yml], False),
        (["databases", "--json", f"-config={yml}"], False),
        (["status", "--json", "-fresh"], False),  # a usage error naming --fresh
    ]  # fmt: skip

    def both(form: list[str]) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
        return run_cli(*form, cwd=project.dir), run(THROUGH_TYPER, *form, cwd=project.dir)

    with ThreadPoolExecutor(2) as pool:  # two processes at a time: each mostly waits on its own startup
        answers = list(pool.map(both, [form for form, _ in table]))
    for (form, answered_fast), (ours, theirs) in zip(table, answers, strict=True):
        assert ours.returncode == theirs.returncode, (form, ours.stderr, theirs.stderr)
        if ours.stdout.startswith("{"):
            assert comparable(ours.stdout) == comparable(theirs.stdout), form
        else:
            assert ours.stdout == theirs.stdout, form
        assert "Traceback" not in ours.stderr + theirs.stderr, form
        assert (fast.parse(form) is not None) == answered_fast, form  # the fast path still answers what it can
    # `-config PATH` is `--config PATH`, whichever path answers
    assert click_params(["status", "--json", "-config", yml]) == click_params(["status", "--json", "--config", yml])
