"""Contract of the CLI as a whole: documented commands, exit codes, hand-made configs left alone."""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import click
import pytest
import typer.main

from backupctl.cli.app import app
from backupctl.errors import ExitCode
from tests.conftest import ROOT, run_cli


def every_command() -> list[tuple[list[str], click.Command]]:
    """Each command of the CLI by its words (`status`, `templates eject`), as typer builds them."""
    found = []

    def walk(command: click.Command, words: list[str]) -> None:
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                walk(sub, [*words, name])
        else:
            found.append((words, command))

    walk(typer.main.get_command(app), [])
    return found


def usage_error_document(result: subprocess.CompletedProcess[str], argv: list[str]) -> dict:
    """The one JSON error object a usage error under --json prints, checked whole."""
    assert result.returncode == ExitCode.USAGE, (argv, result.stdout, result.stderr)
    assert result.stdout.count("\n") == 1 and result.stderr == "", (argv, result.stdout, result.stderr)
    doc = json.loads(result.stdout)
    assert list(doc) == ["ok", "error"] and doc["ok"] is False, argv
    error = doc["error"]
    assert set(error) == {"kind", "exit_code", "message", "hint", "details"}, argv
    assert error["kind"] == "usage" and error["exit_code"] == ExitCode.USAGE and error["message"], argv
    assert error["hint"].startswith("see `backupctl") and error["hint"].endswith(" --help`"), argv
    return error


def test_every_command_is_documented_in_the_readme() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    commands = re.findall(r"^\s{2}([a-z][a-z-]+)\s{2,}", result.stdout.split("Commands:")[1], re.M)
    assert len(commands) >= 20
    readme = (ROOT / "README.md").read_text()
    missing = [c for c in commands if f"`{c}" not in readme and f"backupctl {c}" not in readme]
    assert not missing, missing


def test_every_exit_code_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Exit codes")[1].split("##")[0]
    for name, code in ExitCode.codes().items():
        assert re.search(rf"\b{code}\b", table), name


def test_a_hand_written_litestream_yml_is_never_replaced(project) -> None:
    mine = project.dir / "litestream.yml"
    mine.write_text("dbs:\n  - path: /somewhere/else.db\n")
    before = mine.read_bytes()
    result = run_cli("databases", cwd=project.dir)
    assert result.returncode == ExitCode.REFUSED, result.stderr
    assert "not written by backupctl" in result.stderr
    assert mine.read_bytes() == before


def test_an_endpoint_with_a_bad_port_is_a_settings_error(project) -> None:
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_BUCKET="b", BACKUP_ENDPOINT="http://127.0.0.1:99999")
    result = run_cli("status", cwd=project.dir)
    assert result.returncode == ExitCode.CONFIG
    assert "BACKUP_ENDPOINT" in result.stderr and "Traceback" not in result.stderr


def test_setup_refuses_a_hand_written_config_and_force_keeps_a_copy(project) -> None:
    mine = project.dir / "litestream.yml"
    mine.write_text("# mine\ndbs: []\n")
    refused = run_cli("setup", cwd=project.dir)
    assert refused.returncode == ExitCode.REFUSED and mine.read_text() == "# mine\ndbs: []\n"
    forced = run_cli("setup", "--force", cwd=project.dir)
    assert forced.returncode == 0, forced.stderr
    (kept,) = project.dir.glob("litestream.yml.bak-*")
    assert kept.read_text() == "# mine\ndbs: []\n"
    assert mine.read_text().startswith("# Written by `backupctl setup`")
    again = run_cli("setup", cwd=project.dir)  # our own file is simply re-rendered
    assert again.returncode == 0 and len(list(project.dir.glob("litestream.yml.bak-*"))) == 1


