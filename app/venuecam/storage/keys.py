"""Object keys: `<venue_id>/<field_id>/<date>/<booking_id>/<camera>/<unique_id>.mp4` and friends.

Every component comes from outside (config, platform, database) and is validated, never
escaped: a key must be predictable from the same inputs on every retry, so a component that
is unsafe in a path or URL is rejected with `BadInputError` naming the component.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from venuecam.errors import BadInputError

VIDEO_TYPES = ("full", "highlight")
MAX_COMPONENT_LEN = 128
# Letters, digits, '_', '-', '.'; starts with a letter or digit (no hidden or '..' names).
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Keys:
    mp4: str
    preview: str
    thumb: str


def check_component(name: str, value: object) -> str:
    """Return `value` as a key component, or raise BadInputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise BadInputError(f"object key: {name}: expected a string, got {type(value).__name__}")
    text = str(value)
    if not text:
        raise BadInputError(f"object key: {name}: empty")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise BadInputError(f"object key: {name}: contains a control character: {text!r}")
    if "/" in text or "\\" in text:
        raise BadInputError(f"object key: {name}: contains a path separator: {text!r}")
    if ".." in text:
        raise BadInputError(f"object key: {name}: contains '..': {text!r}")
    if len(text) > MAX_COMPONENT_LEN:
        raise BadInputError(f"object key: {name}: longer than {MAX_COMPONENT_LEN} characters")
    if not _SAFE.fullmatch(text):
        raise BadInputError(
            f"object key: {name}: only letters, digits, '.', '_' and '-' are allowed "
            f"(starting with a letter or digit), got {text!r}"
        )
    return text


def check_date(value: object) -> str:
    if isinstance(value, dt.datetime):
        raise BadInputError("object key: date: expected a date, got a datetime")
    if isinstance(value, dt.date):
        return value.isoformat()
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise BadInputError(f"object key: date: expected YYYY-MM-DD, got {value!r}")
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        raise BadInputError(f"object key: date: not a calendar date: {value!r}") from None
    return value


def check_field_id(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise BadInputError(f"object key: field_id: expected a non-negative integer, got {value!r}")
    return str(int(value))


def unique_id(booking_id: str, camera: str, video_type: str) -> str:
    """The stable id of one booking x camera x video type, e.g. `BK-123456-CAMERA_A-full`."""
    if video_type not in VIDEO_TYPES:
        raise BadInputError(
            f"object key: video_type: expected one of {', '.join(VIDEO_TYPES)}, got {video_type!r}"
        )
    return f"{check_component('booking_id', booking_id)}-{check_component('camera', camera)}-{video_type}"


def object_keys(
    venue_id: str | int,
    field_id: int | str,
    date: str | dt.date,
    booking_id: str,
    camera: str,
    unique_id: str,
) -> Keys:
    base = "/".join(
        (
            check_component("venue_id", venue_id),
            check_field_id(field_id),
            check_date(date),
            check_component("booking_id", booking_id),
            check_component("camera", camera),
            check_component("unique_id", unique_id),
        )
    )
    return Keys(mp4=f"{base}.mp4", preview=f"{base}_preview.mp4", thumb=f"{base}.jpg")
