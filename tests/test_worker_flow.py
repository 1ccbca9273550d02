"""The worker's flow one row at a time, with the real executor, a real huey queue file, real
ffmpeg segments and the real platform simulator; the clock is passed in.

What issue 13 found and these pin down: a dead-lettered clip re-driven by hand really cuts
again; "process now" and the reconnect wake send rows waiting in huey's schedule; expired
work stays visible and is still delivered; a 429's Retry-After is what the row waits.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from fixtures_platform import PlatformSim
from recorded import as_segments, index, record_segments
from venuecam import ledger, pipeline, redrive, videos
from venuecam.config import Config
from venuecam.errors import BadInputError
from venuecam.leds.patterns import choose, facts_from_snapshot
from venuecam.models import Booking, PendingTask, Segment, TaskStatus, TaskType, Video, VideoStatus
from venuecam.status import facts, render, shapes
from venuecam.timeutil import booking_bounds, naive_utc_to_ts, utcnow
from venuecam.worker import dispatch
from venuecam.worker.app import make_huey
from venuecam.worker.execute import execute_row
from venuecam.worker.tasks import HueyTasks, register

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


@pytest.fixture
def tasks(cfg: Config, database: Any) -> HueyTasks:
    """The worker's tasks on this test's own huey file; nothing consumes it, so what the code
    dispatched can be read back from huey's ready queue and schedule."""
    return register(make_huey(cfg), cfg)


def ready(tasks: HueyTasks) -> list[int]:
    """Rows huey runs as soon as a thread is free."""
    return sorted(dispatch.ready_task_ids(tasks))


def scheduled(tasks: HueyTasks) -> list[int]:
    """Rows huey runs at a later time (a message with an eta, in the queue or the schedule)."""
    later = [
        t for t in [*tasks.huey.pending(), *tasks.huey.scheduled()] if t.eta is not None and t.eta > utcnow()
    ]
    return sorted(int(t.args[0]) for t in later if t.name == tasks.execute.name)


def add_booking(cfg: Config, booking_id: str, start_ts: float, end_ts: float, field_id: int = 1) -> Booking:
    local = dt.datetime.fromtimestamp(start_ts, cfg.tz)
    return Booking.create(
        booking_id=booking_id, order_detail_id=789, field_id=field_id, date=local.date().isoformat(),
        start_time=local.strftime("%H:%M:%S"),
        end_time=dt.datetime.fromtimestamp(end_ts, cfg.tz).strftime("%H:%M:%S"), status="success",
        user_name="Ana", user_phone="0812", start_ts=start_ts, end_ts=end_ts, raw_json="{}",
    )  # fmt: skip


# ---------------------------------------------------------------- bug 1: re-drive really re-cuts


@needs_ffmpeg
def test_a_dead_lettered_clip_redriven_by_hand_is_cut_again(
    cfg: Config, tasks: HueyTasks, tmp_path: Path
) -> None:
    now = utcnow()
    start = naive_utc_to_ts(now) - 600
    booking = add_booking(cfg, "BK-R1", start, start + 6)
    (row,) = pipeline.scan(cfg, start + 600)
    video = videos.get("BK-R1-CAMERA_A-full")
    t = row.next_retry_at
    for _ in range(row.max_attempts):  # no segment covers the booking: every attempt fails
        execute_row(cfg, tasks, row.id, now=t)
        row = ledger.get(row.id)
        t = row.next_retry_at or t
    assert row.status == TaskStatus.FAILED and "no segments" in row.error_msg
    video = videos.get(video.unique_id)
    assert video.status == VideoStatus.FAILED and "clip task" in video.status_msg
    assert PendingTask.select().where(PendingTask.task_type == TaskType.UPLOAD).count() == 0

    # The footage turns up (a camera's segments indexed late); a person re-drives the task.
    index(as_segments(record_segments(tmp_path / "segs", 10), start - 2), "CAMERA_A")
    done = redrive.retry([row.id], now=t)
    assert [r.id for r in done.rows] == [row.id] and done.videos_reset == [video.unique_id]
    assert videos.get(video.unique_id).status == VideoStatus.PENDING
    execute_row(cfg, tasks, row.id, now=t)
    video = videos.get(video.unique_id)
    assert video.status == VideoStatus.READY and Path(video.mp4_path).stat().st_size > 0
    assert abs(video.duration_s - (booking.end_ts - booking.start_ts)) <= 1.0
    upload = PendingTask.get(PendingTask.unique_key == f"upload_r2:{video.unique_id}")
    # Created with the clip's completion and handed to huey (due at the test's clock, ahead of the real one).
    assert upload.status == TaskStatus.PENDING and upload.id in ready(tasks) + scheduled(tasks)
    # Nothing else to re-drive now, and naming a row that is not failed changes nothing.
    with pytest.raises(BadInputError, match=rf"task\(s\) \[{upload.id}\]: not failed"):
        redrive.retry([upload.id])
    assert ledger.get(upload.id).status == TaskStatus.PENDING


