"""What a person does to the queue by hand: re-drive dead letters, give up expired work.

`venuecam queue retry` re-drives a failed row *and* resets its video to the state that row's
step starts from (a clip row: pending, so it is cut again; an upload: ready; a notification:
uploaded), so the step really runs again instead of finding its video `failed`.

`venuecam queue cancel` gives up expired work (waiting longer than queue.expiration_hours):
the rows are cancelled and their videos marked expired. Without it, expired work is still
delivered when it can be. A given-up row can still be re-driven by id (`queue retry ID`).

Both refuse ids that are not what they say (not failed, not expired) and change nothing then.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from venuecam import ledger, logs, pipeline, videos
from venuecam.config import Config
from venuecam.errors import BadInputError
from venuecam.jobs import runner as job_runner
from venuecam.models import PendingTask, TaskStatus, TaskType, VideoStatus
from venuecam.timeutil import utcnow

log = logging.getLogger("venuecam.redrive")

GIVEN_UP = "given up by the operator"
# The video state each step starts from.
STARTS_FROM = {TaskType.CLIP: VideoStatus.PENDING, TaskType.UPLOAD: VideoStatus.READY,
               TaskType.NOTIFY: VideoStatus.UPLOADED}  # fmt: skip


@dataclass
class Redriven:
    rows: list[PendingTask] = field(default_factory=list)
    videos_reset: list[str] = field(default_factory=list)


def _given_up(task_ids: Iterable[int]) -> list[PendingTask]:
    return list(
        PendingTask.select().where(
            PendingTask.id.in_(list(task_ids))
            & (PendingTask.status == TaskStatus.CANCELLED)
            & PendingTask.error_msg.startswith(GIVEN_UP)
        )
    )


def retry(task_ids: list[int] | None = None, now: dt.datetime | None = None) -> Redriven:
    """Re-drive failed rows (all, or `task_ids`, which may also name given-up rows)."""
    now = now or utcnow()
    out = Redriven()
    with PendingTask._meta.database.atomic():
        rows = ledger.redrivable(task_ids)
        if task_ids is not None:
            rows += _given_up(set(task_ids) - {r.id for r in rows})
            missing = sorted(set(task_ids) - {r.id for r in rows})
            if missing:
                raise BadInputError(f"task(s) {missing}: not failed or given up, nothing re-driven")
        for row in rows:
            uid = _reset_video(row, now)
            if uid:
                out.videos_reset.append(uid)
        ledger.reopen([r.id for r in rows], now)
        out.rows = [r for r in (ledger.get(r.id) for r in rows) if r is not None]
    if out.rows:
        log.info("%s %d task(s) re-driven by hand: %s; videos reset: %s", logs.QUEUE, len(out.rows),
                 [r.id for r in out.rows], out.videos_reset or "none")  # fmt: skip
    return out


def _reset_video(row: PendingTask, now: dt.datetime) -> str | None:
    target = STARTS_FROM.get(row.task_type)
    uid = row.data.get("unique_id")
    video = videos.get(str(uid)) if target and uid else None
    if video is None or pipeline.row_revision(row) != int(video.revision or 1):
        return None  # no video, or a superseded revision: the row will find nothing to do
    if video.status not in (VideoStatus.FAILED, VideoStatus.EXPIRED):
        return None
    videos.transition(video, target, f"{row.task_type} task {row.id} re-driven by hand", now=now)
    return video.unique_id


def give_up_expired(
    cfg: Config, task_ids: list[int] | None = None, now: dt.datetime | None = None
) -> list[int]:
    """Cancel expired waiting rows (all, or `task_ids`); their videos become `expired`."""
    now = now or utcnow()
    with PendingTask._meta.database.atomic():
        rows = [r for r in ledger.overdue(cfg.queue.expiration_hours, now, task_ids)
                if r.status == TaskStatus.PENDING]  # fmt: skip
        if task_ids is not None:
            missing = sorted(set(task_ids) - {r.id for r in rows})
            if missing:
                raise BadInputError(
                    f"task(s) {missing}: not expired and waiting (expired: waiting longer than "
                    f"queue.expiration_hours = {cfg.queue.expiration_hours} h, and not running now); "
                    "nothing given up"
                )
        hours = cfg.queue.expiration_hours
        cancelled = ledger.cancel([r.id for r in rows], f"{GIVEN_UP} after waiting over {hours} h", now)
        for row in rows:
            _expire_video(row, hours, now)
    if cancelled:
        log.warning("%s %d expired task(s) %s: %s", logs.QUEUE, len(cancelled), GIVEN_UP, cancelled)
    return cancelled


def _expire_video(row: PendingTask, hours: int, now: dt.datetime) -> None:
    if row.task_type == TaskType.SYNC:
        job_runner.fail_job(str(row.data.get("job_id", "")), f"{GIVEN_UP} after waiting over {hours} h", now)
        return
    uid = row.data.get("unique_id")
    video = videos.get(str(uid)) if uid else None
    if video is None or pipeline.row_revision(row) != int(video.revision or 1):
        return
    if VideoStatus.EXPIRED in videos.ALLOWED.get(video.status, {}):
        videos.transition(video, VideoStatus.EXPIRED, f"{GIVEN_UP} after waiting over {hours} h", now=now)
