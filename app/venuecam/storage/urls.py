"""URLs for stored objects: public (bucket behind a domain) or presigned GET.

SigV4 presigned URLs live at most 7 days; the platform gets the longest the store allows.
A presigned URL carries the access key *id* (never the secret) in `X-Amz-Credential`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

PRESIGN_MAX_S = 7 * 24 * 3600


def public_url(base_url: str, key: str) -> str:
    """base + key, each path segment percent-encoded (keys are validated; this is belt and braces)."""
    return f"{base_url.rstrip('/')}/{quote(key, safe='/-_.~')}"


def presigned_url(client: Any, bucket: str, key: str, expires_s: int = PRESIGN_MAX_S) -> str:
    """A GET URL signed locally (no request is sent), valid for `expires_s` seconds."""
    if not 1 <= expires_s <= PRESIGN_MAX_S:
        raise ValueError(f"expires_s: expected 1..{PRESIGN_MAX_S}, got {expires_s}")
    return str(
        client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )
    )


def object_url(client: Any, bucket: str, key: str, public_base_url: str = "") -> str:
    if public_base_url:
        return public_url(public_base_url, key)
    return presigned_url(client, bucket, key)
