"""Litestreams backupctl did not start: which of them replicate or hold a given database.

Found by looking at every process of this user whose program is litestream: a `litestream
replicate` whose command line (`replicate DB URL`) or config (``-config``, ``$LITESTREAM_CONFIG``,
else ``/etc/litestream.yml``) names the database, or any litestream with the database (or its
``-wal``) open. ``processes.replicators_of`` asks this after backupctl's own process records.

:func:`foreign_replica_writers` asks the other question: which of them write into a replica location
(their `replicate DB URL` argument, or a replica of their config), so that `start` never makes two
writers of one replica even when the two databases differ.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from backupctl.kinds.base import clean_path
from backupctl.kinds.s3 import normal_endpoint


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


def foreign_replica_writers() -> list[tuple[int, str, list[str]]]:
    """(pid, command line, replica location keys) of every `litestream replicate` of this user, in the
    form of ``settings.Replica.lock_key`` (``replicas_overlap`` compares them)."""
    import psutil

    found: list[tuple[int, str, list[str]]] = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            argv = proc.info["cmdline"] or []
            if proc.info["pid"] == me or not _is_replicate(argv):
                continue
            try:
                cwd: Path | None = Path(proc.cwd())
            except (psutil.AccessDenied, OSError):
                cwd = None
            keys = _replica_keys(argv, cwd, proc)
            if keys:
                found.append((proc.pid, " ".join(argv), keys))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, OSError):
            continue
    return found


ANY_AWS = "s3://?"  # an S3 replica without an endpoint: AWS, in a region the config may not say


def replicas_overlap(ours: str, theirs: str) -> bool:
    """Two replica location keys name one place, or one lies inside the other."""
    if theirs.startswith(ANY_AWS + "/") and ours.startswith("s3://"):
        host, _, rest = ours.removeprefix("s3://").partition("/")
        if not host.endswith("amazonaws.com"):
            return False
        ours, theirs = rest, theirs.removeprefix(ANY_AWS + "/")
    return ours == theirs or ours.startswith(theirs.rstrip("/") + "/") or theirs.startswith(ours.rstrip("/") + "/")


def _replica_keys(argv: list[str], cwd: Path | None, proc: Any) -> list[str]:
    config = config_arg(argv)
    positional = [a for a in argv[2:] if not a.startswith("-")]
    if config is None and len(positional) >= 2:
        return [k for k in (_url_key(u, cwd) for u in positional[1:]) if k]  # `replicate DB URL...`
    text = _config_text(config, cwd, proc)
    return config_replica_keys(text, cwd) if text is not None else []


def _config_text(config: str | None, cwd: Path | None, proc: Any) -> str | None:
    """The config a `litestream replicate` reads: its -config, else $LITESTREAM_CONFIG, else
    /etc/litestream.yml; None when it cannot be read."""
    import psutil

    if config is None:
        try:
            config = proc.environ().get("LITESTREAM_CONFIG") or "/etc/litestream.yml"
        except (psutil.Error, OSError):  # another user's process, or gone
            config = "/etc/litestream.yml"
    try:
        return _resolved(config, cwd).read_text("utf-8", errors="replace")
    except OSError:
        return None


def _url_key(url: str, cwd: Path | None) -> str | None:
    """The location key of a replica URL (file://, s3://, gs:// or a bare path, as litestream takes it)."""
    from urllib.parse import parse_qs, urlsplit


    if "://" not in url:
        return "file://" + str(_resolved(url, cwd))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return "file://" + str(_resolved(parts.path, cwd))
    if scheme == "s3":
        endpoint = (parse_qs(parts.query).get("endpoint") or [""])[0]
        host = normal_endpoint(endpoint) if endpoint else ANY_AWS.removeprefix("s3://")
        return f"s3://{host}/{parts.hostname or ''}/{clean_path(parts.path)}"
    if scheme == "gs":
        return f"gs://{parts.hostname or ''}/{clean_path(parts.path)}"
    return None


def config_replica_keys(text: str, cwd: Path | None = None) -> list[str]:
    """The location keys of every replica in a litestream.yml (0.3 `replicas:` lists and 0.5 `replica:`).

    A small reader of the shapes litestream documents, not a YAML parser: each replica's `url`, or
    its `type`, `path`, `bucket` and `endpoint`."""
    import re


    entries: list[dict[str, str]] = []
    section: int | None = None  # the indent of the `replica:`/`replicas:` key we are under
    for line in text.splitlines():
        match = re.match(r"^(\s*)(-\s*)?([A-Za-z_-]+):\s*(.*?)\s*$", line)
        if not match:
            continue
        indent, dash, key, value = len(match.group(1)), match.group(2), match.group(3), _scalar(match.group(4))
        if section is not None and indent <= section and not (dash and indent == section):
            section = None
        if key in ("replica", "replicas") and not value:
            section = indent
            entries.append({})
            continue
        if section is None:
            continue
        if dash and entries[-1]:
            entries.append({})
        entries[-1][key] = value
    keys = []
    for entry in entries:
        if entry.get("url"):
            key = _url_key(entry["url"], cwd)
        elif entry.get("bucket"):
            kind = entry.get("type", "s3")
            if kind == "s3":
                host = normal_endpoint(entry["endpoint"]) if entry.get("endpoint") else ANY_AWS.removeprefix("s3://")
                key = f"s3://{host}/{entry['bucket']}/{clean_path(entry.get('path', ''))}"
            elif kind == "gs":
                key = f"gs://{entry['bucket']}/{clean_path(entry.get('path', ''))}"
            else:
                key = None
        elif entry.get("path") and entry.get("type", "file") == "file":
            key = "file://" + str(_resolved(entry["path"], cwd))
        else:
            key = None
        if key:
            keys.append(key)
    return keys


def _scalar(raw: str) -> str:
    """A YAML scalar as written in a litestream.yml: quoted (backupctl writes `$` as \\x24) or plain."""
    if raw.startswith('"'):
        try:
            return str(json.loads(raw.replace("\\x24", "$")))
        except ValueError:
            return raw.strip('"')
    if raw.startswith("'"):
        return raw.strip("'")
    return raw.split(" #", 1)[0].strip()


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
    text = _config_text(config, cwd, proc)
    return config_database_paths(text) if text is not None else []


def config_database_paths(text: str) -> list[str]:
    """Every `path:` value in a litestream.yml (database and replica paths alike; callers compare)."""
    import re

    return [_scalar(m.group(1)) for m in re.finditer(r"^\s*-?\s*path:\s*(.+?)\s*$", text, re.MULTILINE)]


def _resolved(path: Path | str, cwd: Path | None = None) -> Path:
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and cwd is not None:
        p = cwd / p
    return Path(os.path.realpath(p))
