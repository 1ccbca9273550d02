"""A resumable upload of one file: one PUT, or a multipart upload that survives restarts.

Resume works across retries, worker restarts and reboots because everything needed lives in
`state`, a JSON-serialisable dict the caller persists through `save_state` (the ledger row's
`progress_json`):

    {"key", "size", "mtime_ns", "part_size", "upload_id", "parts": [{"n", "etag", "size"}],
     "done": {"etag", "size", "parts", "md5", "sha256"}}

The upload is started by `orphans.start_upload` (its intent saved before the request, its id
before a byte is sent, so none is left behind in the store) and each part is saved right after
the store acknowledges it (parts may finish out of order: see `PartSender`). On resume the
store is the authority: `list_parts` says what it holds, and a part is skipped only when its
ETag is the MD5 of the local bytes. R2 drops incomplete uploads
after 7 days (`NoSuchUpload`): then the upload starts again. The finished object is verified
with `head_object` (size, and ETag = MD5 for one PUT or md5(part md5s)-N for multipart).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import mimetypes
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from venuecam import logs
from venuecam.errors import BadInputError, TransientError
from venuecam.storage import orphans, ratecap
from venuecam.storage.client import error_code, map_error
from venuecam.storage.part_sender import PartSender, UploadGone, call_store

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
_HEX_MD5 = re.compile(r"[0-9a-f]{32}")
# Part progress is logged at most this often (plus the first and the last part).
PROGRESS_LOG_INTERVAL_S = 30.0
# Parts that may be on the wire at once (see `PartSender` for when the next one starts).
DEFAULT_PARALLEL_PARTS = 4

SaveState = Callable[[dict[str, Any]], None]
OnProgress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


class UploadStopped(TransientError):
    """`should_stop` asked us to stop between parts; the state saved so far resumes it."""


@dataclass(frozen=True)
class UploadResult:
    etag: str  # as the store reports it, without quotes
    size: int
    parts: int  # 0 for a single PUT
    md5: str | None  # hex MD5 of the whole file, verified against the ETag of a single PUT
    sha256: str  # hex SHA-256 of the local file as read for the upload
    sent_bytes: int = 0  # bytes sent in this call (0 when everything was already there)
    skipped_parts: int = 0  # parts the store already held


def upload_file(
    client: Any,
    bucket: str,
    key: str,
    path: str | Path,
    *,
    part_size: int,
    state: dict[str, Any],
    save_state: SaveState,
    on_progress: OnProgress | None = None,
    should_stop: ShouldStop | None = None,
    threshold: int | None = None,
    content_type: str | None = None,
    parallel_parts: int = DEFAULT_PARALLEL_PARTS,
) -> UploadResult:
    """Upload `path` to `bucket`/`key`, resuming from `state`; `state` is updated in place.

    Files of at most `threshold` bytes (default: `part_size`) go up in one PUT; larger ones in
    parts, up to `parallel_parts` of them in flight (1: strictly one after another).
    Raises BadInputError (local file missing/changed), OfflineError, TransientError,
    AuthError, PermanentError, UploadStopped.
    """
    if parallel_parts < 1:
        raise BadInputError(f"upload: parallel_parts must be at least 1, got {parallel_parts}")
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BadInputError(f"upload: local file not found: {path}") from None
    except OSError as e:
        raise BadInputError(f"upload: cannot read {path}: {e.strerror}") from None
    if not path.is_file():
        raise BadInputError(f"upload: not a regular file: {path}")
    ident = {"key": key, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    ctype = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"

    if state and any(state.get(k) != v for k, v in ident.items()):
        # A different object or the file changed: what the state describes is no use now.
        _abort_quietly(client, bucket, state)
        state.clear()
    done = state.get("done")
    if done:
        known = {f.name for f in fields(UploadResult)}
        return UploadResult(**{k: v for k, v in done.items() if k in known})
    state.update(ident)

    started = state.get("upload_id") or state.get(orphans.CREATING)
    if st.st_size <= (threshold if threshold is not None else part_size) and not started:
        return _put_single(client, bucket, key, path, ctype, state, save_state, on_progress, should_stop)

    state.setdefault("part_size", _choose_part_size(st.st_size, part_size))
    state.setdefault("parts", [])
    for attempt in (1, 2):
        try:
            return _multipart(client, bucket, key, path, ctype, state, save_state, on_progress, should_stop,
                              parallel_parts)  # fmt: skip
        except UploadGone:
            if attempt == 2:
                raise TransientError(f"upload {key}: the store lost a brand-new multipart upload") from None
            log.warning("%s multipart upload of %s is gone from the store (expired or aborted); starting again",
                        logs.UPLOAD, key)  # fmt: skip
            state.pop("upload_id", None)
            state["parts"] = []
            save_state(state)
    raise AssertionError("unreachable")  # pragma: no cover


def _choose_part_size(size: int, wanted: int) -> int:
    """`wanted`, grown to whole MiB if the file would need more than MAX_PARTS parts."""
    part = max(wanted, MIN_PART_SIZE)
    if math.ceil(size / part) > MAX_PARTS:
        part = math.ceil(size / MAX_PARTS / MIB) * MIB
    return part


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _put_single(
    client: Any,
    bucket: str,
    key: str,
    path: Path,
    ctype: str,
    state: dict[str, Any],
    save_state: SaveState,
    on_progress: OnProgress | None,
    should_stop: ShouldStop | None,
) -> UploadResult:
    data = path.read_bytes()
    if len(data) != state["size"]:
        raise BadInputError(f"upload: {path} changed while it was read")
    md5 = hashlib.md5(data)
    if should_stop and should_stop():
        raise UploadStopped(f"upload {key}: stopped before sending")
    ratecap.watch_sending(client)
    body = ratecap.cap_of(client).body(data)  # held to the box's upload cap as it is sent
    call_store(f"put_object {key}", client.put_object, Bucket=bucket, Key=key, Body=body,
          ContentMD5=_b64(md5.digest()), ContentType=ctype)  # fmt: skip
    etag = _verify(client, bucket, key, len(data), md5.hexdigest(), state, save_state)
    result = UploadResult(
        etag=etag, size=len(data), parts=0, md5=md5.hexdigest(), sha256=hashlib.sha256(data).hexdigest(),
        sent_bytes=len(data),
    )  # fmt: skip
    _finish(state, result, save_state)
    if on_progress:
        on_progress(len(data), len(data))
    return result


def _multipart(
    client: Any,
    bucket: str,
    key: str,
    path: Path,
    ctype: str,
    state: dict[str, Any],
    save_state: SaveState,
    on_progress: OnProgress | None,
    should_stop: ShouldStop | None,
    parallel_parts: int = DEFAULT_PARALLEL_PARTS,
) -> UploadResult:
    size, part_size = int(state["size"]), int(state["part_size"])
    n_parts = math.ceil(size / part_size)
    stored: dict[int, dict[str, Any]] = {}
    if state.get("upload_id") and not state.get(orphans.CREATING):
        try:
            stored = _list_parts(client, bucket, key, state["upload_id"])
        except UploadGone:
            # Perhaps it was completed and only the answer was lost (power cut, dropped link).
            finished = _already_complete(client, bucket, key, path, state)
            if finished is not None:
                _finish(state, finished, save_state)
                return finished
            raise
        log.info("%s resuming %s: the store holds %d of %d parts", logs.UPLOAD, key, len(stored), n_parts)
    else:
        # Started (or its start finished) by the rule in storage/orphans.py, so a create whose
        # answer was lost or not saved leaves no upload behind; no part goes before that.
        def create() -> str:
            resp = call_store(f"create_multipart_upload {key}", client.create_multipart_upload,
                              Bucket=bucket, Key=key, ContentType=ctype)  # fmt: skip
            state["parts"] = []
            return str(resp["UploadId"])

        orphans.start_upload(client, bucket, key, state, lambda: save_state(state), create)

    records = {int(p["n"]): p for p in state.get("parts", [])}
    upload_id = state["upload_id"]
    sha, md5s = hashlib.sha256(), []
    done_bytes = sent = skipped = 0
    last_log = 0.0

    def acknowledged(n: int, etag: str) -> None:
        """The store holds part `n`: record and save it at once (parts finish in any order)."""
        nonlocal done_bytes, sent, last_log
        length = min(part_size, size - (n - 1) * part_size)
        if _HEX_MD5.fullmatch(etag) and etag != md5s[n - 1].hex():
            raise TransientError(f"upload {key}: part {n} stored with a different MD5 than sent")
        records[n] = {"n": n, "etag": etag, "size": length}
        state["parts"] = [records[i] for i in sorted(records)]
        save_state(state)
        sent += length
        done_bytes += length
        now = time.monotonic()
        if n in (1, n_parts) or now - last_log >= PROGRESS_LOG_INTERVAL_S:
            log.info("%s %s part %d/%d sent (%.1f MB)", logs.UPLOAD, key, n, n_parts, length / 1e6)
            last_log = now
        if on_progress:
            on_progress(done_bytes, size)

    sender = PartSender(client, bucket, key, upload_id, n_parts, parallel_parts)
    try:
        with path.open("rb") as f:
            for n in range(1, n_parts + 1):
                # Read and hash the next part while the previous one is on the wire.
                data = f.read(part_size)
                expected_len = min(part_size, size - (n - 1) * part_size)
                if len(data) != expected_len:
                    raise BadInputError(f"upload: {path} changed while it was uploaded (part {n} is short)")
                sha.update(data)
                md5 = hashlib.md5(data)
                md5s.append(md5.digest())
                have = stored.get(n)
                if have is not None and _part_matches(have, md5.hexdigest(), len(data), records.get(n)):
                    skipped += 1
                    records[n] = {"n": n, "etag": have["etag"], "size": len(data)}
                    done_bytes += len(data)
                    if on_progress:
                        on_progress(done_bytes, size)
                    continue
                sender.wait_ready(acknowledged)
                if should_stop and should_stop():
                    sender.drain(acknowledged)
                    state["parts"] = [records[i] for i in sorted(records)]
                    save_state(state)
                    raise UploadStopped(f"upload {key}: stopped before part {n}/{n_parts}")
                sender.submit(n, data, _b64(md5.digest()))
                del data
        sender.drain(acknowledged)
    finally:
        sender.close(acknowledged)
    if path.stat().st_size != size:
        raise BadInputError(f"upload: {path} grew while it was uploaded")

    state["parts"] = [records[i] for i in sorted(records)]
    expected = f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{n_parts}"
    parts = [{"PartNumber": n, "ETag": records[n]["etag"]} for n in sorted(records) if n <= n_parts]
    try:
        call_store(f"complete_multipart_upload {key}", client.complete_multipart_upload, Bucket=bucket, Key=key,
              UploadId=upload_id, MultipartUpload={"Parts": parts})  # fmt: skip
    except UploadGone:
        finished = _already_complete(client, bucket, key, path, state)
        if finished is None:
            raise
        _finish(state, finished, save_state)
        return finished
    etag = _verify(client, bucket, key, size, expected, state, save_state)
    result = UploadResult(etag=etag, size=size, parts=n_parts, md5=None, sha256=sha.hexdigest(),
                          sent_bytes=sent, skipped_parts=skipped)  # fmt: skip
    _finish(state, result, save_state)
    return result


def _part_matches(have: dict[str, Any], md5_hex: str, length: int, record: dict[str, Any] | None) -> bool:
    """Is the store's part `have` the same bytes as the local part?"""
    if int(have["size"]) != length:
        return False
    if _HEX_MD5.fullmatch(have["etag"]):
        return bool(have["etag"] == md5_hex)
    # A store whose part ETags are not MD5s: trust the part we recorded ourselves, if it is that one.
    return record is not None and record.get("etag") == have["etag"]


