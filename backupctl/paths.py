"""Every path backupctl uses, resolved in one place: explicit override, then env var, then default.

Imported by `status --json`'s published answer (``state_folder``): pathlib is imported in the
functions that use it.
"""

from __future__ import annotations

import errno
import os
import sys

from backupctl.errors import ConfigError
from backupctl.owned import read_json, secure_dir, write_json

try:  # hashlib.sha256 itself, without hashlib loading OpenSSL: 3.4 MB resident in a supervisor that hashes short texts
    from _sha256 import sha256  # Python 3.11
except ImportError:
    try:
        from _sha2 import sha256  # Python 3.12 and later
    except ImportError:  # a Python built without them
        from hashlib import sha256

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (see cli/output.py)
if TYPE_CHECKING:
    from pathlib import Path

CACHE_ENV = "BACKUPCTL_CACHE_DIR"
OWNERFILE = "project.json"  # which project owns a shared state folder (claim)
STATE_ENV = "BACKUPCTL_STATE_DIR"
STATE_DIRNAME = ".backupctl"  # a project's state folder beside its .env, unless STATE_ENV names one
HOME_ENV = "BACKUPCTL_HOME"


def cache_dir(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Where downloaded Litestream binaries live (per version and platform)."""
    from pathlib import Path

    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser().resolve()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "backupctl"
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "backupctl"


def state_home(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Machine-wide state: locks shared by every project of this user."""
    from pathlib import Path

    env = os.environ if environ is None else environ
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser().resolve()
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "backupctl"


def project_state_dir(project_dir: Path, environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Per-project state (pidfile, logs, last verify): `.backupctl/` beside the .env.

    Two projects on one machine never share it, so `stop` in one cannot touch the other.
    """
    from pathlib import Path

    env = os.environ if environ is None else environ
    folder = _secured(Path(state_folder(str(project_dir), env)), "state folder")
    if env.get(STATE_ENV):
        # One folder for every project is a mistake that would let them read and stop each
        # other's supervisor: the first project to use it owns it (claim refuses others).
        claim(folder, project_dir)
    return folder


def state_folder(project_dir: str, environ: os._Environ[str] | dict[str, str]) -> str:
    """The name of a project's state folder: STATE_ENV's (resolved), else ``.backupctl/`` beside the
    .env. ``project_state_dir`` secures and claims it; `status --json`'s published answer only reads."""
    named = environ.get(STATE_ENV)
    return os.path.realpath(os.path.expanduser(named)) if named else os.path.join(project_dir, STATE_DIRNAME)


def _secured(folder: Path, what: str) -> Path:
    """``owned.secure_dir``, except that a folder that cannot be created (a read-only project) is
    returned as it is: a command that only reads finds nothing in it, one that writes says why."""
    try:
        return secure_dir(folder, what=what)
    except PermissionError:
        return folder
    except OSError as exc:
        if os.path.lexists(folder):
            raise
        if exc.errno in (errno.EROFS, errno.EACCES):
            return folder
        raise


def locks_dir(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Where the database and replica locks of this user live (0700, never a link)."""
    home = _secured(state_home(environ), "backupctl state folder")
    return _secured(home / "locks", "lock folder")


def records_dir() -> Path:
    """Where the process records of this user live (0700, never a link): see processes.py."""
    home = _secured(state_home(), "backupctl state folder")
    return _secured(home / "procs", "process-record folder")


def lock_path(kind: str, key: str, environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """A lock file for a database or replica destination, shared by all projects of this user."""
    digest = sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return locks_dir(environ) / f"{kind}-{digest}.lock"


def claim(state_dir: Path, project_dir: Path) -> None:
    """Make sure this state folder belongs to this project; the first project to use it owns it.

    Two projects given one ``BACKUPCTL_STATE_DIR`` would otherwise read (and `stop`) each other's
    supervisor. A folder whose owner no longer exists is taken over.
    """
    from pathlib import Path

    mine = str(project_dir.resolve())
    owner = read_json(state_dir / OWNERFILE)
    theirs = owner.get("project") if owner else None
    if theirs and theirs != mine and Path(theirs).is_dir():
        raise ConfigError(
            f"the state folder {state_dir} belongs to the project {theirs}, not to {mine}",
            "give each project its own state folder: unset BACKUPCTL_STATE_DIR (the default is .backupctl/ "
            "beside each .env), or set it to a different folder per project",
        )
    if theirs != mine:
        try:
            write_json(state_dir / OWNERFILE, {"project": mine})
        except OSError:
            pass  # a read-only state folder: nothing to protect it from either
