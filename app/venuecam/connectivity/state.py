"""The published connectivity state: what every other process reads.

The watchdog writes the `state` row "connectivity" (JSON: status, since, last_check,
latency_ms, detail, generation) and, for processes that want to notice a change without a
database poll, a marker file `<run_dir>/online` or `<run_dir>/offline` holding the
generation (neither file while UNKNOWN). `generation` grows on every change, so a reader
that polls can tell it missed a flap (OFFLINE and back) between two looks.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from venuecam import shared_state
from venuecam.timeutil import iso, utcnow

KEY = shared_state.CONNECTIVITY
ONLINE, OFFLINE, UNKNOWN = "ONLINE", "OFFLINE", "UNKNOWN"
MARKERS = {ONLINE: "online", OFFLINE: "offline"}
# A state not refreshed for this long was left by a watchdog that is gone: treat as UNKNOWN.
STALE_AFTER_S = 120.0


@dataclass(frozen=True)
class ConnState:
    status: str = UNKNOWN
    since: str | None = None  # ISO 8601 Z: when this status began
    last_check: str | None = None  # ISO 8601 Z: the watchdog's last round
    latency_ms: float | None = None
    detail: str = "no connectivity check recorded yet"
    generation: int = 0

    def age_s(self, now: dt.datetime | None = None) -> float | None:
        if not self.last_check:
            return None
        last = dt.datetime.fromisoformat(self.last_check.removesuffix("Z"))
        return ((now or utcnow()) - last).total_seconds()

    def stale(self, now: dt.datetime | None = None, after_s: float = STALE_AFTER_S) -> bool:
        age = self.age_s(now)
        return age is None or age > after_s

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def read_state() -> ConnState:
    """The last published state (UNKNOWN if none, or unreadable). Needs an open database."""
    raw = shared_state.read_value(KEY)
    if raw is None:
        return ConnState()
    try:
        v = json.loads(raw)
        return ConnState(
            status=v["status"] if v.get("status") in (ONLINE, OFFLINE, UNKNOWN) else UNKNOWN,
            since=v.get("since"),
            last_check=v.get("last_check"),
            latency_ms=None if v.get("latency_ms") is None else float(v["latency_ms"]),
            detail=str(v.get("detail", "")),
            generation=int(v.get("generation", 0)),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return ConnState(detail="connectivity state unreadable")


def is_online(now: dt.datetime | None = None, stale_after_s: float = STALE_AFTER_S) -> bool:
    """Should a caller try the network now? Only a fresh OFFLINE says no.

    UNKNOWN (or a stale state from a dead watchdog) counts as "try at once, fall back to the
    queue".
    """
    s = read_state()
    return s.status != OFFLINE or s.stale(now, stale_after_s)


def publish(state: ConnState, run_dir: Path | None = None) -> None:
    """Write the state row, then the marker file (the row is the truth; the file a hint)."""
    shared_state.put_json(KEY, state.to_json())
    if run_dir is not None:
        write_marker(run_dir, state.status, state.generation)


def make_state(
    status: str,
    since: dt.datetime,
    last_check: dt.datetime,
    latency_ms: float | None,
    detail: str,
    generation: int,
) -> ConnState:
    return ConnState(
        status=status,
        since=iso(since),
        last_check=iso(last_check),
        latency_ms=None if latency_ms is None else round(latency_ms, 1),
        detail=detail,
        generation=generation,
    )


def write_marker(run_dir: Path, status: str, generation: int) -> None:
    """<run_dir>/online or /offline (content: the generation); the other one removed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    keep = MARKERS.get(status)
    if keep:
        tmp = run_dir / f".{keep}.tmp"
        tmp.write_text(f"{generation}\n")
        os.replace(tmp, run_dir / keep)
    for name in MARKERS.values():
        if name != keep:
            (run_dir / name).unlink(missing_ok=True)


def peek(run_dir: Path) -> tuple[str, int]:
    """(status, generation) from the marker file alone: cheap enough to poll every 100 ms.

    An uploader watches it while a transfer stalls: a generation newer than the one it saw at
    OFFLINE means the link is back, so it drops the stalled connection and reconnects instead
    of waiting out TCP's retransmission backoff.
    """
    for status, name in MARKERS.items():
        try:
            return status, int((run_dir / name).read_text().strip() or 0)
        except (OSError, ValueError):
            continue
    return UNKNOWN, 0
