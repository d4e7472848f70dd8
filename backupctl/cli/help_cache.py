"""`--help` without loading typer: the text a command's help printed last time, kept in the cache.

Building typer's command tree costs more than everything else `--help` does (about 80 ms of
imports and signature inspection), and the text only changes when backupctl's own files or the
terminal's width do. So the first `backupctl [COMMAND...] --help` runs typer as usual and keeps
what it printed, under a key made of the arguments, the width and the size and modification time
of every file of the installed package; the next identical call prints that text and exits 0.

Only the plain form is answered from here: command words followed by one `--help`/`-h` and
nothing else, and only a text that typer printed with exit 0 and that starts with "Usage:" is
kept. Anything else goes to typer, which parses and reports it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

HELP_FLAGS = ("--help", "-h")
PACKAGE = Path(__file__).resolve().parent.parent


def cache_file(args: list[str]) -> Path | None:
    """Where the help for these arguments is kept, or None when they are not a plain help request."""
    if not args or args[-1] not in HELP_FLAGS or not all(_is_word(a) for a in args[:-1]):
        return None
    # lazy: `--version` and `--help` answer before anything else loads
    from backupctl import __version__
    from backupctl.paths import cache_dir

    key = hashlib.sha256()
    key.update(f"{__version__}\0{' '.join(args)}\0{shutil.get_terminal_size().columns}\0".encode())
    for root, dirs, files in os.walk(PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".json")):
                st = os.stat(os.path.join(root, name))
                key.update(f"{root}/{name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return cache_dir() / "help" / f"{key.hexdigest()[:32]}.txt"


def _is_word(arg: str) -> bool:
    """A command name (`status`, `service`, `compose`), not an option or a value."""
    return arg[:1].isalpha() and all(c.isalnum() or c == "-" for c in arg)


def print_cached(path: Path) -> bool:
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    sys.stdout.write(text)
    sys.stdout.flush()
    return True


class Recorder:
    """Stands in for stdout while typer prints the help: passes everything on and keeps a copy."""

    def __init__(self, stream: object) -> None:
        self._stream = stream
        self.parts: list[str] = []

    def write(self, text: str | bytes) -> int:
        self.parts.append(text.decode("utf-8", "replace") if isinstance(text, bytes | bytearray) else text)
        return self._stream.write(text)  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def keep(path: Path, text: str) -> None:
    """Keep a help text (atomically; a cache that cannot be written is simply not used)."""
    if not text.startswith("Usage:"):
        return
    # lazy: `--version` and `--help` answer before anything else loads
    from backupctl.owned import write_atomic

    try:
        write_atomic(path, text, mode=0o644)
    except OSError:
        pass