# ---------------------------------------------------------------- bug 2: process now / reconnect wake


def test_wake_sends_rows_waiting_in_huey_schedule_and_every_page(cfg: Config, tasks: HueyTasks) -> None:
    now = utcnow()
    rows = []
    for i in range(ledger.DUE_PAGE + 3):  # more than one page of due rows
        row, _ = ledger.enqueue(TaskType.NOTIFY, f"notify_ayo_api:v{i}", {"unique_id": f"v{i}"},
                                max_attempts=4, priority_ts=float(i), now=now)  # fmt: skip
        rows.append(row)
    # The first one failed while online: 5 min backoff, its retry in huey's schedule.
    ledger.claim(rows[0].id, now)
    failed = ledger.fail(rows[0].id, "HTTP 503", [300], now)
    dispatch.send(tasks, [failed], now)
    assert scheduled(tasks) == [rows[0].id] and ready(tasks) == []
    # Due rows go page by page; the one waiting out its backoff is not due.
    assert dispatch.dispatch_due(tasks, include_network=True, now=now) == len(rows) - 1
    assert rows[0].id not in ready(tasks)
    # "Process now" (and the reconnect wake-up): every waiting row goes now, the scheduled one too;
    # those already in the ready queue are not sent twice.
    assert dispatch.wake(tasks, now) == 1
    assert ready(tasks) == sorted(r.id for r in rows)
    assert ledger.get(rows[0].id).next_retry_at <= now
    # The stale scheduled message finds nothing to claim once the row ran.
    ledger.claim(rows[0].id, now)
    ledger.complete(rows[0].id, now)
    execute_row(cfg, tasks, rows[0].id, now=now + dt.timedelta(seconds=301))
    assert ledger.get(rows[0].id).attempts == 2  # not claimed a third time


# ---------------------------------------------------------------- bug 3: a week offline


def test_expired_work_stays_visible_and_is_still_delivered(cfg: Config, tasks: HueyTasks) -> None:
    week_ago = utcnow() - dt.timedelta(hours=cfg.queue.expiration_hours + 5)
    start = naive_utc_to_ts(week_ago)
    add_booking(cfg, "BK-OLD", start, start + 600)
    video = Video.create(unique_id="BK-OLD-CAMERA_A-full", booking_id="BK-OLD", camera="CAMERA_A", field_id=1,
                         start_ts=start, end_ts=start + 600, status=VideoStatus.READY, sha256="a" * 64)  # fmt: skip
    row, _ = ledger.enqueue_row(
        pipeline.upload_step(cfg, video), now=week_ago
    )  # queued a week ago, offline since
    now = utcnow()
    # The camera records (its latest segment just ended): the expired work is the only fault.
    Segment.create(camera="CAMERA_A", start_ts=naive_utc_to_ts(now) - 2, end_ts=naive_utc_to_ts(now), duration=2,
                   path="/seg/now.ts", bytes=1)  # fmt: skip
    snap = facts.collect(cfg, now, with_programs=False, with_clock=False)
    assert snap["expired"]["total"] == 1 and snap["expired"]["by_type"][TaskType.UPLOAD] == 1
    attention = shapes.needs_attention(snap)
    assert any("1 task(s) expired" in a and "queue cancel --expired" in a for a in attention), attention
    plan = choose(facts_from_snapshot(snap))
    assert plan.causes == ("1 task(s) expired",) and plan.fault.mode == "blink"
    assert plan.backlog.mode == "blink"  # still waiting work
    text = render.render(shapes.queue_status(snap)["data"])
    line = next(x for x in text.splitlines() if x.split()[:1] == ["uploads"])
    assert line.split() == ["uploads", "1", "0", "1", "0", "0"]  # waiting, running, expired, failed, done
    # The link comes back: the wake-up delivers it like any other waiting row.
    assert dispatch.wake(tasks, now) == 1 and ready(tasks) == [row.id]

    # Unless the operator gives it up; a row that is not expired is refused, changing nothing.
    fresh, _ = ledger.enqueue(TaskType.NOTIFY, "notify_ayo_api:fresh", {}, max_attempts=4, now=now)
    with pytest.raises(BadInputError, match=rf"\[{fresh.id}\]: not expired"):
        redrive.give_up_expired(cfg, [row.id, fresh.id], now)
    assert ledger.get(row.id).status == TaskStatus.PENDING
    assert redrive.give_up_expired(cfg, None, now) == [row.id]
    assert ledger.get(row.id).status == TaskStatus.CANCELLED
    assert videos.get(video.unique_id).status == VideoStatus.EXPIRED
    snap = facts.collect(cfg, now, with_programs=False, with_clock=False)
    assert snap["expired"]["total"] == 0 and not choose(facts_from_snapshot(snap)).causes
    # ... and can change their mind by id.
    assert redrive.retry([row.id], now).videos_reset == [video.unique_id]
    assert videos.get(video.unique_id).status == VideoStatus.READY
    assert ledger.get(row.id).status == TaskStatus.PENDING


