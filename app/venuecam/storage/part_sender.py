"""A multipart upload's parts on the wire: sent on a small pool over one client, the next one
starting as soon as the previous one's bytes are all in its socket (see `PartSender`), each
held to the box's upload cap."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from venuecam.storage import ratecap
from venuecam.storage.client import error_code, map_error


class UploadGone(Exception):
    """The multipart upload id is unknown to the store (expired or aborted)."""


def call_store(what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except Exception as e:
        if error_code(e) in ("NoSuchUpload",):
            raise UploadGone from e
        raise map_error(e, what) from e


class PartBody(ratecap.ThrottledBody):
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


class PartSender:
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
        self._running: dict[int, tuple[Future[str], PartBody]] = {}
        self._last: PartBody | None = None
        self._error: BaseException | None = None
        self._cap = ratecap.cap_of(client)  # the box's upload cap, shared with every upload
        ratecap.watch_sending(client)  # once per client however many uploads it runs

    def submit(self, n: int, data: bytes, md5_b64: str) -> None:
        body = PartBody(data, self._cap, self._wake, expect_continue=self._last is None)
        future = self._pool.submit(self._send, n, body, md5_b64)
        future.add_done_callback(lambda _f: self._wake.set())
        self._running[n] = (future, body)
        self._last = body

    def _send(self, n: int, body: PartBody, md5_b64: str) -> str:
        resp = call_store(f"upload_part {n}/{self.n_parts} of {self.key}", self.client.upload_part, Bucket=self.bucket,
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
