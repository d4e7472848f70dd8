"""The binary that gets the credentials is the pinned one: sha256 checked in full, never size+mtime;
a user's own binary that is not the pinned build is named on stderr every time it runs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from backupctl.errors import ExitCode
from tests.conftest import run_cli

V5 = "0.5.17"


def _private_cache(litestream_bins: dict[str, Path], tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A copy of the good install in this test's own cache (the shared one is never touched)."""
    cache = tmp_path / "cache"
    src = litestream_bins[V5].parent
    dst = cache / "litestream" / V5 / src.name
    shutil.copytree(src, dst, copy_function=shutil.copy2, ignore=shutil.ignore_patterns("wheel"))
    return {"BACKUPCTL_CACHE_DIR": str(cache)}, dst / "litestream"


def test_a_flipped_byte_with_the_mtime_put_back_is_caught(project, litestream_bins, tmp_path) -> None:
    env, exe = _private_cache(litestream_bins, tmp_path)
    assert json.loads(run_cli("version", "--json", cwd=project.dir, env=env).stdout)["verified"] is True
    st = exe.stat()
    with open(exe, "r+b") as handle:
        handle.seek(st.st_size // 2)
        byte = handle.read(1)
        handle.seek(st.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(exe, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime exactly as recorded
    version = json.loads(run_cli("version", "--json", cwd=project.dir, env=env).stdout)
    assert version["installed"] is True and version["verified"] is False
    refused = run_cli("databases", cwd=project.dir, env=env)
    assert refused.returncode == ExitCode.BINARY, refused.stderr
    assert "does not match its pinned sha256" in refused.stderr and "install --force" in refused.stderr


def test_a_user_binary_that_is_not_the_pinned_build_is_named_every_run(project, litestream_bins, tmp_path) -> None:
    own = tmp_path / "my-litestream"
    shutil.copy2(litestream_bins[V5], own)
    with open(own, "ab") as handle:
        handle.write(b"\0not the pinned build")  # still runs, still says 0.5.17; another sha256
    env = {"BACKUPCTL_LITESTREAM_BIN": str(own)}
    for _ in range(2):
        result = run_cli("databases", cwd=project.dir, env=env)
        assert result.returncode == 0, result.stderr
        assert f"BACKUPCTL_LITESTREAM_BIN={own} is not the pinned Litestream {V5} build" in result.stderr
    pinned = run_cli("databases", cwd=project.dir, env={"BACKUPCTL_LITESTREAM_BIN": str(litestream_bins[V5])})
    assert pinned.returncode == 0 and "not the pinned" not in pinned.stderr


def test_version_never_runs_a_cached_binary_that_fails_its_sha256(project, litestream_bins, tmp_path) -> None:
    env, exe = _private_cache(litestream_bins, tmp_path)
    # A stand-in that would leave a mark if run, and answers like the pinned build (its sha256 cannot match).
    marker = tmp_path / "ran"
    exe.write_text(f"#!/bin/sh\ntouch '{marker}'\necho {V5}\n")
    exe.chmod(0o755)
    text = run_cli("version", cwd=project.dir, env=env)
    assert text.returncode == ExitCode.BINARY, (text.stdout, text.stderr)
    assert text.stdout.startswith("backupctl  ") and "litestream not run" in text.stdout
    assert "verified   no, sha256 differs from the pin" in text.stdout
    assert "does not match its pinned sha256" in text.stderr and "install --force" in text.stderr
    doc = json.loads((as_json := run_cli("version", "--json", cwd=project.dir, env=env)).stdout)
    assert as_json.returncode == ExitCode.BINARY and as_json.stderr == ""
    assert doc["ok"] is False and doc["verified"] is False and doc["installed"] is True
    assert doc["litestream"] is None and doc["path"] == str(exe) and doc["backupctl"]
    assert doc["error"]["kind"] == "binary" and doc["error"]["exit_code"] == ExitCode.BINARY
    assert "does not match its pinned sha256" in doc["error"]["message"]
    assert not marker.exists(), "version ran the binary that failed its sha256 check"
    # Every other command refuses it alike, and runs nothing either.
    refused = run_cli("databases", "--json", cwd=project.dir, env=env)
    assert refused.returncode == ExitCode.BINARY and json.loads(refused.stdout)["error"] == doc["error"]
    assert not marker.exists()
    # The pinned build back in place: verified, run, exit 0.
    shutil.copy2(litestream_bins[V5], exe)
    good = json.loads((ok := run_cli("version", "--json", cwd=project.dir, env=env)).stdout)
    assert ok.returncode == 0 and good["ok"] is True and good["verified"] is True and good["litestream"] == V5
    assert "error" not in good


def test_a_matched_binary_is_not_hashed_again_until_its_file_changes(project, litestream_bins, tmp_path) -> None:
    """The first run hashes in full and records the file's identity (device, inode, size, mtime, ctime);
    later runs trust that record while the identity holds. Any write changes the ctime, so the flipped
    byte above is caught with a record in place. `doctor` always hashes in full: a record forged for a
    tampered file fools the fast path (whoever can write the cache can write the binary too) but not it."""
    from backupctl.litestream.binary import VERIFIED, _identity

    env, exe = _private_cache(litestream_bins, tmp_path)
    record = exe.parent / VERIFIED
    record.unlink(missing_ok=True)  # copied from the shared cache with the copy's other inode: of no use anyway
    assert json.loads(run_cli("version", "--json", cwd=project.dir, env=env).stdout)["verified"] is True
    kept = json.loads(record.read_text())
    assert kept["identity"] == _identity(exe) and len(kept["sha256"]) == 64
    assert oct(record.stat().st_mode & 0o777) == "0o600"

    with open(exe, "r+b") as handle:  # tampered: the identity changes, so the record no longer applies
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert json.loads(run_cli("version", "--json", cwd=project.dir, env=env).stdout)["verified"] is False
    assert not record.exists()  # a record for a file that no longer matches is dropped

    record.write_text(json.dumps({"identity": _identity(exe), "sha256": kept["sha256"]}))  # forged
    assert json.loads(run_cli("version", "--json", cwd=project.dir, env=env).stdout)["verified"] is True
    doctor = json.loads(run_cli("doctor", "--json", cwd=project.dir, env=env).stdout)
    binary_checks = [c for c in doctor["checks"] if c["name"] == "binary"]
    assert binary_checks and binary_checks[0]["status"] == "fail", binary_checks
