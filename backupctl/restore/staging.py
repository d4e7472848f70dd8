"""A staged restore: ``litestream restore -o`` into a private temp folder, checked, always removed.

:func:`staged_restore` restores a database into ``.backupctl-restore-<pid>-<token>-*`` inside a
given folder (the output's own folder for `restore`, so the final rename stays on one
filesystem), with a timeout and through :data:`~backupctl.restore.stopping.stop_request`;
everything litestream leaves there (0.3's ``.tmp-wal``/``.tmp-shm`` included) goes with the
folder. The copy is checked (:mod:`backupctl.restore.integrity`) before it is yielded, and the
folder is removed in ``finally``, so a failure, a timeout or an interruption leaves no partial
file. A folder left by a process killed with SIGKILL is swept by the next staged restore there.
Restore, verify and drill all restore through it.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from backupctl.config.settings import Database, Settings
from backupctl.errors import LitestreamError, NoBackupError, NotFoundError
from backupctl.litestream.adapter import series_of
from backupctl.litestream.runner import Litestream
from backupctl.restore.integrity import check_database
from backupctl.restore.stopping import stop_request
from backupctl.restore.swap import create_folder

RESTORE_TIMEOUT = 1800.0  # seconds; a 200 MB database restores in ~3 s locally, leave room for slow links
TEMP_PREFIX = ".backupctl-restore-"
# How litestream says "there is nothing to restore" (0.5 and 0.3 wordings).
_NO_BACKUP = re.compile(
    r"no matching backup|no backups found|no snapshots available|no generations found|"
    r"no matching backups|cannot find snapshot|no snapshot|database not found in config",
    re.IGNORECASE,
)

Step = Callable[[str], None]


@dataclass
class Staged:
    """A checked restore waiting in a temp folder."""

    path: Path
    size: int
    position: dict[str, Any]
    tables: list[dict[str, Any]] | None  # name and rows of each table; None: not counted
    download_seconds: float


def litestream_for(settings: Settings, binary_path: Path) -> Litestream:
    """A Litestream bound to a config that follows the current settings (litestream.yml is never written)."""
    # lazy: the running supervisor loads it only on this branch
    from backupctl.host.config_in_use import config_for_reading

    return Litestream(binary_path, settings, config_for_reading(settings, prefer_running=False))


def sweep_stale_temp(folder: Path) -> list[Path]:
    """Remove restore temp folders whose process is gone (killed with SIGKILL, power loss)."""
    removed: list[Path] = []
    try:
        entries = list(folder.glob(f"{TEMP_PREFIX}*"))
    except OSError:
        return removed
    for entry in entries:
        match = re.match(re.escape(TEMP_PREFIX) + r"(\d+)-", entry.name)
        if not match or not entry.is_dir():
            continue
        import psutil  # only with a folder to judge: the usual restore finds none (psutil costs ~10 ms)

        if int(match.group(1)) != os.getpid() and not psutil.pid_exists(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextmanager
def staged_restore(
    ls: Litestream,
    db: Database,
    folder: Path,
    args: list[str],
    *,
    timeout: float = RESTORE_TIMEOUT,
    on_step: Step | None = None,
    count_rows: bool = False,
) -> Iterator[Staged]:
    """Restore ``db`` into a temp folder inside ``folder``, check it, yield it; always clean up.

    The integrity check always runs; ``count_rows`` also counts each table's rows (``Staged.tables``).

    The folder is named ``.backupctl-restore-<pid>-<token>-*``; cleanup removes every folder with
    that prefix, so it holds even if ``mkdtemp`` was cut short after creating it.
    """
    stop_request.check()
    create_folder(folder)
    sweep_stale_temp(folder)
    prefix = f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}-"
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=prefix, dir=folder))
        out = tmpdir / db.name
        series = series_of(ls.caps.version)
        argv = [*series.restore_flags, "-o", str(out), *args]
        if on_step:
            on_step(f"downloading {db.name} from {', '.join(r.destination for r in db.replicas)}")
        try:
            what = f"litestream restore of {db.name}"
            result = stop_request.run(ls, "restore", *argv, str(db.path), timeout=timeout, what=what)
        except LitestreamError as exc:
            text = " ".join(exc.details)
            if _NO_BACKUP.search(text):
                at = next((args[i + 1] for i, a in enumerate(args[:-1]) if a.startswith("-")), None)
                # Without a point asked for, nothing at all is there; with one, maybe only not that point.
                raise (NotFoundError if at else NoBackupError)(
                    f"the replica has no backup of {db.name}" + (f" matching {at}" if at else ""),
                    "ask for a point inside the restorable window (`backupctl restore --dry-run` shows it; "
                    "`backupctl ltx` lists the txids the replica holds)"
                    if at
                    else "check the replica settings (`backupctl env`) and that replication ran (`backupctl status`)",
                    details=exc.details,
                ) from None
            raise
        if on_step:
            on_step(f"checking the restored {db.name}")
        tables = check_database(out, count_rows=count_rows)
        stop_request.check()
        position = series.restored_position(result.stdout + "\n" + result.stderr)
        yield Staged(out, out.stat().st_size, position, tables, result.seconds)
    finally:
        _remove_temp(folder, prefix)


def _remove_temp(folder: Path, prefix: str) -> None:
    for entry in folder.glob(f"{glob_escape(prefix)}*"):
        shutil.rmtree(entry, ignore_errors=True)
        if entry.exists() or entry.is_symlink():  # something still wrote into it: once more
            shutil.rmtree(entry, ignore_errors=True)
