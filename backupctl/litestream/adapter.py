"""The adapter of the litestream series in use, and the readings every command asks of it.

``series_of(version)`` is the one place a version picks its adapter (``v05.V05``, ``v03.V03``);
the functions here read a project's databases and replicas through it. Nothing else in backupctl
branches on the series for positions, windows or WAL offsets.
"""

from __future__ import annotations

from pathlib import Path

from backupctl.config.settings import Database, Settings
from backupctl.errors import BackupctlError
from backupctl.litestream.listings import LISTING_TIMEOUT, listing_runner
from backupctl.litestream.positions import LocalPosition, ReplicaPosition, Window, replica_position
from backupctl.litestream.runner import Litestream
from backupctl.litestream.series import Series
from backupctl.litestream.v03 import V03
from backupctl.litestream.v05 import V05
from backupctl.versions import capabilities

SERIES: dict[str, Series] = {s.name: s for s in (V05(), V03())}


def series_of(version: str) -> Series:
    """The adapter of a pinned litestream version."""
    return SERIES[capabilities(version).series]


def local_positions(
    ls: Litestream, databases: list[Database], *, timeout: float = 30.0, shipped_only: bool = False
) -> dict[str, LocalPosition]:
    """The local position of each database, by str(path) (``Series.local_positions``)."""
    return series_of(ls.caps.version).local_positions(ls, databases, timeout=timeout, shipped_only=shipped_only)


def restorable_window(
    settings: Settings, binary_path: Path, db: Database, *, config_path: Path | None = None, timeout: float = LISTING_TIMEOUT
) -> Window:
    """How far back ``db`` can be restored, read from its replica(s) now.

    Restore caveats measured with the real binaries: listed times are truncated to the second, so
    ``restore -timestamp <oldest>`` can answer "no matching backup"; use ``oldest + 1s``. For the
    newest state restore without ``-timestamp`` (or 0.5 ``-txid``): 0.5 includes a file listed at
    ``newest`` only from ``newest + 1s``, and 0.3 refuses any timestamp past the generation's exact
    (sub-second) end.

    An empty replica gives a Window with ``oldest``/``newest`` None and ``empty`` True. An
    unreachable, refusing or hanging replica raises LitestreamError naming ``Replica.destination``
    and the cause: never an empty Window for an error.
    """
    ls = listing_runner(settings, binary_path, config_path)
    return series_of(settings.version).window(ls, db, timeout=timeout)


def restorable_windows(
    settings: Settings,
    binary_path: Path,
    databases: list[Database],
    *,
    config_path: Path | None = None,
    timeout: float = LISTING_TIMEOUT,
    parallel: int = 16,
) -> dict[str, Window | BackupctlError]:
    """``restorable_window`` for many databases at once, by str(path): a Window, or the error that
    database's replica gave."""
    ls = listing_runner(settings, binary_path, config_path)
    return series_of(settings.version).windows(ls, databases, timeout=timeout, parallel=parallel)


def read_replica(ls: Litestream, db: Database, *, timeout: float = 30.0) -> ReplicaPosition:
    """Read the replica's position now (raises LitestreamError when it cannot be read)."""
    return replica_position(restorable_window(ls.settings, ls.binary, db, config_path=ls.config_path, timeout=timeout))


def read_replicas(ls: Litestream, databases: list[Database], *, timeout: float = 30.0) -> dict[str, ReplicaPosition | Exception]:
    """``read_replica`` for many databases at once, by str(path): the position, or the error reading
    that replica gave."""
    windows = restorable_windows(ls.settings, ls.binary, databases, config_path=ls.config_path, timeout=timeout)
    return {path: (w if isinstance(w, Exception) else replica_position(w)) for path, w in windows.items()}
