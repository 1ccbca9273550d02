"""Object keys and URLs: pure functions, plain values."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from venuecam.errors import BadInputError
from venuecam.storage.keys import Keys, object_keys, unique_id
from venuecam.storage.urls import PRESIGN_MAX_S, public_url


def test_keys_follow_the_contract() -> None:
    uid = unique_id("BK-123456", "CAMERA_A", "full")
    assert uid == "BK-123456-CAMERA_A-full"
    keys = object_keys("42", 1, "2025-01-23", "BK-123456", "CAMERA_A", uid)
    base = "42/1/2025-01-23/BK-123456/CAMERA_A/BK-123456-CAMERA_A-full"
    assert keys == Keys(mp4=f"{base}.mp4", preview=f"{base}_preview.mp4", thumb=f"{base}.jpg")


def test_unique_id_is_stable_and_typed() -> None:
    assert unique_id("BK-1", "CAM", "highlight") == unique_id("BK-1", "CAM", "highlight")
    with pytest.raises(BadInputError, match="video_type"):
        unique_id("BK-1", "CAM", "trailer")


def test_date_objects_and_numeric_strings_are_accepted() -> None:
    keys = object_keys(42, "7", dt.date(2025, 1, 2), "B1", "C", "B1-C-full")
    assert keys.mp4.startswith("42/7/2025-01-02/B1/C/")


GOOD = {
    "venue_id": "42",
    "field_id": 1,
    "date": "2025-01-23",
    "booking_id": "BK-1",
    "camera": "CAMERA_A",
    "unique_id": "BK-1-CAMERA_A-full",
}


@pytest.mark.parametrize(
    ("component", "value", "why"),
    [
        ("booking_id", "..", "'..'"),
        ("booking_id", "../etc", "path separator"),
        ("booking_id", "BK..1", "'..'"),
        ("booking_id", "BK/1", "path separator"),
        ("booking_id", "BK\\1", "path separator"),
        ("booking_id", "BK\n1", "control character"),
        ("booking_id", "BK\x001", "control character"),
        ("booking_id", "BK\x7f", "control character"),
        ("booking_id", "", "empty"),
        ("booking_id", "BK 1", "only letters"),
        ("booking_id", ".hidden", "only letters"),
        ("booking_id", "x" * 129, "longer than"),
        ("booking_id", None, "expected a string"),
        ("camera", "CAM/A", "path separator"),
        ("venue_id", "..", "'..'"),
        ("unique_id", "a/b", "path separator"),
        ("date", "2025-02-30", "calendar date"),
        ("date", "2025/01/23", "YYYY-MM-DD"),
        ("date", "../2025-01-23", "YYYY-MM-DD"),
        ("field_id", -1, "non-negative integer"),
        ("field_id", "1/2", "non-negative integer"),
        ("field_id", True, "non-negative integer"),
    ],
)
def test_unsafe_components_are_rejected_by_name(component: str, value: object, why: str) -> None:
    with pytest.raises(BadInputError, match=f"{component}.*{re.escape(why)}") as exc:
        object_keys(**{**GOOD, component: value})  # type: ignore[arg-type]
    assert "\n" not in str(exc.value)  # repr() escapes the control characters it names


def test_public_url_is_base_plus_key() -> None:
    key = "42/1/2025-01-23/BK-1/CAMERA_A/BK-1-CAMERA_A-full.mp4"
    assert public_url("https://videos.example.com/", key) == f"https://videos.example.com/{key}"
    assert public_url("https://cdn.example.com/v", key) == f"https://cdn.example.com/v/{key}"


def test_presign_lifetime_is_the_sigv4_maximum() -> None:
    assert PRESIGN_MAX_S == 604800
