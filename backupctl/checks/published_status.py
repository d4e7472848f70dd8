"""`status --json` from what the running supervisor published, without loading the settings.

A healthcheck calls `status --json` every 30 s. With a supervisor running, the full answer
(``checks.status.collect_status``) reads no litestream and no replica either; it costs what it costs
because it loads and validates the settings first, and imports what that takes. This module answers
the same document from three things the supervisor keeps in its state folder:

- **the frame** (``status-frame.json``, written by ``supervise.frame.publish`` when the supervisor starts and when it
  takes on new databases): what the verdicts need from the settings (each database's name, path and
  destinations, the thresholds, the litestream version), the supervisor's process identity, and the
  key of the settings' inputs (``config.inputs``);
- **its looks** (``observations.json``, ``checks.observations``), refreshed every few seconds;
- **its state** (``supervisor.json``), and the verify and continuity records beside them.

``answer`` uses them only when it can prove them current, and otherwise returns None (the full
path answers, exactly as before):

- the frame's supervisor is alive: the same pid with the same start time (Linux's /proc; elsewhere
  never, so macOS always takes the full path), and ``supervisor.json`` is that process's;
- the caller's settings are the ones the frame was made from: the key of the caller's inputs (its
  .env, environment and the paths the settings read) equals the frame's. A .env edited, a variable
  exported, a database file added to a glob's folder, a template touched: the full path answers,
  and says "settings changed" where that is so;
- the look is recent (``MAX_AGE``) and every database in it has a local position and a replica
  reading no older than ``MAX_AGE``, as the full path requires before it trusts a look;
- no ``--fresh``, no ``--config``, one replica per database, no warnings to print about the
  settings, a DB argument only as a name the frame lists.

The verdicts are ``checks.verdicts.judge``'s, the rule the full path uses, on the same facts; the
files are stat'ed now, as there. ``tests/checks/test_published_status.py`` compares the two answers
document for document. This module imports only the standard library and the light modules below
it; the supervisor's side, which writes the frame, is ``supervise.frame``.
"""

from __future__ import annotations

import os
import stat

from backupctl import __version__
from backupctl.checks.verdicts import epoch_iso, judge, local_files
from backupctl.config.inputs import identity, named_env_file, settings_key
from backupctl.errors import VERDICT_EXIT, ExitCode, worst_exit
from backupctl.host.liveness import alive_from_proc, exited
from backupctl.host.watch import walk_folders
from backupctl.owned import json_loads, read_private
from backupctl.paths import OWNERFILE, STATE_ENV, state_folder

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: 19 ms of every `status --json`
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

FRAME = "status-frame.json"
MAX_AGE = 30.0  # status trusts a look, and a replica reading in it, at most this old (seconds)
RUNNING = ("running", "starting")  # host.state.Phase values in which a supervisor counts as running


# --------------------------------------------------------------------------- reading (light)


def read_document(path: str) -> dict[str, Any] | None:
    """A JSON object from a state file of ours (``owned.read_private``: not through a link, ours,
    not writable by others); None otherwise."""
    text = read_private(path)  # type: ignore[arg-type]
    if text is None:
        return None
    try:
        document = json_loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def read_looks(state_dir: str, name: str, supervisor_pid: int, now: float) -> tuple[float, dict[str, dict[str, Any]]] | None:
    """The live supervisor's looks (``checks.observations``): when it last looked (the document's
    modification time) and its entries; None when there is no document, it is another supervisor's,
    or the last look is older than ``MAX_AGE``."""
    path = os.path.join(state_dir, name)
    try:
        with open(path, "rb") as fh:
            observed_at = os.fstat(fh.fileno()).st_mtime
            if now - observed_at > MAX_AGE:
                return None
            document = json_loads(fh.read())
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("supervisor_pid") != supervisor_pid:
        return None
    entries = document.get("databases")
    return (observed_at, entries) if isinstance(entries, dict) else None


def folder_witness(root: str, walked: list[str] | None = None) -> list[Any]:
    """A local-folder replica's folders as they are now: ``[root, names, idents]``, where ``names``
    are ``root`` ("") and every folder below it, relative to it and sorted, and ``idents`` their
    ``config.inputs.identity`` each as ``dev:ino:size:mtime_ns:ctime_ns`` ("-": gone), joined by "|"
    (one string: 1,000 databases' witnesses stay small in the supervisor and in its looks). A file
    written or removed in any of them changes it; taken just before a reading, an unchanged witness
    says the replica still holds what was read. ``walked``: the folders as a walk of ``root`` just
    made found them (``host.watch.walk_folders``, as ``FolderWatch.watch_tree`` walks it), not to walk
    it twice; or ``[root]`` alone for a tree the supervisor watches (``reading_current`` then checks
    only the replica's own folder: the watch stands for the rest)."""
    root = os.fspath(root)
    if walked is None:
        walked = walk_folders(root)
    prefix = root if root.endswith(os.sep) else root + os.sep
    names = sorted(folder[len(prefix):] if folder != root else "" for folder in walked)
    return [root, names, _idents(root, names)]