# ---------------------------------------------------------------- 429 Retry-After


def test_a_429_waits_its_retry_after_and_does_not_count(
    make_config: Any, platform: PlatformSim, tmp_path: Path
) -> None:
    from venuecam import db as db_mod

    cfg = make_config(booking_api={"base_url": platform.url, "api_token": platform.token, "timeout_s": 5.0},
                      storage={"public_base_url": "https://videos.example.com"})  # fmt: skip
    database = db_mod.open_db(cfg.db_path)
    try:
        tasks = register(make_huey(cfg), cfg)
        start = naive_utc_to_ts(utcnow()) - 900
        add_booking(cfg, "BK-429", start, start + 600)
        video = Video.create(
            unique_id="BK-429-CAMERA_A-full", booking_id="BK-429", camera="CAMERA_A", field_id=1,
            start_ts=start, end_ts=start + 600, status=VideoStatus.UPLOADED, sha256="b" * 64,
            size_bytes=1000, duration_s=600.0, mp4_key="k.mp4", preview_key="k_preview.mp4", thumb_key="k.jpg",
        )  # fmt: skip
        row, _ = ledger.enqueue_row(pipeline.notify_step(cfg, video))
        platform.set_fault("videos", "429", retry_after="40")
        now = utcnow()
        execute_row(cfg, tasks, row.id, now=now)
        after = ledger.get(row.id)
        assert after.status == TaskStatus.PENDING and after.attempts == 0 and "429" in after.error_msg
        assert after.next_retry_at == now + dt.timedelta(seconds=40)
        assert scheduled(tasks) == [row.id]
        execute_row(cfg, tasks, row.id, now=now + dt.timedelta(seconds=39))  # too early: nothing
        assert ledger.get(row.id).attempts == 0
        execute_row(cfg, tasks, row.id, now=now + dt.timedelta(seconds=40))
        assert ledger.get(row.id).status == TaskStatus.COMPLETED
        assert videos.get(video.unique_id).status == VideoStatus.NOTIFIED
        statuses = [n["status"] for n in platform.summary()["notifications"]]
        assert statuses == [201]  # the 429 answer is not a received notification
    finally:
        database.close()


# ---------------------------------------------------------------- a reply lost to the timeout


