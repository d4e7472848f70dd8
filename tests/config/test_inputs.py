"""The key of the settings' inputs (``config.inputs``): it covers every variable and file loading the
settings reads, and it changes when any of them does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backupctl.config import inputs
from backupctl.config.settings import load_settings
from backupctl.envfile import find_env_file


class Recording(dict):
    """An environment that notes every variable asked for."""

    def __init__(self, base: dict[str, str]) -> None:
        super().__init__(base)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.asked.add(key)
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


ENV = {  # 0.3: the one series with a second replica, so its variables are read too
    "LITESTREAM_VERSION": "0.3.13",
    "BACKUP_DATABASES": "dbs/*.db,other/one.db",
    "BACKUP_REPLICA": "s3",
    "BACKUP_BUCKET": "b",
    "BACKUP_ENDPOINT": "http://127.0.0.1:9",
    "BACKUP_ACCESS_KEY_ID": "k",
    "BACKUP_SECRET_ACCESS_KEY": "s",
    "BACKUP_SECONDARY_REPLICA": "file",
    "BACKUP_SECONDARY_LOCAL_DIR": "second",
}


def _project(tmp_path: Path) -> Path:
    (tmp_path / "dbs").mkdir()
    (tmp_path / "other").mkdir()
    for name in ("dbs/a.db", "dbs/b.db", "other/one.db"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in ENV.items()))
    return tmp_path


def test_every_variable_loading_the_settings_reads_is_in_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(tmp_path)
    recording = Recording(dict(os.environ))
    monkeypatch.setattr(os, "environ", recording)
    load_settings(project / ".env", environ=recording, cwd=project)
    assert recording.asked, "the recording saw nothing: the test would prove nothing"
    outside = sorted(name for name in recording.asked if not (name.startswith(inputs.PREFIXES) or name in inputs.NAMES))
    assert outside == []


def test_the_key_changes_with_each_input_and_only_then(tmp_path: Path) -> None:
    project = _project(tmp_path)
    settings = load_settings(project / ".env", environ={}, cwd=project)
    paths = inputs.disk_inputs(settings)
    assert paths is not None and paths["globs"] == [str(project / "dbs" / "*.db")]
    assert paths["folders"] == [str(project / "dbs"), str(project / "other")]
    env_path = str(project / ".env")
    environ = {"HOME": "/nonexistent", "TERM": "dumb"}

    def key(env: dict[str, str] | None = None) -> str:
        return inputs.settings_key("salt", "v", env_path, environ if env is None else env, paths)

    first = key()
    assert key() == first
    assert key({**environ, "TERM": "xterm", "PWD": "/"}) == first  # nothing settings read
    (project / "dbs" / "a.db-wal").write_bytes(b"")  # SQLite's files beside a database: no other settings
    (project / "notes.txt").write_text("")
    assert key() == first
    assert key({**environ, "BACKUP_STALE_AFTER": "5m"}) != first
    assert inputs.settings_key("other salt", "v", env_path, environ, paths) != first
    (project / "dbs" / "c.db").write_bytes(b"")  # a new database in a glob's folder
    assert key() != first
    second = key()
    with open(project / ".env", "a") as fh:
        fh.write("BACKUP_STALE_AFTER=5m\n")
    assert key() != second


def test_the_key_holds_no_secret_in_the_clear(tmp_path: Path) -> None:
    project = _project(tmp_path)
    secret = "s3cr3t-" + "x" * 30
    empty: dict[str, list[str]] = {"files": [], "folders": [], "globs": []}
    digest = inputs.settings_key("salt", "v", str(project / ".env"), {"BACKUP_SECRET_ACCESS_KEY": secret}, empty)
    assert secret not in digest and len(digest) == 64


@pytest.mark.parametrize("named", [None, ".env", "sub/../.env", "link.env"])
def test_the_env_file_found_without_a_search_is_the_one_the_settings_read(tmp_path: Path, named: str | None) -> None:
    project = _project(tmp_path)
    (project / "sub").mkdir()
    (project / "link.env").symlink_to(project / ".env")
    direct = inputs.named_env_file(named, str(project))
    assert direct is not None
    assert direct == str(find_env_file(Path(named) if named else None, project))


def test_no_env_file_here_means_search(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("")
    below = tmp_path / "below"
    below.mkdir()
    assert inputs.named_env_file(None, str(below)) is None  # find_env_file searches upward: the full path
    (below / ".env").mkdir()  # a folder named .env (a virtualenv) is not the settings
    assert inputs.named_env_file(None, str(below)) is None
