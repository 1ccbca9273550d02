"""What a failed attempt means (seed 000's retry-all-errors policy, with booking-api.md's
exceptions). Pure: the error and the link state in, a verdict out.

| the attempt failed because                          | counts? | waits                          |
|-----------------------------------------------------|---------|--------------------------------|
| the device is offline (OfflineError, or any         | no      | for the reconnect wake-up      |
| transient error while the watchdog says OFFLINE)    |         | (`OFFLINE_RETRY_S` safety net) |
| a server said when to come back (429 Retry-After),  | no      | exactly that long              |
| or something it needs is busy (RetryLater)          |         |                                |
| the disk is full (ENOSPC)                           | no      | the type's longest delay,      |
|                                                     |         | at most `DISK_FULL_RETRY_MAX_S`|
| anything else (5xx, 401/403, a bad file, a bug)     | yes     | the type's schedule; `failed`  |
|                                                     |         | after the last attempt         |
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from venuecam import retry
from venuecam.errors import OfflineError, RetryLater, TransientError, is_disk_full

OFFLINE_RETRY_S = 60.0
# A server asking for no wait at all ("Retry-After: 0") still gets a second: no tight loop.
MIN_WAIT_S = 1.0
# Space freed by retention or a human is used within this long, whatever the type's schedule.
DISK_FULL_RETRY_MAX_S = 900

OFFLINE, WAIT, DISK_FULL, COUNTED = "offline", "wait", "disk_full", "counted"


@dataclass(frozen=True)
class Verdict:
    kind: str
    delay_s: float | None  # the wait of an uncounted failure; None: the schedule decides

    @property
    def counted(self) -> bool:
        return self.kind == COUNTED


def judge(error: BaseException, online: bool, schedule: Sequence[int]) -> Verdict:
    if isinstance(error, OfflineError) or (isinstance(error, TransientError) and not online):
        return Verdict(OFFLINE, OFFLINE_RETRY_S)
    if isinstance(error, RetryLater):
        return Verdict(WAIT, max(retry.retry_after(error) or 0.0, MIN_WAIT_S))
    if is_disk_full(error):
        # Waiting for space, not failing: the longest delay of the schedule, because every
        # attempt on a full disk writes until the disk refuses (wear on an SD card).
        return Verdict(DISK_FULL, float(min(max(schedule, default=60), DISK_FULL_RETRY_MAX_S)))
    return Verdict(COUNTED, None)


def next_try_in(verdict: Verdict, schedule: Sequence[int], attempts: int, max_attempts: int) -> float | None:
    """Seconds until the next attempt; None when this was the last one."""
    if not verdict.counted:
        return verdict.delay_s
    if attempts >= max_attempts:
        return None
    return float(retry.delay_after(schedule, attempts))
