"""A camera's picture now: the last keyframe of its newest closed segment, as a JPEG.

Made only when asked (the page in aiming mode, `venuecam snapshot`), never by a timer: a box
nobody looks at spends nothing on pictures. The segment is a finished file the capture
program has already handed over, so reading it never touches the camera or its ffmpeg; the
decoding ffmpeg is niced and single-threaded. One picture per camera is kept for `CACHE_S`
(and for as long as no newer segment exists), so a page open on several phones, or one
refreshing every couple of seconds, costs one small ffmpeg run per segment at most.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from venuecam.config import Config
from venuecam.media.runner import CommandError, run_bytes
from venuecam.models import Segment
from venuecam.statusd.messages import HttpError

CACHE_S = 1.5
FFMPEG_TIMEOUT_S = 10.0
JPEG_QUALITY = 5  # mjpeg -q:v: 2 (best) .. 31; 5 is sharp enough to aim by, ~30-80 KB at 720p
SQL_NEWEST = (
    f"SELECT path, end_ts, width, height FROM {Segment._meta.table_name}"
    " WHERE camera = ? ORDER BY end_ts DESC LIMIT 3"
)


@dataclass
class Picture:
    jpeg: bytes
    segment: str
    frame_ts: float  # the segment's end: the picture is from its last second
    width: int
    height: int
    made_at: float  # monotonic


def ffmpeg_argv(path: str | Path, ffmpeg: str = "ffmpeg") -> list[str]:
    """Decode only the last second's keyframe (segments have one every second) to one JPEG."""
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-threads", "1",
        "-sseof", "-1.5", "-skip_frame", "nokey", "-i", str(path),
        "-frames:v", "1", "-an", "-q:v", str(JPEG_QUALITY), "-f", "image2pipe", "-c:v", "mjpeg", "pipe:1",
    ]  # fmt: skip


class Snapshots:
    def __init__(self, cfg: Config, cache_s: float = CACHE_S) -> None:
        self.cfg = cfg
        self.cache_s = cache_s
        self._pictures: dict[str, Picture] = {}
        self._locks = {cam.name: threading.Lock() for cam in cfg.cameras}

    def camera_names(self) -> list[str]:
        return [cam.name for cam in self.cfg.cameras]

    def picture(self, camera: str) -> Picture:
        """The camera's newest picture; HttpError 404 (no such camera) or 503 (none to be had)."""
        lock = self._locks.get(camera)
        if lock is None:
            known = ", ".join(self.camera_names()) or "none configured"
            raise HttpError(404, f"no camera named {camera[:40]!r} (cameras: {known})")
        with lock:  # one ffmpeg per camera at a time; whoever waited gets its picture
            kept = self._pictures.get(camera)
            now = time.monotonic()
            if kept is not None and now - kept.made_at < self.cache_s:
                return kept
            rows = Segment._meta.database.execute_sql(SQL_NEWEST, (camera,)).fetchall()
            if not rows:
                raise HttpError(503, f"camera {camera} has no recorded segment yet: is it recording?")
            if kept is not None and rows[0][0] == kept.segment:
                kept.made_at = now  # nothing newer was recorded: the same picture is still the newest
                return kept
            errors = []
            for path, end_ts, width, height in rows:  # retention may have just removed the newest
                if not Path(path).exists():
                    errors.append(f"{Path(path).name}: removed")
                    continue
                try:
                    jpeg = run_bytes(ffmpeg_argv(path), FFMPEG_TIMEOUT_S, low_priority=True)
                except CommandError as e:
                    errors.append(str(e))
                    continue
                if jpeg[:2] != b"\xff\xd8":
                    errors.append(f"{Path(path).name}: no picture decoded")
                    continue
                picture = Picture(jpeg, path, float(end_ts), int(width or 0), int(height or 0), now)
                self._pictures[camera] = picture
                return picture
            raise HttpError(
                503, f"camera {camera}: no picture from its newest segments ({'; '.join(errors)})"
            )
