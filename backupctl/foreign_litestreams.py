"""Litestreams backupctl did not start: which of them replicate or hold a given database.

Found by looking at every process of this user whose program is litestream: a `litestream
replicate` whose command line (`replicate DB URL`) or config (``-config``, ``$LITESTREAM_CONFIG``,
else ``/etc/litestream.yml``) names the database, or any litestream with the database (or its
``-wal``) open. ``processes.replicators_of`` asks this after backupctl's own process records.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def foreign_litestreams(targets: list[Path]) -> dict[Path, list[tuple[int, str]]]:
    """For each of ``targets`` (resolved paths): (pid, command line) of every litestream that
    replicates or holds it, this process excluded; backupctl's own are among them (the caller tells
    them apart by record). Every process is looked at once, however many databases are asked about."""
    import psutil

    found: dict[Path, list[tuple[int, str]]] = {t: [] for t in targets}
    opened = {**{str(t): t for t in targets}, **{f"{t}-wal": t for t in targets}}
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "name"]):
        try:
            argv = proc.info["cmdline"] or []
            name = proc.info["name"] or ""
            if proc.info["pid"] == me or not (argv and Path(argv[0]).name.startswith("litestream")) and "litestream" not in name:
                continue
            hits: set[Path] = set()
            if _is_replicate(argv):
                try:
                    cwd: Path | None = Path(proc.cwd())
                except (psutil.AccessDenied, OSError):
                    cwd = None  # another user's process: absolute paths can still be compared
                hits = {_resolved(p, cwd) for p in _replicated_paths(argv, cwd, proc)} & found.keys()
                for target in hits:
                    found[target].append((proc.pid, " ".join(argv)))
            for f in proc.open_files():
                target = opened.get(f.path)
                if target is not None and target not in hits:
                    hits.add(target)
                    found[target].append((proc.pid, " ".join(argv) or name))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


def _is_replicate(argv: list[str]) -> bool:
    return len(argv) >= 2 and Path(argv[0]).name.startswith("litestream") and argv[1] == "replicate"


def config_arg(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg in ("-config", "--config") and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(("-config=", "--config=")):
            return arg.split("=", 1)[1]
    return None


def _replicated_paths(argv: list[str], cwd: Path | None, proc: Any) -> list[str]:
    config = config_arg(argv)
    positional = [a for a in argv[2:] if not a.startswith("-")]
    if config is None and positional and not any(a.startswith("-exec") for a in argv):
        return positional[:1]  # `litestream replicate DB REPLICA_URL`
    if config is None:
        try:
            config = proc.environ().get("LITESTREAM_CONFIG") or "/etc/litestream.yml"
        except Exception:
            config = "/etc/litestream.yml"
    try:
        text = _resolved(config, cwd).read_text("utf-8", errors="replace")
    except OSError:
        return []
    return config_database_paths(text)


def config_database_paths(text: str) -> list[str]:
    """Every `path:` value in a litestream.yml (database and replica paths alike; callers compare)."""
    import re

    found = []
    for match in re.finditer(r"^\s*-?\s*path:\s*(.+?)\s*$", text, re.MULTILINE):
        raw = match.group(1)
        if raw.startswith('"'):
            try:
                raw = json.loads(raw.replace("\\x24", "$"))
            except ValueError:
                raw = raw.strip('"')
        elif raw.startswith("'"):
            raw = raw.strip("'")
        else:
            raw = raw.split(" #", 1)[0].strip()
        found.append(raw)
    return found


def _resolved(path: Path | str, cwd: Path | None = None) -> Path:
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and cwd is not None:
        p = cwd / p
    return Path(os.path.realpath(p))
