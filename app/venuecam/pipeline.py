"""The product's flow as ledger rows: booking -> clip -> upload -> notify.

Each step is a ledger row, keyed by its video and revision so enqueueing again finds it.
A handler returns the next step (`upload_step`, `notify_step`) and the worker records it in
the same commit that completes the step before it, so a crash between steps leaves a row to
re-drive, never a forgotten step. Nothing here dispatches work: callers hand the rows to the
worker (`worker.client.WorkerClient.send`), so this module knows nothing of huey.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from venuecam import ledger, logs, retry, videos, wallclock
from venuecam.config import Config
from venuecam.errors import BadInputError
from venuecam.models import Booking, PendingTask, TaskStatus, TaskType, Video, VideoStatus
from venuecam.storage.keys import unique_id as make_unique_id
from venuecam.timeutil import to_naive_utc, utcnow

log = logging.getLogger("worker")

HIGHLIGHT_SECONDS = 60.0


def max_attempts(schedule: list[int]) -> int:
    return retry.max_attempts(schedule)


def row_key(task_type: str, unique_id: str, revision: int = 1) -> str:
    """`upload_r2:<unique_id>`; a later revision's rows carry `#r<revision>`."""
    return f"{task_type}:{unique_id}" + (f"#r{revision}" if revision > 1 else "")


def row_revision(row: PendingTask) -> int:
    return int(row.data.get("revision") or 1)


def step(cfg: Config, task_type: str, video: Video, delay_s: float = 0.0) -> ledger.NewRow:
    """The ledger row of one step of one video's current revision."""
    revision = int(video.revision or 1)
    return ledger.NewRow(
        task_type=task_type,
        unique_key=row_key(task_type, video.unique_id, revision),
        data={"unique_id": video.unique_id, "revision": revision},
        max_attempts=retry.max_attempts(retry.schedule_for(cfg, task_type)),
        booking_id=video.booking_id,
        priority_ts=float(video.start_ts),
        delay_s=delay_s,
    )


def upload_step(cfg: Config, video: Video) -> ledger.NewRow:
    return step(cfg, TaskType.UPLOAD, video)


def notify_step(cfg: Config, video: Video) -> ledger.NewRow:
    return step(cfg, TaskType.NOTIFY, video)


def enqueue_clip(cfg: Config, video: Video, delay_s: float = 0.0) -> tuple[PendingTask, bool]:
    return ledger.enqueue_row(step(cfg, TaskType.CLIP, video, delay_s))


def enqueue_upload(cfg: Config, video: Video) -> PendingTask:
    """An upload row for a video cut elsewhere (tests, tools); the worker's own flow creates it
    with the clip row's completion."""
    row, _ = ledger.enqueue_row(upload_step(cfg, video))
    return row


def _due(cfg: Config, now_ts: float) -> Any:
    oldest = now_ts - cfg.retention.segment_days * 86400
    return (
        (Booking.status == "success")
        & (Booking.end_ts.is_null(False))
        & (Booking.end_ts + cfg.clips.grace_s <= now_ts)
        & (Booking.end_ts >= oldest)
    )


def due_bookings(cfg: Config, now_ts: float) -> list[Booking]:
    """`success` bookings that ended (plus the grace period) within the segment retention."""
    return list(Booking.select().where(_due(cfg, now_ts)).order_by(Booking.start_ts))


def _settled_videos(cfg: Config, now_ts: float) -> set[str]:
    """unique_ids of the due bookings' videos past `pending`: one query, so a scan does not
    ask once per booking x camera (a week of bookings, every few seconds, on a Pi)."""
    due_ids = Booking.select(Booking.booking_id).where(_due(cfg, now_ts))
    rows = Video.select(Video.unique_id).where(
        (Video.status != VideoStatus.PENDING) & Video.booking_id.in_(due_ids)
    )
    return {str(uid) for (uid,) in rows.tuples()}


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


