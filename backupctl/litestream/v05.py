"""Litestream 0.5: its outputs, parsed here and nowhere else.

- Positions are TXIDs. The local one is what ``litestream status -json`` calls ``local_txid`` (one
  call for every database); the replica's is the highest TXID of its LTX files. The replica covers
  the database when its TXID reaches the local one.
- How far litestream has read the live WAL: the header of its newest local LTX file (superfly/ltx:
  big-endian; WALOffset at 48, WALSize at 56, WALSalt1/2 at 64/68).
- The restorable window: one ``ltx -level all -json`` listing, or the LTX files a replica kind
  reads itself (a local folder). ``oldest`` is the oldest file that starts a restorable chain (a
  level-9 snapshot, or any file starting at txid 1), ``newest`` the newest file of any level;
  ``min_txid``/``max_txid`` span the files (``txid_hex(max_txid)`` is what ``restore -txid`` takes
  to get the newest state).
"""

from __future__ import annotations

import json
import os
import struct
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from backupctl.errors import BackupctlError, LitestreamError
from backupctl.litestream import folder, rows
from backupctl.litestream.listings import (
    LtxFile,
    checked_listing,
    destinations_of,
    ltx_files,
    parse_ltx,
    probe_replica,
    txid_hex,
)
from backupctl.litestream.positions import LocalPosition, ReplicaPosition, WalPosition, Window, meta_dir
from backupctl.litestream.runner import run_many
from backupctl.litestream.series import Series

if TYPE_CHECKING:
    from backupctl.config.settings import Database
    from backupctl.litestream.runner import Litestream

LTX_HEADER = 100


class V05(Series):
    name: ClassVar[str] = "0.5"
    keeps_ltx_chain: ClassVar[bool] = True
    exact_positions: ClassVar[bool] = True

    restore_flags: ClassVar[tuple[str, ...]] = ("-json",)
    # 0.5 compares the exact file times with the timestamp: only a point a whole second past the
    # newest listing is surely after it.
    after_newest: ClassVar[timedelta] = timedelta(seconds=1)

    def restored_position(self, output: str) -> dict[str, Any]:
        start = output.find("{")
        if start >= 0:
            try:
                doc = json.loads(output[start : output.rfind("}") + 1])
                return {"txid": doc.get("txid"), "replica": doc.get("replica")}
            except ValueError:
                pass
        return {}

    def local_positions(
        self, ls: Litestream, databases: list[Database], *, timeout: float, shipped_only: bool
    ) -> dict[str, LocalPosition]:
        # shipped_only changes nothing: the TXID is always litestream's own.
        result = ls.run("status", "-json", timeout=timeout)
        try:
            native = {str(Path(item["database"])): item for item in json.loads(result.stdout or "[]") or []}
        except (ValueError, KeyError, TypeError) as exc:
            raise LitestreamError(f"cannot parse `litestream status -json`: {exc}", "report it") from None
        found: dict[str, LocalPosition] = {}
        for db in databases:
            item = native.get(str(db.path)) or {}
            raw = item.get("local_txid")
            txid = int(raw, 16) if isinstance(raw, str) and raw.strip("-") else None
            found[str(db.path)] = LocalPosition(exists=db.path.exists(), txid=txid, status=item.get("status"))
        return found

    def local_key(self, local: LocalPosition) -> float | None:
        return float(local.txid) if local.txid is not None else None

    def replica_key(self, replica: ReplicaPosition, local: LocalPosition) -> float | None:
        if replica.empty:
            return None
        return float(replica.txid) if replica.txid is not None else None

    def covers_key(self, replica: float | None, local: float | None) -> bool:
        if local is None:
            return True
        if replica is None:
            return False
        return replica >= local

    def shown_local(self, local: LocalPosition) -> str | None:
        return txid_hex(local.txid)

    def shown_replica(self, window: Window) -> str | None:
        return txid_hex(window.max_txid)

    def wal_position(self, db_path: Path) -> WalPosition | None:
        best: tuple[int, Path] | None = None
        try:
            levels = [p for p in (meta_dir(db_path) / "ltx").iterdir() if p.is_dir()]
        except OSError:
            return None
        for level in levels:
            try:
                names = os.listdir(level)
            except OSError:
                continue
            for name in names:
                if name.endswith(".ltx") and "-" in name:
                    try:
                        max_txid = int(name[:-4].split("-")[1], 16)
                    except ValueError:
                        continue
                    if best is None or max_txid > best[0]:
                        best = (max_txid, level / name)
        return ltx_header(best[1]) if best is not None else None

    def window(self, ls: Litestream, db: Database, *, timeout: float) -> Window:
        return window_of(db, ltx_files(ls.settings, ls.binary, db, "all", config_path=ls.config_path, timeout=timeout))

    def windows(
        self, ls: Litestream, databases: list[Database], *, timeout: float, parallel: int
    ) -> dict[str, Window | BackupctlError]:
        """A local-folder replica is read from its files (``read_directly``), the others by listings
        ``parallel`` at a time (no threads)."""
        found: dict[str, Window | BackupctlError] = {}
        listable: list[Database] = []
        for db in databases:
            direct = read_directly(db)
            if direct is not None:
                found[str(db.path)] = window_of(db, direct)
                continue
            try:
                for replica in db.replicas:
                    probe_replica(replica)
                listable.append(db)
            except BackupctlError as exc:
                found[str(db.path)] = exc
        argvs = [ls.argv("ltx", "-level", "all", "-json", str(db.path)) for db in listable]
        answers = run_many(argvs, ls.environment.env, timeout=timeout, parallel=parallel, settings=ls.settings)
        for db, answer in zip(listable, answers, strict=True):
            try:
                if isinstance(answer, BackupctlError):
                    answer.message = f"cannot read replica {destinations_of(db)}: {answer.message}"
                    raise answer
                found[str(db.path)] = window_of(db, parse_ltx(db, checked_listing(ls.settings, db, answer)))
            except BackupctlError as exc:
                found[str(db.path)] = exc
        return found


def ltx_header(path: Path) -> WalPosition | None:
    """The WAL position an LTX file was cut from (None: not an LTX file, or a snapshot cut from the
    database file alone, which carries no WAL position)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(LTX_HEADER)
    except OSError:
        return None
    if len(head) < LTX_HEADER or head[:4] != b"LTX1":
        return None
    offset, size, salt1, salt2 = struct.unpack(">qqII", head[48:72])
    if offset <= 0 and size <= 0:
        return None
    return WalPosition(salt1, salt2, offset + size)


def window_of(db: Database, files: list[LtxFile]) -> Window:
    """The restorable window the LTX files of ``db``'s replica make."""
    destinations = tuple(r.destination for r in db.replicas)
    if not files:
        return Window(db.path, destinations, None, None, 0, None, 0)
    fields = rows.window_fields([(f.level, f.min_txid, f.max_txid, f.size, f.timestamp) for f in files])
    return Window(database=db.path, destinations=destinations, **fields)  # type: ignore[arg-type]


def read_directly(db: Database) -> list[LtxFile] | None:
    """The LTX files of the database's one replica read from its files, when it is a local folder
    (``litestream.folder``), as `litestream ltx -level all` lists them; None: ask litestream."""
    if len(db.replicas) != 1 or not db.replicas[0].spec.local_folder:
        return None
    found = folder.listed(str(db.replicas[0].path))
    return None if found is None else [LtxFile(*row) for row in found]
