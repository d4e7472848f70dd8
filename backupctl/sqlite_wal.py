"""Reading a live SQLite database's ``-wal`` as SQLite itself defines it: its header, its frames and
the checksum chain that says which frames are valid. backupctl never writes it; ``continuity`` reads
it to prove a replica against the live pages, to tell whether a WAL was restarted while litestream
was stopped, and to note where the WAL guard was taken.

The format is SQLite's documented one (https://www.sqlite.org/fileformat2.html, "The WAL file").
SQLite takes no POSIX lock on the -wal itself, so opening and closing it never drops one. A frame
is valid when its salts match the WAL header's and the running checksum over every frame before it
(and its own header and page) matches: that is exactly the set of frames a reader would use. A
frame whose header holds a database size is a commit frame: the state after it is a state some
transaction committed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

WAL_HEADER = 32
FRAME_HEADER = 24
WAL_MAGIC_LE, WAL_MAGIC_BE = 0x377F0682, 0x377F0683
DB_HEADER_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Frame:
    index: int  # 1-based, as SQLite counts frames
    pgno: int
    commit_size: int  # the database size in pages after this frame's transaction; 0: not a commit frame
    offset: int  # where the page data starts in the -wal


@dataclass
class WalFile:
    """The valid frames of a ``-wal`` as read at one moment."""

    path: Path
    page_size: int = 0
    salt1: int = 0
    salt2: int = 0
    checkpoint_seq: int = 0
    frames: list[Frame] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.commits

    @property
    def commits(self) -> list[Frame]:
        return [f for f in self.frames if f.commit_size]

    @property
    def last_commit(self) -> Frame | None:
        for frame in reversed(self.frames):
            if frame.commit_size:
                return frame
        return None

    def frame_end(self, frame: Frame) -> int:
        """The byte offset just past ``frame`` in the -wal."""
        return frame.offset + self.page_size

    @property
    def committed_end(self) -> int:
        """The byte offset just past the last commit frame (the WAL header's end when there is none)."""
        last = self.last_commit
        return self.frame_end(last) if last is not None else WAL_HEADER


def _checksum(data: bytes, s0: int, s1: int, big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum over ``data`` (a multiple of 8 bytes), continuing from (s0, s1)."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    mask = 0xFFFFFFFF
    it = iter(words)
    for a in it:
        s0 = (s0 + a + s1) & mask
        s1 = (s1 + next(it) + s0) & mask
    return s0, s1


def read_wal(path: Path, *, verify_checksums: bool = True) -> WalFile:
    """The valid frames of the -wal at ``path`` (an absent or empty file has none)."""
    wal = WalFile(path)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except FileNotFoundError:
        return wal
    with fh:
        header = fh.read(WAL_HEADER)
        if len(header) < WAL_HEADER:
            return wal
        magic, _version, page_size, ckpt_seq, salt1, salt2, c1, c2 = struct.unpack(">8I", header)
        if magic not in (WAL_MAGIC_LE, WAL_MAGIC_BE) or page_size < 512 or page_size & (page_size - 1):
            return wal
        big = magic == WAL_MAGIC_BE
        if verify_checksums and _checksum(header[:24], 0, 0, big) != (c1, c2):
            return wal  # a header SQLite would not use: no valid frames
        wal.page_size, wal.salt1, wal.salt2, wal.checkpoint_seq = page_size, salt1, salt2, ckpt_seq
        s0, s1 = c1, c2
        index = 0
        size = FRAME_HEADER + page_size
        pos = WAL_HEADER
        while True:
            raw = fh.read(size)
            if len(raw) < size:
                break
            pgno, commit, fsalt1, fsalt2, f1, f2 = struct.unpack(">6I", raw[:FRAME_HEADER])
            if pgno == 0 or (fsalt1, fsalt2) != (salt1, salt2):
                break
            if verify_checksums:
                n0, n1 = _checksum(raw[:8], s0, s1, big)
                n0, n1 = _checksum(raw[FRAME_HEADER:], n0, n1, big)
                if (n0, n1) != (f1, f2):
                    break
                s0, s1 = n0, n1
            index += 1
            wal.frames.append(Frame(index, pgno, commit, pos + FRAME_HEADER))
            pos += size
    # Frames after the last commit frame belong to a transaction still being written (or rolled
    # back): no reader sees them.
    last = wal.last_commit
    wal.frames = wal.frames[: last.index] if last is not None else []
    return wal