def scan(cfg: Config, now_ts: float) -> list[PendingTask]:
    """Clip rows for every finished booking x camera of its field whose video waits to be cut.
    None while the clock is not trusted: by a clock hours ahead every booking of those hours
    looks finished (seen in the soak: 130 clips queued for bookings not played yet)."""
    created: list[PendingTask] = []
    if not wallclock.trust(now_ts).trusted:
        return created
    settled = _settled_videos(cfg, now_ts)
    for booking in due_bookings(cfg, now_ts):
        cameras = cfg.cameras_for_field(booking.field_id) if booking.field_id is not None else []
        for cam in cameras:
            if make_unique_id(booking.booking_id, cam.name, "full") in settled:
                continue
            video = ensure_video(cfg, booking, cam.name, "full", booking.start_ts, booking.end_ts)
            if video.status != VideoStatus.PENDING:
                continue
            row, new = enqueue_clip(cfg, video)
            if new:
                log.info(
                    "%s Clip task %d queued for booking %s camera %s (%s)",
                    logs.QUEUE, row.id, booking.booking_id, cam.name, row.unique_key.split(":", 1)[1],
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


# ---------------------------------------------------------------- a booking that changed


def booking_changed(cfg: Config, booking: Booking, now: dt.datetime | None = None) -> list[Video]:
    """A `success` booking's times or field changed (or it is on again after a cancellation):
    its full videos are cut again (booking-api.md 2b), those of cameras that no longer film its
    field are withdrawn. Returns the videos changed. The next clip scan queues the cuts."""
    changed: list[Video] = []
    if booking.start_ts is None or booking.end_ts is None:
        return changed
    cameras = (
        {c.name for c in cfg.cameras_for_field(booking.field_id)} if booking.field_id is not None else set()
    )
    for video in Video.select().where(
        (Video.booking_id == booking.booking_id) & (Video.video_type == "full")
    ):
        if video.status == VideoStatus.EXPIRED:
            continue  # the operator gave it up; `queue retry` can still bring it back
        if video.camera not in cameras:
            if video.status != VideoStatus.CANCELLED:
                reason = (
                    f"booking moved to field {booking.field_id}, which camera {video.camera} does not film"
                )
                _supersede(video, video.revision + 1, reason, now)
                changed.append(
                    videos.transition(video, VideoStatus.CANCELLED, reason, prefix=logs.BOOKING, now=now)
                )
            continue
        same = (video.start_ts, video.end_ts) == (booking.start_ts, booking.end_ts)
        if same and video.status != VideoStatus.CANCELLED:
            continue
        if video.status == VideoStatus.LIVE and video.start_ts == booking.start_ts:
            # Being built live: it follows the new end (its runner hands it back if it must).
            reason = f"booking end moved to {booking.date} {booking.end_time}"
            changed.append(videos.transition(video, VideoStatus.LIVE, reason, prefix=logs.BOOKING, now=now,
                                             end_ts=booking.end_ts))  # fmt: skip
            continue
        why = "booking is on again" if same else (
            f"booking times changed to {booking.date} {booking.start_time}-{booking.end_time}"
        )  # fmt: skip
        video = videos.recut(video, booking.start_ts, booking.end_ts, why, now=now)
        _supersede(video, video.revision, f"superseded by revision {video.revision}: {why}", now)
        changed.append(video)
    return changed


def _supersede(video: Video, revision: int, reason: str, now: dt.datetime | None) -> None:
    """Cancel the waiting and dead-lettered rows of this video's revisions before `revision`.
    A running one finishes on its own: its handler sees the newer revision and stops."""
    stale = [
        r.id
        for r in ledger.rows_for_video(video.booking_id, video.unique_id,
                                       (TaskStatus.PENDING, TaskStatus.FAILED))
        if row_revision(r) < revision
    ]  # fmt: skip
    if stale:
        ledger.cancel(stale, reason, now, statuses=(TaskStatus.PENDING, TaskStatus.FAILED))
        log.info("%s %d task(s) of %s cancelled: %s", logs.QUEUE, len(stale), video.unique_id, reason)


# ---------------------------------------------------------------- on-site highlight


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


def request_highlight(
    cfg: Config, field_id: int, now: dt.datetime | None = None
) -> tuple[dict[str, Any], list[PendingTask]]:
    """A clip of the last minute of the booking running on a field (seed 001's on-site request).

    It goes through the normal clip/upload/notify path; the clip waits until the segment
    holding "now" is closed. Its unique_id carries the request time, so each press is its
    own video and a retried request for the same second is the same one. Returns the answer
    and the clip rows, which the caller hands to the worker.
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
    log.info("%s Highlight requested on field %d for booking %s: %s",
             logs.QUEUE, field_id, booking.booking_id, uids)  # fmt: skip
    answer = {
        "success": True,
        "message": f"Highlight clip queued for booking {booking.booking_id}",
        "booking_id": booking.booking_id,
        "field_id": field_id,
        "unique_ids": uids,
        "ready_after": to_naive_utc(now_ts + wait).isoformat() + "Z",
    }
    return answer, rows
