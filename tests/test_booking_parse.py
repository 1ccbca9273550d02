"""The pure part: page envelopes and records as the platform may really send them."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest

from fixtures_platform import booking
from venuecam.booking.parse import (
    BadPageError,
    BookingRecord,
    Rejection,
    check_booking_id,
    normalize_page,
    normalize_record,
    parse_page,
)
from venuecam.errors import BadInputError, TransientError

JKT = ZoneInfo("Asia/Jakarta")
JSON = "application/json"


def page(doc: object) -> bytes:
    return json.dumps(doc).encode()


def test_a_good_page_gives_records_and_total() -> None:
    p = parse_page(page({"data": [booking()], "meta": {"total": 137, "offset": 0, "limit": 100}}), JSON)
    assert p.total == 137 and p.offset == 0 and p.limit == 100
    assert p.records == [booking()]


def test_total_as_a_string_is_accepted() -> None:
    assert parse_page(page({"data": [], "meta": {"total": "5"}}), JSON).total == 5


@pytest.mark.parametrize(
    ("body", "ctype", "words"),
    [
        (b"<!DOCTYPE html><html>Login</html>", "text/html", "HTML page"),
        (b"<html><body>502 Bad Gateway</body></html>", "application/json", "HTML page"),
        (page({"data": [booking()], "meta": {"total": 1}})[:40], JSON, "truncated JSON"),
        (b"", JSON, "empty"),
        (b"{nonsense", JSON, "JSON"),
        (page([booking()]), JSON, "expected a JSON object at the top, got a list"),
        (page("hello"), JSON, "got a string"),
        (page({"bookings": []}), JSON, "no 'data' list"),
        (page({"data": {"booking_id": "BK-1"}}), JSON, "'data' should be a list, got an object"),
        (page({"data": [], "meta": [1]}), JSON, "'meta' should be an object"),
        (page({"data": [], "meta": {"total": -3}}), JSON, "meta.total"),
        (page({"data": [], "meta": {"total": "many"}}), JSON, "meta.total"),
    ],
)
def test_bad_pages_are_rejected_with_a_clear_message(body: bytes, ctype: str, words: str) -> None:
    with pytest.raises(BadPageError) as err:
        parse_page(body, ctype)
    assert words in str(err.value)
    # Both bad input and worth retrying (a captive portal goes away).
    assert isinstance(err.value, BadInputError) and isinstance(err.value, TransientError)


def test_a_clean_record_is_normalised() -> None:
    rec = normalize_record(booking(), JKT)
    assert isinstance(rec, BookingRecord)
    assert rec.booking_id == "BK-1" and rec.field_id == 1 and rec.order_detail_id == 789
    assert rec.status == "success"
    assert rec.start_ts == dt.datetime(2025, 1, 23, 3, 0, tzinfo=dt.UTC).timestamp()
    assert rec.end_ts - rec.start_ts == 7200
    assert json.loads(rec.raw_json) == booking()


def test_numbers_as_strings_are_accepted() -> None:
    rec = normalize_record(booking(123456, order_detail_id="789", field_id="2"), JKT)
    assert isinstance(rec, BookingRecord)
    assert (rec.booking_id, rec.order_detail_id, rec.field_id) == ("123456", 789, 2)


@pytest.mark.parametrize(("raw", "want"), [("SUCCESS", "success"), ("Cancelled", "cancelled"),
                                           ("canceled", "cancelled"), (" Pending ", "pending")])  # fmt: skip
def test_status_in_any_letter_case(raw: str, want: str) -> None:
    rec = normalize_record(booking(status=raw), JKT)
    assert isinstance(rec, BookingRecord) and rec.status == want


@pytest.mark.parametrize("raw", ["refunded", "", None, 7])
def test_unknown_or_missing_status_is_kept_as_unknown(raw: object) -> None:
    rec = normalize_record(booking(status=raw), JKT)
    assert isinstance(rec, BookingRecord) and rec.status == "unknown"


def test_a_booking_crossing_midnight_ends_the_next_day() -> None:
    rec = normalize_record(booking(start_time="23:00:00", end_time="01:00:00"), JKT)
    assert isinstance(rec, BookingRecord)
    assert rec.end_ts - rec.start_ts == 2 * 3600
    assert rec.date == "2025-01-23"


def test_an_end_at_midnight_is_the_end_of_the_day() -> None:
    for end in ("00:00:00", "24:00:00"):
        rec = normalize_record(booking(start_time="22:00:00", end_time=end), JKT)
        assert isinstance(rec, BookingRecord)
        assert rec.end_ts - rec.start_ts == 2 * 3600
        assert rec.end_time == "00:00:00"


def test_hh_mm_times_are_completed() -> None:
    rec = normalize_record(booking(start_time="10:00", end_time="11:30"), JKT)
    assert isinstance(rec, BookingRecord) and (rec.start_time, rec.end_time) == ("10:00:00", "11:30:00")


@pytest.mark.parametrize(
    ("bad_id", "words"),
    [
        ("BK/1", "path separator"),
        ("../../etc", "path separator"),
        ("BK..1", "'..'"),
        ("BK\\1", "path separator"),
        ("BK\n1", "control characters"),
        ("BK\x001", "control characters"),
        ("", "empty"),
        ("   ", "empty"),
        ("B" * 129, "129 characters"),
        (None, "missing"),
        (True, "missing"),
        (1.5, "string or a whole number"),
        ({"id": 1}, "string or a whole number"),
    ],
)
def test_unsafe_or_missing_ids_are_rejected(bad_id: object, words: str) -> None:
    rec = normalize_record(booking(bad_id), JKT)
    assert isinstance(rec, Rejection)
    assert words in rec.reason
    with pytest.raises(BadInputError):
        check_booking_id(bad_id)


def test_the_rejection_names_the_id_safely() -> None:
    rec = normalize_record(booking("BK\n1"), JKT)
    assert isinstance(rec, Rejection) and rec.booking_id == "BK\\n1"


@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"date": "23-01-2025"}, "date should be YYYY-MM-DD"),
        ({"date": "2025-02-30"}, "not a real calendar date"),
        ({"date": None}, "date should be"),
        ({"start_time": "10am"}, "start_time should be HH:MM:SS"),
        ({"end_time": "25:00:00"}, "not a real time of day"),
        ({"end_time": 12}, "end_time should be"),
        ({"start_time": "10:00:00", "end_time": "10:00:00"}, "no length"),
        ({"field_id": "A"}, "field_id"),
        ({"field_id": None}, "field_id"),
        ({"order_detail_id": "x1"}, "order_detail_id"),
    ],
)
def test_bad_fields_reject_the_record_with_its_id(over: dict, words: str) -> None:
    rec = normalize_record(booking("BK-9", **over), JKT)
    assert isinstance(rec, Rejection)
    assert rec.booking_id == "BK-9" and words in rec.reason


def test_missing_optional_fields_are_fine() -> None:
    raw = booking()
    for key in ("order_detail_id", "field_name", "user_name", "user_phone"):
        del raw[key]
    rec = normalize_record(raw, JKT)
    assert isinstance(rec, BookingRecord) and rec.order_detail_id is None and rec.user_name is None


def test_a_record_that_is_not_an_object_is_rejected() -> None:
    assert normalize_record(["BK-1"], JKT) == Rejection(None, "record is a list, not an object")


def test_duplicate_ids_in_a_page_keep_the_last_and_count() -> None:
    records = [booking("BK-1", status="pending"), booking("BK-2"), booking("BK-1", status="success"), "junk"]
    norm = normalize_page(records, JKT)
    assert [r.booking_id for r in norm.records] == ["BK-2", "BK-1"]
    assert norm.records[1].status == "success"
    assert norm.duplicates == ["BK-1"]
    assert len(norm.rejections) == 1
