"""A resumable upload of one file: one PUT, or a multipart upload that survives restarts.

Resume works across retries, worker restarts and reboots because everything needed lives in
`state`, a JSON-serialisable dict the caller persists through `save_state` (the ledger row's
`progress_json`):

    {"key", "size", "mtime_ns", "part_size", "upload_id", "parts": [{"n", "etag", "size"}],
     "done": {"etag", "size", "parts", "md5", "sha256"}}

The upload id is saved before a byte is sent and each part right after the store
acknowledges it (parts may finish out of order: see `_PartSender`). On resume the store is the authority: `list_parts` says what it holds, and a
part is skipped only when its ETag is the MD5 of the local bytes. R2 drops incomplete uploads
after 7 days (`NoSuchUpload`): then the upload starts again. The finished object is verified
with `head_object` (size, and ETag = MD5 for one PUT or md5(part md5s)-N for multipart).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import math
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from venuecam import logs
from venuecam.errors import BadInputError, TransientError
from venuecam.storage import ratecap
from venuecam.storage.client import error_code, map_error

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
_HEX_MD5 = re.compile(r"[0-9a-f]{32}")
# Part progress is logged at most this often (plus the first and the last part).
PROGRESS_LOG_INTERVAL_S = 30.0
# Parts that may be on the wire at once (see `_PartSender` for when the next one starts).
DEFAULT_PARALLEL_PARTS = 4

SaveState = Callable[[dict[str, Any]], None]
OnProgress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


class UploadStopped(TransientError):
    """`should_stop` asked us to stop between parts; the state saved so far resumes it."""


class _UploadGone(Exception):
    """The multipart upload id is unknown to the store (expired or aborted)."""


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

    if st.st_size <= (threshold if threshold is not None else part_size) and not state.get("upload_id"):
        return _put_single(client, bucket, key, path, ctype, state, save_state, on_progress, should_stop)

    state.setdefault("part_size", _choose_part_size(st.st_size, part_size))
    state.setdefault("parts", [])
    for attempt in (1, 2):
        try:
            return _multipart(client, bucket, key, path, ctype, state, save_state, on_progress, should_stop,
                              parallel_parts)  # fmt: skip
        except _UploadGone:
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


def _call(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except Exception as e:
        if error_code(e) in ("NoSuchUpload",):
            raise _UploadGone from e
        raise map_error(e, what) from e


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
    _call(f"put_object {key}", client.put_object, Bucket=bucket, Key=key, Body=body,
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
    if state.get("upload_id"):
        try:
            stored = _list_parts(client, bucket, key, state["upload_id"])
        except _UploadGone:
            # Perhaps it was completed and only the answer was lost (power cut, dropped link).
            finished = _already_complete(client, bucket, key, path, state)
            if finished is not None:
                _finish(state, finished, save_state)
                return finished
            raise
        log.info("%s resuming %s: the store holds %d of %d parts", logs.UPLOAD, key, len(stored), n_parts)
    else:
        resp = _call(f"create_multipart_upload {key}", client.create_multipart_upload,
                     Bucket=bucket, Key=key, ContentType=ctype)  # fmt: skip
        state["upload_id"] = resp["UploadId"]
        state["parts"] = []
        save_state(state)  # before the first byte: a crash now leaves an id we can resume or abort

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

    sender = _PartSender(client, bucket, key, upload_id, n_parts, parallel_parts)
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
        _call(f"complete_multipart_upload {key}", client.complete_multipart_upload, Bucket=bucket, Key=key,
              UploadId=upload_id, MultipartUpload={"Parts": parts})  # fmt: skip
    except _UploadGone:
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


class _PartBody(ratecap.ThrottledBody):
    """A part's bytes as a request body, held to the box's upload cap as they are sent, that
    notices when the last of them has been handed to the socket (`handed_over`): from then on
    the part only waits for the store's answer. Reads before `on_wire` (set just before the
    request goes out) are botocore looking at the body, not sending it."""

    def __init__(
        self, data: bytes, cap: ratecap.UploadCap, wake: threading.Event, expect_continue: bool
    ) -> None:
        super().__init__(data, cap, expect_continue)
        self.handed_over = threading.Event()
        self._wake = wake

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        if self.on_wire and self.tell() >= self.size and not self.handed_over.is_set():
            self.handed_over.set()
            self._wake.set()
        return chunk


class _PartSender:
    """Sends parts on a small thread pool over one client (boto3 clients are thread-safe).

    Sent one after another, each part ends with the link idle: the last bytes cross, the
    store stores, the answer comes back, the next request waits for its 100-continue and its
    connection (often a new one) restarts from a small window. So the next part starts as
    soon as the previous one's bytes are all in its socket, not when the store answers: the
    turn-around overlaps the previous connection draining its send buffer (20 Mbit/s, 80 ms
    RTT, 256 MiB: goodput 0.85 -> 0.92 at 0% loss). How much of the previous part is still
    to go at that moment is set by the socket's unsent-data cap (client.NOTSENT_LOWAT_BYTES):
    about 0.6 s of it lets the next connection ramp up unseen; much more and the two share the
    link so long that the newcomer's BBR settles on half of it.

    botocore asks for `Expect: 100-continue` on every part: the body waits a round trip for
    the store's go-ahead. Only the first part of an upload keeps it (a store that refuses us,
    say revoked credentials, says so before 16 MiB cross the link, and cleanly rather than by
    closing the connection mid-body); the others go straight out (`ratecap.mark_on_wire`
    drops the header, which is not signed). Only one part is being
    read into a socket at a time, so a kill leaves about one part to send again; `parallel` caps how many parts may be waiting for answers (one slow answer does not hold
    up the link).
    Answers are handed to the caller's thread (`wait_ready`, `drain`): state is saved there.
    """

    def __init__(
        self, client: Any, bucket: str, key: str, upload_id: str, n_parts: int, parallel: int
    ) -> None:
        self.client, self.bucket, self.key, self.upload_id = client, bucket, key, upload_id
        self.n_parts = n_parts
        self.parallel = parallel
        self._pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="upload-part")
        self._wake = threading.Event()
        self._running: dict[int, tuple[Future[str], _PartBody]] = {}
        self._last: _PartBody | None = None
        self._error: BaseException | None = None
        self._cap = ratecap.cap_of(client)  # the box's upload cap, shared with every upload
        ratecap.watch_sending(client)  # once per client however many uploads it runs

    def submit(self, n: int, data: bytes, md5_b64: str) -> None:
        body = _PartBody(data, self._cap, self._wake, expect_continue=self._last is None)
        future = self._pool.submit(self._send, n, body, md5_b64)
        future.add_done_callback(lambda _f: self._wake.set())
        self._running[n] = (future, body)
        self._last = body

    def _send(self, n: int, body: _PartBody, md5_b64: str) -> str:
        resp = _call(f"upload_part {n}/{self.n_parts} of {self.key}", self.client.upload_part, Bucket=self.bucket,
                     Key=self.key, UploadId=self.upload_id, PartNumber=n, Body=body, ContentMD5=md5_b64)  # fmt: skip
        return str(resp["ETag"]).strip('"')

    def _collect(self, on_done: Callable[[int, str], None]) -> None:
        """Hand every finished part to `on_done`; keep the first failure for later."""
        for n in sorted(self._running):
            future, _ = self._running[n]
            if not future.done():
                continue
            del self._running[n]
            try:
                on_done(n, future.result())
            except BaseException as e:  # noqa: BLE001 - re-raised by drain() once nothing is in flight
                self._error = self._error or e

    def _may_start(self) -> bool:
        if self._error is not None or len(self._running) >= self.parallel:
            return False
        last = self._last
        return (
            last is None or last.handed_over.is_set() or all(b is not last for _, b in self._running.values())
        )

    def wait_ready(self, on_done: Callable[[int, str], None]) -> None:
        """Block until another part may start; parts finishing meanwhile go to `on_done`.
        After a failure, waits for the parts still in flight and raises it."""
        while True:
            self._wake.clear()  # before looking: a wake-up during the look is not lost
            self._collect(on_done)
            if self._error is not None:
                self.drain(on_done)
            if self._may_start():
                return
            self._wake.wait(1.0)

    def drain(self, on_done: Callable[[int, str], None]) -> None:
        """Wait for every part in flight (saving those the store took); raise the first failure."""
        while True:
            self._wake.clear()
            self._collect(on_done)
            if not self._running:
                break
            self._wake.wait(1.0)
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self, on_done: Callable[[int, str], None]) -> None:
        """On the way out (also after an error): what is in flight finishes and is saved."""
        try:
            self.drain(on_done)
        except BaseException:  # noqa: BLE001, S110 - the error that brought us here is already on its way
            pass
        self._pool.shutdown(wait=True)


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
        resp = _call(f"list_parts {key}", client.list_parts, Bucket=bucket, Key=key, UploadId=upload_id,
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
    except Exception as e:  # best effort: abort_stale_uploads and R2's 7-day rule clean up the rest
        log.info("%s could not abort old upload of %s: %s", logs.UPLOAD, key, map_error(e, "abort"))


def abort_stale_uploads(
    client: Any,
    bucket: str,
    prefix: str,
    older_than: dt.timedelta,
    keep_upload_ids: Iterable[str],
    *,
    now: dt.datetime | None = None,
) -> list[tuple[str, str]]:
    """Abort incomplete multipart uploads under `prefix` started more than `older_than` before
    `now` whose ids are not in `keep_upload_ids` (uploads a ledger row still tracks).
    Returns the aborted (key, upload_id) pairs."""
    now = now or dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)  # our convention: naive means UTC
    keep = set(keep_upload_ids)
    cutoff = now - older_than
    aborted: list[tuple[str, str]] = []
    markers: dict[str, str] = {}
    while True:
        resp = _call(
            "list_multipart_uploads", client.list_multipart_uploads, Bucket=bucket, Prefix=prefix, **markers
        )
        for up in resp.get("Uploads", []):
            initiated = up["Initiated"]
            if initiated.tzinfo is None:
                initiated = initiated.replace(tzinfo=dt.UTC)
            if up["UploadId"] in keep or initiated > cutoff:
                continue
            try:
                client.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
            except Exception as e:
                if error_code(e) != "NoSuchUpload":
                    raise map_error(e, f"abort_multipart_upload {up['Key']}") from e
            log.info("%s aborted abandoned multipart upload of %s (started %s)", logs.UPLOAD, up["Key"],
                     initiated.isoformat(timespec="seconds"))  # fmt: skip
            aborted.append((up["Key"], up["UploadId"]))
        if not resp.get("IsTruncated"):
            return aborted
        markers = {"KeyMarker": resp["NextKeyMarker"], "UploadIdMarker": resp["NextUploadIdMarker"]}
