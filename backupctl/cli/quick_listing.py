"""The listings (`databases`, `ltx`, `snapshots`, `wal`, `generations` with --json) run as the full
path runs them, without loading the settings.

The full path (``cli.answers``) loads and validates the settings, finds the config a read uses
and the verified binary, builds litestream's environment, runs the listing and parses it; on a
local folder the litestream call is the smaller part of its time. While a supervisor runs, its
frame (``supervise.frame``) holds what those steps decide, for settings ``published_status``
proves unchanged (``live_frame``): the binary and config that supervisor runs, each with its
``identity`` (a file replaced or rewritten since is not used), the variables removed from
litestream's environment (``runner.plain_environment``) and each database's replica kind. So this
module runs the same litestream command with the same config and environment, and prints the same
rows (``litestream.rows``, which the typed records print too). A 0.5 local-folder replica is not
even asked: its LTX files are read as litestream's file client reads them (``litestream.folder``),
a few stats instead of a process that parses a config of every database.

It answers only what it can answer exactly as the full path would, and returns None for the full
path to answer in every other case: no live frame, no listing in it (a replica that needs
credentials or a probe, several replicas), a DB argument that is not one configured database, a level that is
not 0-9 or all, or a litestream that fails, complains or prints what does not parse (the full path
runs it again and reports the error as it always has). ``tests/cli/test_quick_listing.py`` compares
the two answers.
"""

from __future__ import annotations

import os

from backupctl.checks.published_status import live_frame
from backupctl.config.inputs import identity
from backupctl.litestream import folder, rows
from backupctl.litestream.spawn import CannotStart, move_ca_bundle, run_once
from backupctl.owned import json_loads

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Container, Mapping
    from typing import Any

# What each listing of 0.5 asks litestream: `ltx -level LEVEL` (None: the --level option's value).
LEVELS: dict[str, str | None] = {"ltx": None, "snapshots": str(rows.SNAPSHOT_LEVEL), "wal": str(rows.WAL_LEVEL),
                                 "generations": "all"}  # fmt: skip
PLAIN_LEVELS = {"all", *map(str, range(10))}


def answer(
    command: str, env_file: str | None, database: str | None, level: str, environ: Mapping[str, str]
) -> dict[str, Any] | None:
    """The --json document of ``command``, or None when the full path has to answer (see the module docstring)."""
    found = consult(command, env_file, database, level, environ)
    return found if isinstance(found, dict) else None


def consult(
    command: str, env_file: str | None, database: str | None, level: str, environ: Mapping[str, str]
) -> dict[str, Any] | str:
    """``answer``'s document, or why the full path has to answer (for tests)."""
    found = live_frame(env_file, environ)
    if isinstance(found, str):
        return found
    frame = found[0]
    try:
        return _answer(frame, command, database, level, environ)
    except (KeyError, TypeError, AttributeError) as exc:
        return f"a frame of another shape ({exc!r})"


def _run(listing: dict[str, Any], env: dict[str, str], *args: str) -> str | None:
    """litestream's stdout for ``args`` run with the frame's config, or None when it failed or complained."""
    argv = [listing["binary"], args[0], "-config", listing["config"], *args[1:]]
    try:
        code, out, err = run_once(argv, env, timeout=rows.LISTING_TIMEOUT)
    except CannotStart:
        return None
    except Exception as exc:
        import subprocess  # lazy: only a listing that timed out needs its exception's class (spawn's docstring)

        if isinstance(exc, subprocess.TimeoutExpired):
            return None
        raise
    stdout, stderr = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if code != 0 or any(rows.is_error_line(line) for line in (stdout + "\n" + stderr).splitlines()):
        return None
    return stdout


