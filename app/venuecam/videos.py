"""A video's status: the one place it changes, with the table of allowed changes.

Every writer (the clip cutter, the booking sync, the worker's handlers, `venuecam queue
retry` and `queue cancel`) calls `transition`. Each change is one compare-and-set UPDATE
(the row must still be in the status and revision the caller read) and one log line, so
two processes racing on a video never both win and nothing changes unseen.

    live (built during the booking) --stored live--> uploaded;  live --handed back--> pending
    pending  --cut---------> ready --uploaded--> uploaded --notified--> notified
       |  ^                   |  ^                  |  ^                   |
       |  '------------------ re-cut: the booking's times or field changed --'
       |                      |  |                  |  |
       +--> failed <----------+--|------------------+  |   a step dead-lettered;
       |     '--retry--> pending / ready / uploaded ---'   `queue retry` resets it
       +--> cancelled  (booking cancelled, or moved to a field this camera does not film)
       '--> expired    (waited past queue.expiration_hours; the operator gave it up)
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from venuecam import logs
from venuecam.errors import VenuecamError
from venuecam.models import Video, VideoStatus
from venuecam.timeutil import utcnow

log = logging.getLogger("venuecam.videos")

S = VideoStatus
# from -> {to: why such a change happens}. Anything else is refused.
ALLOWED: dict[str, dict[str, str]] = {
    S.PENDING: {
        S.READY: "cut from the segments",
        S.FAILED: "the clip task dead-lettered",
        S.CANCELLED: "the booking was cancelled or moved",
        S.EXPIRED: "given up after it expired",
        S.PENDING: "booking changed before the cut: new bounds",
        S.LIVE: "built while the booking is played",
    },
    S.LIVE: {
        S.UPLOADED: "built and stored live: all three objects verified",
        S.PENDING: "handed to the after-booking path, or the booking's start or field changed",
        S.LIVE: "the booking's end moved: the live video follows it",
        S.CANCELLED: "the booking was cancelled or moved",
        S.FAILED: "the live path failed",
        S.EXPIRED: "given up after it expired",
    },
    S.READY: {
        S.UPLOADED: "all three objects stored and verified",
        S.FAILED: "the upload task dead-lettered",
        S.CANCELLED: "the booking was cancelled or moved",
        S.EXPIRED: "given up after it expired",
        S.PENDING: "the booking changed: cut again",
    },
    S.UPLOADED: {
        S.NOTIFIED: "the platform acknowledged it",
        S.FAILED: "the notification task dead-lettered",
        S.CANCELLED: "the booking was cancelled or moved",
        S.EXPIRED: "given up after it expired",
        S.PENDING: "the booking changed: cut again as a new revision",
    },
    S.NOTIFIED: {
        S.PENDING: "the booking changed after delivery: cut again as a new revision",
    },
    S.FAILED: {
        S.PENDING: "re-driven by hand (clip), or the booking changed",
        S.READY: "re-driven by hand (upload)",
        S.UPLOADED: "re-driven by hand (notification)",
        S.CANCELLED: "the booking was cancelled or moved",
    },
    S.EXPIRED: {
        S.PENDING: "re-driven by hand (clip)",
        S.READY: "re-driven by hand (upload)",
        S.UPLOADED: "re-driven by hand (notification)",
        S.CANCELLED: "the booking was cancelled or moved",
    },
    S.CANCELLED: {
        S.PENDING: "the booking is on again (or back on this camera's field)",
    },
}
# No further work is done for a video in these states (a handler meeting one stops quietly).
STOPPED = (S.CANCELLED, S.EXPIRED)


class TransitionError(VenuecamError):
    """A change the table does not allow (a bug in the caller, or a bad hand edit)."""


class VideoChanged(VenuecamError):
    """Someone else changed the video since it was read (a booking change, a cancellation):
    the caller's work is superseded. Not an error of the task."""


def get(unique_id: str) -> Video | None:
    return Video.get_or_none(Video.unique_id == unique_id)


def transition(
    video: Video,
    to: str,
    reason: str,
    *,
    prefix: str = logs.CLIP,
    now: dt.datetime | None = None,
    **fields: Any,
) -> Video:
    """Move `video` (as the caller read it) to `to`, setting `fields` too; one log line.

    Raises TransitionError for a change not in `ALLOWED`, VideoChanged when the stored row is
    no longer in the status, revision and bounds the caller read. Updates `video` in place.
    """
    frm = str(video.status)
    if to not in ALLOWED.get(frm, {}):
        raise TransitionError(f"video {video.unique_id}: {frm} -> {to} is not allowed ({reason})")
    now = now or utcnow()
    values: dict[str, Any] = {"status": to, "updated_at": now, **fields}
    if "status_msg" not in values:
        values["status_msg"] = reason[:2000] if to in (S.FAILED, S.CANCELLED, S.EXPIRED) else None
    with Video._meta.database.atomic():
        n = (
            Video.update(**values)
            .where(
                (Video.id == video.id)
                & (Video.status == frm)
                & (Video.revision == video.revision)
                # The bounds are part of what was read: a cut made for old bounds must not land.
                & (Video.start_ts == video.start_ts)
                & (Video.end_ts == video.end_ts)
            )
            .execute()
        )
    if n != 1:
        raise VideoChanged(f"video {video.unique_id} changed meanwhile (was {frm} r{video.revision})")
    for k, v in values.items():
        setattr(video, k, v)
    revision = f" r{video.revision}" if video.revision and video.revision > 1 else ""
    log.info("%s Updated video %s%s to %s status for booking %s (was %s: %s)",
             prefix, video.unique_id, revision, to, video.booking_id, frm, reason)  # fmt: skip
    return video


def recut(
    video: Video, start_ts: float, end_ts: float, reason: str, *, prefix: str = logs.BOOKING,
    now: dt.datetime | None = None,
) -> Video:  # fmt: skip
    """Cut again with new bounds.

    A video not cut yet (pending) only gets the new bounds: its clip task cuts those (one
    already cutting notices at its `transition` and cuts again). Any other becomes a new
    revision with fresh ledger rows (booking-api.md 2b). It replaces the MP4 the platform may
    hold: this revision's if its objects reached the store (`mp4_url` is set by the upload;
    a notification can land even when its answer is lost), else the one this revision was
    already replacing. The object keys stay those of the first upload (`mp4_key` is kept).
    """
    fields: dict[str, Any] = {"start_ts": start_ts, "end_ts": end_ts}
    if video.status not in (S.PENDING, S.LIVE):  # neither has reached the platform
        stored = bool(video.mp4_url and video.sha256)
        fields.update(
            revision=int(video.revision or 1) + 1,
            replaces_sha256=video.sha256 if stored else video.replaces_sha256,
            mp4_url=None, preview_url=None, thumb_url=None,
        )  # fmt: skip
    return transition(video, S.PENDING, reason, prefix=prefix, now=now, **fields)
