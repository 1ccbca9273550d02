"""Upload one video's three objects (MP4, preview, thumbnail) and return their keys and URLs.

`state` holds one sub-state per object (see `multipart`) plus the keys chosen on the first
attempt, so a resume keeps the same keys and skips objects already verified in the store.
A later revision of a video (booking-api.md 2b) goes to the keys of its first upload, so the
URLs the platform holds stay valid; S3 replaces an object only when the new one is complete
(`CompleteMultipartUpload`, or a PUT whose Content-MD5 the store checked), so the old bytes
stay readable until the new ones are whole and verified part by part.
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
from venuecam.storage import kept
from venuecam.storage.client import make_client, signer
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


def stored_keys(video: Video) -> dict[str, str] | None:
    """The keys of the video's first upload, which every later revision reuses."""
    if video.mp4_key and video.preview_key and video.thumb_key:
        return {"mp4": video.mp4_key, "preview": video.preview_key, "thumb": video.thumb_key}
    return None


def video_urls(cfg: Config, video: Video) -> dict[str, str]:
    """URLs for the notification. Public ones are stable; presigned ones are made fresh at
    send time (7 days from now), so a notification retried days later still carries live URLs."""
    client = None if cfg.storage.public_base_url else signer(cfg.storage)
    return {
        name: object_url(client, cfg.storage.bucket, key, cfg.storage.public_base_url)
        for name, key in (("mp4_url", video.mp4_key), ("preview_url", video.preview_key),
                          ("thumbnail_url", video.thumb_key))
    }  # fmt: skip


def upload_video_watched(
    cfg: Config,
    video: Video,
    state: dict[str, Any],
    save_state: SaveState,
    on_progress: OnProgress | None = None,
    should_stop: ShouldStop | None = None,
) -> dict[str, str]:
    """`upload_video` on the worker's kept client (storage/kept.py), whose sockets are tracked:
    when the watchdog sees the link come back, the stalled connection is dropped and the
    current part resent at once (storage/linkwatch.py) instead of after TCP's retransmission
    backoff."""
    with kept.upload_client(cfg) as client:
        return upload_video(
            cfg, video, state, save_state, on_progress, client=client, should_stop=should_stop
        )


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
    keys = state.get("keys") or stored_keys(video) or video_keys(cfg, video, date)
    if "keys" not in state:
        state["keys"] = keys
        save_state(state)

    if client is None:
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
