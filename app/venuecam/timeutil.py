"""Time helpers. Wall time is passed in (`now=`) wherever logic depends on it."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

UTC = dt.UTC


def utcnow() -> dt.datetime:
    """Naive UTC, the form every DateTimeField in the database holds."""
    return dt.datetime.now(UTC).replace(tzinfo=None)


def to_naive_utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def naive_utc_to_ts(value: dt.datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()


def parse_local_date(date: str) -> dt.date:
    return dt.date.fromisoformat(date)


def parse_local_time(value: str) -> dt.time:
    """Accepts HH:MM:SS or HH:MM."""
    return dt.time.fromisoformat(value)


def booking_bounds(date: str, start: str, end: str, tz: ZoneInfo) -> tuple[float, float]:
    """A booking's venue-local date and wall times as UTC epoch seconds.

    An end at or before the start (including "00:00:00") means the booking crosses midnight:
    the end falls on the next day. Each bound is localised on its own date, so a DST change
    between them is handled.
    """
    day = parse_local_date(date)
    t0, t1 = parse_local_time(start), parse_local_time(end)
    end_day = day + dt.timedelta(days=1) if t1 <= t0 else day
    start_dt = dt.datetime.combine(day, t0, tz)
    end_dt = dt.datetime.combine(end_day, t1, tz)
    return start_dt.timestamp(), end_dt.timestamp()


def local_date(ts: float, tz: ZoneInfo) -> str:
    return dt.datetime.fromtimestamp(ts, tz).date().isoformat()


def iso(value: dt.datetime | None) -> str | None:
    """A naive-UTC datetime as ISO 8601 with Z, for JSON."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite may hand back text for odd rows
        return value
    return value.replace(microsecond=0).isoformat() + "Z"
