"""`--help` is answered from the text typer printed last time, and only for a plain help request."""

from __future__ import annotations

from pathlib import Path

import pytest

from backupctl.cli import help_cache
from tests.conftest import run_cli


@pytest.fixture
def cache(tmp_path: Path) -> dict[str, str]:
    return {"BACKUPCTL_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "80"}


def kept(env: dict[str, str]) -> list[Path]:
    return sorted((Path(env["BACKUPCTL_CACHE_DIR"]) / "help").glob("*.txt"))


def test_help_is_kept_and_printed_again_for_every_command_word(cache: dict[str, str]) -> None:
    for args in (["--help"], ["status", "--help"], ["service", "compose", "-h"]):
        first = run_cli(*args, env=cache)
        second = run_cli(*args, env=cache)
        assert first.returncode == second.returncode == 0, first.stderr
        assert first.stdout.startswith("Usage: backupctl") and second.stdout == first.stdout
    assert len(kept(cache)) == 3
    # Another width is another text (click wraps to the terminal).
    narrow = run_cli("status", "--help", env={**cache, "COLUMNS": "50"})
    assert narrow.returncode == 0 and len(kept(cache)) == 4
    wide = run_cli("status", "--help", env=cache)
    assert narrow.stdout != wide.stdout and narrow.stdout.split() == wide.stdout.split()


def test_only_plain_help_requests_are_kept(cache: dict[str, str]) -> None:
    # `-h` as an option's value, an unknown option, a failing command: typer answers, nothing is kept.
    for args in (["status", "--env-file", "-h"], ["status", "--bogus", "--help"], ["restore", "--no-such", "-h"]):
        assert help_cache.cache_file(args) is None
        run_cli(*args, env=cache)
    assert kept(cache) == []
    assert help_cache.cache_file(["status", "--help"]) is not None
    assert help_cache.cache_file(["status"]) is None


def test_a_cache_that_cannot_be_written_still_prints_help(cache: dict[str, str], tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    result = run_cli("--help", env={**cache, "BACKUPCTL_CACHE_DIR": str(blocked)})
    assert result.returncode == 0 and result.stdout.startswith("Usage: backupctl"), result.stderr


def test_a_damaged_kept_text_is_replaced_by_typers(cache: dict[str, str]) -> None:
    fresh = run_cli("--help", env=cache)
    (path,) = kept(cache)
    path.write_bytes(b"\xff\xfe not text")
    again = run_cli("--help", env=cache)
    assert again.returncode == 0 and again.stdout == fresh.stdout
    assert path.read_text("utf-8") == fresh.stdout
