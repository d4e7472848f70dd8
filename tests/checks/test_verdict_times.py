"""The times `status` shows, written and read without datetime (verdicts.epoch_iso, verdicts._epoch):
the same text and the same epoch as datetime gives, including the rounding of microseconds."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from backupctl.checks.verdicts import _epoch, epoch_iso


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def test_times_are_written_and_read_as_datetime_does() -> None:
    rng = random.Random(20261204)
    edges = [0.0, 1.0, 0.5, 951782400.0, 1796350602.9999995, 1796350602.0000005, 1796350602.5, 1e9 + 5e-7, 4102444800.123456]
    values = edges + [rng.uniform(0, 4e9) for _ in range(20000)] + [rng.randint(0, 4 * 10**9) + rng.randint(0, 999999) / 1e6
                                                                   for _ in range(20000)]  # fmt: skip
    for value in values:
        text = _iso(value)
        assert epoch_iso(value) == text, value
        assert _epoch(text) == datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp(), text
    assert epoch_iso(None) is None


def test_other_forms_of_a_time_are_still_read() -> None:
    for text in ("2026-12-04T02:17:35+00:00", "2026-12-04T03:17:35+01:00", "2026-12-04T02:17:35.5Z", "2026-12-04 02:17:35Z"):
        assert _epoch(text) == datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp(), text
