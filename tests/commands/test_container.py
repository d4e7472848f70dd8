"""The container image, without a container engine: the Dockerfile is read, its build step that
fetches Litestream is run as written (into a private cache standing for the image's), and its
CMD and HEALTHCHECK are run as the container would run them: on an empty folder holding only
the .env, with the image's environment, against a real replica on the local S3 server.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from backupctl.commands import service
from backupctl.errors import ExitCode
from tests.conftest import ROOT, run_cli, wait_for
from tests.restore.test_recovery import RAILS, counts, insert, machine, rails_env, start_stop

pytestmark = [pytest.mark.slow, pytest.mark.s3, pytest.mark.timeout(400)]
BIN = Path(sys.executable).parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines() if not ln.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip()) for ln in joined.splitlines() if ln.strip()]


def env_pairs(args: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(args))


def test_the_dockerfile_is_small_non_root_and_fetches_litestream_at_build_time() -> None:
    steps = instructions()
    kinds = [k for k, _ in steps]
    assert steps[0][0] == "FROM" and steps[0][1].endswith("-slim")
    user = next(a for k, a in steps if k == "USER")
    assert user not in ("root", "0")
    run = " ".join(a for k, a in steps if k == "RUN")
    assert 'backupctl install "$LITESTREAM_VERSION"' in run  # fetched and verified while building
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k == "RUN")  # runs as the user
    runtime = env_pairs(" ".join(a for k, a in steps[max(i for i, k in enumerate(kinds) if k == "RUN") :] if k == "ENV"))
    assert runtime.get("BACKUPCTL_NO_DOWNLOAD") == "1"  # never a download at container start
    assert json.loads(next(a for k, a in steps if k == "CMD")) == ["backupctl", "start", "--restore-if-missing"]
    health = next(a for k, a in steps if k == "HEALTHCHECK")
    assert json.loads(health.split(" CMD ", 1)[1]) == service.HEALTHCHECK_ARGV
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv", ".cache"} <= set(ignored)  # no secret, no local state in the image


def test_the_image_entrypoint_brings_the_app_back_on_an_empty_folder(tmp_path: Path, request, litestream_bins) -> None:
    steps = instructions()
    version = next(a.split("=", 1)[1] for k, a in steps if k == "ARG" and a.startswith("LITESTREAM_VERSION="))
    image_cache = tmp_path / "image-cache"
    image_env: dict[str, str] = {}
    for kind, args in steps:
        if kind == "ENV":
            image_env.update(env_pairs(args))
    image_env["BACKUPCTL_CACHE_DIR"] = str(image_cache)  # the image's /opt/backupctl/cache
    build_env = {k: v for k, v in image_env.items() if k != "BACKUPCTL_NO_DOWNLOAD"}

    # docker build: the RUN step's backupctl command, exactly as written, with the build arg
    for kind, args in steps:
        if kind != "RUN":
            continue
        for command in (c.strip() for c in args.split("&&")):
            if command.startswith("backupctl "):
                argv = shlex.split(command.replace("$LITESTREAM_VERSION", version))
                built = subprocess.run(
                    [str(BIN / argv[0]), *argv[1:]],
                    env={**os.environ, **build_env},
                    capture_output=True,
                    text=True,
                    timeout=300,
                    cwd=tmp_path,
                )
                assert built.returncode == 0, built.stdout + built.stderr
    (installed,) = image_cache.glob("litestream/*/*/litestream")
    assert installed.parts[-3] == version

    # a replica written by the app's previous machine
    env = rails_env(tmp_path, version, "s3", request)
    old = machine(tmp_path / "old", env)
    from tests.conftest import make_db

    for name in RAILS:
        make_db(old / "storage" / name, rows=3)
    start_stop(old, {"production.sqlite3": 12})
    expected = counts(old / "storage")

    # docker run: CMD in WORKDIR, a folder with only the .env, the image's environment
    data = machine(tmp_path / "data", env)
    cmd = json.loads(next(a for k, a in steps if k == "CMD"))
    health = json.loads(next(a for k, a in steps if k == "HEALTHCHECK").split(" CMD ", 1)[1])
    run_env = {**os.environ, **image_env}
    out, err = tmp_path / "container.stdout", tmp_path / "container.stderr"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [str(BIN / cmd[0]), *cmd[1:]], cwd=data, env=run_env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )
    try:
        wait_for(
            lambda: sum(ln.startswith("restored ") for ln in out.read_text().splitlines()) == len(RAILS),
            timeout=240,
            what="the four databases restored",
        )
        assert counts(data / "storage") == expected
        healthy = wait_for(
            lambda: (
                (r := subprocess.run([str(BIN / health[0]), *health[1:]], cwd=data, env=run_env, capture_output=True))
                and r.returncode == 0
            ),
            timeout=120,
            what="the healthcheck to pass",
        )
        assert healthy
        insert(data / "storage" / "production_queue.sqlite3", 6)
    finally:
        proc.send_signal(signal.SIGTERM)  # docker stop
        code = proc.wait(120)
    assert code == ExitCode.TERMINATED, err.read_text()
    assert "installing" not in err.read_text()  # nothing fetched at container start
    expected = counts(data / "storage")
    check = run_cli("restore", "--all", "-o", f"{tmp_path / 'check'}/", cwd=data, timeout=240)
    assert check.returncode == 0, check.stderr
    assert counts(tmp_path / "check") == expected

    # a .env asking for a Litestream the image does not hold: a clear error, no download
    other = machine(tmp_path / "other", {**env, "LITESTREAM_VERSION": "0.3.13"})
    refused = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=other, env=run_env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == ExitCode.BINARY, refused.stderr
    assert "--build-arg LITESTREAM_VERSION=0.3.13" in refused.stderr and "Traceback" not in refused.stderr
    assert [p.parts[-3] for p in image_cache.glob("litestream/*/*/litestream")] == [version]
