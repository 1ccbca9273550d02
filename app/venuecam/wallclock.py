"""Can the wall clock be trusted? The seam every time-dependent decision asks (a Pi has no RTC).

Until time syncs, the wall clock is whatever the box booted with: 1970, or the last time
fake-hwclock saved, minutes or months behind. So:

- the clock is *trusted* when its year is plausible and time sync says it synchronised:
  systemd-timesyncd's flag file `/run/systemd/timesync/synchronized` (timesyncd creates
  the directory when it starts, the file at its first sync). Where timesyncd does not run
  (a developer's machine, a container) sync cannot be told and the year decides alone;
- `VENUECAM_CLOCK_SYNC_FLAG` names another flag file: the seam tests control (its
  existence is "synchronised"), for whole-stack runs under libfaketime;
- a `Stamp` is the wall clock read together with the monotonic clock and the boot it
  belongs to: what lets a segment recorded before the sync be re-timed once it comes
  (`wall = wall_now - (mono_now - mono)`), and lets the worker see a jump of the wall
  clock (`wall - mono` changes) and re-base the ledger's times (`clockwatch`).

Standard library only: the capture programs ask it for every segment they file.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass
from pathlib import Path

# A wall clock before this year was never set (the package did not exist before it).
BUILD_YEAR = 2025
SYNC_FLAG = Path("/run/systemd/timesync/synchronized")
ENV_SYNC_FLAG = "VENUECAM_CLOCK_SYNC_FLAG"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
NOT_SET = "clock not set"


@dataclass(frozen=True)
class Trust:
    trusted: bool
    synchronized: bool | None  # None: nothing here can tell (no timesyncd)
    source: str  # "flag:<path>" | "timesyncd" | "none"
    reason: str  # why it is not trusted ("" when it is)


@dataclass(frozen=True)
class Stamp:
    """The two clocks read together, and the boot the monotonic one counts from."""

    wall: float  # epoch seconds
    mono: float  # time.monotonic()
    boot_id: str

    @property
    def offset(self) -> float:
        """wall - mono: constant while nobody steps the wall clock."""
        return self.wall - self.mono


def _flag() -> tuple[Path | None, str]:
    override = os.environ.get(ENV_SYNC_FLAG)
    if override:
        return Path(override), f"flag:{override}"
    if SYNC_FLAG.parent.is_dir():  # timesyncd runs here: its flag is the answer
        return SYNC_FLAG, "timesyncd"
    return None, "none"


def synchronized() -> tuple[bool | None, str]:
    flag, source = _flag()
    return (None if flag is None else flag.exists()), source


def year_plausible(wall: float) -> bool:
    return dt.datetime.fromtimestamp(wall, dt.UTC).year >= BUILD_YEAR


def trust(wall: float | None = None) -> Trust:
    wall = time.time() if wall is None else wall
    synced, source = synchronized()
    if not year_plausible(wall):
        return Trust(False, synced, source, f"{NOT_SET}: the year is before {BUILD_YEAR}")
    if synced is False:
        return Trust(False, synced, source, f"{NOT_SET}: time has not synchronised yet ({source})")
    return Trust(True, synced, source, "")


def boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return "unknown"


def stamp() -> Stamp:
    return Stamp(time.time(), time.monotonic(), boot_id())


def mono_to_wall(mono: float, now: Stamp) -> float:
    """A monotonic instant of this boot as wall-clock epoch seconds, by the clocks read now."""
    return now.wall - (now.mono - mono)
