"""Friendly timestamps -> RFC 3339 UTC (pure functions: no binary needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backupctl.timeparse import TimestampError, parse_point_in_time, parse_rfc3339, to_rfc3339

NOW = datetime(2026, 11, 22, 3, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-15T12:00:00Z", "2024-01-15T12:00:00Z"),
        ("2024-01-15T12:00:00+02:00", "2024-01-15T10:00:00Z"),
        ("2024-01-15T12:00:00.250Z", "2024-01-15T12:00:00.250000Z"),
        ("2024-01-15 12:00", "2024-01-15T12:00:00Z"),  # UTC unless an offset is given
        ("2024-01-15 12:00:30", "2024-01-15T12:00:30Z"),
        ("2024-01-15T12:00", "2024-01-15T12:00:00Z"),
        ("2024-01-15 12:00 +02:00", "2024-01-15T10:00:00Z"),
        ("2024-01-15 12:00-0130", "2024-01-15T13:30:00Z"),
        ("2024-01-15 12:00 UTC", "2024-01-15T12:00:00Z"),
        ("2024-01-15", "2024-01-15T00:00:00Z"),
        ("30m ago", "2026-11-22T02:45:00Z"),
        ("2h ago", "2026-11-22T01:15:00Z"),
        ("1h30m ago", "2026-11-22T01:45:00Z"),
        ("90s ago", "2026-11-22T03:13:30Z"),
        ("2 hours ago", "2026-11-22T01:15:00Z"),
        ("5 minutes ago", "2026-11-22T03:10:00Z"),
        ("1d ago", "2026-11-21T03:15:00Z"),
        ("yesterday", "2026-11-21T03:15:00Z"),
        ("now", "2026-11-22T03:15:00Z"),
        ("@1705320000", "2024-01-15T12:00:00Z"),
        ("  2024-01-15   12:00  ", "2024-01-15T12:00:00Z"),
    ],
)
def test_forms(text: str, expected: str) -> None:
    assert to_rfc3339(parse_point_in_time(text, NOW)) == expected


@pytest.mark.parametrize("text", ["", "soon", "2024-13-45 12:00", "30 fortnights ago", "2024-01-15 25:00", "12:00"])
def test_rejects_with_a_message(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_point_in_time(text, NOW)


@pytest.mark.parametrize(
    "text", ["99999999999w ago", "0001-01-01 00:00 +01:00", "9999-12-31 23:00 -05:00", "@99999999999999999999"]
)
def test_out_of_range_is_a_timestamp_error_not_a_crash(text: str) -> None:
    with pytest.raises(TimestampError, match="out of the range|not a Unix time"):
        parse_point_in_time(text, NOW)


def test_does_not_depend_on_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    assert to_rfc3339(parse_point_in_time("2024-01-15 12:00", NOW)) == "2024-01-15T12:00:00Z"


def test_parse_rfc3339_litestream_forms() -> None:
    assert parse_rfc3339("2026-11-22T03:20:53Z") == datetime(2026, 11, 22, 3, 20, 53, tzinfo=UTC)
    assert parse_rfc3339("2026-11-22T03:20:53.123456789Z") - datetime(2026, 11, 22, 3, 20, 53, tzinfo=UTC) == timedelta(
        microseconds=123456
    )