@pytest.mark.parametrize("retry_when", ["after_the_late_answer", "while_it_is_held"])
def test_a_reply_lost_to_the_timeout_is_recorded_and_the_retry_counts_as_delivered(
    make_config: Any, platform: PlatformSim, caplog: pytest.LogCaptureFixture, retry_when: str
) -> None:
    """The platform sits on the notification past the device's timeout, then takes it
    (booking-api.md 2: it de-duplicates by Idempotency-Key). The device saw no answer, so the
    row is retried: after the late one was recorded, the retry meets 409, which is success;
    sent while it is still held, the retry is the 201 and the late one the 409. Either way the
    platform holds it once and the video is notified once."""
    from venuecam import db as db_mod

    caplog.set_level(logging.INFO, logger="worker")
    cfg = make_config(booking_api={"base_url": platform.url, "api_token": platform.token, "timeout_s": 0.5},
                      storage={"public_base_url": "https://videos.example.com"})  # fmt: skip
    database = db_mod.open_db(cfg.db_path)
    try:
        tasks = register(make_huey(cfg), cfg)
        start = naive_utc_to_ts(utcnow()) - 900
        add_booking(cfg, "BK-LATE", start, start + 600)
        video = Video.create(
            unique_id="BK-LATE-CAMERA_A-full", booking_id="BK-LATE", camera="CAMERA_A", field_id=1,
            start_ts=start, end_ts=start + 600, status=VideoStatus.UPLOADED, sha256="b" * 64,
            size_bytes=1000, duration_s=600.0, mp4_key="k.mp4", preview_key="k_preview.mp4", thumb_key="k.jpg",
        )  # fmt: skip
        row, _ = ledger.enqueue_row(pipeline.notify_step(cfg, video))
        platform.set_fault("videos", "timeout", count=1, delay=1.5)
        execute_row(cfg, tasks, row.id, now=utcnow())
        after = ledger.get(row.id)
        assert after.status == TaskStatus.PENDING and after.attempts == 1, after.error_msg
        assert "did not answer within 0.5s" in after.error_msg
        assert videos.get(video.unique_id).status == VideoStatus.UPLOADED
        if retry_when == "after_the_late_answer":
            wait_for(lambda: platform.summary()["notifications"], 10)
            assert [n["status"] for n in platform.summary()["notifications"]] == [201]  # recorded, unanswered
        else:
            assert platform.summary()["notifications"] == []  # still held
        execute_row(cfg, tasks, row.id, now=after.next_retry_at)
        assert ledger.get(row.id).status == TaskStatus.COMPLETED
        assert videos.get(video.unique_id).status == VideoStatus.NOTIFIED
        late = retry_when == "after_the_late_answer"
        told = "already delivered (HTTP 409)" if late else "delivered (HTTP 201)"
        sent = [r.getMessage() for r in caplog.records if "Notification sent successfully" in r.getMessage()]
        assert len(sent) == 1 and sent[0].endswith(f", {told})"), sent
        wait_for(lambda: len(platform.summary()["notifications"]) == 2, 10)  # the late one lands too
        seen = platform.summary()
        assert [n["status"] for n in seen["notifications"]] == [201, 409]
        assert list(seen["delivered"]) == [video.unique_id] and seen["violations"] == {}
    finally:
        database.close()


