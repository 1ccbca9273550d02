"""The booking sync: the platform's bookings around today, upserted into `bookings`.

Each page is one transaction, so a failure mid-run keeps what was stored before it and the
run raises for the caller's job machinery to retry. Bookings missing from the platform's
list are never deleted here (`booking.purge` removes them after `retention.booking_days`).
A booking that is now cancelled cancels its videos that are still in progress and their
ledger rows (seed 001). A `success` booking whose times or field changed after its videos
were made has them cut again (booking-api.md 2b, `pipeline.booking_changed`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from venuecam import ledger, logs, pipeline, videos
from venuecam.booking.parse import BookingRecord, Page, normalize_page
from venuecam.config import Config
from venuecam.models import Booking, Video, VideoStatus
from venuecam.timeutil import UTC, utcnow

log = logging.getLogger(__name__)

CANCELLED = "cancelled"
CANCEL_REASON = "Booking cancelled via API"
# Videos still on their way; notified, failed, expired and cancelled ones stay as they are.
_VIDEO_IN_PROGRESS = (VideoStatus.PENDING, VideoStatus.LIVE, VideoStatus.READY, VideoStatus.UPLOADED)
_COMPARED = (
    "order_detail_id",
    "field_id",
    "field_name",
    "date",
    "start_time",
    "end_time",
    "status",
    "user_name",
    "user_phone",
    "raw_json",
    "start_ts",
    "end_ts",
)
# A change to these after a video was made means the video shows the wrong stretch or court.
_RECUT_ON = ("start_ts", "end_ts", "field_id")

# progress(stage, message, offset, current_total, expected_total): seed 002's progressInfo.
ProgressFn = Callable[[str, str, int, int, int], None]


class BookingSource(Protocol):
    def iter_bookings(self, venue_id: str, date: str) -> Any: ...


@dataclass
class SyncResult:
    fetched: int = 0  # records received, bad ones included
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0  # bad records (logged one by one)
    duplicates: int = 0  # same booking_id again within one page (the last one kept)
    unknown_status: int = 0  # stored with status 'unknown', not processed
    cancelled: int = 0  # bookings that became cancelled in this run
    videos_cancelled: int = 0
    tasks_cancelled: int = 0
    videos_recut: int = 0  # booking changed after its video was made (booking-api.md 2b)
    pages: int = 0
    dates: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def sync_dates(now: dt.datetime, tz: Any, days_back: int) -> list[str]:
    """Venue-local dates from today - days_back to tomorrow. `now` is naive UTC."""
    today = now.replace(tzinfo=UTC).astimezone(tz).date()
    return [(today + dt.timedelta(days=d)).isoformat() for d in range(-max(days_back, 0), 2)]


def sync_bookings(
    cfg: Config,
    client: BookingSource | None = None,
    now: dt.datetime | None = None,
    progress: ProgressFn | None = None,
) -> SyncResult:
    """Fetch and store the venue's bookings. Needs the database open (`db.open_db`)."""
    now = now or utcnow()
    result = SyncResult(dates=sync_dates(now, cfg.tz, cfg.booking_api.days_back))
    own_client = client is None
    if client is None:
        from venuecam.booking.client import PlatformClient

        client = PlatformClient(cfg.booking_api)
    report = progress or (lambda *a: None)
    expected = 0
    try:
        for date in result.dates:
            offset = 0
            report("fetching", f"Fetching bookings for {date}", offset, result.fetched, expected)
            pages = client.iter_bookings(cfg.device.venue_id, date)
            while True:
                try:
                    page = next(pages)
                except StopIteration:
                    break
                except Exception as e:
                    log.warning(
                        "%s Sync stopped at %s offset %d (%d pages stored): %s",
                        logs.BOOKING,
                        date,
                        offset,
                        result.pages,
                        logs.redact(str(e)),
                    )
                    raise
                if offset == 0 and page.total is not None:
                    expected += page.total
                _store_page(page, cfg, now, result)
                offset += len(page.records)
                report(
                    "fetching",
                    f"Stored {len(page.records)} bookings for {date} (offset {offset})",
                    offset,
                    result.fetched,
                    expected,
                )
    finally:
        if own_client:
            client.close()  # type: ignore[attr-defined]
    report("done", _summary(result), result.fetched, result.fetched, expected)
    log.info("%s Sync done: %s", logs.BOOKING, _summary(result))
    return result


