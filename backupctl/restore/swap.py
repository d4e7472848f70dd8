"""The files at a restore's output: what is there, who holds it, the kept copy, owners and modes.

- Names: the side file ``<name>.restored-<UTC stamp>`` (:func:`side_path`) and the kept copy
  ``<name>.pre-restore-<UTC stamp>`` (:func:`kept_path`), never overwriting an existing file.
- In use: :func:`check_not_in_use` refuses while backupctl replicates the database or any
  process this user can see has the file, its ``-wal`` or ``-shm`` open (:func:`open_holders`).
- The swap: :func:`move_aside` moves the database and its ``-wal``/``-shm`` to the kept name
  (undoing the moves done so far if one fails), :func:`move_back` undoes it when the final
  rename fails, :func:`fsync_dir` makes the rename durable.
- Owners and modes: missing folders are created like the nearest existing one
  (:func:`create_folder`); the restored file takes the mode and owner of the file it replaces,
  else of the live database, else of its folder (:func:`take_mode_and_owner`).
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

from backupctl.config.settings import Database
from backupctl.errors import ConflictError
from backupctl.host import processes

SIDE_MARK = ".restored-"
KEPT_MARK = ".pre-restore-"
SIDE_FILES = ("-wal", "-shm")


def utc_stamp(moment: datetime | None = None) -> str:
    """``20261122T031500Z``: sorts by time, safe in a file name."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def side_path(db_path: Path, moment: datetime | None = None) -> Path:
    return _free(db_path.with_name(f"{db_path.name}{SIDE_MARK}{utc_stamp(moment)}"))


def kept_path(path: Path, moment: datetime | None = None) -> Path:
    return _free(path.with_name(f"{path.name}{KEPT_MARK}{utc_stamp(moment)}"))


def _free(path: Path) -> Path:
    """path, or path-2, path-3... if a file (or its -wal) is already there."""
    candidate, n = path, 1
    while any(Path(f"{candidate}{s}").exists() for s in ("", *SIDE_FILES)):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def occupied(path: Path) -> bool:
    """A database is there: a non-empty file, or a non-empty -wal."""
    for candidate in (path, Path(f"{path}-wal")):
        try:
            if candidate.stat().st_size > 0:
                return True
        except OSError:
            pass
    return False


