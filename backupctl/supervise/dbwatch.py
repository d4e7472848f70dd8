"""New databases while running: the BACKUP_DATABASES globs matched again every so often.

A glob such as ``tenants/*.db`` (one database per customer) is expanded when the settings load,
so a database created after `start` would wait for a restart. The supervisor asks
``DatabaseWatch.new_databases`` on its idle tick; every ``interval`` seconds (15 s) it matches each
glob once (a folder listing, no litestream call; only names not seen before are stat'ed) and
finds the files that are new *and* already SQLite databases; ``widen`` then locks them (as the
start locks every database and replica) and renders the config with them, and the supervisor
restarts litestream with it (final sync first).

A file that matches but is not a database yet (empty while the application creates it, or not
SQLite at all) is said once in the log and looked at again at every scan; it never stops or
restarts anything. A glob whose folder part has no wildcard is matched again only when that
folder changed (its inode and modification time: a file made, renamed or removed in it) or while
such a file waits: at 1,000 databases the listing was a third of the idle supervisor's CPU.
Litestream 0.5's own folder watching (``dir:`` + ``pattern:``) is not used:
with it, `litestream status`, `ltx` and `restore` no longer know the databases by path
("database not found in config"), and 0.3 has nothing like it.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from backupctl.checks.preflight import DB_OK, read_database_file
from backupctl.config.render import render
from backupctl.config.settings import Settings, database_paths_now
from backupctl.errors import BackupctlError
from backupctl.host.locks import HeldLock, take_replication_locks
from backupctl.redact import scrub

WATCH_INTERVAL = 15.0  # seconds between two scans: a new database is picked up within ~15 s + a restart


@dataclass(frozen=True)
class Widening:
    """The settings with the new databases, their rendered litestream config, and their locks."""

    settings: Settings
    config_text: str
    added: list[Path]
    held: list[HeldLock]


@dataclass
class DatabaseWatch:
    globs: tuple[str, ...]  # absolute patterns (Settings.globs)
    clock: Callable[[], float]
    log: Callable[[str], None]
    interval: float = WATCH_INTERVAL
    next_at: float | None = field(default=None, init=False)
    _seen: set[str] = field(default_factory=set, init=False)  # glob results already known to be taken or refused
    _noted: dict[str, str] = field(default_factory=dict, init=False)  # path -> what it was when last said
    _folders: dict[str, tuple[int, int] | None] = field(default_factory=dict, init=False)  # pattern -> its folder when matched

    def new_databases(self, known: Iterable[Path]) -> list[Path]:
        """Files matching a glob that are SQLite databases not in ``known``; [] until a scan is due."""
        now = self.clock()
        if self.next_at is None:
            self.next_at = now + self.interval
        if now < self.next_at:
            return []
        self.next_at = now + self.interval

        known_paths: set[str] | None = None  # made only when a folder changed: 1,000 paths each scan otherwise
        found: list[Path] = []
        for pattern in self.globs:
            folder = _plain_folder(pattern)
            now_id = _folder_id(folder) if folder is not None else None
            if now_id is not None and self._folders.get(pattern) == now_id and not self._noted:
                continue  # nothing made, renamed or removed in its folder since it was matched
            self._folders[pattern] = now_id
            if known_paths is None:
                known_paths = {str(p) for p in known}
            for match in glob.glob(pattern):
                if match in known_paths or match in self._seen:
                    continue
                path = Path(match)
                if not path.is_file():
                    continue
                real = path.resolve()  # as settings name databases: one name for locks and records
                if str(real) in known_paths or real in found:
                    self._seen.add(match)
                    continue
                what = read_database_file(real)
                if what.kind == DB_OK:
                    found.append(real)
                    self._noted.pop(match, None)
                elif self._noted.get(match) != what.kind:
                    self._noted[match] = what.kind
                    self.log(
                        f"backupctl: {match} matches BACKUP_DATABASES but is not a SQLite database yet "
                        f"({what.kind.replace('-', ' ')}); it is replicated once it is one"
                    )
        return sorted(found)

    def refuse(self, paths: Iterable[Path]) -> None:
        """Never offer these again (another process replicates them, or their config cannot be rendered)."""
        self._seen.update(str(p) for p in paths)

    def widen(self, settings: Settings, owner_pid: int, lock: bool = True) -> Widening | None:
        """When a scan is due and finds new databases: ``settings`` with them, locked and rendered."""
        found = self.new_databases(db.path for db in settings.databases)
        if not found:
            return None
        names = ", ".join(str(p) for p in found)

        try:
            wider = settings.with_databases(found)
            # In the order a fresh load lists them: `status` compares the render inputs with its own.
            order = {path: i for i, path in enumerate(database_paths_now(settings))}
            ranked = sorted(wider.databases, key=lambda db: order.get(db.path, len(order)))
            wider = dataclasses.replace(wider, databases=tuple(ranked))
            text = render(wider).text
        except BackupctlError as exc:
            self.log(f"backupctl: cannot add {names}: {scrub(exc.message, settings)}; restart to retry")
            self.refuse(found)
            return None
        added = [db for db in wider.databases if db.path in set(found)]
        held = take_replication_locks(added, owner_pid) if lock else []
        if held is None:
            self.log(f"backupctl: not replicating {names}: another process replicates it or its replica")
            self.refuse(found)
            return None
        return Widening(wider, text, found, held)


def _plain_folder(pattern: str) -> str | None:
    """The folder of a glob whose folder part has no wildcard (``/srv/tenants/*.db``), else None."""
    folder = os.path.dirname(pattern)
    return None if glob.has_magic(folder) else folder


def _folder_id(folder: str) -> tuple[int, int] | None:
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)