def _summary(r: SyncResult) -> str:
    return (
        f"{r.fetched} fetched, {r.created} created, {r.updated} updated, {r.unchanged} unchanged, "
        f"{r.skipped} skipped, {r.duplicates} duplicates, {r.cancelled} cancelled, "
        f"{r.videos_recut} video(s) to cut again "
        f"over {r.pages} pages ({', '.join(r.dates)})"
    )


def _store_page(page: Page, cfg: Config, now: dt.datetime, result: SyncResult) -> None:
    norm = normalize_page(page.records, cfg.tz)
    result.pages += 1
    result.fetched += len(page.records)
    for rej in norm.rejections:
        result.skipped += 1
        log.warning("%s Skipped booking %s: %s", logs.BOOKING, rej.booking_id or "(no id)", rej.reason)
    for dup in norm.duplicates:
        result.duplicates += 1
        log.warning("%s Booking %s appears more than once in one page; keeping the last", logs.BOOKING, dup)
    db = Booking._meta.database
    with db.atomic():
        # One read of the page's bookings and one write for those that did not change: a
        # page is 250 bookings, and a row-by-row upsert held the write lock for seconds on
        # a loaded box (the worker's commits waited behind it).
        ids = [rec.booking_id for rec in norm.records]
        existing = {b.booking_id: b for b in Booking.select().where(Booking.booking_id.in_(ids))}
        unchanged: list[str] = []
        for rec in norm.records:
            if _upsert(cfg, rec, existing.get(rec.booking_id), now, result):
                unchanged.append(rec.booking_id)
        if unchanged:
            Booking.update(last_sync_at=now).where(Booking.booking_id.in_(unchanged)).execute()


def _upsert(
    cfg: Config, rec: BookingRecord, existing: Booking | None, now: dt.datetime, result: SyncResult
) -> bool:
    """Store one booking; True if it was there already, unchanged (its last_sync_at is the
    caller's, for the whole page at once)."""
    cols = rec.columns()
    if rec.status == "unknown":
        result.unknown_status += 1
        log.warning(
            "%s Booking %s has unknown status %r; stored as 'unknown', not processed",
            logs.BOOKING,
            rec.booking_id,
            rec.raw_status,
        )
    became_cancelled = False
    recut = False
    changed: dict[str, Any] = {}
    if existing is None:
        Booking.create(**cols, created_at=now, updated_at=now, last_sync_at=now)
        result.created += 1
        became_cancelled = rec.status == CANCELLED
        log.info("%s Created new booking %s (status: %s)", logs.BOOKING, rec.booking_id, rec.status)
    else:
        changed = {k: cols[k] for k in _COMPARED if getattr(existing, k) != cols[k]}
        if changed:
            became_cancelled = rec.status == CANCELLED and existing.status != CANCELLED
            recut = rec.status == "success" and (
                any(k in changed for k in _RECUT_ON) or existing.status == CANCELLED
            )
            Booking.update(**changed, updated_at=now, last_sync_at=now).where(
                Booking.id == existing.id
            ).execute()
            result.updated += 1
            log.info("%s Updated booking %s (status: %s)", logs.BOOKING, rec.booking_id, rec.status)
        else:
            result.unchanged += 1
    if became_cancelled:
        result.cancelled += 1
    if rec.status == CANCELLED:
        # Also for an already-cancelled booking: a video made meanwhile must not go out.
        _cancel_work(rec.booking_id, now, result)
    if recut:
        booking = Booking.get(Booking.booking_id == rec.booking_id)
        result.videos_recut += len(pipeline.booking_changed(cfg, booking, now))
    return existing is not None and not changed


def _cancel_work(booking_id: str, now: dt.datetime, result: SyncResult) -> None:
    in_progress = list(
        Video.select().where((Video.booking_id == booking_id) & (Video.status.in_(_VIDEO_IN_PROGRESS)))
    )
    for video in in_progress:
        try:
            videos.transition(video, VideoStatus.CANCELLED, CANCEL_REASON, prefix=logs.BOOKING, now=now)
        except videos.VideoChanged:
            continue  # a worker moved it on meanwhile; the next sync sees it again
        result.videos_cancelled += 1
    tasks = ledger.cancel_for_booking(booking_id, CANCEL_REASON, now=now)
    if tasks:
        result.tasks_cancelled += tasks
        log.info("%s Cancelled %d queued tasks of cancelled booking %s", logs.BOOKING, tasks, booking_id)