def _ident_text(path: str) -> str:
    ident = identity(path)
    return "-" if ident is None else ":".join(map(str, ident))


def _idents(root: str, names: list[str]) -> str:
    return "|".join(_ident_text(os.path.join(root, name) if name else root) for name in names)


def _witness_parts(witness: Any) -> tuple[str, list[str], str] | None:
    """A witness as ``folder_witness`` makes it (root first); None for anything else (a look written
    by another version: no reading rests on it)."""
    if not (isinstance(witness, list) and len(witness) == 3):
        return None
    root, names, idents = witness
    if not (isinstance(root, str) and isinstance(names, list) and names and names[0] == "" and isinstance(idents, str)):
        return None
    if not all(isinstance(name, str) for name in names):
        return None
    return root, names, idents


def witness_holds(witness: Any) -> bool:
    """Every folder of the witness is as it was: each stat'ed again, none listed (a folder made or
    removed inside one changes that one's times)."""
    parts = _witness_parts(witness)
    if parts is None:
        return False
    root, names, idents = parts
    return _same_folder(witness) and _idents(root, names) == idents


def reading_current(entry: dict[str, Any], now: float) -> bool:
    """Whether a verdict may rest on the replica reading in a look's ``entry`` (a look at most
    ``MAX_AGE`` old: both callers make sure of it): the reading is at most ``MAX_AGE`` old, or it is a
    local folder's and either the supervisor watches that folder's tree (``watched``: it was told of
    no change up to its look, ``host.watch``) or its witness (``folder_witness``, taken before the
    reading) is unchanged now. The supervisor re-reads an idle replica without a watch only now and
    then; the full path reads one that is not current again, and ``answer`` leaves it to the full
    path. A local folder's own folder is checked at every call, whatever the reading's age: a replica
    removed is never answered from a look."""
    witness = entry.get("witness")
    if witness is not None and not _same_folder(witness):
        return False  # the replica's folder was removed, replaced or changed since: whatever the reading's age
    if now - float(entry.get("read_at") or 0.0) <= MAX_AGE:
        return True
    return witness is not None and (entry.get("watched") is True or witness_holds(witness))


def _same_folder(witness: Any) -> bool:
    """A witness's own folder is as it was: one stat. A replica's own folder holds only litestream's
    first level (0.5 `ltx/`, 0.3 `generations/`), so its times stand still while litestream writes
    below; removed under a running litestream, it is made anew by its next write, with new times (and
    the inode number, which the file system may hand out again, is not enough)."""
    parts = _witness_parts(witness)
    if parts is None:
        return False
    root, _names, idents = parts
    then = idents.split("|", 1)[0]
    return then != "-" and _ident_text(root) == then


def _private_folder(path: str) -> bool:
    """The state folder as ``owned.secure_dir`` leaves it: a real folder of ours, mode 0700. Anything
    else is the full path's to report."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) == 0o700


def answer(env_file: str | None, database: str | None, environ: Mapping[str, str], now: float) -> dict[str, Any] | None:
    """The `status --json` document (``StatusReport.to_json``) from what the supervisor published,
    or None when that cannot be proven current (see the module docstring)."""
    found = consult(env_file, database, environ, now)
    return found if isinstance(found, dict) else None


def consult(env_file: str | None, database: str | None, environ: Mapping[str, str], now: float) -> dict[str, Any] | str:
    """``answer``'s document, or why the full path has to answer (for tests and ``BACKUPCTL_DEBUG``)."""
    found = live_frame(env_file, environ)
    if isinstance(found, str):
        return found
    frame, state_dir, sup = found
    try:
        return _answer(frame, state_dir, sup, database, now)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"a frame of another shape ({exc!r})"


def live_frame(env_file: str | None, environ: Mapping[str, str]) -> tuple[dict[str, Any], str, dict[str, Any]] | str:
    """The frame, the state folder and the state (``supervisor.json``) of the supervisor that published
    it, when that supervisor runs now and the caller's settings are the ones it was made from (see the
    module docstring); else why not. The looks are ``consult``'s to check; the fast listing
    (``cli.quick_listing``) needs only this."""
    env_path = named_env_file(env_file, os.getcwd())
    if env_path is None:
        return "no .env named or in this folder (the full path searches above)"
    project = os.path.dirname(env_path)
    state_dir = state_folder(project, environ)  # type: ignore[arg-type]
    if not _private_folder(state_dir):
        return f"{state_dir} is not a private folder of ours"
    if environ.get(STATE_ENV):
        owner = read_document(os.path.join(state_dir, OWNERFILE))
        if owner is None or owner.get("project") != os.path.realpath(project):
            return f"{STATE_ENV} names a folder not claimed by this project (the full path claims it or refuses)"
    frame = read_document(os.path.join(state_dir, FRAME))
    if frame is None:
        return "no frame published"
    try:
        sup = _live(frame, env_path, state_dir, environ)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return f"a frame of another shape ({exc!r})"
    return sup if isinstance(sup, str) else (frame, state_dir, sup)


