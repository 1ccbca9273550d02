"""Is the wall clock trustworthy? A Pi has no RTC: until NTP syncs, the year may be 1970.

`clock_set` is `venuecam.wallclock.trust`: the verdict clips, retention and the LEDs
follow (a plausible year, and timesyncd's flag where timesyncd runs); `reason` says why not.
`synchronized` is shown beside it from `timedatectl` where systemd runs, else from the
kernel's own NTP status (adjtimex), which needs nothing but libc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from venuecam import wallclock
from venuecam.timeutil import naive_utc_to_ts

BUILD_YEAR = wallclock.BUILD_YEAR

_TIME_ERROR = 5  # adjtimex(): clock not synchronised
_STA_UNSYNC = 0x0040


@dataclass(frozen=True)
class ClockState:
    synchronized: bool | None  # None: cannot tell
    source: str  # "timedatectl" | "adjtimex" | "unknown"
    clock_set: bool  # trusted (wallclock.trust): a plausible year, synced where that can be told
    now: str  # the wall clock as the box sees it (ISO 8601 Z)
    reason: str = ""  # why it is not trusted

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (64-bit Linux); only `status` is read, the padding
    # at the end leaves room for the kernel's reserved fields.
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 16),
    ]


def _from_timedatectl(timeout: float = 2.0) -> bool | None:
    try:
        out = subprocess.run(
            ["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    value = out.stdout.strip().lower()
    if out.returncode != 0 or value not in ("yes", "no"):
        return None  # no systemd (containers, some images): ask the kernel instead
    return value == "yes"


def _from_adjtimex() -> bool | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        tx = _Timex()  # modes = 0: read only
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR and not (tx.status & _STA_UNSYNC)


def clock_is_set(now: dt.datetime) -> bool:
    return wallclock.trust(naive_utc_to_ts(now)).trusted


def read_clock(now: dt.datetime, use_timedatectl: bool = True) -> ClockState:
    """`use_timedatectl=False` skips the process spawn where it already failed (no systemd)."""
    synced = _from_timedatectl() if use_timedatectl else None
    source = "timedatectl"
    if synced is None:
        synced, source = _from_adjtimex(), "adjtimex"
    if synced is None:
        source = "unknown"
    verdict = wallclock.trust(naive_utc_to_ts(now))
    return ClockState(
        synced, source, verdict.trusted, now.replace(microsecond=0).isoformat() + "Z", verdict.reason
    )
