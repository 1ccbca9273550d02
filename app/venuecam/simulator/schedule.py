"""Generated bookings: `every=4m,length=3m,fields=1,2,start=now` (pure; time passed in).

Slot n (n = 0, 1, ...) starts at start + n*every on every listed field and lasts `length`.
Ids are `BK-<k>` with k = n * len(fields) + position of the field + 1, so they are stable
for one start time and never collide between fields.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from venuecam.errors import BadInputError

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'4m' -> 240.0; '90' and '90s' -> 90.0; '1h', '1d'."""
    m = _DURATION_RE.match(text.strip().lower())
    if not m:
        raise BadInputError(f"schedule: duration {text!r} should look like 90s, 4m, 1h")
    return float(m.group(1)) * _UNITS[m.group(2)]


@dataclass(frozen=True)
class Schedule:
    every_s: float
    length_s: float
    fields: tuple[int, ...]
    start: dt.datetime  # aware
    tz: ZoneInfo
    status: str = "success"

    def bookings_on(self, date: str) -> list[dict[str, Any]]:
        """The generated bookings whose venue-local start falls on `date` (YYYY-MM-DD)."""
        day = dt.date.fromisoformat(date)
        lo = dt.datetime.combine(day, dt.time(), self.tz).timestamp()
        hi = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), self.tz).timestamp()
        t0 = self.start.timestamp()
        first = max(0, math.ceil((lo - t0) / self.every_s))
        out: list[dict[str, Any]] = []
        n = first
        while t0 + n * self.every_s < hi:
            out.extend(self._slot(n))
            n += 1
        return out

    def _slot(self, n: int) -> list[dict[str, Any]]:
        begin = dt.datetime.fromtimestamp(self.start.timestamp() + n * self.every_s, self.tz)
        end = dt.datetime.fromtimestamp(begin.timestamp() + self.length_s, self.tz)
        out = []
        for i, field_id in enumerate(self.fields):
            k = n * len(self.fields) + i + 1
            out.append(
                {
                    "booking_id": f"BK-{k}",
                    "order_detail_id": k,
                    "field_id": field_id,
                    "field_name": f"Lapangan {chr(ord('A') + (field_id - 1) % 26)}",
                    "date": begin.date().isoformat(),
                    "start_time": begin.strftime("%H:%M:%S"),
                    "end_time": end.strftime("%H:%M:%S"),
                    "status": self.status,
                    "user_name": f"Player {k}",
                    "user_phone": f"0812{k:08d}",
                }
            )
        return out


def parse_schedule(spec: str, tz: ZoneInfo, now: dt.datetime) -> Schedule:
    """Parse `every=4m,length=3m,fields=1,2,start=now`; `now` is aware. BadInputError if wrong.

    start: `now`, `now+30s`, or an ISO time (naive = venue-local).
    """
    values: dict[str, list[str]] = {}
    key = ""
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "=" in part:
            key, _, value = part.partition("=")
            key = key.strip().lower()
            values.setdefault(key, []).append(value.strip())
        elif key == "fields":  # fields=1,2,3 continues after the comma
            values[key].append(part)
        else:
            raise BadInputError(f"schedule: {part!r} is not key=value")
    unknown = set(values) - {"every", "length", "fields", "start", "status"}
    if unknown:
        raise BadInputError(
            f"schedule: unknown keys {sorted(unknown)} (allowed: every, length, fields, start, status)"
        )
    every = parse_duration(_one(values, "every", "4m"))
    length = parse_duration(_one(values, "length", "3m"))
    if every <= 0 or length <= 0:
        raise BadInputError("schedule: every and length must be positive")
    try:
        fields = tuple(int(f) for f in values.get("fields", ["1"]))
    except ValueError:
        raise BadInputError(f"schedule: fields should be numbers, got {values['fields']}") from None
    if not fields:
        raise BadInputError("schedule: fields is empty")
    return Schedule(every, length, fields, _parse_start(_one(values, "start", "now"), tz, now), tz,
                    _one(values, "status", "success"))  # fmt: skip


def _one(values: dict[str, list[str]], key: str, default: str) -> str:
    got = values.get(key, [default])
    if len(got) != 1:
        raise BadInputError(f"schedule: {key} given {len(got)} times")
    return got[0]


def _parse_start(text: str, tz: ZoneInfo, now: dt.datetime) -> dt.datetime:
    now = now.astimezone(tz).replace(microsecond=0)
    if text == "now":
        return now
    if text.startswith("now+"):
        return now + dt.timedelta(seconds=parse_duration(text[4:]))
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadInputError(f"schedule: start {text!r} should be now, now+30s or an ISO time") from None
    return when.replace(tzinfo=tz) if when.tzinfo is None else when
