"""`backupctl demo`: the README's first command, end to end with the real binary and processes."""

from __future__ import annotations

import sqlite3

import psutil
import pytest

from tests.conftest import run_cli

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
