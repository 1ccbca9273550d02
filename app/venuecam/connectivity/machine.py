"""ONLINE/OFFLINE with hysteresis: one lost round does not flap the state.

Pure: rounds go in with `now` (monotonic seconds), changes come out. Every edge is in
`transition()`, with a comment saying why it exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    UNKNOWN = "UNKNOWN"  # no verdict yet (just started, or the watchdog stopped)
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


@dataclass(frozen=True)
class Change:
    old: Status
    new: Status
    generation: int
    at: float  # monotonic


@dataclass
class Machine:
    fail_threshold: int = 2
    ok_threshold: int = 1
    status: Status = Status.UNKNOWN
    generation: int = 0
    fails: int = 0  # consecutive failed rounds
    oks: int = 0  # consecutive good rounds
    changed_at: float | None = None

    def __post_init__(self) -> None:
        if self.fail_threshold < 1 or self.ok_threshold < 1:
            raise ValueError("fail_threshold and ok_threshold must be at least 1")

    @property
    def suspect(self) -> bool:
        """A change is under way but not yet confirmed: probe again at once."""
        if self.status is Status.ONLINE:
            return self.fails > 0
        if self.status is Status.OFFLINE:
            return self.oks > 0
        return self.fails > 0 or self.oks > 0

    def transition(self, ok: bool, now: float, decisive: bool = False) -> Change | None:
        """Feed one round's verdict; return the change it causes, if any."""
        if ok:
            self.oks, self.fails = self.oks + 1, 0
        else:
            self.fails, self.oks = self.fails + 1, 0

        if self.status is Status.ONLINE:
            if ok:
                # ONLINE -> ONLINE: nothing to do; any failure streak is over.
                return None
            if decisive or self.fails >= self.fail_threshold:
                # ONLINE -> OFFLINE: no route at all (certain), or enough failed rounds in a
                # row that it is not one lost packet.
                return self._go(Status.OFFLINE, now)
            # ONLINE, one failed round below the threshold: stay, probe again soon.
            return None

        if self.status is Status.OFFLINE:
            if ok and self.oks >= self.ok_threshold:
                # OFFLINE -> ONLINE: the hosts we need answered; the queue can drain now.
                return self._go(Status.ONLINE, now)
            # OFFLINE, still failing (or not enough good rounds): stay.
            return None

        # UNKNOWN: the first verdict uses the same thresholds, so a start-up blip is not
        # reported as an outage; meanwhile UNKNOWN lets callers try the network directly.
        if ok and self.oks >= self.ok_threshold:
            # UNKNOWN -> ONLINE
            return self._go(Status.ONLINE, now)
        if not ok and (decisive or self.fails >= self.fail_threshold):
            # UNKNOWN -> OFFLINE
            return self._go(Status.OFFLINE, now)
        return None

    def reset(self, now: float) -> Change | None:
        """The watchdog stops: nobody vouches for the state any more (-> UNKNOWN)."""
        if self.status is Status.UNKNOWN:
            return None
        return self._go(Status.UNKNOWN, now)

    def _go(self, new: Status, now: float) -> Change:
        change = Change(self.status, new, self.generation + 1, now)
        self.status, self.generation, self.changed_at = new, change.generation, now
        self.fails = self.oks = 0
        return change
