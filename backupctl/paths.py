"""Every path backupctl uses, resolved in one place: explicit override, then env var, then default."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

CACHE_ENV = "BACKUPCTL_CACHE_DIR"
STATE_ENV = "BACKUPCTL_STATE_DIR"
HOME_ENV = "BACKUPCTL_HOME"


def cache_dir(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Where downloaded Litestream binaries live (per version and platform)."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser().resolve()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "backupctl"
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "backupctl"


def state_home(environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Machine-wide state: locks shared by every project of this user."""
    env = os.environ if environ is None else environ
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV]).expanduser().resolve()
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "backupctl"


def project_state_dir(project_dir: Path, environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Per-project state (pidfile, logs, last verify): `.backupctl/` beside the .env.

    Two projects on one machine never share it, so `stop` in one cannot touch the other.
    """
    env = os.environ if environ is None else environ
    if env.get(STATE_ENV):
        # One folder for every project is a mistake that would let them read and stop each
        # other's supervisor: the first project to use it owns it (state.claim refuses others).
        from backupctl.state import claim

        folder = Path(env[STATE_ENV]).expanduser().resolve()
        claim(folder, project_dir)
        return folder
    return project_dir / ".backupctl"


def lock_path(kind: str, key: str, environ: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """A lock file for a database or replica destination, shared by all projects of this user."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]
    return state_home(environ) / "locks" / f"{kind}-{digest}.lock"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed, and make it 0700 when it is ours and not a link:
    it holds logs with litestream's raw output, pidfiles and state that other users need not read."""
    import stat

    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.lstat()
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return path
