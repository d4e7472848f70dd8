"""Files and folders backupctl owns: created private, never written through a link, refused when
another user could have tampered with them.

backupctl keeps state that decides what it signals and what it runs (process records, locks with
pids, the supervisor's private config, logs with litestream's raw output). Everything it writes
there goes through this module:

- :func:`secure_dir` creates a folder 0700 whatever the umask, and refuses one that is a symbolic
  link, is not a folder, belongs to another user, or that group or others can write (a folder
  only we can write cannot have a link planted in it);
- :func:`open_private` and :func:`open_lock` open a file with ``O_NOFOLLOW`` (a planted link fails
  instead of having its target truncated) and ``O_NONBLOCK`` (a planted FIFO cannot hang us), and
  then check what was opened: a regular file of ours;
- :func:`write_atomic` writes through a temporary file renamed over the target: a rename replaces
  a link itself, never its target, and readers see the old content or the new, never a mix.

Its JSON (:func:`json_loads`, :func:`json_dumps`) is the json package's C accelerator called
directly: importing json costs every `status --json` about 7 ms (its decoder imports re, and re
enum), more than reading the state files. It reads and writes exactly what the json package does;
anything the accelerator does not take (malformed text, bytes other than UTF-8, a Python without
it) goes to the json package itself, which answers or raises as ever.

What a second local user can and cannot do is written down in docs/security.md.
"""

from __future__ import annotations

import errno
import os
import stat

from backupctl.errors import UnsafePathError
from backupctl.filekinds import kind_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: 19 ms of every `status --json`
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

try:
    import _json
except ImportError:  # a Python without the accelerator: the json package alone
    _json = None  # type: ignore[assignment]

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Opening never follows a link at the last component, and never waits on a FIFO.
_OPEN_FLAGS = os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)

def _who(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def make_dirs(path: Path) -> None:
    """Create ``path`` and any missing parent, each 0700 whatever the umask (an existing one is left as is)."""
    from pathlib import Path  # lazy: `status --json` reads state files without pathlib

    missing: list[Path] = []
    current = Path(path)
    while not os.path.lexists(current):
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # another process made it at the same moment: secure_dir checks it
        os.chmod(folder, PRIVATE_DIR_MODE)  # a umask such as 0o777 would leave even us out


def secure_dir(path: Path, *, trust_root: bool = False, what: str = "folder") -> Path:
    """Create ``path`` 0700 if missing; refuse it unless it is a real folder of ours that only we can write.

    A folder of ours that others can merely read is narrowed to 0700. ``trust_root`` also accepts a
    folder root owns and others cannot write (a binary cache baked into an image by root).
    Raises :class:`UnsafePathError` naming the folder and the fix.
    """
    from pathlib import Path  # lazy: `status --json` reads state files without pathlib

    path = Path(path)
    make_dirs(path)
    st = os.lstat(path)
    me = os.geteuid()
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(
            f"the {what} {path} is a symbolic link; backupctl writes its state only into a real folder",
            f"remove the link (rm {path}); backupctl creates the folder itself",
        )
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"the {what} {path} is not a folder", f"move it away; backupctl creates the folder {path} itself")
    if st.st_uid != me and not (trust_root and st.st_uid == 0):
        raise UnsafePathError(
            f"the {what} {path} belongs to {_who(st.st_uid)}, not to {_who(me)} who runs backupctl",
            f"run backupctl as {_who(st.st_uid).split(' ')[0]}, or give the folder to this user (chown -R {me} {path})",
        )
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise UnsafePathError(
            f"the {what} {path} can be written by other users (mode {mode:o}): one could plant a link or a forged record in it",
            f"check what is inside, then make it private: chmod 700 {path}",
        )
    if st.st_uid == me and mode != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def _check_opened(fd: int, path: Path) -> None:
    """What ``fd`` names must be a regular file of ours; else it is closed and refused."""
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        what = kind_of(st.st_mode)
        problem = "is not a regular file" if what == "not a regular file" else f"is {what}, not a regular file"
    elif st.st_uid != os.geteuid():
        problem = f"belongs to {_who(st.st_uid)}"
    if problem:
        os.close(fd)
        raise UnsafePathError(
            f"{path} {problem}; backupctl will not write into it", f"move it away (backupctl recreates it): {path}"
        )


