"""Housekeeping keeps what it promises and no more: seed 001's DeleteOldBookings (players'
personal data is not kept forever) and `connectivity.log_retention_days` (only the watchdog
prunes the connectivity log, by that setting)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from venuecam import db as db_mod
from venuecam.booking import purge
from venuecam.connectivity.probes import RoundResult
from venuecam.models import Booking, ConnectivityLog, Video, VideoStatus
from venuecam.timeutil import naive_utc_to_ts
from venuecam.watchdog.service import Watchdog
from venuecam.worker import duties

# 03:00 in Jakarta (UTC+7), when the daily cleanup runs.
NOW = dt.datetime(2026, 3, 1, 20, 0, 0)


def booking(booking_id: str, days_ago: float, video: str | None = None) -> None:
    end = naive_utc_to_ts(NOW - dt.timedelta(days=days_ago))
    Booking.create(booking_id=booking_id, field_id=1, date="2025-12-01", start_time="10:00:00",
                   end_time="11:00:00", status="success", user_name="Ana Putri", user_phone="081299990000",
                   raw_json='{"user_name": "Ana Putri"}', start_ts=end - 3600, end_ts=end)  # fmt: skip
    if video:
        Video.create(unique_id=f"{booking_id}-CAMERA_A-full", booking_id=booking_id, camera="CAMERA_A",
                     field_id=1, start_ts=end - 3600, end_ts=end, status=video)  # fmt: skip


def test_bookings_older_than_90_days_are_deleted_or_kept_without_personal_data(
    cfg: Any, database: Any
) -> None:
    assert cfg.retention.booking_days == 90
    booking("BK-OLD-DONE", 91, VideoStatus.NOTIFIED)
    booking("BK-OLD-NOVIDEO", 120)
    booking("BK-OLD-FAILED", 91, VideoStatus.FAILED)  # its video may still be re-driven
    booking("BK-RECENT", 89, VideoStatus.NOTIFIED)
    duties.daily_cleanup(cfg, NOW - dt.timedelta(hours=1))  # 02:00 venue time: not yet
    assert Booking.select().count() == 4
    duties.daily_cleanup(cfg, NOW)
    left = {b.booking_id: b for b in Booking.select()}
    assert set(left) == {"BK-OLD-FAILED", "BK-RECENT"}
    kept = left["BK-OLD-FAILED"]
    assert (kept.user_name, kept.user_phone, kept.raw_json) == (None, None, '{"booking_id": "BK-OLD-FAILED"}')
    assert left["BK-RECENT"].user_name == "Ana Putri"
    assert Video.select().count() == 3  # videos hold no personal data; they stay
    assert purge.delete_old_bookings(cfg, NOW) == purge.Purged(0, 0)  # nothing more to do


def test_the_connectivity_log_keeps_log_retention_days_and_only_the_watchdog_prunes_it(
    make_config: Any, tmp_path: Any
) -> None:
    cfg = make_config(connectivity={"log_retention_days": 30, "tcp_targets": [], "dns_names": [],
                                    "probe_service_hosts": False}, leds={"enabled": False})  # fmt: skip
    database = db_mod.open_db(cfg.db_path)
    try:
        for days in (10, 29, 31, 40):
            ConnectivityLog.create(timestamp=NOW - dt.timedelta(days=days), status="ONLINE")
        duties.daily_cleanup(cfg, NOW)  # the worker's cleanup leaves the watchdog's log alone
        assert ConnectivityLog.select().count() == 4
        Watchdog(cfg, probes=[]).feed(RoundResult(True, False, 0.01, "ok"), now=0.0, wall=NOW)
        ages = sorted((NOW - r.timestamp).days for r in ConnectivityLog.select())
        assert ages == [0, 10, 29]  # the change row just written, and what 30 days keep
    finally:
        database.close()


def test_footage_of_a_video_given_up_ages_out_and_a_failed_ones_stays(
    cfg: Any, database: Any, tmp_path: Any
) -> None:
    from venuecam import retention
    from venuecam.models import Segment

    now_ts = naive_utc_to_ts(NOW)
    kept = {}
    for booking_id, status, days in (
        ("BK-GIVENUP", VideoStatus.EXPIRED, 30),
        ("BK-FAILED", VideoStatus.FAILED, 40),
    ):
        booking(booking_id, days, status)
        b = Booking.get(Booking.booking_id == booking_id)
        path = tmp_path / f"{booking_id}.ts"
        path.write_bytes(b"x" * 100)
        kept[booking_id] = Segment.create(camera="CAMERA_A", start_ts=b.start_ts, end_ts=b.start_ts + 10,
                                          duration=10, path=str(path), bytes=100)  # fmt: skip
    out = retention.enforce(cfg, now_ts, free_pct=lambda _p: 100.0)  # 30, 40 days > segment_days (7)
    assert out.segments_removed == 1
    assert not Path(kept["BK-GIVENUP"].path).exists() and Path(kept["BK-FAILED"].path).exists()
