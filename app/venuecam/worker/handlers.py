"""What each ledger task type does. A handler raises on failure (`policy` and `execute` decide
what a failure means) and on success returns `Done`: the next step of the flow, which
`execute` records in the same commit that completes this row and then dispatches.

Every handler first checks the row still matters: a row of an older revision of its video
(the booking changed, booking-api.md 2b) or of a video that was cancelled or given up is
done without doing anything. Each is safe to run again after a crash: a step already done
(the video is past it) returns the next step again, which the ledger finds existing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from venuecam import ledger, logs, pipeline, retry, shared_state, videos, wallclock
from venuecam.booking import notify
from venuecam.booking.client import PlatformClient
from venuecam.clips.service import cut_video
from venuecam.config import Config
from venuecam.errors import AuthError, ClipError, RetryLater
from venuecam.jobs import runner as job_runner
from venuecam.models import Booking, PendingTask, Segment, TaskStatus, TaskType, Video, VideoStatus
from venuecam.storage.multipart import UploadStopped
from venuecam.storage.service import upload_video_watched, video_urls
from venuecam.worker import policy
from venuecam.worker.dispatch import online

log = logging.getLogger("worker")
# An upload of an older revision still running: the new one waits this long and looks again.
OLDER_UPLOAD_RETRY_S = 15.0
# A clip waiting for the wall clock to be trusted looks again this often.
CLOCK_RETRY_S = 30.0
RETIME_RETRY_S = 3.0  # the clock watch looks every 2 s
# A clip row meeting a video the live path builds looks again this often.
LIVE_RETRY_S = 30.0


@dataclass(frozen=True)
class Done:
    """A row's work is done. `next_step`: the row to create with its completion; `rescan`:
    bookings changed, so a clip scan should run."""

    next_step: ledger.NewRow | None = None
    rescan: bool = False


Handler = Callable[[Config, PendingTask], Done]


def _video(row: PendingTask) -> Video:
    uid = row.data.get("unique_id")
    video = videos.get(str(uid)) if uid else None
    if video is None:
        raise ClipError(f"task {row.id}: no video {uid!r} in the database")
    return video


def _stale(row: PendingTask, video: Video) -> str | None:
    """Why this row no longer matters, or None."""
    if pipeline.row_revision(row) < int(video.revision or 1):
        return f"superseded by revision {video.revision}"
    if video.status in videos.STOPPED:
        return f"video is {video.status}"
    return None


def _skip(row: PendingTask, why: str) -> Done:
    log.info("%s Task %d (%s) has nothing to do: %s", logs.QUEUE, row.id, row.task_type, why)
    return Done()


def _retime_pending() -> bool:
    boot = wallclock.boot_id()
    if boot == "unknown":  # no boot id: nothing can be told apart, nothing is waited for
        return False
    return bool(Segment.select().where((Segment.clock_ok == 0) & (Segment.boot_id == boot)).exists())


def handle_clip(cfg: Config, row: PendingTask) -> Done:
    video = _video(row)
    clock = wallclock.trust()
    if not clock.trusted:
        # A booking's bounds are wall-clock times: cut by an unset clock, the clip would hold
        # the wrong minutes. Waits (not counted) until time syncs and segments are re-timed.
        raise RetryLater(f"{clock.reason}: the clip waits until it is", CLOCK_RETRY_S)
    if _retime_pending():
        # The clock was just trusted; the clock watch re-times this boot's earlier segments
        # within seconds. Cut before it has, the clip would find none for those minutes.
        raise RetryLater("segments recorded before time synced are being re-timed", RETIME_RETRY_S)
    due_ts = float(video.end_ts) + cfg.clips.grace_s
    if (wait := due_ts - time.time()) > 0:
        # Queued early (by a clock that was ahead, before it was set right): its footage is
        # not recorded yet. Cut now, it would fail for want of segments and be dead-lettered.
        raise RetryLater(f"booking {video.booking_id} is not over yet: the clip waits for its end",
                         max(1.0, wait))  # fmt: skip
    for _ in range(3):  # the booking may change while we cut: cut its new bounds
        if why := _stale(row, video):
            return _skip(row, why)
        if video.status == VideoStatus.LIVE:
            # The live path has it; if it hands it back (pending), this row cuts it then.
            raise RetryLater(f"video {video.unique_id} is being built live", LIVE_RETRY_S)
        if video.status != VideoStatus.PENDING:
            break
        try:
            cut_video(cfg, video)
        except videos.VideoChanged:
            video = _video(row)
            continue
        break
    if video.status == VideoStatus.READY:
        return Done(pipeline.upload_step(cfg, video))
    if video.status in (VideoStatus.UPLOADED, VideoStatus.NOTIFIED):
        return Done()  # cut, uploaded and further before: its later rows exist
    raise ClipError(f"video {video.unique_id} is {video.status}, not pending: cannot cut it")


def handle_upload(cfg: Config, row: PendingTask) -> Done:
    video = _video(row)
    if why := _stale(row, video):
        return _skip(row, why)
    if video.status == VideoStatus.UPLOADED:
        return Done(pipeline.notify_step(cfg, video))  # done before a crash
    if video.status == VideoStatus.NOTIFIED:
        return Done()
    if video.status != VideoStatus.READY:
        raise ClipError(f"video {video.unique_id} is {video.status}, not ready: cannot upload")
    older = [r for r in ledger.rows_for_video(video.booking_id, video.unique_id)
             if r.task_type == TaskType.UPLOAD and r.id != row.id and r.status == TaskStatus.PROCESSING]  # fmt: skip
    if older:
        # The same keys: the older revision's upload must not complete after this one.
        raise RetryLater(f"upload of {video.unique_id}: an older revision's upload is still running",
                         OLDER_UPLOAD_RETRY_S)  # fmt: skip
    revision = int(video.revision or 1)
    last = [0.0]

    def save_state(state: dict[str, Any]) -> None:
        ledger.save_progress(row.id, state)

    def on_progress(done: int, total: int) -> None:
        if time.monotonic() - last[0] >= 1.0 or done >= total:
            last[0] = time.monotonic()
            ledger.heartbeat(row.id, bytes_done=done, bytes_total=total)

    def superseded() -> bool:
        now = Video.get_or_none(Video.id == video.id)
        return now is None or int(now.revision or 1) != revision or now.status in videos.STOPPED

    progress = ledger.get(row.id).progress  # type: ignore[union-attr]
    try:
        result = upload_video_watched(cfg, video, progress, save_state, on_progress, should_stop=superseded)
    except UploadStopped:
        if superseded():
            return _skip(row, "the video changed during the upload")
        raise
    videos.transition(
        video, VideoStatus.UPLOADED, "all three objects stored and verified", prefix=logs.UPLOAD,
        mp4_key=result["mp4_key"], preview_key=result["preview_key"], thumb_key=result["thumbnail_key"],
        mp4_url=result["mp4_url"], preview_url=result["preview_url"], thumb_url=result["thumbnail_url"],
    )  # fmt: skip
    log.info("%s Upload completed for %s (booking %s)", logs.UPLOAD, video.unique_id, video.booking_id)
    if cfg.queue.delete_after_upload:
        _delete_clip_files(video)
    return Done(pipeline.notify_step(cfg, video))


def _delete_clip_files(video: Video) -> None:
    """Only after the store confirmed all three objects (the upload verified size and checksum)."""
    for path in (video.mp4_path, video.preview_path, video.thumb_path):
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    log.info("%s Local files of %s removed after confirmed upload", logs.UPLOAD, video.unique_id)


def handle_notify(cfg: Config, row: PendingTask) -> Done:
    video = _video(row)
    if why := _stale(row, video):
        return _skip(row, why)
    if video.status == VideoStatus.NOTIFIED:
        return Done()
    if video.status != VideoStatus.UPLOADED:
        raise ClipError(f"video {video.unique_id} is {video.status}, not uploaded: cannot notify")
    booking = Booking.get_or_none(Booking.booking_id == video.booking_id)
    body = notify.payload(video, booking, video_urls(cfg, video))
    with PlatformClient(cfg.booking_api) as client:
        result = client.notify_video(body, notify.idempotency_key(video.unique_id, int(video.revision or 1)))
    shared_state.clear_auth_problem()
    videos.transition(video, VideoStatus.NOTIFIED, result.status, prefix=logs.API)
    log.info("%s Notification sent successfully for %s (booking %s, %s)",
             logs.API, video.unique_id, video.booking_id, result.status)  # fmt: skip
    return Done()


def handle_sync(cfg: Config, row: PendingTask) -> Done:
    """One attempt of a seed-002 sync job. A failure with attempts left is re-raised, so the
    ledger schedules the next attempt; the last one (or a permanent error) ends the job."""
    job_id = str(row.data.get("job_id", ""))
    schedule = retry.schedule_for(cfg, TaskType.SYNC)
    attempts, limit = row.attempts, row.max_attempts

    def retry_in(error: BaseException) -> float | None:
        return policy.next_try_in(policy.judge(error, online(), schedule), schedule, attempts, limit)

    outcome = job_runner.run_attempt(cfg, job_id, attempts, limit, retry_in)
    if outcome.state == "completed":
        shared_state.clear_auth_problem()
        return Done(rescan=True)
    if isinstance(outcome.error, AuthError):
        shared_state.set_auth_problem(str(outcome.error))
    if outcome.state == "retrying" and outcome.error is not None:
        raise outcome.error
    return Done()


HANDLERS: dict[str, Handler] = {
    TaskType.CLIP: handle_clip,
    TaskType.UPLOAD: handle_upload,
    TaskType.NOTIFY: handle_notify,
    TaskType.SYNC: handle_sync,
}


def on_dead_letter(cfg: Config, row: PendingTask, error: str) -> None:
    """A row spent its attempts: its video shows `failed` (with why), so `venuecam status`,
    the LEDs and `queue retry` agree; a sync job is marked failed."""
    if row.task_type == TaskType.SYNC:
        job_runner.fail_job(str(row.data.get("job_id", "")), f"{error} (after {row.attempts} attempts)")
        return
    try:
        video = _video(row)
    except ClipError:
        return
    if _stale(row, video) or video.status == VideoStatus.FAILED:
        return
    try:
        videos.transition(video, VideoStatus.FAILED, f"{row.task_type} task {row.id} failed: {error}")
    except (videos.TransitionError, videos.VideoChanged) as e:
        log.warning("%s video %s not marked failed: %s", logs.QUEUE, video.unique_id, e)