def _open_checked(path: Path, flags: int) -> int:
    try:
        fd = os.open(path, flags | _OPEN_FLAGS, PRIVATE_FILE_MODE)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) or os.path.islink(path):
            raise UnsafePathError(
                f"{path} is a symbolic link; backupctl never writes through one", f"remove the link (rm {path})"
            ) from None
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise UnsafePathError(f"{path} is not a regular file", f"move it away: {path}") from None
        raise
    _check_opened(fd, path)
    if flags & (os.O_WRONLY | os.O_RDWR):
        os.set_blocking(fd, True)
    return fd


def open_private(path: Path, *, append: bool = True, truncate: bool = False) -> int:
    """Open (create) a state or log file for writing, mode 0600, never through a link. Returns the fd."""
    flags = os.O_WRONLY | os.O_CREAT
    if append:
        flags |= os.O_APPEND
    if truncate:
        flags |= os.O_TRUNC
    fd = _open_checked(path, flags)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)  # an older file may have been created with a looser mode
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_lock(path: Path) -> int:
    """Open (create) a lock file for flock, 0600, never through a link. Returns the fd."""
    return _open_checked(path, os.O_RDWR | os.O_CREAT)


def read_private(path: Path, *, strict: bool = False) -> str | None:
    """A file of ours as text, not through a link; None when missing, unreadable or not ours.

    ``strict`` also wants mode 0600 (no group or other access at all): what a process record has."""
    try:
        fd = os.open(path, os.O_RDONLY | _OPEN_FLAGS)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        loose = stat.S_IMODE(st.st_mode) & (0o077 if strict else 0o022)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or loose:
            return None
        os.set_blocking(fd, True)
        with os.fdopen(fd, "r", encoding="utf-8", closefd=False) as handle:
            return handle.read()
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str, mode: int = PRIVATE_FILE_MODE) -> None:
    """Write a file so that readers see the old or the new content, never a mix.

    The rename replaces whatever is at ``path``, a planted link included, never a link's target.
    Missing parent folders are created 0700.
    """
    import tempfile  # lazy: `status --json` reads state files only

    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_json(path: Path, document: dict[str, Any]) -> None:
    """A JSON document, written atomically (``write_atomic``)."""
    import json  # lazy: indented, for people who open the file; the writers load json anyway

    write_atomic(path, json.dumps(document, indent=2))


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON document, or None when it is missing, unreadable or not a JSON object."""
    try:
        document = json_loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


class _Decoding:
    """What the accelerator's scanner reads its settings from: json.JSONDecoder's defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__


_SCAN = None


def json_loads(data: str | bytes) -> Any:
    """``json.loads(data)``: the same value, or the same ValueError."""
    global _SCAN
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        body = text.strip(" \t\n\r")  # json's whitespace, around the value
        if _SCAN is None:
            _SCAN = _json.make_scanner(_Decoding)  # type: ignore[union-attr]
        value, end = _SCAN(body, 0)
        if end == len(body):
            return value
    except Exception:  # noqa: BLE001, S110 - malformed, or not the accelerator's: json says what is wrong
        pass
    import json  # lazy: only what the accelerator did not take

    return json.loads(data)


def json_dumps(value: Any) -> str:
    """``json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)``: one line."""
    try:
        encode = _json.make_encoder({}, str, _json.encode_basestring, None, ":", ",", False, False, True)  # type: ignore[union-attr]
        return "".join(encode(value, 0))
    except Exception:  # noqa: BLE001, S110 - json raises the error itself, or answers where the accelerator could not
        pass
    import json  # lazy: only what the accelerator did not take

    return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)
