"""Pure parsing of the platform's booking pages (booking-api.md section 1). No I/O.

`parse_page` checks a page's envelope; `normalize_record` turns one raw record into a
`BookingRecord` or a `Rejection` with a reason a human can act on; `normalize_page` does
every record of a page and drops duplicate ids (the last one wins).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from venuecam.errors import BadInputError, TransientError
from venuecam.timeutil import booking_bounds

KNOWN_STATUSES = ("success", "cancelled", "pending", "expired")
UNKNOWN_STATUS = "unknown"
# Spellings some platforms use for a known status.
_STATUS_ALIASES = {"canceled": "cancelled"}
MAX_ID_LENGTH = 128

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^\d{2}:\d{2}(:\d{2})?$")


class BadPageError(BadInputError, TransientError):
    """A page that is not the JSON the contract promises (HTML, truncated, wrong shape).

    Bad input, and also transient: a captive portal or a proxy error page goes away, so
    the next sync run tries again.
    """


@dataclass(frozen=True)
class Page:
    """One page of `GET /api/v1/bookings`. Records are raw (not yet validated)."""

    records: list[Any]
    total: int | None
    offset: int | None = None
    limit: int | None = None


@dataclass(frozen=True)
class BookingRecord:
    """A validated booking, ready for the `bookings` table."""

    booking_id: str
    order_detail_id: int | None
    field_id: int
    field_name: str | None
    date: str
    start_time: str
    end_time: str
    status: str  # one of KNOWN_STATUSES or UNKNOWN_STATUS
    raw_status: str | None
    user_name: str | None
    user_phone: str | None
    raw_json: str
    start_ts: float
    end_ts: float

    def columns(self) -> dict[str, Any]:
        """The values stored in `Booking` columns."""
        d = dataclasses.asdict(self)
        d.pop("raw_status")
        return d


@dataclass(frozen=True)
class Rejection:
    """A record that was skipped: the id if it had a usable one, and why."""

    booking_id: str | None
    reason: str


@dataclass
class NormalizedPage:
    records: list[BookingRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # ids seen more than once in the page


# ---------------------------------------------------------------- the envelope


def parse_page(body: bytes, content_type: str) -> Page:
    """Check a page's envelope; raise BadPageError naming what is wrong."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    head = body[:512].lstrip().lower()
    if "html" in ctype or head.startswith((b"<!doctype", b"<html", b"<")):
        raise BadPageError(
            f"booking page is an HTML page, not JSON (content type {ctype or 'none'!r}; "
            "a captive portal or a proxy error page?)"
        )
    if not body.strip():
        raise BadPageError("booking page is empty (expected a JSON object)")
    try:
        doc = json.loads(body)
    except UnicodeDecodeError:
        raise BadPageError("booking page is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        text = body.strip()
        # Cut off mid-way: the error is at the very end, or the outer object never closes.
        truncated = e.pos >= len(text) - 1 or (text[:1] in (b"{", b"[") and text[-1:] not in (b"}", b"]"))
        what = "truncated JSON" if truncated else "not valid JSON"
        raise BadPageError(f"booking page is {what} ({len(body)} bytes): {e.msg} (char {e.pos})") from None
    if not isinstance(doc, dict):
        raise BadPageError(f"booking page: expected a JSON object at the top, got {_json_type(doc)}")
    if "data" not in doc:
        raise BadPageError("booking page: no 'data' list in the object")
    data = doc["data"]
    if data is None:
        data = []
    if not isinstance(data, list):
        raise BadPageError(f"booking page: 'data' should be a list, got {_json_type(data)}")
    meta = doc.get("meta")
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise BadPageError(f"booking page: 'meta' should be an object, got {_json_type(meta)}")
    total = _meta_int(meta, "total")
    return Page(records=data, total=total, offset=_meta_int(meta, "offset"), limit=_meta_int(meta, "limit"))


def _meta_int(meta: dict[str, Any], key: str) -> int | None:
    value = meta.get(key)
    if value is None:
        return None
    n = _as_int(value)
    if n is None or n < 0:
        raise BadPageError(f"booking page: meta.{key} should be a whole number >= 0, got {value!r}"[:200])
    return n


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    if isinstance(value, bool | dict | list | str) or value is None:
        return names[type(value)]
    return "a number"


# ---------------------------------------------------------------- one record


def _as_int(value: Any) -> int | None:
    """An integer, or a string holding one ("789"); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,18}\s*", value):
        return int(value)
    return None


def _as_text(value: Any) -> str | None:
    """Optional text fields: strings kept, numbers turned into text, anything else dropped."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return str(value)
    return None


def check_booking_id(value: Any) -> str:
    """The booking id as text, or BadInputError: it ends up in paths and object keys."""
    if isinstance(value, bool) or value is None:
        raise BadInputError(f"booking_id missing or not a string/number ({_json_type(value)})")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise BadInputError(f"booking_id should be a string or a whole number, got {_json_type(value)}")
    text = value.strip()
    if not text:
        raise BadInputError("booking_id is empty")
    if len(text) > MAX_ID_LENGTH:
        raise BadInputError(f"booking_id is {len(text)} characters long (at most {MAX_ID_LENGTH})")
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text):
        raise BadInputError("booking_id contains control characters")
    if "/" in text or "\\" in text:
        raise BadInputError("booking_id contains a path separator ('/' or '\\')")
    if ".." in text:
        raise BadInputError("booking_id contains '..'")
    return text


