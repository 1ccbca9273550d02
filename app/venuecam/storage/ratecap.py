"""The box's upload bandwidth cap (`storage.max_upload_mbit`): one token bucket per process.

Which processes upload: only the worker. Its huey consumer runs the after-booking uploads on
threads (at most `queue.max_concurrent_uploads` at once, each with `storage.parallel_parts`
part threads) and the live uploads of `venuecam.live` run on threads of the same process.
Elsewhere only the updater's health gate puts an object (`cli/update_cmd._probe_upload`,
some 50 bytes, in its own process with a bucket of its own: too small to matter); downloads
(update bundles) are not uploads. So a process-wide bucket is the box-wide budget. Should
another process ever upload in bulk, the budget has to be shared between processes (a state
file under a lock, or its uploads handed to the worker).

How the bytes are held back: a request body is a `ThrottledBody`, whose reads take tokens
from the bucket *once the request is on its way* (`on_wire`, set by botocore's before-send
hook that `install` registers): botocore may read a body before that (to hash it for a
signature or a checksum), and those reads send nothing. While a cap is in force each read is
at most a step (`SLICE_BYTES`, or `STEP_S` of the cap for fast caps), so the bytes go to
the socket in small steps at the cap's pace, not in botocore's 128 KiB reads.

The burst (what may go out at once after a pause) is a quarter second of the cap, at least
`BURST_MIN_BYTES`. The cap exists so that guests on the same line do not notice our uploads:
a burst of B bytes at the link's full speed is what their packets may queue behind, and a
quarter second of the cap keeps that under a quarter second however fast the link, while
leaving room for the sender's scheduling jitter (a thread waking a few ms late does not lose
its share). At 8 Mbit/s that is 250 kB, close to the 256 KiB a fixed burst would give.

The cap in force is looked up again at least every `RECHECK_S` and at each window's
boundary, from the wall clock in venue time: a long upload crossing 17:00 slows down at
17:00, and a wall clock that jumps (a Pi has no RTC) is followed within a second.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from venuecam import logs
from venuecam.cap_schedule import MINUTES_PER_DAY, CapWindow
from venuecam.config import StorageConfig

log = logging.getLogger(__name__)

BURST_S = 0.25
BURST_MIN_BYTES = 32 * 1024
# Reads while capped: at most this, or STEP_S of the cap where that is more (fast caps: no
# more than 100 steps a second). Each step goes to the kernel at once and out at the link's
# speed: 16 KiB is 1.3 ms of a 100 Mbit/s link.
SLICE_BYTES = 16 * 1024
STEP_S = 0.01
RECHECK_S = 1.0

Clock = Callable[[], float]


# The cap is what the line carries: body bytes plus the TCP/IP and Ethernet headers around
# them (1.046 of the body measured on the netns link, issue 12) and the HTTP ones (a few
# hundred bytes a request). So bodies go at the cap / WIRE_OVERHEAD.
WIRE_OVERHEAD = 1.05


def bytes_per_s(mbit: float) -> float:
    """Body bytes a second under a cap of `mbit` on the wire."""
    return mbit * 1e6 / 8 / WIRE_OVERHEAD


# ---------------------------------------------------------------- the schedule (pure)


@dataclass(frozen=True)
class CapNow:
    """The cap in force at a moment: `mbit` (None: no cap) until `until` (venue-local; None:
    it never changes), then `next_mbit`."""

    mbit: float | None
    until: dt.datetime | None
    next_mbit: float | None


def mbit_at(windows: tuple[CapWindow, ...], minute: float) -> float | None:
    for w in windows:
        if w.covers(minute):
            return w.mbit
    return None


def cap_at(windows: tuple[CapWindow, ...], local: dt.datetime) -> CapNow:
    """The cap at venue-local time `local` (an aware datetime in the venue's zone)."""
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    minute = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    mbit = mbit_at(windows, minute)
    # The rate changes only at a window's edge; the first edge ahead with another rate.
    edges = sorted({w.start % MINUTES_PER_DAY for w in windows} | {w.end % MINUTES_PER_DAY for w in windows})
    for day in (0, 1):
        for edge in edges:
            at = edge + day * MINUTES_PER_DAY
            if at <= minute:
                continue
            after = mbit_at(windows, edge)
            if after != mbit:
                # Wall-clock arithmetic in the venue's zone: "17:00" stays 17:00 across DST.
                return CapNow(mbit, midnight + dt.timedelta(minutes=at), after)
    return CapNow(mbit, None, None)


# ---------------------------------------------------------------- the bucket (pure)


class TokenBucket:
    """Tokens (bytes) flow in at `rate` per second up to `burst`. `take(n)` always succeeds
    and may leave the bucket in debt; it returns how long the caller waits before sending,
    so that callers together never send more than `burst + rate * t` in any `t` seconds.
    Concurrent callers queue in the order they took (each waits out the debt before it).
    Not thread-safe by itself; time is passed in (seconds on a monotonic clock)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError(f"token bucket: rate and burst must be positive, got {rate}, {burst}")
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:  # a clock read out of order (another thread) adds nothing
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, n: int, now: float) -> float:
        self._refill(now)
        self.tokens -= n
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def set_rate(self, rate: float, burst: float, now: float) -> None:
        """From `now` on, a new rate: what flowed in so far counts at the old one; a debt stays."""
        self._refill(now)
        self.rate, self.burst = rate, burst
        self.tokens = min(self.tokens, burst)


def burst_for(rate: float) -> float:
    return max(rate * BURST_S, BURST_MIN_BYTES)


# ---------------------------------------------------------------- the governor


class UploadCap:
    """The cap for every upload of this process: `acquire(n)` before sending n bytes, or
    send a `body(data)` through a client `install`ed with this cap (make_client does it).

    `clock` (monotonic) paces the bucket, `wall` (epoch seconds) places the schedule in the
    venue's day, `sleep` waits; tests pass their own."""

    def __init__(
        self,
        windows: tuple[CapWindow, ...] = (),
        tz: dt.tzinfo = dt.UTC,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock, self._wall, self._sleep = clock, wall, sleep
        self._lock = threading.Lock()
        self.windows, self.tz = windows, tz
        self._bucket: TokenBucket | None = None
        self._mbit: float | None = None
        self._next_check = float("-inf")
        self.waited_s = 0.0  # total time callers were held back (for logs and benchmarks)

    def configure(self, windows: tuple[CapWindow, ...], tz: dt.tzinfo) -> None:
        """A new schedule (the same bucket: the budget stays shared); applied at the next byte."""
        with self._lock:
            if (windows, tz) != (self.windows, self.tz):
                self.windows, self.tz = windows, tz
                self._next_check = float("-inf")

    def now(self) -> CapNow:
        return cap_at(self.windows, dt.datetime.fromtimestamp(self._wall(), self.tz))

    def _update(self, mono: float) -> None:
        """Look up the cap in force, at most every RECHECK_S and at the next edge (lock held)."""
        if mono < self._next_check:
            return
        self._next_check = mono + RECHECK_S
        cap = CapNow(None, None, None)
        if self.windows:
            local = dt.datetime.fromtimestamp(self._wall(), self.tz)
            cap = cap_at(self.windows, local)
            if cap.until is not None:
                left = (cap.until - local).total_seconds()
                self._next_check = mono + max(0.0, min(RECHECK_S, left))
        mbit = cap.mbit
        if mbit == self._mbit:
            return
        until = "" if cap.until is None else f" until {cap.until:%H:%M}"
        log.info("%s upload cap %s%s", logs.UPLOAD, "lifted" if mbit is None else f"{mbit:g} Mbit/s", until)
        self._mbit = mbit
        if mbit is None:
            self._bucket = None
            return
        rate = bytes_per_s(mbit)
        if self._bucket is None:
            self._bucket = TokenBucket(rate, burst_for(rate), mono)  # starts full: one burst
        else:
            self._bucket.set_rate(rate, burst_for(rate), mono)

    def acquire(self, nbytes: int) -> float:
        """Block until `nbytes` may be sent under the cap in force; return the seconds waited.
        Thread-safe: every caller in this process shares one budget. Callers sending big
        blocks should ask for them in steps (a send of 1 MiB at once is a burst of 1 MiB)."""
        return self._take(nbytes, whole=True)[1]

    def acquire_some(self, nbytes: int) -> int:
        """Like `acquire`, for at most one step of `nbytes` (`SLICE_BYTES`, or `STEP_S` of the
        cap where that is more) while a cap is in force; return how many bytes were granted."""
        return self._take(nbytes, whole=False)[0]

    def _take(self, nbytes: int, whole: bool) -> tuple[int, float]:
        if nbytes <= 0:
            return 0, 0.0
        with self._lock:
            mono = self._clock()
            self._update(mono)
            if self._bucket is None:
                return nbytes, 0.0
            if not whole:
                nbytes = min(nbytes, max(SLICE_BYTES, int(self._bucket.rate * STEP_S)))
            wait = self._bucket.take(nbytes, mono)
            self.waited_s += wait
        if wait > 0:
            self._sleep(wait)
        return nbytes, wait

    @property
    def mbit(self) -> float | None:
        """The cap as last applied (None: none); `now()` asks the schedule afresh."""
        return self._mbit

    def body(self, data: bytes, expect_continue: bool = False) -> ThrottledBody:
        """`data` as a request body whose sending is held to the cap (see ThrottledBody)."""
        return ThrottledBody(data, self, expect_continue)


class ThrottledBody(io.BytesIO):
    """A request body that takes tokens from `cap` for each read once it is on the wire.

    `on_wire` is set by `mark_on_wire` (botocore's before-send) just before the request is
    written; reads before that are botocore looking at the body, not sending it. A retried
    request reads it again from the start, and is capped again: those bytes cross the link
    too. `expect_continue`: keep botocore's `Expect: 100-continue` (else it is dropped, so a
    body that was plain bytes before it was wrapped goes out as it did then)."""

    def __init__(self, data: bytes, cap: UploadCap, expect_continue: bool = False) -> None:
        super().__init__(data)
        self.size = len(data)
        self.cap = cap
        self.expect_continue = expect_continue
        self.on_wire = False

    def read(self, size: int | None = -1, /) -> bytes:
        if self.on_wire:
            left = self.size - self.tell()
            want = left if size is None or size < 0 else min(size, left)
            if want > 0:
                # Perhaps fewer than asked for: the sender reads again for the rest.
                size = self.cap.acquire_some(want)
        return super().read(size)


def mark_on_wire(request: Any = None, **_: Any) -> None:
    """botocore's before-send hook: the request is signed and about to be written."""
    body = getattr(request, "body", None)
    if isinstance(body, ThrottledBody):
        body.on_wire = True
        if not body.expect_continue:
            request.headers.pop("Expect", None)


def _wrap_body(cap: UploadCap) -> Callable[..., None]:
    def wrap(params: dict[str, Any], **_: Any) -> None:
        body = params.get("Body")
        if isinstance(body, bytes | bytearray | memoryview):
            params["Body"] = cap.body(bytes(body))

    return wrap


def watch_sending(client: Any) -> None:
    """Mark ThrottledBody bodies of `client`'s requests when they go on the wire."""
    client.meta.events.register("before-send.s3", mark_on_wire, unique_id="venuecam-ratecap-on-wire")


_installed: weakref.WeakKeyDictionary[Any, UploadCap] = weakref.WeakKeyDictionary()


def install(client: Any, cap: UploadCap) -> None:
    """Hold every PutObject and UploadPart of `client` to `cap`: bytes bodies are wrapped,
    and ThrottledBody bodies (ours or the caller's) are marked when they go on the wire.
    Other file-like bodies pass uncapped (the box sends none). Once per client: a second
    call changes nothing."""
    if client in _installed:
        return
    _installed[client] = cap
    watch_sending(client)
    for op in ("PutObject", "UploadPart"):
        client.meta.events.register(
            f"before-parameter-build.s3.{op}", _wrap_body(cap), unique_id=f"venuecam-ratecap-{op}"
        )


def cap_of(client: Any) -> UploadCap:
    """The cap `install`ed on `client`; an uncapped one for a client made elsewhere."""
    return _installed.get(client) or NO_CAP


NO_CAP = UploadCap()
_shared: UploadCap | None = None
_shared_lock = threading.Lock()


def shared(storage: StorageConfig) -> UploadCap:
    """This process's one cap, with `storage`'s schedule in its venue's time zone."""
    global _shared
    tz = ZoneInfo(storage.venue_timezone)
    with _shared_lock:
        if _shared is None:
            _shared = UploadCap(storage.max_upload_mbit, tz)
        else:
            _shared.configure(storage.max_upload_mbit, tz)
        return _shared