def test_setup_local_is_remembered_until_a_plain_setup(project) -> None:
    import json

    project.write_env(R2_ACCOUNT_ID="acc", R2_BUCKET="b", R2_ACCESS_KEY_ID="k", R2_SECRET_ACCESS_KEY="secret-1234",
                      BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir))  # fmt: skip

    def replica() -> str:
        doc = json.loads(run_cli("env", "--json", cwd=project.dir).stdout)
        return next(r for r in doc["settings"] if r["setting"] == "replica")["value"]

    assert replica() == "r2"
    assert run_cli("setup", "--local", cwd=project.dir).returncode == 0
    assert replica() == "file"  # every command now agrees on the local folder
    assert 'type: "file"' in (project.dir / "litestream.yml").read_text()
    assert run_cli("setup", cwd=project.dir).returncode == 0
    assert replica() == "r2"
    assert 'type: "s3"' in (project.dir / "litestream.yml").read_text()


def test_a_usage_error_under_json_is_one_json_error_object(project) -> None:
    commands = every_command()
    with_json = [words for words, command in commands if any("--json" in p.opts for p in command.params)]
    without_json = [words for words, command in commands if words not in with_json]
    assert len(with_json) >= 15 and ["status"] in with_json and ["version"] in with_json
    cases: list[tuple[list[str], str, list[str]]] = []  # (argv, what the message names, the command it is about)
    for i, words in enumerate(with_json):  # --json before and after the mistake, by turns
        mistake = ["--no-such-option"]
        cases.append(([*words, *(["--json", *mistake] if i % 2 else [*mistake, "--json"])], "--no-such-option", words))
    # A command without --json is still asked for JSON: it says so in JSON.
    cases += [([*words, "--json"], "--json", words) for words in without_json]
    cases += [
        (["status", "--json", "--config"], "--config", ["status"]),  # a missing value (the fast path's own option)
        (["ltx", "--json", "--level"], "--level", ["ltx"]),
        (["status", "--json", "-c"], "-c", ["status"]),
        (["install", "--json", "--source", "nope"], "nope", ["install"]),  # a bad value
        (["status", "--json", "--interval", "soon"], "soon", ["status"]),
        (["stop", "--json", "--timeout", "-5s"], "-5s", ["stop"]),
        (["status", "--json", "a.db", "b.db"], "b.db", ["status"]),  # an argument too many
        (["--json", "status"], "--json", []),  # an option of no command
        (["no-such-command", "--json"], "no-such-command", []),
    ]

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return run_cli(*argv, cwd=project.dir)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, [argv for argv, _, _ in cases]))
    for (argv, named, words), result in zip(cases, results, strict=True):
        error = usage_error_document(result, argv)
        command = " ".join(["backupctl", *words])
        assert named in error["message"], (argv, error)
        assert error["hint"] == f"see `{command} --help`", (argv, error)
        assert error["details"] and error["details"][0].startswith(f"Usage: {command} "), (argv, error)
    # For people, nothing changes: click's own text on stderr, stdout empty, exit 2.
    for argv in (["status", "--no-such-option"], ["ltx", "--level"], ["no-such-command"]):
        human = run_cli(*argv, cwd=project.dir)
        assert human.returncode == ExitCode.USAGE and human.stdout == "", (argv, human.stdout)
        assert human.stderr.startswith(("Usage: backupctl", "Error: ")) and "Error: " in human.stderr, (argv, human.stderr)
        assert "{" not in human.stderr and "Traceback" not in human.stderr, argv


