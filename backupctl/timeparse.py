"""Points in time as people write them, turned into the RFC 3339 UTC litestream wants.

Accepted forms (case-insensitive; see docs/restore.md):

- RFC 3339: ``2024-01-15T12:00:00Z``, ``2024-01-15T12:00:00.5+02:00``
- a date and time, read as **UTC unless an offset is written**: ``2024-01-15 12:00``,
  ``2024-01-15 12:00:30``, ``2024-01-15T12:00``, ``2024-01-15 12:00 +02:00``, ``2024-01-15 12:00 UTC``
- a date alone (midnight UTC): ``2024-01-15``
- relative to now: ``30m ago``, ``2h ago``, ``1h30m ago``, ``90s ago``, ``3d ago``, ``1w ago``,
  ``5 minutes ago``, ``2 hours ago``, ``now``, ``yesterday`` (24 hours ago)
- Unix time: ``@1705320000``

Local time is never assumed: servers run in UTC and a restore must not depend on ``TZ``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

FORMS_HINT = (
    "write RFC 3339 (2024-01-15T12:00:00Z), a UTC date and time (2024-01-15 12:00, add +02:00 for another zone), "
    "or a relative time (30m ago, 2h ago, yesterday)"
)

_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}  # fmt: skip
_RELATIVE_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_RELATIVE = re.compile(r"^(?:(?:\d+(?:\.\d+)?)\s*[a-z]+\s*)+ago$")
_DATE_TIME = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[t ]+(?P<time>\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?))?"
    r"\s*(?P<zone>z|utc|gmt|[+-]\d{2}:?\d{2})?$"
)


class TimestampError(ValueError):
    """The text is not a point in time backupctl understands."""


def parse_point_in_time(text: str, now: datetime | None = None) -> datetime:
    """A timezone-aware UTC datetime for ``text``. Raises TimestampError with the accepted forms."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    try:
        return _parse(text, now)
    except TimestampError:
        raise
    except (OverflowError, ValueError):
        # Out of datetime's range: "99999999999w ago", "0001-01-01 00:00 +01:00" (year 0), ...
        raise TimestampError(f"{text!r} is out of the range of dates backupctl can handle") from None


def _parse(text: str, now: datetime) -> datetime:
    raw = text
    text = " ".join(text.strip().lower().split())
    if not text:
        raise TimestampError("an empty timestamp")
    if text == "now":
        return now
    if text == "yesterday":
        return now - timedelta(days=1)
    if text.startswith("@"):
        try:
            return datetime.fromtimestamp(float(text[1:]), UTC)
        except (ValueError, OverflowError, OSError):
            raise TimestampError(f"{raw!r} is not a Unix time") from None
    if _RELATIVE.fullmatch(text):
        seconds = 0.0
        for number, unit in _RELATIVE_PART.findall(text.removesuffix("ago")):
            if unit not in _UNITS:
                raise TimestampError(f"{raw!r}: unknown unit {unit!r} (use s, m, h, d or w)")
            seconds += float(number) * _UNITS[unit]
        return now - timedelta(seconds=seconds)
    match = _DATE_TIME.fullmatch(text)
    if not match:
        raise TimestampError(f"{raw!r} is not a timestamp")
    clock = match["time"] or "00:00"
    if clock.count(":") == 1:
        clock += ":00"
    try:
        naive = datetime.fromisoformat(f"{match['date']}T{clock}")
    except ValueError:
        raise TimestampError(f"{raw!r} is not a valid date and time") from None
    zone = match["zone"]
    if zone in (None, "z", "utc", "gmt"):
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:])
        if hours > 23 or minutes > 59:
            raise TimestampError(f"{raw!r} has an impossible UTC offset {zone}")
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return naive.replace(tzinfo=tz).astimezone(UTC)


def to_rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` (fractional seconds only when there are any), as litestream parses it."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """Parse litestream's own timestamps (``2026-11-22T03:20:53Z``, with or without fractions)."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    # Go may print nanoseconds; Python keeps microseconds.
    value = re.sub(r"(\.\d{6})\d+", r"\1", value)
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
