"""host.memory: the supervisor hands the heap its closed SQLite connections leave back to the system."""

from __future__ import annotations

import platform
import sqlite3

import psutil
import pytest

from backupctl.host import memory


@pytest.mark.quick
@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_closed_connections_memory_goes_back_to_the_system(tmp_path):
    db = tmp_path / "app.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    me = psutil.Process()
    # what the WAL guard does at 1,000 databases: a connection with a read transaction on each
    readers = []
    for _ in range(1000):
        reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
        readers.append(reader)
    held = me.memory_info().rss
    for reader in readers:
        reader.execute("ROLLBACK")
        reader.close()
    readers.clear()
    closed = me.memory_info().rss
    assert memory.trim() is True
    trimmed = me.memory_info().rss
    # the connections' memory (about 120 KB each) stayed in the process once closed; trimming gave it back
    assert closed - trimmed > 64 * 1024 * 1024, (held, closed, trimmed)


@pytest.mark.quick
def test_trim_is_harmless_where_there_is_nothing_to_trim():
    first = memory.trim()
    assert memory.trim() is first