def test_litestream_spellings_are_translated_only_where_the_command_has_the_option() -> None:
    from backupctl.cli.spellings import SpellingError, normalise

    restore = {"--timestamp": True, "-t": True, "--txid": True, "--generation": True, "--output": True, "-o": True,
               "--if-db-not-exists": False, "--if-replica-exists": False, "--force": False, "-v": False, "--json": False,
               "--help": False, "-h": False}  # fmt: skip
    for argv, read in (
        (["-timestamp", "2026-12-03T10:31:01Z"], ["--timestamp", "2026-12-03T10:31:01Z"]),
        (["-timestamp=2026-12-03T10:31:01Z", "app.db"], ["--timestamp=2026-12-03T10:31:01Z", "app.db"]),
        (["-generation", "abc", "-txid=1"], ["--generation", "abc", "--txid=1"]),
        (
            ["-o=/tmp/x.db", "-if-db-not-exists", "-if-replica-exists"],
            ["--output=/tmp/x.db", "--if-db-not-exists", "--if-replica-exists"],
        ),
        # what click reads already stays as it is: glued short values, flag clusters, values, after `--`
        (["-tyesterday", "-vo", "/tmp/x", "-o", "-timestamp"], ["-tyesterday", "-vo", "/tmp/x", "-o", "-timestamp"]),
        (["--output", "-force", "-vo", "-v", "--", "-timestamp"], ["--output", "-force", "-vo", "-v", "--", "-timestamp"]),
    ):
        assert normalise(argv, restore, "backupctl restore") == read, argv
    status = {"--config": True, "-c": True, "--json": False, "--fresh": False}
    assert normalise(["-config", "x.yml", "--json"], status, "backupctl status") == ["--config", "x.yml", "--json"]
    assert normalise(["-c=x.yml"], status, "backupctl status") == ["-c=x.yml"]  # click's own reading (the path "=x.yml")
    for argv, options, said in (
        (["-force"], restore, "-force is not an option; did you mean --force?"),
        (["-output", "x.db"], restore, "did you mean --output?"),  # not `-o utput`
        (["-forse"], restore, "-forse is not an option of `backupctl restore`; did you mean --force?"),
        (["-config", "x.yml"], restore, "has no --config"),
        (["-database=db/app.db"], restore, "name the database as its argument (`backupctl restore db/app.db`)"),
        (["-timestamp", "x"], status, "it is `backupctl restore`'s"),
    ):
        with pytest.raises(SpellingError, match=re.escape(said)):
            normalise(argv, options, "backupctl restore")


def test_litestream_spellings_on_the_command_line(project) -> None:
    """The real CLI: each spelling reaches the option it names (exit 3 proves the restore read both points
    to restore), and a mistake is a usage error naming the --long option, for people and under --json."""
    cases = [
        (["restore", "-timestamp", "2026-12-03T10:31:01Z", "-txid", "1"], ExitCode.CONFIG, "--txid and --timestamp both"),
        (["restore", "-generation=0123456789abcdef"], ExitCode.CONFIG, "--generation is a Litestream 0.3 option"),
        (["restore", "-force"], ExitCode.USAGE, "did you mean --force?"),
        (["restore", "-config", "x.yml"], ExitCode.USAGE, "--env-file"),
        (["status", "-timestamp", "x"], ExitCode.USAGE, "it is `backupctl restore`'s"),
        (["status", "-config", str(project.dir / "missing.yml")], ExitCode.CONFIG, "missing.yml: no such file"),
    ]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda case: run_cli(*case[0], cwd=project.dir), cases))
    for (argv, code, said), result in zip(cases, results, strict=True):
        assert result.returncode == code and said in result.stderr, (argv, result.stderr)
    error = usage_error_document(run_cli("status", "--json", "-fresh", cwd=project.dir), ["status", "-fresh"])
    assert error["message"] == "-fresh is not an option; did you mean --fresh?"


def test_duration_defaults_read_as_durations_in_help() -> None:
    for command, option, default in (("restore", "--timeout", "30m"), ("drill", "--timeout", "30m"),
                                     ("status", "--interval", "3s")):  # fmt: skip
        text = " ".join(run_cli(command, "--help", env={"COLUMNS": "200"}).stdout.split())
        assert f"{option} DURATION" in text and f"[default: {default}]" in text, (command, text)
    assert run_cli("drill", "--timeout", "soon").returncode == ExitCode.USAGE  # a duration now, like the others
