"""host.watch against real folders: each kind of change litestream makes to a replica's folders is
reported under its key, a folder made after the watch is watched through its parent's event, and
nothing is reported for an unchanged tree."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from backupctl.host.watch import LOCAL_FILE_SYSTEMS, FolderWatch, file_system_type, mounts

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


@pytest.fixture
def watch(tmp_path: Path):
    found = FolderWatch.open()
    assert found is not None
    if file_system_type(str(tmp_path), mounts()) not in LOCAL_FILE_SYSTEMS:
        found.close()
        pytest.skip(f"{tmp_path} is not on a local file system: nothing there is watched")
    yield found
    found.close()


def _tree(root: Path) -> Path:
    (root / "ltx" / "0").mkdir(parents=True)
    (root / "ltx" / "9").mkdir()
    return root


def test_each_change_to_a_watched_tree_is_reported_under_its_key(tmp_path: Path, watch: FolderWatch) -> None:
    a, b = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert watch.watch_tree("db-a", str(a))[0] and watch.watch_tree("db-b", str(b))[0]
    assert watch.changed() == set()  # nothing happened: nothing to read again

    ltx = a / "ltx" / "0" / "0000000000000001-0000000000000001.ltx"
    tmp = ltx.with_name(ltx.name + ".tmp")
    tmp.write_bytes(b"LTX1")
    assert watch.changed() == {"db-a"}  # written next to its final name
    tmp.rename(ltx)
    assert watch.changed() == {"db-a"}  # renamed into place
    os.utime(ltx, (1_700_000_000, 1_700_000_000))
    assert watch.changed() == {"db-a"}  # its time set to the LTX header's (litestream does it after the rename)
    assert watch.changed() == set()

    ltx.unlink()  # retention, or a person
    (b / "ltx" / "9" / "0000000000000001-0000000000000003.ltx").write_bytes(b"LTX1")
    assert watch.changed() == {"db-a", "db-b"}


def test_a_folder_made_later_is_seen_and_a_removed_tree_says_so(tmp_path: Path, watch: FolderWatch) -> None:
    a = _tree(tmp_path / "a")
    assert watch.watch_tree("db-a", str(a))[0]
    (a / "ltx" / "2").mkdir()  # a new compaction level
    assert watch.changed() == {"db-a"}
    assert watch.watch_tree("db-a", str(a))[0]  # what the next reading does before it reads
    (a / "ltx" / "2" / "0000000000000001-0000000000000002.ltx").write_bytes(b"LTX1")
    assert watch.changed() == {"db-a"}  # the new level is watched too

    for level in sorted((a / "ltx").iterdir()):
        for file in level.iterdir():
            file.unlink()
        level.rmdir()
    (a / "ltx").rmdir()
    a.rmdir()
    assert watch.changed() == {"db-a"}
    assert not watch.watch_tree("db-a", str(a))[0]  # gone: nothing to watch, the caller looks for itself


def test_a_tree_is_walked_again_only_when_its_folders_changed(tmp_path: Path, watch: FolderWatch) -> None:
    """A compaction wave makes and removes files in every replica's level folders: each tree is read
    again, but walked again (to watch what is new) only when a folder was made, removed or moved."""
    a = _tree(tmp_path / "a")
    complete, walked = watch.watch_tree("db-a", str(a))
    assert complete and sorted(walked or []) == sorted(str(p) for p in (a, a / "ltx", a / "ltx" / "0", a / "ltx" / "9"))
    (a / "ltx" / "0" / "0000000000000001-0000000000000001.ltx").write_bytes(b"LTX1")
    (a / "ltx" / "0" / "0000000000000001-0000000000000001.ltx").unlink()
    assert watch.changed() == {"db-a"}
    assert watch.watch_tree("db-a", str(a)) == (True, None)  # files only: still watched whole, no walk
    assert not watch.watch_tree("db-a", str(tmp_path / "elsewhere"))[0]  # another root is walked (here: missing)

    (a / "ltx" / "2").mkdir()
    assert watch.changed() == {"db-a"}
    complete, walked = watch.watch_tree("db-a", str(a))
    assert complete and str(a / "ltx" / "2") in (walked or [])  # a new folder: walked, and watched
    (a / "ltx" / "2" / "0000000000000001-0000000000000002.ltx").write_bytes(b"LTX1")
    assert watch.changed() == {"db-a"}

    (a / "ltx" / "2" / "0000000000000001-0000000000000002.ltx").unlink()
    (a / "ltx" / "2").rmdir()
    assert watch.changed() == {"db-a"}
    complete, walked = watch.watch_tree("db-a", str(a))
    assert complete and walked is not None and str(a / "ltx" / "2") not in walked  # a folder removed: walked again


def test_a_tree_that_cannot_be_watched_says_so(tmp_path: Path, watch: FolderWatch) -> None:
    assert not watch.watch_tree("db", str(tmp_path / "missing"))[0]
    (tmp_path / "file").write_bytes(b"")
    assert not watch.watch_tree("db", str(tmp_path / "file"))[0]  # only folders are watched


def test_only_a_tree_on_a_local_file_system_is_watched(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "40 22 0:40 / /mnt/nas rw,relatime shared:20 - nfs4 nas:/backups rw,vers=4.2\n"
        "41 40 0:41 / /mnt/nas/local\\040disk rw shared:21 - xfs /dev/sdb1 rw\n"
        "42 22 0:42 / /home/me/shared rw - fuse.sshfs me@host:/x rw\n"
    )
    known = mounts(str(info))
    assert file_system_type("/mnt/nas/app-replica", known) == "nfs4"
    assert file_system_type("/mnt/nas/local disk/app-replica", known) == "xfs"  # the deepest mount point, unescaped
    assert file_system_type("/mnt/nasty/x", known) == "ext4"  # a prefix of the name is not a folder above it
    assert file_system_type("/home/me/shared/db", known) == "fuse.sshfs"

    a = _tree(tmp_path / "a")
    remote = FolderWatch.open()
    assert remote is not None
    try:
        # as if tmp_path were an NFS mount: files removed from elsewhere would never be reported
        remote._mounts, remote._kinds = [("/", "nfs4")], {}
        assert remote.watch_tree("db-a", str(a)) == (False, None)
        remote._mounts, remote._kinds = [("/", "ext4")], {}
        complete, walked = remote.watch_tree("db-a", str(a))
        assert complete and sorted(walked or []) == sorted(str(p) for p in (a, a / "ltx", a / "ltx" / "0", a / "ltx" / "9"))
    finally:
        remote.close()
