"""The supervisor's periodic second look at replicas whose databases sat idle
(``Observer._revalidate``), against real folders: a local folder is re-read only when its witness
no longer holds, a remote replica (no witness) one per round, the longest unchecked first."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from backupctl.checks import observations
from backupctl.checks.published_status import folder_witness


def _observer(tmp_path: Path, entries: dict[str, dict]) -> observations.Observer:
    dbs = [SimpleNamespace(path=Path(key)) for key in entries]
    litestream = SimpleNamespace(caps=SimpleNamespace(version="0.5.17"))
    observer = observations.Observer(litestream, dbs, tmp_path / "state", 1.0)  # type: ignore[arg-type]
    observer.entries = entries
    return observer


def test_revalidation_reads_again_only_what_may_have_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(observations, "WITNESS_BATCH", 2)
    folders = {name: tmp_path / "replicas" / name for name in ("a", "b", "c")}
    for folder in folders.values():
        (folder / "ltx" / "0").mkdir(parents=True)
    entries = {
        "/db/r1": {"read_at": 0.5},
        "/db/r2": {"read_at": 0.7},
        **{f"/db/{name}": {"read_at": 1.0 + i, "witness": folder_witness(str(folder))}
           for i, (name, folder) in enumerate(folders.items())},
    }
    (folders["b"] / "ltx" / "0" / "0000000000000002-0000000000000002.ltx").write_bytes(b"x")  # b's folder changed
    observer = _observer(tmp_path, entries)
    unchanged = list(observer.databases)

    chosen = [str(db.path) for db in observer._revalidate(unchanged, now=100.0)]
    # one remote replica (the oldest), a's witness holds (not read), b's does not (read again); c waits its turn
    assert chosen == ["/db/r1", "/db/b"]
    assert observer.vouched == {"/db/a": 100.0}

    # the next round: r1 and b are still unread in this test (their reading would move read_at), a was vouched for
    chosen = [str(db.path) for db in observer._revalidate(unchanged, now=160.0)]
    assert chosen == ["/db/r1", "/db/b"]
    entries["/db/r1"]["read_at"] = entries["/db/b"]["read_at"] = 150.0  # as a reading of both would leave them,
    entries["/db/b"]["witness"] = folder_witness(str(folders["b"]))  # with b's witness taken anew
    chosen = [str(db.path) for db in observer._revalidate(unchanged, now=220.0)]
    assert chosen == ["/db/r2"]  # a's and b's witnesses hold: nothing local to read
    assert observer.vouched == {"/db/a": 220.0, "/db/b": 220.0, "/db/c": 160.0}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_a_watched_folder_is_never_polled_and_read_again_once_told(tmp_path: Path) -> None:
    folders = {name: tmp_path / "replicas" / name for name in ("a", "b")}
    for folder in folders.values():
        (folder / "ltx" / "0").mkdir(parents=True)
    entries = {"/db/r1": {"read_at": 0.5},
               **{f"/db/{name}": {"read_at": 1.0, "witness": folder_witness(str(folder))} for name, folder in folders.items()}}
    observer = _observer(tmp_path, entries)
    from backupctl.host.watch import LOCAL_FILE_SYSTEMS, file_system_type, mounts

    if file_system_type(str(tmp_path), mounts()) not in LOCAL_FILE_SYSTEMS:
        pytest.skip(f"{tmp_path} is not on a local file system: nothing there is watched")
    try:
        for name, folder in folders.items():
            complete, walked = observer._watch_tree(f"/db/{name}", str(folder))
            assert complete and folder_witness(str(folder), walked) == folder_witness(str(folder))  # one walk does for both
            observer.watched.add(f"/db/{name}")
        unchanged = list(observer.databases)
        assert observer._moved_folders() == set()

        (folders["b"] / "ltx" / "0" / "0000000000000002-0000000000000002.ltx").write_bytes(b"x")
        # no witness is checked for a watched folder, changed or not: the remote replica alone is read again
        assert [str(db.path) for db in observer._revalidate(unchanged, now=100.0)] == ["/db/r1"]
        assert observer.vouched == {}
        # the look is told which folder changed: b is read again (``look``'s recheck) and not watched until then
        assert observer._moved_folders() == {"/db/b"}
        assert observer.watched == {"/db/a"}
        assert observer._moved_folders() == set()
    finally:
        observer.discard()
    assert observer.watch is None and not observer.watched
