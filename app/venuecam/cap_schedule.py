"""The upload cap's schedule, `storage.max_upload_mbit` in the config: the windows of the
venue's day with a cap, read from the TOML value and written back to it (`venuecam config
--dump`). `storage.ratecap` holds every upload to the cap in force.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from venuecam.errors import ConfigError

MINUTES_PER_DAY = 24 * 60
# Caps outside this range are refused: below it a booking's video would take many hours to
# go up (a 60-minute booking at 4 Mbit/s needs 8 h at 0.5), above it no Pi's Ethernet (1 Gbit/s)
# could be held back by it: the number was most likely meant in kbit/s.
CAP_MIN_MBIT = 0.5
CAP_MAX_MBIT = 1000.0
_CAP_FORM = 'a number of Mbit/s (0: no cap) or a list of { mbit = N, from = "HH:MM", to = "HH:MM" }'


@dataclass(frozen=True)
class CapWindow:
    """A stretch of the venue's day with an upload cap (storage.max_upload_mbit).

    Minutes after venue-local midnight; `end` before `start` wraps past midnight. An all-day
    cap (`max_upload_mbit = 8`) is the one window (0, 1440)."""

    mbit: float
    start: int
    end: int

    @property
    def all_day(self) -> bool:
        return (self.start, self.end) == (0, MINUTES_PER_DAY)

    def as_table(self) -> dict[str, Any]:
        """As written in the TOML file: { mbit, from, to } (an all-day cap: 00:00 to 00:00)."""
        return {"mbit": self.mbit, "from": _hhmm(self.start), "to": _hhmm(self.end)}

    def covers(self, minute: float) -> bool:
        """Does the window hold this minute of the day (0 <= minute < 1440)?"""
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def parse_upload_cap(value: Any, source: str, key: str) -> tuple[CapWindow, ...]:
    """`storage.max_upload_mbit`: a number (all day) or a list of non-overlapping windows."""
    if _is_number(value):
        if value == 0:
            return ()
        return (CapWindow(_cap_mbit(value, source, key), 0, MINUTES_PER_DAY),)
    if not isinstance(value, list):
        raise ConfigError(f"{source}: {key}: expected {_CAP_FORM}, got {_shown(value)}")
    windows: list[CapWindow] = []
    owner: list[int | None] = [None] * MINUTES_PER_DAY  # which window holds each minute
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{source}: {where}: expected a table {{ mbit, from, to }}, got {_shown(item)}")
        unknown = sorted(set(item) - {"mbit", "from", "to"})
        missing = [k for k in ("mbit", "from", "to") if k not in item]
        if unknown:
            raise ConfigError(f"{source}: {where}.{unknown[0]}: unknown key (allowed: from, mbit, to)")
        if missing:
            raise ConfigError(f"{source}: {where}.{missing[0]}: required")
        if not _is_number(item["mbit"]):
            raise ConfigError(
                f"{source}: {where}.mbit: expected a number of Mbit/s, got {_shown(item['mbit'])}"
            )
        mbit = _cap_mbit(item["mbit"], source, f"{where}.mbit")
        start, end = (_cap_time(item[k], source, f"{where}.{k}") for k in ("from", "to"))
        if start == end:
            raise ConfigError(
                f"{source}: {where}: from and to are both {item['from']!r} (for a cap all day write "
                f"{key.rsplit('.', 1)[-1]} = {mbit:g})"
            )
        window = CapWindow(mbit, start, end)
        for minute in range(MINUTES_PER_DAY):
            if window.covers(minute):
                other = owner[minute]
                if other is not None:
                    raise ConfigError(
                        f"{source}: {where}: {_hhmm(start)}-{_hhmm(end)} overlaps {key}[{other}] "
                        f"{_hhmm(windows[other].start)}-{_hhmm(windows[other].end)} (at {_hhmm(minute)})"
                    )
                owner[minute] = i
        windows.append(window)
    return tuple(windows)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    """A bad value in an error message: its type, and the value itself when short."""
    text = repr(value)
    return f"{type(value).__name__} {text}" if len(text) <= 40 else type(value).__name__


def _cap_mbit(value: float, source: str, key: str) -> float:
    if not CAP_MIN_MBIT <= value <= CAP_MAX_MBIT:  # NaN fails too
        raise ConfigError(
            f"{source}: {key}: expected {CAP_MIN_MBIT:g} to {CAP_MAX_MBIT:g} Mbit/s"
            f"{' (or 0: no cap)' if '[' not in key else ''}, got {value!r}"
        )
    return float(value)


def _cap_time(value: Any, source: str, key: str) -> int:
    """ "17:30" -> 1050 minutes after midnight (a TOML local time, 17:30:00, is read too)."""
    if isinstance(value, datetime.time) and not (value.second or value.microsecond):
        return value.hour * 60 + value.minute
    if isinstance(value, str) and len(value) == 5 and value[2] == ":":
        h, m = value[:2], value[3:]
        if h.isdigit() and m.isdigit() and h.isascii() and m.isascii() and int(h) < 24 and int(m) < 60:
            return int(h) * 60 + int(m)
    raise ConfigError(
        f'{source}: {key}: expected a venue-local time "HH:MM" (00:00 to 23:59), got {_shown(value)}'
    )


def _hhmm(minute: int) -> str:
    return f"{minute // 60 % 24:02d}:{minute % 60:02d}"


def unparse_upload_cap(windows: tuple[CapWindow, ...]) -> Any:
    """The TOML value `parse_upload_cap` reads back as `windows`."""
    if not windows:
        return 0
    if len(windows) == 1 and windows[0].all_day:
        return windows[0].mbit
    return [w.as_table() for w in windows]
