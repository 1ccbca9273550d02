"""Which pattern each LED shows, from the box's facts. Pure: facts in, plan out.

| LED            | pattern                    | means                                         |
|----------------|----------------------------|-----------------------------------------------|
| online (green) | on                         | online (the watchdog's probes succeed)        |
|                | off                        | offline                                       |
|                | blip (0.1 s on, 1.9 s off) | not known yet (starting, no check recorded)   |
| backlog (amber)| off                        | no work waiting                               |
|                | slow blink (1 s / 1 s)     | 1-9 tasks waiting or running                  |
|                | blink (0.4 s / 0.4 s)      | 10-99 tasks                                   |
|                | fast blink (0.15 / 0.15 s) | 100 or more                                   |
|                | on                         | more than queue.max_queue_size                |
| fault (red)    | off                        | nothing needs a human                         |
|                | on                         | the platform rejects the token (401/403)      |
|                | fast blink (0.2 s / 0.2 s) | a camera is down (no new segment)             |
|                | blink (0.6 s / 0.6 s)      | disk nearly full                              |
|                | long on (1.5 s / 0.5 s)    | clock not set (no NTP yet, year before build) |
|                | blip (0.1 s on, 1.9 s off) | tasks failed (dead letter; `venuecam queue retry`) |
|                |                            | or expired (waiting over queue.expiration_hours)  |
|                | slow blink (1 s / 1 s)     | an update was rolled back, or waits for a human |

The fault LED shows the most urgent cause (the order above); `venuecam status` lists all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class LedState:
    mode: str  # "off" | "on" | "blink"
    on_time: float | None = None
    off_time: float | None = None
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


OFF = LedState("off")


def _on(reason: str) -> LedState:
    return LedState("on", reason=reason)


def _blink(on: float, off: float, reason: str) -> LedState:
    return LedState("blink", on, off, reason)


@dataclass(frozen=True)
class LedFacts:
    connectivity: str = "UNKNOWN"  # ONLINE | OFFLINE | UNKNOWN
    waiting: int = 0  # tasks pending or running
    max_queue_size: int = 1000
    auth_rejected: bool = False
    cameras_down: tuple[str, ...] = ()
    disk_nearly_full: bool = False
    clock_set: bool = True
    failed: int = 0
    expired: int = 0  # tasks waiting longer than queue.expiration_hours (still delivered)
    update_attention: tuple[str, ...] = ()  # "rolled back to 0.1.0: ...", an update waiting too long


@dataclass(frozen=True)
class LedPlan:
    online: LedState = OFF
    backlog: LedState = OFF
    fault: LedState = OFF
    causes: tuple[str, ...] = field(default=())  # every fault cause, most urgent first

    def leds(self) -> dict[str, LedState]:
        return {"online": self.online, "backlog": self.backlog, "fault": self.fault}


def choose(facts: LedFacts) -> LedPlan:
    if facts.connectivity == "ONLINE":
        online = LedState("on")
    elif facts.connectivity == "OFFLINE":
        online = OFF
    else:
        online = _blink(0.1, 1.9, "connectivity unknown")

    n = facts.waiting
    if n <= 0:
        backlog = OFF
    elif n > facts.max_queue_size:
        backlog = _on(f"{n} waiting (over the limit {facts.max_queue_size})")
    elif n >= 100:
        backlog = _blink(0.15, 0.15, f"{n} waiting")
    elif n >= 10:
        backlog = _blink(0.4, 0.4, f"{n} waiting")
    else:
        backlog = _blink(1.0, 1.0, f"{n} waiting")

    causes: list[tuple[str, LedState]] = []
    if facts.auth_rejected:
        causes.append(("platform rejects the token", _on("platform rejects the token")))
    if facts.cameras_down:
        why = f"camera down: {', '.join(facts.cameras_down)}"
        causes.append((why, _blink(0.2, 0.2, why)))
    if facts.disk_nearly_full:
        causes.append(("disk nearly full", _blink(0.6, 0.6, "disk nearly full")))
    if not facts.clock_set:
        causes.append(("clock not set", _blink(1.5, 0.5, "clock not set")))
    if facts.failed:
        why = f"{facts.failed} task(s) failed"
        causes.append((why, _blink(0.1, 1.9, why)))
    if facts.expired:
        why = f"{facts.expired} task(s) expired"
        causes.append((why, _blink(0.1, 1.9, why)))
    for why in facts.update_attention:
        causes.append((why, _blink(1.0, 1.0, why)))
    fault = causes[0][1] if causes else OFF
    return LedPlan(online, backlog, fault, tuple(c for c, _ in causes))


def facts_from_snapshot(snapshot: dict[str, Any]) -> LedFacts:
    """The LED-relevant part of `status.facts.collect()`'s snapshot."""
    q = snapshot["queue"]
    clock = snapshot.get("clock") or {}
    return LedFacts(
        connectivity=snapshot["connectivity"]["status"],
        waiting=sum(by.get("pending", 0) + by.get("processing", 0) for by in q.values()),
        max_queue_size=snapshot.get("max_queue_size", 1000),
        auth_rejected=snapshot["platform_auth"].get("ok") is False,
        cameras_down=tuple(c["name"] for c in snapshot["cameras"] if not c["recording"]),
        disk_nearly_full=bool(snapshot["disk"].get("nearly_full")),
        clock_set=bool(clock.get("clock_set", True)),
        failed=sum(by.get("failed", 0) for by in q.values()),
        expired=int((snapshot.get("expired") or {}).get("total", 0)),
        update_attention=tuple((snapshot.get("update") or {}).get("attention", [])),
    )
