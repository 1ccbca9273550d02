"""The multipart upload of a live MP4 while it grows.

Part n is bytes [(n-1)P, nP) of the file, sent as soon as those bytes are on disk for good
(checkpointed) and none of them is provisional (`LiveMP4.provisional`); the last part, any
size, goes with the `moov` at the end. So nothing is sent twice: a part interrupted by a
crash, an outage or a store error is sent again, the rest stay acknowledged.

While the booking is played the parts go in the background (`start_parts`, at most
PARALLEL_PARTS at once, on the upload's own two threads), so the clip's thread goes on
remuxing the next segment meanwhile. Why: every camera's segments close on the same clock
multiple, so all the clips remux at once (niced, on a Pi's cores busy with capture); when a
clip waited for its parts before its next remux, the link stood idle for those seconds every
segment and, at 80 % of the link recorded, the backlog grew all booking long (the busy
benchmark's tail was ~18 MB a camera where a segment and a part are ~10). At the end
(`send_parts`) the clip has nothing else to do and waits for them.

`state` (persisted by the caller in the clip's live state, saved right after each change):
    {"key", "upload_id", "part_bytes", "parts": {"<n>": {"etag", "size", "md5"}}, "done": {...}}
The upload is started by `storage.orphans.start_upload` (intent, id, then the key's other
uploads aborted), before the first part goes. A store that lost the upload (R2 drops
incomplete uploads after 7 days, or it was aborted) starts a new one: its parts go again.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from venuecam import logs
from venuecam.errors import TransientError
from venuecam.live.mp4file import LiveMP4
from venuecam.storage import orphans
from venuecam.storage.client import error_code, map_error
from venuecam.storage.multipart import MIN_PART_SIZE

log = logging.getLogger(__name__)

PART_BYTES = MIN_PART_SIZE  # small parts: what is left for the end is at most two of them
# Parts on the wire at once per live video: one part's turn-around (the store's answer, the
# next request) overlaps the other's bytes, so a busy link stays full. Per step at most
# BATCH_PARTS, so a cancellation is seen between batches.
PARALLEL_PARTS = 2
BATCH_PARTS = 8
SaveState = Callable[[], None]
Wrap = Callable[[bytes], Any]  # a request body for the bytes (the upload cap wraps it)


class UploadGone(TransientError):
    """The store no longer knows the multipart upload."""


class LiveUpload:
    """`lock`: the lock under which `state` changes and `save` runs: the caller's, when
    `state` is part of a larger document it saves whole (the clip's live state)."""

    def __init__(self, client: Any, bucket: str, key: str, state: dict[str, Any], save: SaveState,
                 content_type: str = "video/mp4", wrap: Wrap | None = None,
                 lock: threading.RLock | None = None) -> None:  # fmt: skip
        self.client, self.bucket, self.key = client, bucket, key
        self.state, self.save, self.content_type = state, save, content_type
        self.wrap = wrap or (lambda data: data)
        # Parts finish on the part threads; the state has one writer at a time.
        self._lock = lock or threading.RLock()
        self.changed = threading.Event()  # set when a background part finishes
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[int, Future[int]] = {}
        state.setdefault("key", key)
        state.setdefault("part_bytes", PART_BYTES)
        state.setdefault("parts", {})

    @property
    def part_bytes(self) -> int:
        return int(self.state["part_bytes"])

    @property
    def sent_bytes(self) -> int:
        with self._lock:  # a part thread may be adding one
            return sum(int(p["size"]) for p in self.state["parts"].values())

    @property
    def done(self) -> bool:
        return bool(self.state.get("done"))

    def _call(self, what: str, fn: Callable[..., Any], **kw: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, Key=self.key, **kw)
        except Exception as e:
            if error_code(e) == "NoSuchUpload":
                raise UploadGone(f"{what} {self.key}: the store lost the multipart upload") from e
            raise map_error(e, f"{what} {self.key}") from e

    def _ensure_started(self) -> str:
        if self.state.get("upload_id") and not self.state.get(orphans.CREATING):
            return str(self.state["upload_id"])
        with self._lock:  # once, though two part threads may ask

            def create() -> str:
                resp = self._call("create_multipart_upload", self.client.create_multipart_upload,
                                  ContentType=self.content_type)  # fmt: skip
                self.state["parts"] = {}
                log.info("%s live upload of %s started", logs.UPLOAD, self.key)
                return str(resp["UploadId"])

            # No upload left behind by a lost answer or a crash: see storage/orphans.py.
            return orphans.start_upload(self.client, self.bucket, self.key, self.state, self.save, create)

    def due_parts(self, mp4: LiveMP4, durable_length: int, final: bool) -> list[tuple[int, int, int]]:
        """(n, start, end) of the parts that can go now and have not gone."""
        size = durable_length
        p = self.part_bytes
        count = math.ceil(size / p) if final else size // p
        held = None if final else mp4.provisional
        out = []
        for n in range(1, count + 1):
            start, end = (n - 1) * p, min(n * p, size)
            if str(n) in self.state["parts"]:
                continue
            if held is not None and start < held[1] and end > held[0]:
                continue  # holds the open box's header: it goes when that is known
            out.append((n, start, end))
        return out

    def send_part(self, mp4: LiveMP4, n: int, start: int, end: int) -> int:
        upload_id = self._ensure_started()
        data = mp4.read(start, end)
        md5 = hashlib.md5(data).hexdigest()
        resp = self._call(f"upload_part {n}", self.client.upload_part, UploadId=upload_id, PartNumber=n,
                          Body=self.wrap(data), ContentMD5=base64.b64encode(bytes.fromhex(md5)).decode())  # fmt: skip
        etag = str(resp.get("ETag", "")).strip('"')
        if len(etag) == 32 and etag != md5:
            raise TransientError(f"upload_part {n} {self.key}: stored with a different MD5 than sent")
        with self._lock:
            self.state["parts"][str(n)] = {"etag": etag, "size": len(data), "md5": md5}
            self.save()
        return len(data)

    # ------------------------------------------------------------------ in the background

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def start_parts(self, mp4: LiveMP4, parts: list[tuple[int, int, int]]) -> int:
        """Start sending `parts` (from `due_parts`) in the background, as far as PARALLEL_PARTS
        allows with those already on their way; returns how many it started. `collect()`
        hands back what they did."""
        todo = [p for p in parts if p[0] not in self._in_flight][: PARALLEL_PARTS - len(self._in_flight)]
        if not todo:
            return 0
        self._ensure_started()
        for n, start, end in todo:
            future = self._threads().submit(self.send_part, mp4, n, start, end)
            # Once the future is done (not before: `collect` must find it so), wake the clip.
            future.add_done_callback(lambda _f: self.changed.set())
            self._in_flight[n] = future
        return len(todo)

    def _threads(self) -> ThreadPoolExecutor:
        """The upload's part threads (PARALLEL_PARTS), for the background and for `send_parts`."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PARALLEL_PARTS, thread_name_prefix="live-part")
        return self._pool

    def collect(self) -> int:
        """Bytes of the background parts that finished since the last call; raises the first
        failure among them (the part goes again: it is not acknowledged)."""
        sent, errors = 0, []
        for n, f in list(self._in_flight.items()):
            if not f.done():
                continue
            del self._in_flight[n]
            try:
                sent += f.result()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]
        return sent

    def settle(self) -> None:
        """Wait for the background parts; their failures are left for `collect()`."""
        wait(list(self._in_flight.values()))

    def close(self) -> None:
        """Wait for the background parts and end their threads (the clip's runner stops)."""
        self._drop_background()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # ------------------------------------------------------------------ waiting for them

    def send_parts(self, mp4: LiveMP4, parts: list[tuple[int, int, int]]) -> int:
        """Send `parts` (from `due_parts`), PARALLEL_PARTS at a time, and wait for them; each
        acknowledged one is saved as it lands. Raises the first failure after the others
        finished. Background parts are waited for first (and their failure raised)."""
        self.settle()
        self.collect()
        parts = [p for p in parts if str(p[0]) not in self.state["parts"]]
        if not parts:
            return 0
        self._ensure_started()
        if len(parts) == 1:
            return self.send_part(mp4, *parts[0])
        futures = [self._threads().submit(self.send_part, mp4, *p) for p in parts]
        wait(futures)
        sent, errors = 0, []
        for f in futures:
            try:
                sent += f.result()
            except Exception as e:  # the others went on; this one goes again next step
                errors.append(e)
        if errors:
            raise errors[0]
        return sent

    def complete(self, size: int, sha256: str) -> dict[str, Any]:
        """Complete and verify (size, and the ETag the store computes from the parts' MD5s)."""
        self.settle()
        self.collect()
        upload_id = self._ensure_started()
        parts = self.state["parts"]
        count = math.ceil(size / self.part_bytes)
        missing = [n for n in range(1, count + 1) if str(n) not in parts]
        if missing:
            raise TransientError(f"complete {self.key}: parts {missing} not sent yet")
        listed = [{"PartNumber": n, "ETag": parts[str(n)]["etag"]} for n in range(1, count + 1)]
        try:
            self._call("complete_multipart_upload", self.client.complete_multipart_upload, UploadId=upload_id,
                       MultipartUpload={"Parts": listed})  # fmt: skip
        except UploadGone:
            # Perhaps completed before a crash and only its answer lost: the object says.
            if not self._matches(size, count):
                raise
        if not self._matches(size, count):
            raise TransientError(f"upload {self.key}: the stored object is not the one sent (size or ETag)")
        done = {"size": size, "sha256": sha256, "parts": count}
        with self._lock:
            self.state["done"] = done
            self.save()
        log.info(
            "%s live upload of %s completed: %d parts, %.1f MB", logs.UPLOAD, self.key, count, size / 1e6
        )
        return done

    def _expected_etag(self, count: int) -> str:
        md5s = b"".join(bytes.fromhex(self.state["parts"][str(n)]["md5"]) for n in range(1, count + 1))
        return f"{hashlib.md5(md5s).hexdigest()}-{count}"

    def _matches(self, size: int, count: int) -> bool:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key)
        except Exception as e:
            if error_code(e) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise map_error(e, f"head_object {self.key}") from e
        etag = str(head.get("ETag", "")).strip('"')
        return int(head.get("ContentLength", -1)) == size and etag == self._expected_etag(count)

    def restart(self) -> None:
        """The store lost the upload: a new one, every part again."""
        self._drop_background()
        with self._lock:
            self.state.pop("upload_id", None)
            self.state["parts"] = {}
            self.save()

    def _drop_background(self) -> None:
        """Wait for the background parts and forget what they did (the upload is going)."""
        self.settle()
        self._in_flight.clear()

    def abort(self) -> None:
        """Abort this key's uploads: ours, and one a create in flight may have started."""
        self._drop_background()  # a part landing after the abort would be saved into a reset state
        if self.done or not (self.state.get("upload_id") or self.state.get(orphans.CREATING)):
            return
        orphans.abort_others(self.client, self.bucket, self.key, keep=None)
        with self._lock:
            self.state.pop(orphans.CREATING, None)
            self.state.pop("upload_id", None)
            self.state["parts"] = {}
            self.save()
        log.info("%s live upload of %s aborted", logs.UPLOAD, self.key)