def _live(frame: dict[str, Any], env_path: str, state_dir: str, environ: Mapping[str, str]) -> dict[str, Any] | str:
    if frame["backupctl"] != __version__ or frame["env_file"] != env_path:
        return "the frame is another backupctl's, or another .env's"
    me = frame["supervisor"]
    pid = int(me["pid"])
    if me["start_ticks"] is None or alive_from_proc(pid, int(me["start_ticks"])) is not True:
        return f"the supervisor that published it (pid {pid}) is not running"
    if settings_key(frame["salt"], __version__, env_path, environ, frame["disk"]) != frame["key"]:
        return "the settings' inputs changed (.env, environment or files): they have to be loaded"
    files = frame["files"]
    sup = read_document(os.path.join(state_dir, files["supervisor"]))
    if sup is None or sup.get("pid") != pid or sup.get("create_time") is None:
        return "supervisor.json is not the publishing supervisor's"
    if abs(float(sup["create_time"]) - float(me["create_time"])) > 0.01:
        return "supervisor.json is not the publishing supervisor's"
    state = sup.get("state") or "stopped"
    if state not in RUNNING:
        return f"the supervisor is {state}"
    if exited(sup.get("litestream_pid"), sup.get("litestream_start_ticks")):
        return "its litestream has exited and the supervisor has not recorded it yet"
    return sup


def _answer(frame: dict[str, Any], state_dir: str, sup: dict[str, Any], database: str | None, now: float) -> dict[str, Any] | str:
    me = frame["supervisor"]
    pid, state, files = int(me["pid"]), sup["state"], frame["files"]
    looks = read_looks(state_dir, files["observations"], pid, now)
    if looks is None:
        return f"no look of this supervisor at most {MAX_AGE:g}s old"
    observed_at, entries = looks

    dbs = frame["databases"]
    if database:
        dbs = [db for db in dbs if database in (db["name"], db["stem"])][:1]
        if not dbs:
            return f"{database!r} is not a configured database's name (the full path resolves paths)"
    replicated = set(sup.get("databases") or [])
    for db in dbs:
        entry = entries.get(db["path"])
        if not isinstance(entry, dict) or not isinstance(entry.get("local"), dict) or "shown_local" not in entry:
            return f"the supervisor has not looked at {db['name']} yet"
        if db["path"] in replicated and not reading_current(entry, now):
            return f"the replica reading of {db['name']} is not current (the full path reads it again)"

    started = sup.get("child_started_at") or sup.get("started_at")
    supervisor = {
        "state": state,
        "running": True,
        "pid": pid,
        "litestream_pid": sup.get("litestream_pid"),
        "uptime_seconds": round(now - started, 1) if started else None,
        "restarts": sup.get("restarts", 0),
        "last_error": sup.get("last_error"),
        "mode": me["mode"],
        "manager": me["manager"],
        "databases": list(sup.get("databases") or []),
        "settings_changed": None,  # the caller's settings are the ones this supervisor runs (the key)
    }
    verifies = {k: v for k, v in (read_document(os.path.join(state_dir, files["verify"])) or {}).items()
                if isinstance(v, dict) and isinstance(v.get("status"), str)}  # fmt: skip
    proofs = read_document(os.path.join(state_dir, files["continuity"])) or {}
    rows = []
    for db in dbs:
        entry = dict(entries[db["path"]])
        local = local_files(db["path"])
        local.update(initialized=bool(entry.get("initialized")), status=entry["local"].get("status"))
        rows.append(judge(
            name=db["name"], path=db["path"], destinations=list(db["destinations"]), local=local,
            local_key=entry.get("local_key"), shown_local=entry["shown_local"], exact_positions=frame["exact_positions"],
            entry=entry, replica_error=entry.get("replica_error"), supervisor=supervisor,
            threshold=frame["stale_after_seconds"], stall=frame["stall_after"], now=now,
            unserved=db["path"] not in replicated, observed_at=observed_at,
            verify=verifies.get(db["path"]) or verifies.get(db["name"]), proof=proofs.get(db["proof_key"]),
        ))  # fmt: skip
    code = worst_exit([VERDICT_EXIT[row["verdict"]] for row in rows])
    return {
        "ok": code == ExitCode.OK,
        "exit_code": int(code),
        "checked_at": epoch_iso(now) or "",
        "litestream_version": frame["litestream_version"],
        "stale_after_seconds": frame["stale_after_seconds"],
        "source": "supervisor",
        "observed_at": epoch_iso(observed_at),
        "supervisor": supervisor,
        "databases": rows,
    }
