"""The installer's view: the page at `/`, each camera's picture, the timeline, cut clips.

All reads. Nothing here is made unless asked: the picture only when a client fetches it
(see snapshots.py), the timeline only when the page or `/api/timeline` is loaded.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

from venuecam.logs import mask_url, redact
from venuecam.models import Segment, Video
from venuecam.status import page, shapes, timeline
from venuecam.statusd import params
from venuecam.statusd.messages import HttpError, Request, Response
from venuecam.timeutil import utcnow

if TYPE_CHECKING:
    from venuecam.statusd.app import StatusApp

SQL_LAST_SEGMENT = (
    f"SELECT width, height, codec, bytes, duration FROM {Segment._meta.table_name}"
    " WHERE camera = ? ORDER BY end_ts DESC LIMIT 1"
)
CLIP_TYPES = {"mp4": ("mp4_path", "video/mp4"), "jpg": ("thumb_path", "image/jpeg")}


def _source(src: str) -> str:
    """What the page says a camera is: never a URL's password."""
    if src.startswith("testsrc"):
        return "test pattern" + (f" ({src.partition(':')[2]})" if ":" in src else "")
    return mask_url(src)


def camera_facts(app: StatusApp) -> dict[str, dict[str, Any]]:
    out = {}
    for cam in app.cfg.cameras:
        facts: dict[str, Any] = {
            "width": cam.width, "height": cam.height, "fps": cam.fps, "bitrate_kbps": cam.bitrate_kbps,
            "source": _source(cam.source), "codec": "",
        }  # fmt: skip
        row = Segment._meta.database.execute_sql(SQL_LAST_SEGMENT, (cam.name,)).fetchone()
        if row is not None:
            width, height, codec, size, duration = row
            if width and height:
                facts.update(width=width, height=height)
            facts["codec"] = codec or ""
            if duration:
                facts["measured_kbps"] = size * 8 / duration / 1000
        out[cam.name] = facts
    return out


def _collect(app: StatusApp, req: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    hours = params.integer(req.query, "hours", timeline.WINDOW_H, 1, 7 * 24)
    now = utcnow()
    data = shapes.queue_status(app.snapshot())["data"]
    return data, timeline.collect(app.cfg, now, data["uploads"], hours)


def index(app: StatusApp, req: Request) -> Response:
    data, tl = _collect(app, req)
    html = page.render(data, tl, camera_facts(app), app.cfg.tz)
    return Response(200, redact(html), "text/html; charset=utf-8")


def timeline_json(app: StatusApp, req: Request) -> Response:
    _, tl = _collect(app, req)
    return Response(200, {"success": True, "data": tl})


def snapshot(app: StatusApp, req: Request, camera: str) -> Response:
    pic = app.snapshots.picture(camera)
    frame = (
        dt.datetime.fromtimestamp(pic.frame_ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )
    return Response(
        200,
        pic.jpeg,
        "image/jpeg",
        {"X-Venuecam-Frame-Time": frame, "X-Venuecam-Segment": Path(pic.segment).name},
    )


def clip_file(app: StatusApp, req: Request, unique_id: str, ext: str) -> Response:
    """A cut clip (`.mp4`) or its thumbnail (`.jpg`) from the box's disk, while it is there."""
    params.word(unique_id, "video", 200)
    column, ctype = CLIP_TYPES[ext]
    video = Video.get_or_none(Video.unique_id == unique_id)
    if video is None:
        raise HttpError(404, f"no video {unique_id!r}")
    stored = getattr(video, column)
    path = Path(stored) if stored else None
    root = app.cfg.clips_dir.resolve()
    if path is None or not path.is_file():
        raise HttpError(
            404, f"video {unique_id}: its {ext} is not on this box (not cut yet, or removed after upload)"
        )
    if not path.resolve().is_relative_to(root):
        raise HttpError(403, f"video {unique_id}: its file is outside the clips directory")
    return Response(200, None, ctype, file=path)
