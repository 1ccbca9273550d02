"""Upload one video's three objects (MP4, preview, thumbnail) and return their keys and URLs.

`state` holds one sub-state per object (see `multipart`) plus the keys chosen on the first
attempt, so a resume keeps the same keys and skips objects already verified in the store.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from venuecam import logs
from venuecam.errors import BadInputError
from venuecam.storage.keys import object_keys
from venuecam.storage.multipart import MIB, OnProgress, SaveState, ShouldStop, UploadResult, upload_file
from venuecam.storage.urls import object_url

if TYPE_CHECKING:
    from venuecam.config import Config
    from venuecam.models import Video

log = logging.getLogger(__name__)

# (state name, Video path attribute, label in logs, result prefix)
_OBJECTS = (
    ("mp4", "mp4_path", "MP4", "mp4"),
    ("preview", "preview_path", "preview", "preview"),
    ("thumb", "thumb_path", "thumbnail", "thumbnail"),
)


def video_date(cfg: Config, video: Video) -> str:
    """The venue-local date of the video's start: the booking's date in the key."""
    return dt.datetime.fromtimestamp(float(video.start_ts), cfg.tz).date().isoformat()


def video_keys(cfg: Config, video: Video, date: str | None = None) -> dict[str, str]:
    field_id = video.field_id if video.field_id is not None else cfg.camera(video.camera).field_id
    keys = object_keys(cfg.device.venue_id, field_id, date or video_date(cfg, video), video.booking_id,
                       video.camera, video.unique_id)  # fmt: skip
    return {"mp4": keys.mp4, "preview": keys.preview, "thumb": keys.thumb}


def upload_video(
    cfg: Config,
    video: Video,
    state: dict[str, Any],
    save_state: SaveState,
    on_progress: OnProgress | None = None,
    *,
    client: Any = None,
    date: str | None = None,
    should_stop: ShouldStop | None = None,
) -> dict[str, str]:
    """Upload (or resume) the three objects of `video`; return
    {"mp4_url", "preview_url", "thumbnail_url", "mp4_key", "preview_key", "thumbnail_key",
     "mp4_etag", "sha256", "size_bytes"}.

    Errors: BadInputError (a local file missing, an unsafe key component), OfflineError,
    TransientError, AuthError, PermanentError, UploadStopped. Local files are never deleted here.
    """
    paths: dict[str, Path] = {}
    for name, attr, label, _ in _OBJECTS:
        value = getattr(video, attr)
        if not value:
            raise BadInputError(f"upload {video.unique_id}: no {label} file recorded ({attr} is empty)")
        p = Path(value)
        if not p.is_file():
            raise BadInputError(f"upload {video.unique_id}: {label} file not found: {p}")
        if name != "thumb" and p.stat().st_size == 0:
            raise BadInputError(f"upload {video.unique_id}: {label} file is empty: {p}")
        paths[name] = p
    keys = state.get("keys") or video_keys(cfg, video, date)
    if "keys" not in state:
        state["keys"] = keys
        save_state(state)

    if client is None:
        from venuecam.storage.client import make_client

        client = make_client(cfg.storage)
    storage = cfg.storage
    sizes = {name: p.stat().st_size for name, p in paths.items()}
    total = sum(sizes.values())
    offset = 0
    results: dict[str, UploadResult] = {}
    for name, _, label, _ in _OBJECTS:
        sub = state.setdefault(name, {})
        progress = _shifted(on_progress, offset, total)
        if sub.get("done") and sub.get("key") == keys[name]:
            log.info("%s %s already in the store: %s", logs.UPLOAD, label, keys[name])
        else:
            log.info("%s Uploading %s: %s", logs.UPLOAD, label, paths[name])
            log.info("%s key %s, %.1f MB", logs.UPLOAD, keys[name], sizes[name] / 1e6)
        started = time.monotonic()
        result = upload_file(
            client, storage.bucket, keys[name], paths[name],
            part_size=storage.part_size_mb * MIB, threshold=storage.multipart_threshold_mb * MIB,
            state=sub, save_state=lambda _sub: save_state(state),
            on_progress=progress, should_stop=should_stop, parallel_parts=storage.parallel_parts,
        )  # fmt: skip
        if result.sent_bytes:
            elapsed = max(time.monotonic() - started, 1e-6)
            log.info("%s %s done: %s, %.1f MB in %.1f s (%.2f MB/s)%s", logs.UPLOAD, label, keys[name],
                     result.sent_bytes / 1e6, elapsed, result.sent_bytes / 1e6 / elapsed,
                     f", {result.skipped_parts} parts resumed" if result.skipped_parts else "")  # fmt: skip
        results[name] = result
        offset += sizes[name]

    def url(name: str) -> str:
        return object_url(client, storage.bucket, keys[name], storage.public_base_url)

    return {
        "mp4_url": url("mp4"),
        "preview_url": url("preview"),
        "thumbnail_url": url("thumb"),
        "mp4_key": keys["mp4"],
        "preview_key": keys["preview"],
        "thumbnail_key": keys["thumb"],
        "mp4_etag": results["mp4"].etag,
        "sha256": results["mp4"].sha256,
        "size_bytes": str(results["mp4"].size),
    }


def _shifted(on_progress: OnProgress | None, offset: int, total: int) -> Callable[[int, int], None] | None:
    """Report one object's progress as progress over all three."""
    if on_progress is None:
        return None
    return lambda done, _size: on_progress(offset + done, total)
