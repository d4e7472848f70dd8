"""continuity.prove against a real Litestream 0.3.13: a replica one sync behind is not a broken one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backupctl.checks import continuity
from backupctl.litestream.listings import LISTED_TIME_SLACK
from backupctl.litestream.runner import Litestream
from tests.conftest import Project, wait_for
from tests.journeys.test_second_replica import segments
from tests.restore.test_restore import insert, replicating, settings_of

SYNC_SECONDS = 5  # long enough that the rows written right after a sync stay out of the replica for the first restore


@pytest.mark.slow
def test_a_03_replica_a_sync_behind_is_restored_again_not_called_broken(
    project: Project, litestream_bins: dict[str, Path], tmp_path: Path
) -> None:
    """0.3's coverage is judged from times listed to the second (two seconds of slack), so it can pass
    while the replica still lacks the last frames litestream read. The first restore then matches no
    committed state of the live database. That is not a broken chain: after a sync the replica holds
    them, and the check, restoring again, proves it whole. (Before the second restore this verdict was
    "broken", and the supervisor healed a sound replica with a new generation.)"""
    project.write_env(BACKUP_DATABASES="db/app.db", BACKUP_LOCAL_DIR=str(project.replica_dir),
                      BACKUP_SYNC_INTERVAL=f"{SYNC_SECONDS}s", LITESTREAM_VERSION="0.3.13")  # fmt: skip
    settings = settings_of(project)
    binary = litestream_bins["0.3.13"]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    with replicating(settings, binary):
        insert(project.db, 5)
        wait_for(lambda: len(segments(project.replica_dir)) > 0, 60, 0.2, "the first sync")
        before = len(segments(project.replica_dir))
        insert(project.db, 5, prefix="synced")
        wait_for(lambda: len(segments(project.replica_dir)) > before, 60, 0.1, "a sync of the new rows")
        insert(project.db, 3, prefix="late")  # the next sync is about SYNC_SECONDS away
        proof = continuity.prove(
            Litestream(binary, settings), settings.databases[0], tmp_path / "work", sleep=sleep, replica_covers=lambda: True
        )
    assert proof.verdict == continuity.WHOLE, proof
    # the first restore lacked the late rows (it matched nothing), the second came a sync later
    assert settings.sync_seconds + LISTED_TIME_SLACK in slept, (slept, proof)
