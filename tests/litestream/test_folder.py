"""A 0.5 local-folder replica read from its files (``litestream.folder``) lists exactly what
`litestream ltx -json` lists for it: the same files, sizes, times and order, odd names included; and
the windows and positions the supervisor and the start read from them are litestream's."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from backupctl.config.render import render
from backupctl.config.settings import load_settings
from backupctl.litestream import folder, listings, rows, v05
from backupctl.litestream.adapter import read_replicas, restorable_windows
from backupctl.litestream.runner import Litestream
from tests.conftest import make_db, wait_for


def _litestream_rows(ls: Litestream, db: Path, level: str) -> list[rows.LtxRow]:
    result = subprocess.run(ls.argv("ltx", "-level", level, "-json", str(db)), env=ls.environment.env,
                            capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    return rows.ltx_rows(result.stdout)


def test_a_folder_replica_reads_as_litestream_lists_it(tmp_path: Path, litestream_bins) -> None:
    proj = tmp_path / "app"
    db = make_db(proj / "app.db", rows=3)
    replica = tmp_path / "replica"
    (proj / ".env").write_text(f"BACKUP_DATABASES=app.db\nBACKUP_LOCAL_DIR={replica}\nBACKUP_SYNC_INTERVAL=1s\n")
    settings = load_settings(proj / ".env")
    config = proj / "litestream.yml"
    config.write_text(render(settings).text)
    ls = Litestream(litestream_bins["0.5.17"], settings, config)
    folder_path = str(settings.databases[0].replicas[0].path)
    assert folder.listed(folder_path) == [] == _litestream_rows(ls, db, "all")  # nothing yet: empty, not an error

    assert read_replicas(ls, list(settings.databases))[str(db)].empty
    proc = subprocess.Popen([str(ls.binary), "replicate", "-config", str(config)], env=ls.environment.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        for batch in range(3):
            con = sqlite3.connect(db)
            with con:
                con.execute("INSERT INTO items (body) VALUES (?)", (f"batch {batch}",))
            con.close()

            def agree() -> bool:
                # The window litestream's own listing makes (`ltx -level all`), the one the supervisor's looks
                # read (restorable_windows: the files, directly) and the position the start confirms by.
                theirs = v05.window_of(settings.databases[0], listings.ltx_files(settings, ls.binary, settings.databases[0],
                                                                               "all", config_path=config))  # fmt: skip
                ours = restorable_windows(settings, ls.binary, list(settings.databases), config_path=config)[str(db)]
                direct = read_replicas(ls, list(settings.databases))[str(db)]
                return not theirs.empty and ours == theirs and direct.txid == theirs.max_txid

            wait_for(agree, 30, what=f"the direct read to agree with litestream's listing ({batch})")
    finally:
        proc.terminate()
        proc.wait(30)

    level0 = Path(folder_path) / "ltx" / "0"
    real = sorted(level0.iterdir())[0]
    # Names litestream skips, and entries it lists although they are no plain LTX file.
    (level0 / "0000000000000009-0000000000000009.ltx.tmp").write_bytes(b"x")
    (level0 / "000000000000000A-000000000000000A.ltx").write_bytes(b"x")  # upper case: not its name
    (level0 / "+000000000000009-0000000000000009.ltx").write_bytes(b"x")
    (level0 / "0000000000000020-0000000000000021.ltx").mkdir()  # a folder with an LTX name: listed
    os.symlink(real, level0 / "0000000000000030-0000000000000031.ltx")  # a link: listed as the link
    (Path(folder_path) / "ltx" / "07").mkdir()  # not level 7's folder
    (Path(folder_path) / "ltx" / "07" / real.name).write_bytes(b"x")
    (Path(folder_path) / "ltx" / "10").mkdir()  # no level 10
    (Path(folder_path) / "ltx" / "10" / real.name).write_bytes(b"x")
    almost = 1_700_000_000_999_999_999  # ns: a time just under a whole second, listed as the second below it
    os.utime(real, ns=(almost, almost))

    for level in ("all", "0", "1", "9"):
        theirs = _litestream_rows(ls, db, level)
        ours = folder.listed(folder_path, folder.LEVELS if level == "all" else (int(level),))
        assert ours == theirs, level
    assert any(r[1] == 0x20 for r in folder.listed(folder_path) or [])  # the folder named like a file is there
    first = int(real.name[:16], 16)
    assert [r[4].timestamp() for r in folder.listed(folder_path) or [] if r[:2] == (0, first)] == [1_700_000_000]


def test_an_unreadable_level_folder_is_left_to_litestream(tmp_path: Path) -> None:
    """A level "folder" that is a file cannot be listed: None, so the caller asks litestream (which says why)."""
    (tmp_path / "ltx").mkdir()
    (tmp_path / "ltx" / "0").write_text("not a folder")
    assert folder.ltx_files(str(tmp_path)) is None
    assert folder.ltx_files(str(tmp_path / "missing")) == []
    assert folder.parse_name("0000000000000001-00000000000000ff.ltx") == (1, 255)
    assert folder.parse_name("0000000000000001-00000000000000FF.ltx") is None
    assert folder.parse_name("0000000000000001_0000000000000001.ltx") is None