def same_file(a: Path, b: Path) -> bool:
    """``a`` and ``b`` name the same file, also through symlinks and ``..`` (by inode when both exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def present_files(path: Path) -> list[Path]:
    return [p for p in (path, *(Path(f"{path}{s}") for s in SIDE_FILES)) if p.exists() or p.is_symlink()]


def open_holders(files: list[Path]) -> list[tuple[int, str]]:
    """Processes (pid, name) other than this one with any of ``files`` open.

    On Linux this reads /proc/*/fd; elsewhere psutil's open_files. Processes of other users are
    invisible without privileges: the check sees what this user can see.
    """
    targets = set()
    for f in files:
        targets.add(str(f))
        try:
            targets.add(str(f.resolve()))
        except OSError:
            pass
    me = os.getpid()
    found: list[tuple[int, str]] = []
    proc = Path("/proc")
    if (proc / "self" / "fd").is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            try:
                fds = os.listdir(entry / "fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    link = os.readlink(entry / "fd" / fd)
                except OSError:
                    continue
                if link in targets:
                    found.append((int(entry.name), _comm(entry)))
                    break
        return found
    import psutil

    for p in psutil.process_iter(["pid", "name"]):
        if p.info["pid"] == me:
            continue
        try:
            if any(f.path in targets for f in p.open_files()):
                found.append((p.info["pid"], p.info["name"] or "?"))
        except (psutil.Error, OSError):
            continue
    return found


def _comm(entry: Path) -> str:
    try:
        return (entry / "comm").read_text("utf-8").strip() or "?"
    except OSError:
        return "?"


def check_not_in_use(db: Database | None, path: Path) -> None:
    """Raise ConflictError if backupctl replicates this database or any process has the file open."""
    if db is not None:
        ours = [r for r in processes.replicators_of(db.path, scan=False) if r.pid != os.getpid()]
        if ours:
            raise ConflictError(
                f"backupctl is replicating {db.path} ({ours[0].describe()}); restoring over it would fork the replica",
                "stop replication first (`backupctl stop`), restore, then start it again",
            )
    holders = open_holders([path, *(Path(f"{path}{s}") for s in SIDE_FILES)])
    if holders:
        listed = ", ".join(f"pid {pid} ({name})" for pid, name in holders)
        raise ConflictError(
            f"{path} is open in another process: {listed}",
            "stop the application (and any litestream) using it, then run the restore again",
            details=[f"pid {pid}: {name}" for pid, name in holders],
        )


def create_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents, each with the mode and owner of the nearest
    existing ancestor (a new machine: the app's storage folder follows the app's folder); below a
    sticky shared folder such as /tmp, without its sticky bit and nothing for others.
    Returns the folders created, outermost first."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    if not missing:
        return []
    model = current.stat()
    mode = stat.S_IMODE(model.st_mode)
    if mode & stat.S_ISVTX:
        mode &= 0o770
    created: list[Path] = []
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
        created.append(path)
        os.chmod(path, mode | stat.S_IRWXU)
        _chown_like(path, model)
    return created


def follow_folder(path: Path, folder: Path, replaced: Path | None = None) -> None:
    """Give a restored file the owner and mode of the file it replaces, if any; else the owner of
    ``folder`` and a mode derived from it: the folder's read and write bits (never execute), and no
    access for others in a sticky folder such as /tmp."""
    if replaced is not None:
        model = replaced.stat()
        os.chmod(path, stat.S_IMODE(model.st_mode))
        _chown_like(path, model)
        return
    model = folder.stat()
    mode = stat.S_IMODE(model.st_mode) & 0o666
    if model.st_mode & stat.S_ISVTX:
        mode &= 0o660
    os.chmod(path, mode | stat.S_IRUSR | stat.S_IWUSR)
    _chown_like(path, model)


def _chown_like(path: Path, model: os.stat_result) -> None:
    """Owner and group of ``model`` where this process may set them (root: both; others: a group
    they belong to); otherwise left as created."""
    uid = model.st_uid if os.geteuid() == 0 else -1
    try:
        os.chown(path, uid, model.st_gid)
    except OSError:
        pass


def mode_and_owner_source(out: Path, live: Path) -> Path:
    """Whose mode and owner a restored file takes: the file it replaces, else the live database
    (restoring a copy of it elsewhere), else the folder it lands in."""
    if out.is_file():
        return out
    if live.is_file():
        return live
    return out.parent


def take_mode_and_owner(path: Path, like: Path) -> None:
    """Give ``path`` the permission bits and owner of ``like`` (a folder: its bits minus execute).

    A `restore --force` run as root must not turn an app's `0600 app:app` database into a
    `0644 root` one the app cannot write and others can read. Changing the owner needs root (or
    the same owner); without it the mode is still copied."""
    st = os.stat(like)
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        mode &= 0o666
    os.chmod(path, mode & 0o7777)
    if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(path, st.st_uid, st.st_gid)
        except PermissionError:
            pass
        os.chmod(path, mode & 0o7777)  # chown clears setuid/setgid bits


def move_aside(files: list[Path], keep: Path) -> list[tuple[Path, Path]]:
    moved: list[tuple[Path, Path]] = []
    main = files[0].name if files else ""
    try:
        for f in files:
            suffix = f.name[len(main) :] if f.name.startswith(main) else ""
            target = Path(f"{keep}{suffix}")
            os.rename(f, target)
            moved.append((f, target))
    except BaseException:
        move_back(moved)
        raise
    return moved


def move_back(moved: list[tuple[Path, Path]]) -> None:
    for original, target in reversed(moved):
        try:
            os.rename(target, original)
        except OSError:
            pass


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