def printable_id(value: Any) -> str | None:
    """A raw id made safe to print in a log line (control characters escaped, cut short)."""
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = repr(str(value))[1:-1]
    return text[:80] + ("..." if len(text) > 80 else "")


def normalize_status(value: Any) -> tuple[str, str | None]:
    """(normalised status, the raw text). Unknown or missing values become 'unknown'."""
    raw = _as_text(value)
    if raw is None:
        return UNKNOWN_STATUS, None
    status = raw.strip().lower()
    status = _STATUS_ALIASES.get(status, status)
    return (status if status in KNOWN_STATUSES else UNKNOWN_STATUS), raw


def _check_date(value: Any) -> str:
    if not isinstance(value, str) or not _DATE_RE.match(value.strip()):
        raise BadInputError(f"date should be YYYY-MM-DD, got {value!r}"[:120])
    try:
        return dt.date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise BadInputError(f"date {value!r} is not a real calendar date"[:120]) from None


def _check_time(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _TIME_RE.match(value.strip()):
        raise BadInputError(f"{name} should be HH:MM:SS, got {value!r}"[:120])
    text = value.strip()
    if len(text) == 5:
        text += ":00"
    if text == "24:00:00":  # some platforms write the end of the day this way
        text = "00:00:00"
    try:
        return dt.time.fromisoformat(text).isoformat()
    except ValueError:
        raise BadInputError(f"{name} {value!r} is not a real time of day"[:120]) from None


def normalize_record(raw: Any, tz: ZoneInfo) -> BookingRecord | Rejection:
    """Validate and normalise one raw record. Never raises for bad data: returns a Rejection."""
    if not isinstance(raw, dict):
        return Rejection(None, f"record is {_json_type(raw)}, not an object")
    try:
        booking_id = check_booking_id(raw.get("booking_id"))
    except BadInputError as e:
        return Rejection(printable_id(raw.get("booking_id")), str(e))
    try:
        field_id = _as_int(raw.get("field_id"))
        if field_id is None:
            raise BadInputError(f"field_id should be a whole number, got {raw.get('field_id')!r}"[:120])
        order_detail_id = None
        if raw.get("order_detail_id") not in (None, ""):
            order_detail_id = _as_int(raw["order_detail_id"])
            if order_detail_id is None:
                raise BadInputError(
                    f"order_detail_id should be a whole number, got {raw['order_detail_id']!r}"[:120]
                )
        date = _check_date(raw.get("date"))
        start_time = _check_time("start_time", raw.get("start_time"))
        end_time = _check_time("end_time", raw.get("end_time"))
        if start_time == end_time:
            raise BadInputError(f"start_time and end_time are both {start_time} (a booking of no length)")
        status, raw_status = normalize_status(raw.get("status"))
        # An end at or before the start crosses midnight ("00:00:00" = midnight).
        start_ts, end_ts = booking_bounds(date, start_time, end_time, tz)
        raw_json = json.dumps(raw, ensure_ascii=False, sort_keys=True)
    except BadInputError as e:
        return Rejection(booking_id, str(e))
    except (TypeError, ValueError) as e:  # e.g. a value json cannot encode; should not happen
        return Rejection(booking_id, f"record cannot be stored: {e}")
    return BookingRecord(
        booking_id=booking_id,
        order_detail_id=order_detail_id,
        field_id=field_id,
        field_name=_as_text(raw.get("field_name")),
        date=date,
        start_time=start_time,
        end_time=end_time,
        status=status,
        raw_status=raw_status,
        user_name=_as_text(raw.get("user_name")),
        user_phone=_as_text(raw.get("user_phone")),
        raw_json=raw_json,
        start_ts=start_ts,
        end_ts=end_ts,
    )


def normalize_page(records: list[Any], tz: ZoneInfo) -> NormalizedPage:
    """Every record of a page; a booking id seen twice keeps its last record."""
    out = NormalizedPage()
    by_id: dict[str, BookingRecord] = {}
    for raw in records:
        result = normalize_record(raw, tz)
        if isinstance(result, Rejection):
            out.rejections.append(result)
            continue
        if result.booking_id in by_id:
            out.duplicates.append(result.booking_id)
            del by_id[result.booking_id]  # re-insert: the last one's position wins too
        by_id[result.booking_id] = result
    out.records = list(by_id.values())
    return out
