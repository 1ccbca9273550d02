"""Resumable downloads of bundles and channel files: https://, http://, s3://bucket/key.

A download goes to `<name>.part` beside a small `.part.json` (the URL, the server's ETag and
size). When the link is cut it retries with growing pauses and asks for the rest only
(`Range: bytes=N-`, `If-Range: <etag>`), so the bytes already here are never fetched again;
a server that answers 200 instead of 206 (no ranges, or the file changed) starts it afresh.
s3:// URLs are presigned with the box's storage credentials and then fetched the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from venuecam.config import Config
from venuecam.errors import VenuecamError

CHUNK = 64 * 1024
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 15
RETRY_S = (1, 2, 5, 10, 20, 30, 60)
MAX_BYTES = 2 << 30


class DownloadError(VenuecamError):
    """The file could not be fetched (after retrying for `give_up_s`)."""


def resolve(base: str, ref: str) -> str:
    """A channel file's bundle URL, relative to the channel's own URL or absolute."""
    if "://" in ref:
        return ref
    if base.startswith("s3://"):
        return base.rsplit("/", 1)[0] + "/" + ref
    return urljoin(base, ref)


def redact_url(url: str) -> str:
    """URLs go into the journal and status: without query strings (presigned signatures)."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="", netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


def http_url(cfg: Config, url: str, expires: int = 3600) -> str:
    if not url.startswith("s3://"):
        return url
    bucket, _, key = url[5:].partition("/")
    from venuecam.storage.client import signer  # kept: a boto3 client costs seconds on a Pi 3

    return signer(cfg.storage).generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
    )


def fetch_small(cfg: Config, url: str, limit: int = 1 << 20) -> bytes:
    import requests

    try:
        r = requests.get(http_url(cfg, url), timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))
    except requests.RequestException as e:
        raise DownloadError(f"{redact_url(url)}: {e.__class__.__name__}") from None
    if r.status_code != 200:
        raise DownloadError(f"{redact_url(url)}: HTTP {r.status_code}")
    if len(r.content) > limit:
        raise DownloadError(f"{redact_url(url)}: larger than {limit} bytes")
    return r.content


def fetch_head(cfg: Config, url: str, size: int) -> bytes:
    """The first `size` bytes of `url` (a range request; a server without ranges is read that
    far and left). b"" when they cannot be had now: the whole download then retries and decides."""
    import requests

    try:
        with requests.get(http_url(cfg, url), headers={"Range": f"bytes=0-{size - 1}"}, stream=True,
                          timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as r:  # fmt: skip
            if r.status_code not in (200, 206):
                return b""
            got = bytearray()
            for chunk in r.iter_content(CHUNK):
                got += chunk
                if len(got) >= size:
                    break
            return bytes(got[:size])
    except (OSError, requests.RequestException):
        return b""


def download(cfg: Config, url: str, dest: Path, give_up_s: float = 3600,
             out: Callable[[str], None] = lambda s: None) -> dict[str, Any]:  # fmt: skip
    """Fetch `url` into `dest` (resuming a `.part` left by an earlier try); a report of the bytes."""
    import requests

    part = dest.with_name(dest.name + ".part")
    meta_path = dest.with_name(dest.name + ".part.json")
    meta: dict[str, Any] = {}
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    if meta.get("url") != redact_url(url):
        part.unlink(missing_ok=True)
        meta = {"url": redact_url(url)}
    report: dict[str, Any] = {"url": redact_url(url), "attempts": 0, "resumed_from": [], "bytes_fetched": 0}
    deadline = time.monotonic() + give_up_s
    pause = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {}
        if have and meta.get("etag"):
            headers = {"Range": f"bytes={have}-", "If-Range": meta["etag"]}
        report["attempts"] += 1
        try:
            with requests.get(http_url(cfg, url), headers=headers, stream=True,
                              timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as r:  # fmt: skip
                if r.status_code == 416 and have and have == meta.get("size"):
                    break
                if r.status_code not in (200, 206):
                    if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                        raise DownloadError(f"{redact_url(url)}: HTTP {r.status_code}")
                    raise OSError(f"HTTP {r.status_code}")
                if r.status_code == 206:
                    start = int(r.headers.get("Content-Range", "bytes 0-").split()[1].split("-")[0])
                    if start != have:
                        raise OSError(f"asked for bytes from {have}, got from {start}")
                    report["resumed_from"].append(have)
                    out(f"  resuming the download at {have} bytes")
                    mode = "ab"
                else:
                    have, mode = 0, "wb"
                    meta.update(etag=r.headers.get("ETag") or r.headers.get("Last-Modified") or "",
                                size=int(r.headers.get("Content-Length") or 0) or None)  # fmt: skip
                    meta_path.write_text(json.dumps(meta))
                with open(part, mode) as f:
                    for chunk in r.iter_content(CHUNK):
                        f.write(chunk)
                        report["bytes_fetched"] += len(chunk)
                        have += len(chunk)
                        if have > MAX_BYTES:
                            raise DownloadError(f"{redact_url(url)}: larger than {MAX_BYTES} bytes")
                    f.flush()
                    os.fsync(f.fileno())
            if meta.get("size") in (None, have):
                break
            raise OSError(f"connection ended at {have} of {meta.get('size')} bytes")
        except DownloadError:
            raise
        except (OSError, requests.RequestException) as e:
            if time.monotonic() > deadline:
                raise DownloadError(
                    f"{redact_url(url)}: gave up after {give_up_s:.0f} s: {e.__class__.__name__}"
                ) from None
            wait = RETRY_S[min(pause, len(RETRY_S) - 1)]
            pause += 1
            out(f"  download interrupted at {part.stat().st_size if part.exists() else 0} bytes "
                f"({e.__class__.__name__}); again in {wait} s")  # fmt: skip
            time.sleep(wait)
            continue
    os.replace(part, dest)
    meta_path.unlink(missing_ok=True)
    report["bytes_total"] = dest.stat().st_size
    report["sha256"] = sha256(dest)
    return report


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