def _list_parts(client: Any, bucket: str, key: str, upload_id: str) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    marker = 0
    while True:
        resp = call_store(f"list_parts {key}", client.list_parts, Bucket=bucket, Key=key, UploadId=upload_id,
                     PartNumberMarker=marker)  # fmt: skip
        for p in resp.get("Parts", []):
            out[int(p["PartNumber"])] = {"etag": str(p["ETag"]).strip('"'), "size": int(p["Size"])}
        if not resp.get("IsTruncated"):
            return out
        marker = int(resp["NextPartNumberMarker"])


def file_etag(path: Path, part_size: int | None) -> tuple[str, str]:
    """(expected S3 ETag, sha256 hex) of a local file uploaded in one PUT (part_size None)
    or in parts of `part_size`."""
    sha, whole, md5s = hashlib.sha256(), hashlib.md5(), []
    with path.open("rb") as f:
        while chunk := f.read(part_size or 8 * MIB):
            sha.update(chunk)
            whole.update(chunk)
            md5s.append(hashlib.md5(chunk).digest())
    if part_size is None:
        return whole.hexdigest(), sha.hexdigest()
    return f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}", sha.hexdigest()


def _head(client: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        return dict(client.head_object(Bucket=bucket, Key=key))
    except Exception as e:
        if error_code(e) in ("404", "NoSuchKey", "NotFound"):
            return None
        raise map_error(e, f"head_object {key}") from e


def _already_complete(
    client: Any, bucket: str, key: str, path: Path, state: dict[str, Any]
) -> UploadResult | None:
    head = _head(client, bucket, key)
    if head is None or int(head.get("ContentLength", -1)) != int(state["size"]):
        return None
    etag = str(head.get("ETag", "")).strip('"')
    expected, sha = file_etag(path, int(state["part_size"]))
    if etag != expected:
        return None
    log.info("%s %s was already complete in the store", logs.UPLOAD, key)
    return UploadResult(
        etag=etag, size=int(state["size"]), parts=int(expected.rsplit("-", 1)[1]), md5=None, sha256=sha
    )


def _verify(
    client: Any,
    bucket: str,
    key: str,
    size: int,
    expected_etag: str,
    state: dict[str, Any],
    save_state: SaveState,
) -> str:
    head = _head(client, bucket, key)
    got_size = None if head is None else int(head.get("ContentLength", -1))
    etag = "" if head is None else str(head.get("ETag", "")).strip('"')
    if got_size == size and etag == expected_etag:
        return etag
    # Start from scratch next time: the object in the store is not the one we sent.
    state.pop("upload_id", None)
    state["parts"] = []
    save_state(state)
    raise TransientError(
        f"upload {key}: verification failed: store has size {got_size} ETag {etag or '-'}, "
        f"expected size {size} ETag {expected_etag}"
    )


def _finish(state: dict[str, Any], result: UploadResult, save_state: SaveState) -> None:
    state.pop("upload_id", None)
    state["parts"] = []
    state["done"] = asdict(result)
    save_state(state)


def _abort_quietly(client: Any, bucket: str, state: dict[str, Any]) -> None:
    upload_id, key = state.get("upload_id"), state.get("key")
    if not upload_id or not key:
        return
    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except (
        Exception
    ) as e:  # best effort: the next start of this key's upload, or orphans.abort_untracked, aborts it
        log.info("%s could not abort old upload of %s: %s", logs.UPLOAD, key, map_error(e, "abort"))
