"""Which bookings get clips, when; and the retention invariants around them."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

from venuecam import ledger, pipeline, retention
from venuecam.errors import BadInputError
from venuecam.models import Booking, PendingTask, Segment, TaskType, Video, VideoStatus
from venuecam.timeutil import booking_bounds

JKT_TZ = "Asia/Jakarta"


def add_booking(cfg: Any, booking_id: str, date: str, start: str, end: str, status: str = "success",
                field_id: int = 1) -> Booking:  # fmt: skip
    s, e = booking_bounds(date, start, end, cfg.tz)
    return Booking.create(booking_id=booking_id, field_id=field_id, date=date, start_time=start, end_time=end,
                          status=status, start_ts=s, end_ts=e, raw_json="{}")  # fmt: skip


@pytest.fixture
def two_cam_cfg(make_config: Any) -> Any:
    cams = [
        {"name": "CAMERA_A", "field_id": 1, "source": "testsrc"},
        {"name": "CAMERA_B", "field_id": 1, "source": "testsrc"},
        {"name": "CAMERA_C", "field_id": 2, "source": "testsrc"},
    ]
    return make_config(cameras=cams, clips={"grace_s": 30})


def test_scan_queues_one_clip_per_camera_of_the_field_after_grace(two_cam_cfg: Any, database: Any) -> None:
    cfg = two_cam_cfg
    b = add_booking(cfg, "BK-1", "2025-01-23", "10:00:00", "11:00:00")
    add_booking(cfg, "BK-2", "2025-01-23", "10:00:00", "11:00:00", status="cancelled")
    add_booking(cfg, "BK-3", "2025-01-23", "10:00:00", "11:00:00", status="pending")
    assert pipeline.scan(cfg, b.end_ts + 29) == []
    rows = pipeline.scan(cfg, b.end_ts + 30)
    assert sorted(r.unique_key for r in rows) == ["clip:BK-1-CAMERA_A-full", "clip:BK-1-CAMERA_B-full"]
    assert pipeline.scan(cfg, b.end_ts + 60) == []  # idempotent
    assert Video.select().count() == 2


def test_booking_across_midnight_is_matched_in_utc(two_cam_cfg: Any, database: Any) -> None:
    b = add_booking(two_cam_cfg, "BK-NIGHT", "2025-01-23", "23:30:00", "00:30:00")
    # 23:30 WIB (UTC+7) = 16:30 UTC; the end is the next local day.
    assert b.end_ts - b.start_ts == 3600
    assert dt.datetime.fromtimestamp(b.start_ts, dt.UTC).hour == 16
    assert pipeline.next_booking_end(two_cam_cfg, b.start_ts) == b.end_ts + 30


def test_highlight_needs_a_running_booking(two_cam_cfg: Any, database: Any) -> None:
    b = add_booking(two_cam_cfg, "BK-H", "2025-01-23", "10:00:00", "11:00:00", field_id=2)
    with pytest.raises(BadInputError, match="no booking is running"):
        pipeline.request_highlight(
            two_cam_cfg, 2, now=dt.datetime.fromtimestamp(b.end_ts + 5, dt.UTC).replace(tzinfo=None)
        )
    with pytest.raises(BadInputError, match="no camera records"):
        pipeline.request_highlight(two_cam_cfg, 9)
    with pytest.raises(BadInputError, match="expected an integer"):
        pipeline.request_highlight(two_cam_cfg, "2")  # type: ignore[arg-type]
    assert PendingTask.select().count() == 0


def seg(cfg: Any, camera: str, start: float, length: float = 10.0) -> Segment:
    path = Path(cfg.segments_dir) / camera / f"{int(start)}.ts"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 1000)
    return Segment.create(camera=camera, start_ts=start, end_ts=start + length, duration=length, path=str(path),
                          bytes=1000)  # fmt: skip


def test_retention_never_deletes_segments_a_booking_still_needs(two_cam_cfg: Any, database: Any) -> None:
    cfg = two_cam_cfg
    b = add_booking(cfg, "BK-OLD", "2025-01-01", "10:00:00", "10:01:00")
    needed = seg(cfg, "CAMERA_A", b.start_ts + 10)
    unneeded = seg(cfg, "CAMERA_A", b.end_ts + 100)
    now = b.end_ts + 30 * 86400  # far past segment_days
    out = retention.enforce(cfg, now, free_pct=lambda _p: 100.0)
    assert out.segments_removed == 1
    assert os.path.exists(needed.path) and not os.path.exists(unneeded.path)
    # Once the booking's video is confirmed uploaded, its segments may go.
    Video.create(unique_id="BK-OLD-CAMERA_A-full", booking_id="BK-OLD", camera="CAMERA_A", field_id=1,
                 start_ts=b.start_ts, end_ts=b.end_ts, status=VideoStatus.UPLOADED)  # fmt: skip
    # CAMERA_B of the same field has no video yet: its spans stay protected, A's do not.
    retention.enforce(cfg, now, free_pct=lambda _p: 100.0)
    assert not os.path.exists(needed.path)


def test_retention_under_disk_pressure_frees_safe_clips_first(
    two_cam_cfg: Any, database: Any, tmp_path: Path
) -> None:
    cfg = two_cam_cfg
    b = add_booking(cfg, "BK-P", "2025-01-01", "10:00:00", "10:01:00")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"m" * 100)
    Video.create(unique_id="BK-P-CAMERA_A-full", booking_id="BK-P", camera="CAMERA_A", field_id=1,
                 start_ts=b.start_ts, end_ts=b.end_ts, status=VideoStatus.READY, mp4_path=str(clip))  # fmt: skip
    keep = seg(cfg, "CAMERA_A", b.start_ts)
    frees = iter([5.0] * 50)
    out = retention.enforce(cfg, b.end_ts + 60, free_pct=lambda _p: next(frees))
    # Not uploaded yet: neither the clip nor its segment may go, however short the disk.
    assert clip.exists() and os.path.exists(keep.path) and out.still_short


def test_cancelled_booking_ledger_rows(two_cam_cfg: Any, database: Any) -> None:
    b = add_booking(two_cam_cfg, "BK-C", "2025-01-23", "10:00:00", "11:00:00")
    rows = pipeline.scan(two_cam_cfg, b.end_ts + 60)
    assert ledger.cancel_for_booking("BK-C", "Booking cancelled via API") == len(rows) == 2
    assert all(r.task_type == TaskType.CLIP for r in rows)