def wait_for(fn: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ---------------------------------------------------------------- a booking that changed (2b)


def test_booking_change_after_delivery_cuts_a_new_revision_with_the_same_keys(
    cfg: Config, tasks: HueyTasks
) -> None:
    s, e = booking_bounds("2025-01-23", "10:00:00", "11:00:00", cfg.tz)
    booking = add_booking(cfg, "BK-CH", s, e)
    video = Video.create(
        unique_id="BK-CH-CAMERA_A-full", booking_id="BK-CH", camera="CAMERA_A", field_id=1, start_ts=s, end_ts=e,
        status=VideoStatus.NOTIFIED, sha256="c" * 64, mp4_key="42/1/2025-01-23/BK-CH/CAMERA_A/x.mp4",
        preview_key="p", thumb_key="t", mp4_url="https://x/1", preview_url="https://x/2", thumb_url="https://x/3",
    )  # fmt: skip
    Booking.update(end_ts=e + 1800, end_time="11:30:00").where(Booking.id == booking.id).execute()
    booking = Booking.get_by_id(booking.id)
    (changed,) = pipeline.booking_changed(cfg, booking)
    v = videos.get(video.unique_id)
    assert (v.status, v.revision, v.replaces_sha256, v.end_ts) == (VideoStatus.PENDING, 2, "c" * 64, e + 1800)
    assert v.mp4_key == video.mp4_key and v.mp4_url is None  # same keys; not stored yet as revision 2
    (row,) = pipeline.scan(cfg, e + 3600)
    assert row.unique_key == "clip:BK-CH-CAMERA_A-full#r2" and json.loads(row.task_data)["revision"] == 2
    # Changed again before revision 2 was cut: the same revision, new bounds, the same row.
    Booking.update(end_ts=e + 900).where(Booking.id == booking.id).execute()
    pipeline.booking_changed(cfg, Booking.get_by_id(booking.id))
    v = videos.get(video.unique_id)
    assert (v.revision, v.end_ts, v.replaces_sha256) == (2, e + 900, "c" * 64)
    assert pipeline.scan(cfg, e + 3600) == []
    # Moved to field 2, which CAMERA_A does not film: withdrawn, its waiting row cancelled.
    Booking.update(field_id=2).where(Booking.id == booking.id).execute()
    pipeline.booking_changed(cfg, Booking.get_by_id(booking.id))
    assert videos.get(video.unique_id).status == VideoStatus.CANCELLED
    assert ledger.get(row.id).status == TaskStatus.CANCELLED


def test_video_transitions_follow_the_table_and_lose_no_race(cfg: Config, database: Any) -> None:
    video = Video.create(unique_id="BK-T-CAMERA_A-full", booking_id="BK-T", camera="CAMERA_A", field_id=1,
                         start_ts=0.0, end_ts=60.0)  # fmt: skip
    with pytest.raises(videos.TransitionError, match="pending -> notified is not allowed"):
        videos.transition(video, VideoStatus.NOTIFIED, "skipping ahead")
    first, second = videos.get(video.unique_id), videos.get(video.unique_id)
    videos.transition(first, VideoStatus.CANCELLED, "booking cancelled")
    with pytest.raises(videos.VideoChanged):
        videos.transition(second, VideoStatus.READY, "cut from the segments")
    assert videos.get(video.unique_id).status == VideoStatus.CANCELLED
    # Every change the table allows names why; nothing leads out of `notified` but a re-cut.
    assert all(why for edges in videos.ALLOWED.values() for why in edges.values())
    assert set(videos.ALLOWED[VideoStatus.NOTIFIED]) == {VideoStatus.PENDING}


# ---------------------------------------------------------------- the chain of clip scans


def test_a_scan_schedules_the_next_for_a_booking_ending_before_the_next_periodic_scan(
    cfg: Config, tasks: HueyTasks
) -> None:
    """The periodic scan is a crontab of whole minutes: with `clips.scan_interval_s` = 2 (the
    soak's) a booking ending 30 s after a scan must still get a scan at its end (seen: it
    waited for the next minute, past the soak's end)."""
    import dataclasses

    from venuecam.worker import duties

    cfg = dataclasses.replace(cfg, clips=dataclasses.replace(cfg.clips, scan_interval_s=2))
    assert duties.scan_period_s(cfg) == 60
    now = naive_utc_to_ts(utcnow())
    add_booking(cfg, "BK-NEXT", now + 10, now + 30)
    duties.scan_and_dispatch(cfg, tasks)
    etas = [t.eta for t in [*tasks.huey.pending(), *tasks.huey.scheduled()] if t.name == tasks.scan.name]
    end = now + 30 + cfg.clips.grace_s + 1
    assert len(etas) == 1 and abs(naive_utc_to_ts(etas[0]) - end) < 1.0


def test_no_clip_is_queued_by_an_unset_clock_nor_cut_before_its_booking_ends(
    cfg: Config, tasks: HueyTasks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in the soak: after a reboot with the clock 2 h ahead, a scan queued clips for every
    booking of those 2 h; once the clock was set they ran, found no footage (not played yet)
    and were dead-lettered, and those bookings were never delivered."""
    from venuecam import wallclock
    from venuecam.errors import RetryLater
    from venuecam.worker.handlers import handle_clip

    now = naive_utc_to_ts(utcnow())
    add_booking(cfg, "BK-LATER", now + 600, now + 1200)
    flag = tmp_path / "synchronized"
    monkeypatch.setenv(wallclock.ENV_SYNC_FLAG, str(flag))
    assert pipeline.scan(cfg, now + 7200) == []  # not synchronised: nothing looks finished
    flag.touch()
    (row,) = pipeline.scan(cfg, now + 7200)  # a clock ahead that is trusted (or a row from one)
    with pytest.raises(RetryLater, match="not over yet") as waited:
        handle_clip(cfg, ledger.get(row.id))
    assert 1190 <= waited.value.retry_after <= 1200 + cfg.clips.grace_s
    assert videos.get("BK-LATER-CAMERA_A-full").status == VideoStatus.PENDING
