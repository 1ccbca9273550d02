"""What each ledger task type does. Each handler raises on failure (execute.py decides
what a failure means) and, on success, queues the next step of the flow."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from venuecam import ledger, logs, pipeline
from venuecam.errors import ClipError
from venuecam.models import Booking, PendingTask, Video, VideoStatus
from venuecam.timeutil import utcnow
from venuecam.worker import dispatch

if TYPE_CHECKING:
    from venuecam.config import Config
    from venuecam.worker.tasks import Tasks

log = logging.getLogger("worker")
TERMINAL = (VideoStatus.CANCELLED, VideoStatus.EXPIRED)


def _video(row: PendingTask) -> Video:
    return Video.get(Video.unique_id == row.data["unique_id"])


def _set(video: Video, **fields: Any) -> None:
    fields["updated_at"] = utcnow()
    with Video._meta.database.atomic():
        Video.update(**fields).where(Video.id == video.id).execute()
    for k, v in fields.items():
        setattr(video, k, v)


def handle_clip(cfg: Config, tasks: Tasks, row: PendingTask) -> None:
    from venuecam.clips.service import cut_video

    video = _video(row)
    if video.status in TERMINAL:
        return
    if video.status == VideoStatus.PENDING:
        try:
            video = cut_video(cfg, video)
        except ClipError as e:
            if row.attempts >= row.max_attempts:
                _set(video, status=VideoStatus.FAILED, status_msg=str(e))
            raise
    dispatch.dispatch_new(tasks, pipeline.after_clip(cfg, video))


def handle_upload(cfg: Config, tasks: Tasks, row: PendingTask) -> None:
    from venuecam.storage.service import upload_video

    video = _video(row)
    if video.status in TERMINAL:
        return
    if video.status == VideoStatus.READY:
        last = [0.0]

        def save_state(state: dict[str, Any]) -> None:
            ledger.save_progress(row.id, state)

        def on_progress(done: int, total: int) -> None:
            if time.monotonic() - last[0] >= 1.0 or done >= total:
                last[0] = time.monotonic()
                ledger.heartbeat(row.id, bytes_done=done, bytes_total=total)

        from venuecam.storage.client import make_client
        from venuecam.worker.linkwatch import LinkWatch, SocketTracker

        # Our own client, its sockets tracked: on the watchdog's reconnect the stalled
        # connection is dropped and the current part resent at once (worker/linkwatch.py).
        client = make_client(cfg.storage)
        with LinkWatch(cfg.run_dir, SocketTracker(client)):
            result = upload_video(cfg, video, ledger.get(row.id).progress, save_state, on_progress,  # type: ignore[union-attr]
                                  client=client)  # fmt: skip
        _set(
            video,
            status=VideoStatus.UPLOADED,
            mp4_key=result.get("mp4_key"),
            preview_key=result.get("preview_key"),
            thumb_key=result.get("thumbnail_key"),
            mp4_url=result.get("mp4_url"),
            preview_url=result.get("preview_url"),
            thumb_url=result.get("thumbnail_url"),
        )
        log.info("%s Upload completed for %s (booking %s)", logs.UPLOAD, video.unique_id, video.booking_id)
        if cfg.queue.delete_after_upload:
            _delete_clip_files(video)
    dispatch.dispatch_new(tasks, pipeline.after_upload(cfg, video))


def _delete_clip_files(video: Video) -> None:
    """Only after the store confirmed all three objects (the upload verified size and checksum)."""
    for path in (video.mp4_path, video.preview_path, video.thumb_path):
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    log.info("%s Local files of %s removed after confirmed upload", logs.UPLOAD, video.unique_id)


def notification_payload(cfg: Config, video: Video) -> dict[str, Any]:
    booking = Booking.get_or_none(Booking.booking_id == video.booking_id)
    urls = _urls(cfg, video)
    return {
        "unique_id": video.unique_id,
        "booking_id": video.booking_id,
        "order_detail_id": booking.order_detail_id if booking else None,
        "field_id": video.field_id,
        "camera": video.camera,
        "video_type": video.video_type,
        "mp4_url": urls["mp4_url"],
        "preview_url": urls["preview_url"],
        "thumbnail_url": urls["thumbnail_url"],
        "duration_seconds": round(float(video.duration_s or 0.0), 3),
        "size_bytes": int(video.size_bytes or 0),
        "sha256": video.sha256,
    }


def _urls(cfg: Config, video: Video) -> dict[str, str]:
    """Public URLs are stable; presigned ones are made fresh at send time (7 days from now)."""
    from venuecam.storage.client import make_client
    from venuecam.storage.urls import object_url

    client = None if cfg.storage.public_base_url else make_client(cfg.storage)
    return {
        name: object_url(client, cfg.storage.bucket, key, cfg.storage.public_base_url)
        for name, key in (("mp4_url", video.mp4_key), ("preview_url", video.preview_key),
                          ("thumbnail_url", video.thumb_key))
    }  # fmt: skip


def handle_notify(cfg: Config, tasks: Tasks, row: PendingTask) -> None:
    from venuecam import shared_state
    from venuecam.booking.client import PlatformClient

    video = _video(row)
    if video.status in TERMINAL:
        return
    if video.status == VideoStatus.NOTIFIED:
        return
    if video.status != VideoStatus.UPLOADED:
        raise ClipError(f"video {video.unique_id} is {video.status}, not uploaded: cannot notify")
    payload = notification_payload(cfg, video)
    result = PlatformClient(cfg.booking_api).notify_video(payload, video.unique_id)
    shared_state.clear_auth_problem()
    _set(video, status=VideoStatus.NOTIFIED, status_msg=None)
    log.info(
        "%s Notification sent successfully for %s (booking %s, %s)",
        logs.API, video.unique_id, video.booking_id, getattr(result, "status", "delivered"),
    )  # fmt: skip
