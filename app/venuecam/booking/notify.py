"""What `POST /api/v1/videos` carries for one video (booking-api.md sections 2 and 2b).

Pure: the video, its booking and the objects' URLs in, the body and its idempotency key out.
A first cut is reported as the contract's section 2 describes it; a replacement after its
booking changed (revision 2 and up) adds `revision` and `replaces_sha256`, under the key
`<unique_id>#r<revision>` so the platform tells replacements apart from retries.
"""

from __future__ import annotations

from typing import Any

from venuecam.models import Booking, Video


def idempotency_key(unique_id: str, revision: int = 1) -> str:
    return unique_id if revision <= 1 else f"{unique_id}#r{revision}"


def payload(video: Video, booking: Booking | None, urls: dict[str, str]) -> dict[str, Any]:
    """The notification body. `urls` has mp4_url, preview_url and thumbnail_url."""
    body: dict[str, Any] = {
        "unique_id": video.unique_id,
        "booking_id": video.booking_id,
        "order_detail_id": booking.order_detail_id if booking else None,
        "field_id": video.field_id,
        "camera": video.camera,
        "video_type": video.video_type,
        "mp4_url": urls["mp4_url"],
        "preview_url": urls["preview_url"],
        "thumbnail_url": urls["thumbnail_url"],
        "duration_seconds": round(float(video.duration_s or 0.0), 3),
        "size_bytes": int(video.size_bytes or 0),
        "sha256": video.sha256,
    }
    revision = int(video.revision or 1)
    if revision > 1:
        body["revision"] = revision
        if video.replaces_sha256:
            body["replaces_sha256"] = video.replaces_sha256
    return body
