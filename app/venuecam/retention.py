"""Freeing disk space without losing anything that is not yet safe in the bucket.

Invariants (DESIGN.md): a segment is never deleted while a booking that needs it has no
confirmed upload; a clip is never deleted before its upload is confirmed.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from venuecam import logs
from venuecam.config import Config
from venuecam.models import Booking, Segment, Video, VideoStatus

log = logging.getLogger("retention")

SAFE = (VideoStatus.UPLOADED, VideoStatus.NOTIFIED, VideoStatus.CANCELLED)
# A video given up by the operator (`queue cancel`) needs its footage no more; its clip, if cut,
# is not in the bucket, so it is not SAFE for clip removal.
SEGMENTS_FREE = (*SAFE, VideoStatus.EXPIRED)


@dataclass(frozen=True)
class Outcome:
    segments_removed: int
    clips_removed: int
    bytes_freed: int
    still_short: bool


def free_percent(path: str) -> float:
    usage = shutil.disk_usage(path)
    return 100.0 * usage.free / usage.total if usage.total else 100.0


def protected_spans(cfg: Config) -> dict[str, list[tuple[float, float]]]:
    """Per camera, the spans some booking still needs: no video yet, or one not safely uploaded."""
    spans: dict[str, list[tuple[float, float]]] = {c.name: [] for c in cfg.cameras}
    videos = {(v.booking_id, v.camera): v.status for v in Video.select(Video.booking_id, Video.camera, Video.status)
              .where(Video.video_type == "full")}  # fmt: skip
    for b in Booking.select().where((Booking.status == "success") & Booking.start_ts.is_null(False)):
        for cam in cfg.cameras_for_field(b.field_id) if b.field_id is not None else []:
            if videos.get((b.booking_id, cam.name)) not in SEGMENTS_FREE:
                spans[cam.name].append((b.start_ts, b.end_ts))
    for v in Video.select().where((Video.video_type == "highlight") & Video.status.not_in(SEGMENTS_FREE)):
        spans.setdefault(v.camera, []).append((v.start_ts, v.end_ts))
    return spans


def _needed(seg: Segment, spans: dict[str, list[tuple[float, float]]]) -> bool:
    return any(seg.start_ts < end and seg.end_ts > start for start, end in spans.get(seg.camera, []))


def _remove(path: str) -> int:
    try:
        size = os.path.getsize(path)
        os.unlink(path)
        return size
    except FileNotFoundError:
        return 0


def enforce(
    cfg: Config, now_ts: float, free_pct: Callable[[str], float] = free_percent, clock_trusted: bool = True
) -> Outcome:
    """Remove old segments (past `segment_days`), then, while space is short, the oldest
    unneeded segments and the clips already safe in the bucket.

    Age is only judged by a trusted clock, and only for segments whose own times were
    trusted (`clock_ok`): a clock jumping from 1970 to now would otherwise make every
    segment recorded before the sync "56 years old". Space is freed whatever the clock says."""
    data_dir = str(cfg.data_dir)
    spans = protected_spans(cfg)
    removed = clips = freed = 0
    cutoff = now_ts - cfg.retention.segment_days * 86400

    def drop(seg: Segment) -> None:
        nonlocal removed, freed
        freed += _remove(seg.path)
        with Segment._meta.database.atomic():
            seg.delete_instance()
        removed += 1

    aged = Segment.select().where((Segment.end_ts < cutoff) & (Segment.clock_ok == 1))
    for seg in aged.order_by(Segment.start_ts) if clock_trusted else []:
        if not _needed(seg, spans):
            drop(seg)

    short = free_pct(data_dir) < cfg.retention.min_free_percent
    if short:
        # Clips already safe in the bucket go first: the bucket has them.
        for v in (
            Video.select()
            .where(Video.status.in_(SAFE) & Video.mp4_path.is_null(False))
            .order_by(Video.start_ts)
        ):
            for p in (v.mp4_path, v.preview_path, v.thumb_path):
                if p:
                    freed += _remove(p)
            with Video._meta.database.atomic():
                Video.update(mp4_path=None, preview_path=None, thumb_path=None).where(
                    Video.id == v.id
                ).execute()
            clips += 1
            if free_pct(data_dir) >= cfg.retention.min_free_percent:
                break
    if free_pct(data_dir) < cfg.retention.min_free_percent:
        for seg in list(Segment.select().order_by(Segment.start_ts)):
            if _needed(seg, spans):
                continue
            drop(seg)
            if free_pct(data_dir) >= cfg.retention.min_free_percent:
                break
    still_short = free_pct(data_dir) < cfg.retention.min_free_percent
    if removed or clips:
        log.info("%s Retention: %d segment(s), %d clip(s) removed, %.1f MB freed",
                 logs.CAPTURE, removed, clips, freed / 1e6)  # fmt: skip
    if still_short:
        log.warning("%s Disk below %.0f%% free and everything left is still needed by a booking not yet uploaded",
                    logs.CAPTURE, cfg.retention.min_free_percent)  # fmt: skip
    return Outcome(removed, clips, freed, still_short)
