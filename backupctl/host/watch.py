"""Being told when a folder's entries change, instead of looking again: Linux's inotify.

The supervisor keeps a reading of every local-folder replica (``checks.observations``). A reading
holds while the replica's folders are unchanged; without being told, the only way to know is to
stat them all again (``published_status.witness_holds``: 1,000 replicas, about 5,000 folders, 40 ms
each time on a small server). With a watch on each folder the kernel says which changed, and an
unchanged replica costs nothing at all.

``FolderWatch.watch_tree`` watches a folder and every folder below it, each before it is listed, so
a folder made while the tree is walked is seen either by the walk or as an event in its parent.
``changed`` drains the events that have come since (never waits) and names the keys whose folders
changed: an entry created, removed, renamed, or its times or mode changed (litestream sets an LTX
file's modification time after renaming it into place), or the folder itself removed or moved.
When the kernel's queue overflowed, ``changed`` returns None: every watched tree may have changed.

The kernel reports only what passes through it: on a network or shared file system (NFS, SMB,
sshfs and other FUSE mounts, a VM's or Docker Desktop's shared folder) files removed from the
other side would never be reported. So only a tree on a local file system (``LOCAL_FILE_SYSTEMS``,
from /proc/self/mountinfo, read when the watch opens) is watched. Elsewhere (macOS, another file
system, no watches left: ``fs.inotify.max_user_watches``) ``open`` or ``watch_tree`` says so, and
the caller goes on looking for itself. Of this module `status`'s path uses only ``walk_folders``
(the witness of a replica's folders); the watch is the supervisor's.
"""

from __future__ import annotations

import os
import struct
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (`status --json` imports walk_folders)
if TYPE_CHECKING:
    from collections.abc import Callable

IN_ATTRIB = 0x00000004
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000  # the watch is gone (its folder removed, or the file system unmounted)
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000  # the entry the event names is a folder
CHANGES = IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF
# An event after which a tree's watches may no longer be its folders: one made, removed or moved
# in it, or a watched folder itself gone or moved.
REGROWN = IN_ISDIR | IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
MASK = CHANGES | IN_ONLYDIR | IN_DONT_FOLLOW
EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then len bytes of name)
# File systems whose every change goes through this kernel, so that inotify hears of it.
# (Not overlay: a change made in one of its layers underneath is not reported on the overlay.)
LOCAL_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "zfs", "f2fs", "jfs",
                                "reiserfs", "bcachefs"})  # fmt: skip


def mounts(mountinfo: str = "/proc/self/mountinfo") -> list[tuple[str, str]]:
    """(mount point, file system type) of every mount, the deepest mount points first."""
    found = []
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                left, sep, right = line.partition(" - ")
                fields = left.split()
                if not sep or len(fields) < 5 or not right.split():
                    continue
                point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
                found.append((point, right.split()[0]))
    except OSError:
        return []
    return sorted(found, key=lambda m: len(m[0]), reverse=True)


def file_system_type(path: str, known: list[tuple[str, str]]) -> str | None:
    """The type of the file system ``path`` lies on, among ``known`` (``mounts``); None when unknown."""
    real = os.path.realpath(path)
    for point, kind in known:
        if real == point or real.startswith(point.rstrip("/") + "/"):
            return kind
    return None


def walk_folders(root: str, before: Callable[[str], object] | None = None) -> list[str]:
    """``root`` and every folder below it (symbolic links not followed), each as ``os.scandir`` spells
    it; ``before`` sees each folder before it is listed."""
    found: list[str] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        if before is not None:
            before(folder)
        found.append(folder)
        try:
            with os.scandir(folder) as entries:
                pending += [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    return found


class FolderWatch:
    """Watches on folders, each under a key (a database's); see the module docstring."""

    def __init__(self, libc: object, fd: int, known_mounts: list[tuple[str, str]]) -> None:
        self._libc, self.fd, self._mounts = libc, fd, known_mounts
        self._kinds: dict[str, str | None] = {}  # a replica's parent folder: its file system's type
        # The key of each watch descriptor, by its number. Linux hands the numbers out in turn from 1 (a
        # number freed is not handed out again soon) and gives a folder watched again its own number back,
        # so the list grows only with folders new to this watch.
        self._keys: list[str | None] = []
        # The trees watched whole whose folders no event has changed since (key: root): watching
        # one again needs no walk. A compaction wave (files made and removed in the level folders of
        # every replica) leaves them so.
        self._intact: dict[str, str] = {}

    @classmethod
    def open(cls) -> FolderWatch | None:
        """A new watch (an inotify instance, non-blocking, closed on exec), or None where there is none."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            # lazy: ctypes only in the supervisor (``host.memory`` has loaded it there already)
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            init, add = libc.inotify_init1, libc.inotify_add_watch
            add.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        except (OSError, AttributeError):
            return None
        fd = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        return cls(libc, fd, mounts())

    def watch_tree(self, key: str, root: str) -> tuple[bool, list[str] | None]:
        """Watch ``root`` and every folder below it (symbolic links not followed) under ``key``, each
        before it is listed: whether every one of them is watched now (False: ``root`` is missing or
        not on a local file system, or the watches ran out), and the folders the walk found (None
        when it did not walk). A tree watched whole before, in which no folder has been made, removed
        or moved since (as far as ``changed`` has read the events), is not walked again."""
        if self._intact.get(key) == root:
            return True, None  # still watched whole: no folder made, removed or moved in it since
        parent = os.path.dirname(root)
        if parent not in self._kinds:
            self._kinds[parent] = file_system_type(parent, self._mounts)
        kind = self._kinds[parent]
        if kind not in LOCAL_FILE_SYSTEMS:
            return False, None
        missed: list[str] = []

        def watch(folder: str) -> None:
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), MASK)  # type: ignore[attr-defined]
            if wd < 0:
                missed.append(folder)
                return
            if wd >= len(self._keys):
                self._keys += [None] * (wd + 1 - len(self._keys))
            self._keys[wd] = key

        walked = walk_folders(root, before=watch)
        if missed:
            self._intact.pop(key, None)
        else:
            self._intact[key] = root
        return not missed, walked

    def changed(self) -> set[str] | None:
        """The keys whose folders changed since the last call; None when the kernel's queue overflowed
        (events were lost: any tree may have changed)."""
        found: set[str] = set()
        overflow = False
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError:
                return None
            if not data:
                break
            at = 0
            while at + EVENT.size <= len(data):
                wd, mask, _cookie, length = EVENT.unpack_from(data, at)
                at += EVENT.size + length
                if mask & IN_Q_OVERFLOW:
                    overflow = True
                    continue
                key = self._keys[wd] if 0 <= wd < len(self._keys) else None
                if key is None:
                    continue
                found.add(key)
                if mask & REGROWN:
                    self._intact.pop(key, None)
                if mask & IN_IGNORED:
                    self._keys[wd] = None  # the kernel may hand this number out again
        if overflow:
            self._intact.clear()
            return None
        return found

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._keys.clear()
        self._intact.clear()
