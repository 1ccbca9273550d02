"""Cutting one Video row (a booking x camera) from the indexed segments."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from venuecam import logs, videos
from venuecam.clips import assemble
from venuecam.clips.plan import ClipPlan, plan_clip, select_consistent
from venuecam.config import Config
from venuecam.errors import BadInputError, ClipError, DiskFullError
from venuecam.media import tsinfo
from venuecam.media.probe import probe
from venuecam.models import Segment, Video, VideoStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UsableSegment:
    """A Segment row checked on disk, with its codec parameters known."""

    path: str
    start_ts: float
    end_ts: float
    codec: str
    width: int
    height: int


def check_path_component(value: str, what: str) -> str:
    """Refuse a name that would leave its directory or hide control characters in a path."""
    if (
        not value
        or value in (".", "..")
        or "/" in value
        or "\\" in value
        or ".." in value
        or any(ord(c) < 32 or ord(c) == 127 for c in value)
    ):
        raise BadInputError(f"{what} {value!r} is not a safe file name component")
    return value


def clip_paths(cfg: Config, video: Video) -> tuple[Path, Path, Path]:
    """(mp4, preview, thumbnail) for a video: clips/<booking_id>/<camera>/<unique_id>*."""
    booking = check_path_component(str(video.booking_id), "booking id")
    camera = check_path_component(str(video.camera), "camera")
    unique = check_path_component(str(video.unique_id), "unique id")
    folder = cfg.clips_dir / booking / camera
    return folder / f"{unique}.mp4", folder / f"{unique}_preview.mp4", folder / f"{unique}.jpg"


def usable_segments(rows: list[Segment]) -> tuple[list[UsableSegment], list[str]]:
    """Rows whose files exist and hold video; probes the ones indexed without codec parameters.

    Returns (usable, reasons for the others). A skipped file's seconds become a gap.
    """
    usable: list[UsableSegment] = []
    skipped: list[str] = []
    for row in rows:
        path = str(row.path)
        try:
            size = os.stat(path).st_size
        except OSError as e:
            skipped.append(f"{path}: {e.strerror}")
            continue
        if size == 0:
            skipped.append(f"{path}: empty file")
            continue
        codec, width, height = str(row.codec or ""), int(row.width or 0), int(row.height or 0)
        if tsinfo.is_ts(path) and tsinfo.first_video_pts(path) is None:
            skipped.append(f"{path}: no MPEG-TS video in it (corrupt)")
            continue
        if not (codec and width and height):
            try:
                p = probe(path)
            except BadInputError as e:
                skipped.append(str(e))
                continue
            codec, width, height = p.codec, p.width, p.height
        usable.append(UsableSegment(path, float(row.start_ts), float(row.end_ts), codec, width, height))
    return usable, skipped


def cut_video(cfg: Config, video: Video, now: dt.datetime | None = None) -> Video:
    """Cut the clip, preview and thumbnail of one Video row; fill the row and mark it READY.

    Raises ClipError when no segment covers the booking, BadInputError for an unsafe booking
    id, camera or unique id, videos.VideoChanged when the booking changed during the cut.
    """
    mp4_path, preview_path, thumb_path = clip_paths(cfg, video)
    start_ts, end_ts = float(video.start_ts), float(video.end_ts)
    rows = list(
        Segment.select()
        .where(
            (Segment.camera == video.camera)
            & (Segment.end_ts > start_ts)
            & (Segment.start_ts < end_ts)
            & (Segment.clock_ok == 1)  # filed by an unset clock and not re-timed: times unknown
        )
        .order_by(Segment.start_ts)
    )
    what = f"booking {video.booking_id} {video.unique_id}"
    if not rows:
        raise ClipError(
            f"{what}: no segments of camera {video.camera} between {start_ts:.0f} and {end_ts:.0f}"
        )
    usable, skipped = usable_segments(rows)
    for reason in skipped:
        log.warning("%s %s: skipping segment %s", logs.CLIP, what, reason)
    kept, dropped = select_consistent(usable, start_ts, end_ts)
    if dropped:
        k = kept[0]
        log.warning(
            "%s %s: %d segments differ from %s %dx%d and are left out (recorded as gaps)",
            logs.CLIP, what, len(dropped), k.codec, k.width, k.height,
        )  # fmt: skip
    plan = plan_clip(kept, start_ts, end_ts)
    if plan.empty:
        raise ClipError(f"{what}: none of the {len(rows)} segments of camera {video.camera} is readable")
    log.info(
        "%s %s: cutting %.0f s from %d segments (%d gaps)",
        logs.CLIP,
        what,
        plan.covered_s,
        len(plan.items),
        len(plan.gaps),
    )
    _check_room(plan, mp4_path.parent, what)
    result = assemble.assemble_mp4(plan, mp4_path)
    assemble.make_preview(
        mp4_path, preview_path, seconds=cfg.clips.preview_seconds, height=cfg.clips.preview_height
    )
    # A stream copy begins at the first keyframe at or after the in-point: the MP4's frames
    # start up to a keyframe interval in (its start_time), so half-way is taken over what
    # plays; a clip of a frame or two takes its first.
    plays_s = result.duration_s - probe(mp4_path).start_time
    at_s = min(5.0, plays_s / 2) if plays_s >= 1.0 else 0.0
    assemble.make_thumbnail(mp4_path, thumb_path, at_s=at_s)

    gaps_json = json.dumps([[round(a, 3), round(b, 3)] for a, b in plan.gaps])
    # VideoChanged if the booking changed while this cut ran: the caller cuts the new bounds.
    videos.transition(
        video, VideoStatus.READY,
        f"{result.duration_s:.1f} s, {result.size_bytes} bytes, sha256 {result.sha256[:12]}…"
        + (f", gaps {gaps_json}" if plan.gaps else ""),
        now=now, mp4_path=str(mp4_path), preview_path=str(preview_path), thumb_path=str(thumb_path),
        duration_s=result.duration_s, size_bytes=result.size_bytes, sha256=result.sha256, gaps_json=gaps_json,
    )  # fmt: skip
    return video


# Beyond the clip's own bytes: preview, thumbnail, and room for the databases to go on.
ROOM_MARGIN_BYTES = 8 * 1024 * 1024


def _check_room(plan: ClipPlan, folder: Path, what: str) -> None:
    """Refuse before writing when the clip cannot fit: ffmpeg would fill the disk to the last
    byte first, and on the box that disk also holds the databases (every write failing then)."""
    need = sum(os.path.getsize(item.path) for item in plan.items) + ROOM_MARGIN_BYTES
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need:
        raise DiskFullError(
            f"{what}: disk full (ENOSPC avoided): the clip needs about {need / 1e6:.1f} MB, "
            f"{free / 1e6:.1f} MB free in {folder}"
        )
