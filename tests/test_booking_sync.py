"""The booking sync against the real simulator process and a real database."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import API_TOKEN
from fixtures_platform import PlatformSim, booking
from venuecam import db as db_mod
from venuecam import ledger
from venuecam.booking.parse import BadPageError
from venuecam.booking.sync import sync_bookings, sync_dates
from venuecam.config import Config
from venuecam.errors import AuthError, TransientError
from venuecam.models import Booking, PendingTask, TaskStatus, TaskType, Video, VideoStatus

DATE = "2025-01-23"
# 10:00 in Jakarta on DATE; with days_back=1 the sync asks for the 22nd, 23rd and 24th.
NOW = dt.datetime(2025, 1, 23, 3, 0)
LATER = NOW + dt.timedelta(minutes=5)


@pytest.fixture
def sync_cfg(platform: PlatformSim, make_config: Callable[..., Config]) -> Iterator[Config]:
    """A config pointing at the simulator, with its database open (models bound)."""
    cfg = make_config(booking_api={"base_url": platform.url, "page_size": 100, "days_back": 1})
    database = db_mod.open_db(cfg.db_path)
    yield cfg
    database.close()


def rows() -> dict[str, Booking]:
    return {b.booking_id: b for b in Booking.select()}


def snapshot() -> list[tuple[Any, ...]]:
    return [tuple(r.__data__.values()) for r in Booking.select().order_by(Booking.id)]


def add_video(booking_id: str, camera: str, status: str) -> Video:
    return Video.create(
        unique_id=f"{booking_id}-{camera}-full", booking_id=booking_id, camera=camera, status=status,
        start_ts=0.0, end_ts=1.0,
    )  # fmt: skip


def test_sync_dates_are_venue_local() -> None:
    from zoneinfo import ZoneInfo

    # 20:00 UTC on the 22nd is already the 23rd in Jakarta.
    assert sync_dates(dt.datetime(2025, 1, 22, 20, 0), ZoneInfo("Asia/Jakarta"), 1) == [
        "2025-01-22",
        "2025-01-23",
        "2025-01-24",
    ]
    assert sync_dates(dt.datetime(2025, 1, 22, 20, 0), ZoneInfo("UTC"), 0) == ["2025-01-22", "2025-01-23"]


def test_sync_stores_bookings_and_logs_creation(
    platform: PlatformSim, sync_cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    platform.add_bookings([booking("BK-123456", extra_field={"a": 1}), booking("BK-2", field_id=2)])
    progress: list[tuple[Any, ...]] = []
    result = sync_bookings(sync_cfg, now=NOW, progress=lambda *a: progress.append(a))
    assert result.as_dict() | {"dates": None} == {
        "fetched": 2, "created": 2, "updated": 0, "unchanged": 0, "skipped": 0, "duplicates": 0,
        "unknown_status": 0, "cancelled": 0, "videos_cancelled": 0, "tasks_cancelled": 0, "videos_recut": 0,
        "pages": 3,
        "dates": None,
    }  # fmt: skip
    assert result.dates == ["2025-01-22", "2025-01-23", "2025-01-24"]
    b = rows()["BK-123456"]
    assert (b.order_detail_id, b.field_id, b.date, b.start_time, b.end_time, b.status) == (
        789, 1, DATE, "10:00:00", "12:00:00", "success",
    )  # fmt: skip
    assert (b.field_name, b.user_name, b.user_phone) == ("Lapangan A", "John Doe", "081234567890")
    assert json.loads(b.raw_json) == booking("BK-123456", extra_field={"a": 1})
    assert b.start_ts == dt.datetime(2025, 1, 23, 3, 0, tzinfo=dt.UTC).timestamp()
    assert b.last_sync_at == NOW and b.created_at == NOW
    assert "📅 BOOKING: Created new booking BK-123456 (status: success)" in caplog.text
    assert progress[-1][0] == "done" and progress[-1][3] == 2 and progress[-1][4] == 2
    assert any(p[0] == "fetching" for p in progress)


def test_a_second_sync_updates_only_what_changed(
    platform: PlatformSim, sync_cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    platform.add_bookings([booking("BK-1"), booking("BK-2")])
    sync_bookings(sync_cfg, now=NOW)
    platform.add_bookings([booking("BK-2", status="EXPIRED")])  # replaces BK-2
    caplog.clear()
    caplog.set_level(logging.INFO)
    result = sync_bookings(sync_cfg, now=LATER)
    assert (result.created, result.updated, result.unchanged) == (0, 1, 1)
    assert "Updated booking BK-2 (status: expired)" in caplog.text
    assert "BK-1" not in caplog.text  # unchanged bookings are not logged
    got = rows()
    assert got["BK-2"].status == "expired" and got["BK-2"].updated_at == LATER
    assert got["BK-1"].updated_at == NOW and got["BK-1"].last_sync_at == LATER


def test_a_booking_that_disappears_is_kept(platform: PlatformSim, sync_cfg: Config) -> None:
    platform.add_bookings([booking("BK-1"), booking("BK-2")])
    sync_bookings(sync_cfg, now=NOW)
    platform.remove_bookings(["BK-1"])
    sync_bookings(sync_cfg, now=LATER)
    assert set(rows()) == {"BK-1", "BK-2"}


def test_dirty_records_are_skipped_and_the_rest_stored(
    platform: PlatformSim, sync_cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    platform.add_bookings(
        [
            booking("BK/1"),
            booking("../etc"),
            booking("BK..x"),
            booking("BK-\x07bell"),
            booking("BK-bad-date", date=DATE, start_time="half past ten"),
            booking(None),
            "not an object",
            booking("BK-ok"),
            booking(123456, order_detail_id="789", field_id="1"),  # numbers as strings
            booking("BK-odd", status="Refunded"),
            booking("BK-night", start_time="23:00:00", end_time="01:00:00"),
        ],
        date=DATE,
        append=True,
    )
    result = sync_bookings(sync_cfg, now=NOW)
    assert result.skipped == 7 and result.created == 4 and result.unknown_status == 1
    got = rows()
    assert set(got) == {"BK-ok", "123456", "BK-odd", "BK-night"}
    assert got["123456"].order_detail_id == 789 and got["123456"].field_id == 1
    assert got["BK-odd"].status == "unknown"
    assert json.loads(got["BK-odd"].raw_json)["status"] == "Refunded"
    assert got["BK-night"].end_ts - got["BK-night"].start_ts == 7200
    text = caplog.text
    assert "Skipped booking BK/1: booking_id contains a path separator" in text
    assert "Skipped booking BK..x: booking_id contains '..'" in text
    assert "Skipped booking BK-\\x07bell: booking_id contains control characters" in text
    assert "Skipped booking BK-bad-date: start_time should be HH:MM:SS" in text
    assert "Skipped booking (no id): record is a string, not an object" in text
    assert "unknown status 'Refunded'" in text


def test_duplicate_ids_in_one_page_keep_the_last(
    platform: PlatformSim, sync_cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    platform.add_bookings(
        [booking("BK-1", status="pending"), booking("BK-1", status="success", user_name="Last")],
        append=True,
    )
    result = sync_bookings(sync_cfg, now=NOW)
    assert (result.duplicates, result.created) == (1, 1)
    assert rows()["BK-1"].user_name == "Last"
    assert "Booking BK-1 appears more than once in one page" in caplog.text


def test_250_bookings_over_three_pages(platform: PlatformSim, sync_cfg: Config) -> None:
    platform.add_bookings([booking(f"BK-{i}") for i in range(250)], date=DATE)
    result = sync_bookings(sync_cfg, now=NOW)
    assert result.created == 250 and result.pages == 5  # 3 for the 23rd, 1 for each other day
    assert Booking.select().count() == 250


def test_a_5xx_mid_paging_keeps_the_pages_stored_before_it(platform: PlatformSim, sync_cfg: Config) -> None:
    platform.add_bookings([booking(f"BK-{i}") for i in range(250)], date=DATE)
    # The 22nd takes one request, the 23rd's first page one more; its second page fails.
    platform.set_fault("bookings", "503", after=2)
    with pytest.raises(TransientError, match="HTTP 503"):
        sync_bookings(sync_cfg, now=NOW)
    assert Booking.select().count() == 100
    result = sync_bookings(sync_cfg, now=LATER)  # the next run catches up
    assert (result.created, result.unchanged) == (150, 100)


@pytest.mark.parametrize("mode", ["html", "truncated", "wrong_type"])
def test_a_broken_page_fails_the_run_and_keeps_earlier_pages(
    platform: PlatformSim, sync_cfg: Config, mode: str
) -> None:
    platform.add_bookings([booking(f"BK-{i}") for i in range(150)], date=DATE)
    platform.set_fault("bookings", mode, after=2)
    with pytest.raises(BadPageError):
        sync_bookings(sync_cfg, now=NOW)
    assert Booking.select().count() == 100


def test_401_raises_auth_error_and_changes_nothing(platform: PlatformSim, sync_cfg: Config) -> None:
    platform.add_bookings([booking("BK-1")])
    sync_bookings(sync_cfg, now=NOW)
    before = snapshot()
    platform.add_bookings([booking("BK-1", status="cancelled"), booking("BK-2")])
    platform.set_fault("bookings", "401")
    with pytest.raises(AuthError):
        sync_bookings(sync_cfg, now=LATER)
    assert snapshot() == before


def test_429_fails_the_run_with_retry_after(platform: PlatformSim, sync_cfg: Config) -> None:
    from venuecam.booking.client import RateLimitedError

    platform.add_bookings([booking("BK-1")])
    platform.set_fault("bookings", "429", retry_after="30")
    with pytest.raises(RateLimitedError) as err:
        sync_bookings(sync_cfg, now=NOW)
    assert err.value.retry_after == 30
    assert Booking.select().count() == 0


def test_cancelled_booking_cancels_its_videos_and_queued_work(
    platform: PlatformSim, sync_cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    platform.add_bookings([booking("BK-1"), booking("BK-2")])
    sync_bookings(sync_cfg, now=NOW)
    pending = add_video("BK-1", "CAMERA_A", VideoStatus.PENDING)
    uploaded = add_video("BK-1", "CAMERA_B", VideoStatus.UPLOADED)
    notified = add_video("BK-1", "CAMERA_C", VideoStatus.NOTIFIED)
    other = add_video("BK-2", "CAMERA_A", VideoStatus.READY)
    task, _ = ledger.enqueue(TaskType.UPLOAD, "upload_r2:BK-1-CAMERA_B-full", {}, max_attempts=5,
                             booking_id="BK-1", now=NOW)  # fmt: skip
    done, _ = ledger.enqueue(TaskType.NOTIFY, "notify:BK-1-CAMERA_C-full", {}, max_attempts=3,
                             booking_id="BK-1", now=NOW)  # fmt: skip
    PendingTask.update(status=TaskStatus.COMPLETED).where(PendingTask.id == done.id).execute()
    other_task, _ = ledger.enqueue(TaskType.CLIP, "clip:BK-2", {}, max_attempts=3, booking_id="BK-2", now=NOW)

    platform.add_bookings([booking("BK-1", status="Cancelled")])
    caplog.set_level(logging.INFO)
    result = sync_bookings(sync_cfg, now=LATER)
    assert (result.cancelled, result.videos_cancelled, result.tasks_cancelled) == (1, 2, 1)

    def status(v: Video) -> tuple[str, str | None]:
        fresh = Video.get_by_id(v.id)
        return fresh.status, fresh.status_msg

    assert status(pending) == ("cancelled", "Booking cancelled via API")
    assert status(uploaded) == ("cancelled", "Booking cancelled via API")
    assert status(notified)[0] == VideoStatus.NOTIFIED
    assert status(other)[0] == VideoStatus.READY
    assert ledger.get(task.id).status == TaskStatus.CANCELLED
    assert ledger.get(done.id).status == TaskStatus.COMPLETED
    assert ledger.get(other_task.id).status == TaskStatus.PENDING
    assert "📅 BOOKING: Updated booking BK-1 (status: cancelled)" in caplog.text
    assert "📅 BOOKING: Updated video BK-1-CAMERA_A-full to cancelled status for booking BK-1" in caplog.text

    # Already cancelled: a later sync changes nothing more and logs nothing for it.
    caplog.clear()
    again = sync_bookings(sync_cfg, now=LATER + dt.timedelta(minutes=5))
    assert (again.cancelled, again.videos_cancelled, again.unchanged) == (0, 0, 2)
    assert "Updated video" not in caplog.text


def test_the_token_never_reaches_the_sync_log(
    platform: PlatformSim, sync_cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    platform.add_bookings([booking("BK-1"), booking("BK/2")])
    sync_bookings(sync_cfg, now=NOW)
    for mode in ("401", "500", "html", "truncated"):
        platform.set_fault("bookings", mode)
        with pytest.raises(Exception) as err:  # noqa: B017 - each mode raises its own kind
            sync_bookings(sync_cfg, now=LATER)
        assert API_TOKEN not in str(err.value)
    assert "Sync stopped" in caplog.text
    assert API_TOKEN not in caplog.text