def _answer(
    frame: dict[str, Any], command: str, database: str | None, level: str, environ: Mapping[str, str]
) -> dict[str, Any] | str:
    listing = frame.get("listing")
    if not listing:
        return "the frame has no listing (credentials, a replica to probe, or several replicas)"
    for name in ("binary", "config"):
        now_id = identity(listing[name])
        if now_id is None or list(now_id) != listing[f"{name}_identity"]:
            return f"the {name} the supervisor runs changed since it published the frame"
    withheld = set(listing["withheld"])
    env = {k: v for k, v in environ.items() if k not in withheld}
    if listing["drop_aws_ca_bundle"]:
        move_ca_bundle(env)
    version = frame["litestream_version"]

    if command == "databases":
        stdout = _run(listing, env, "databases", "-json") if listing["has_ltx"] else _run(listing, env, "databases")
        if stdout is None:
            return "litestream databases failed or complained (the full path reports it)"
        try:
            native: Container[str] = (
                {str(d["path"]) for d in (json_loads(stdout or "[]") or []) if isinstance(d, dict)} if listing["has_ltx"]
                else rows.listed_databases(stdout, [db["path"] for db in frame["databases"]])
            )  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return "litestream databases printed what does not parse (the full path reports it)"
        found = []
        for db in frame["databases"]:
            try:
                size: int | None = os.stat(db["path"]).st_size
            except OSError:
                size = None
            found.append(rows.database_row(db["name"], db["path"], list(db["destinations"]), size, native))
        return {"litestream_version": version, "config": listing["config"], "databases": found}

    if command not in LEVELS:
        return f"{command} is not a listing answered here"
    chosen = _select(frame["databases"], database)
    if isinstance(chosen, str):
        return chosen
    if not listing["has_ltx"]:
        return _answer_03(listing, env, version, command, chosen)
    asked = LEVELS[command] or level
    if asked not in PLAIN_LEVELS:
        return f"--level {asked!r} is not written as plainly as 0-9 or all (the full path reads it)"
    replica = (listing.get("folders") or {}).get(chosen["path"])
    if replica is not None:  # a local folder: its files, as litestream's file client lists them
        read = folder.listed(replica, folder.LEVELS if asked == "all" else (int(asked),))
        if read is None:
            return "a level folder of the replica cannot be read (the full path reports why)"
        files = read
    else:
        stdout = _run(listing, env, "ltx", "-level", asked, "-json", chosen["path"])
        if stdout is None:
            return "litestream ltx failed or complained (the full path reports it)"
        try:
            files = rows.ltx_rows(stdout)
        except (ValueError, KeyError, TypeError):
            return "litestream ltx printed what does not parse (the full path reports it)"
    kind = listing["kinds"][chosen["path"]]
    destinations = list(chosen["destinations"])
    if command == "ltx":
        items = [rows.ltx_json(*f) for f in files]
    elif command == "snapshots":
        items = [rows.snapshot_json(kind, f[4], f[3], min_txid=f[1], max_txid=f[2]) for f in files]
    elif command == "wal":
        items = [rows.wal_json(kind, f[4], f[3], level=f[0], min_txid=f[1], max_txid=f[2]) for f in files]
    else:  # generations: 0.5 has none; its restorable window, when the replica holds anything
        items = [rows.window_json(chosen["path"], destinations, **rows.window_fields(files))] if files else []
    key = "window" if command == "generations" else command
    note = rows.GENERATIONS_NOTE if command == "generations" else None
    return rows.listing_document(version, [(chosen["name"], chosen["path"], destinations, items)], key, note)


def _answer_03(
    listing: dict[str, Any], env: dict[str, str], version: str, command: str, db: dict[str, Any]
) -> dict[str, Any] | str:
    """Litestream 0.3: `snapshots`, `wal` and `generations DB` are text tables (``rows`` parses them); it
    has no `ltx` (the full path says so)."""
    if command == "ltx":
        return "Litestream 0.3 has no ltx listing (the full path says so)"
    stdout = _run(listing, env, command, db["path"])
    if stdout is None:
        return f"litestream {command} failed or complained (the full path reports it)"
    try:
        if command == "snapshots":
            items = [rows.snapshot_json(r, t, size, g, i) for r, g, i, size, t in rows.snapshot_rows(stdout)]
        elif command == "wal":
            items = [rows.wal_json(r, t, size, g, i, off) for r, g, i, off, size, t in rows.wal_rows(stdout)]
        else:
            items = [rows.generation_json(*g) for g in rows.generation_rows(stdout)]
    except (ValueError, IndexError):
        return f"litestream {command} printed what does not parse (the full path reports it)"
    return rows.listing_document(version, [(db["name"], db["path"], list(db["destinations"]), items)], command, None)


def _select(databases: list[dict[str, Any]], wanted: str | None) -> dict[str, Any] | str:
    """The one database a listing reads: ``wanted`` as ``Settings.database`` takes it (a name, a stem or a
    path), or the only one configured. Several (no DB argument) are the full path's, which lists them in
    parallel."""
    if not wanted:
        return databases[0] if len(databases) == 1 else "several databases (the full path lists them in parallel)"
    path = os.path.realpath(os.path.abspath(os.path.expanduser(wanted)))
    for db in databases:
        if wanted in (db["name"], db["stem"]) or db["path"] == path:
            return db
    return f"{wanted!r} is not a configured database (the full path says so)"
