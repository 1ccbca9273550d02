"""The product's flow as ledger rows: booking -> clip -> upload -> notify.

Each step creates the next step's row (idempotently, by unique key) when it succeeds, so a
crash between steps leaves a row to re-drive, never a forgotten step.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from venuecam import ledger, logs
from venuecam.config import Config
from venuecam.errors import BadInputError
from venuecam.models import Booking, PendingTask, TaskType, Video, VideoStatus
from venuecam.storage.keys import unique_id as make_unique_id
from venuecam.timeutil import to_naive_utc, utcnow

log = logging.getLogger("worker")

HIGHLIGHT_SECONDS = 60.0


def max_attempts(schedule: list[int]) -> int:
    """The first try runs at once; each delay in the schedule is one more attempt."""
    return len(schedule) + 1


def due_bookings(cfg: Config, now_ts: float) -> list[Booking]:
    """`success` bookings that ended (plus the grace period) within the segment retention."""
    oldest = now_ts - cfg.retention.segment_days * 86400
    return list(
        Booking.select()
        .where(
            (Booking.status == "success")
            & (Booking.end_ts.is_null(False))
            & (Booking.end_ts + cfg.clips.grace_s <= now_ts)
            & (Booking.end_ts >= oldest)
        )
        .order_by(Booking.start_ts)
    )


def ensure_video(cfg: Config, booking: Booking, camera: str, video_type: str, start_ts: float, end_ts: float,
                 uid: str | None = None) -> Video:  # fmt: skip
    uid = uid or make_unique_id(booking.booking_id, camera, video_type)
    video = Video.get_or_none(Video.unique_id == uid)
    if video is None:
        with Video._meta.database.atomic():
            video, _ = Video.get_or_create(
                unique_id=uid,
                defaults={
                    "booking_id": booking.booking_id,
                    "camera": camera,
                    "field_id": booking.field_id,
                    "video_type": video_type,
                    "start_ts": start_ts,
                    "end_ts": end_ts,
                },
            )
    return video


def enqueue_clip(cfg: Config, video: Video, delay_s: float = 0.0) -> tuple[PendingTask, bool]:
    return ledger.enqueue(
        TaskType.CLIP,
        f"{TaskType.CLIP}:{video.unique_id}",
        {"unique_id": video.unique_id},
        max_attempts=max_attempts(cfg.queue.clip_schedule_s),
        booking_id=video.booking_id,
        priority_ts=video.start_ts,
        delay_s=delay_s,
    )


def scan(cfg: Config, now_ts: float) -> list[PendingTask]:
    """Clip rows for every finished booking x camera of its field that has none yet."""
    created: list[PendingTask] = []
    for booking in due_bookings(cfg, now_ts):
        cameras = cfg.cameras_for_field(booking.field_id) if booking.field_id is not None else []
        for cam in cameras:
            video = ensure_video(cfg, booking, cam.name, "full", booking.start_ts, booking.end_ts)
            if video.status != VideoStatus.PENDING:
                continue
            row, new = enqueue_clip(cfg, video)
            if new:
                log.info(
                    "%s Clip task %d queued for booking %s camera %s (%s)",
                    logs.QUEUE, row.id, booking.booking_id, cam.name, video.unique_id,
                )  # fmt: skip
                created.append(row)
    return created


def next_booking_end(cfg: Config, now_ts: float) -> float | None:
    """When the next `success` booking becomes due, so a scan can be scheduled for then."""
    row = (
        Booking.select(Booking.end_ts)
        .where((Booking.status == "success") & (Booking.end_ts + cfg.clips.grace_s > now_ts))
        .order_by(Booking.end_ts)
        .first()
    )
    return None if row is None else float(row.end_ts) + cfg.clips.grace_s


def after_clip(cfg: Config, video: Video) -> PendingTask:
    row, _ = ledger.enqueue(
        TaskType.UPLOAD,
        f"{TaskType.UPLOAD}:{video.unique_id}",
        {"unique_id": video.unique_id},
        max_attempts=max_attempts(cfg.queue.upload_schedule_s),
        booking_id=video.booking_id,
        priority_ts=video.start_ts,
    )
    log.info("%s Upload task %d queued for video %s", logs.QUEUE, row.id, video.unique_id)
    return row


def after_upload(cfg: Config, video: Video) -> PendingTask:
    row, _ = ledger.enqueue(
        TaskType.NOTIFY,
        f"{TaskType.NOTIFY}:{video.unique_id}",
        {"unique_id": video.unique_id},
        max_attempts=max_attempts(cfg.queue.notify_schedule_s),
        booking_id=video.booking_id,
        priority_ts=video.start_ts,
    )
    log.info("%s API notification task %d queued for video %s", logs.QUEUE, row.id, video.unique_id)
    return row


def running_booking(field_id: int, now_ts: float) -> Booking | None:
    return (
        Booking.select()
        .where(
            (Booking.field_id == field_id)
            & (Booking.status == "success")
            & (Booking.start_ts <= now_ts)
            & (Booking.end_ts > now_ts)
        )
        .order_by(Booking.start_ts.desc())
        .first()
    )


def request_highlight(cfg: Config, field_id: int, now: dt.datetime | None = None) -> dict[str, Any]:
    """A clip of the last minute of the booking running on a field (seed 001's on-site request).

    It goes through the normal clip/upload/notify path; the clip waits until the segment
    holding "now" is closed. Its unique_id carries the request time, so each press is its
    own video and a retried request for the same second is the same one.
    """
    if isinstance(field_id, bool) or not isinstance(field_id, int):
        raise BadInputError("field_id: expected an integer")
    cameras = cfg.cameras_for_field(field_id)
    if not cameras:
        raise BadInputError(f"field_id {field_id}: no camera records this field")
    now = now or utcnow()
    now_ts = now.replace(tzinfo=dt.UTC).timestamp()
    booking = running_booking(field_id, now_ts)
    if booking is None:
        raise BadInputError(f"field_id {field_id}: no booking is running now")
    start = max(booking.start_ts, now_ts - HIGHLIGHT_SECONDS)
    stamp = dt.datetime.fromtimestamp(now_ts, cfg.tz).strftime("%H%M%S")
    wait = max(c.segment_seconds for c in cameras) * 1.5 + 2
    rows: list[PendingTask] = []
    uids: list[str] = []
    for cam in cameras:
        uid = f"{make_unique_id(booking.booking_id, cam.name, 'highlight')}-{stamp}"
        video = ensure_video(cfg, booking, cam.name, "highlight", start, now_ts, uid=uid)
        row, _ = enqueue_clip(cfg, video, delay_s=wait)
        rows.append(row)
        uids.append(uid)
    log.info(
        "%s Highlight requested on field %d for booking %s: %s",
        logs.QUEUE,
        field_id,
        booking.booking_id,
        uids,
    )
    from venuecam.worker.client import WorkerClient

    WorkerClient(cfg).send(rows)
    return {
        "success": True,
        "message": f"Highlight clip queued for booking {booking.booking_id}",
        "booking_id": booking.booking_id,
        "field_id": field_id,
        "unique_ids": uids,
        "ready_after": to_naive_utc(now_ts + wait).isoformat() + "Z",
    }
