"""Seed 001's DeleteOldBookings: players' names and phone numbers are not kept forever.

Daily, bookings that ended more than `retention.booking_days` (90) ago are deleted. One whose
video is still on its way (waiting, failed and re-drivable) keeps its row, because the
notification needs its order_detail_id, but loses the personal data: name, phone and the
platform's raw JSON. Videos keep only ids, times and checksums; they stay.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

from venuecam import logs
from venuecam.config import Config
from venuecam.models import Booking, Video, VideoStatus
from venuecam.timeutil import naive_utc_to_ts, utcnow

log = logging.getLogger(__name__)

# A video in one of these needs nothing more from its booking.
FINISHED = (VideoStatus.NOTIFIED, VideoStatus.CANCELLED, VideoStatus.EXPIRED)


@dataclass(frozen=True)
class Purged:
    deleted: int
    scrubbed: int

    def summary(self, days: int) -> str:
        return f"{self.deleted} booking(s) older than {days} days deleted, {self.scrubbed} kept without personal data"


def delete_old_bookings(cfg: Config, now: dt.datetime | None = None) -> Purged:
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=cfg.retention.booking_days)
    cutoff_ts = naive_utc_to_ts(cutoff)
    old = Booking.select(
        Booking.id, Booking.booking_id, Booking.user_name, Booking.user_phone, Booking.raw_json
    ).where((Booking.end_ts < cutoff_ts) | (Booking.end_ts.is_null() & (Booking.updated_at < cutoff)))
    deleted = scrubbed = 0
    with Booking._meta.database.atomic():
        for b in list(old):
            open_videos = (
                Video.select()
                .where((Video.booking_id == b.booking_id) & Video.status.not_in(FINISHED))
                .count()
            )
            if not open_videos:
                Booking.delete().where(Booking.id == b.id).execute()
                deleted += 1
                continue
            bare = json.dumps({"booking_id": b.booking_id})
            if b.user_name is not None or b.user_phone is not None or b.raw_json != bare:
                Booking.update(user_name=None, user_phone=None, raw_json=bare, updated_at=now).where(
                    Booking.id == b.id
                ).execute()
                scrubbed += 1
    if deleted or scrubbed:
        log.info("%s %s", logs.BOOKING, Purged(deleted, scrubbed).summary(cfg.retention.booking_days))
    return Purged(deleted, scrubbed)
