"""When an update (or a reboot) may run: never while a court of ours is booked, a clip is cut,
or a booking's video is uploaded live; and, if one is set, only inside the maintenance window.

`blockers()` asks the database (as its owner, read-only); `in_window()` is pure.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from venuecam.config import Config
from venuecam.config_checks import parse_window
from venuecam.update.stack import dbop

LIVE_UPLOAD_S = 600  # an upload of a booking that ended this recently is "live" delivery
BOOKED = ("success", "pending")


def in_window(window: str, local: dt.datetime) -> bool:
    span = parse_window(window) if window else None
    if span is None:
        return True
    start, end = span
    m = local.hour * 60 + local.minute
    return start <= m < end if start < end else (m >= start or m < end)


def next_window_start(window: str, local: dt.datetime) -> dt.datetime:
    span = parse_window(window)
    assert span is not None
    start = local.replace(hour=span[0] // 60, minute=span[0] % 60, second=0, microsecond=0)
    return start if start > local else start + dt.timedelta(days=1)


def blockers(cfg: Config, now_ts: float | None = None) -> tuple[list[str], float | None]:
    """(why not now, epoch when the last of those ends) from bookings and the task ledger."""
    now_ts = time.time() if now_ts is None else now_ts
    fields = sorted({c.field_id for c in cfg.cameras})
    reasons: list[str] = []
    until: float | None = None
    if not cfg.db_path.exists():
        return reasons, until
    if fields:
        marks = ",".join("?" * len(fields))
        rows = dbop(cfg, "query", str(cfg.db_path),
                    f"SELECT booking_id, field_id, start_ts, end_ts FROM bookings WHERE status IN ('success', 'pending')"
                    f" AND field_id IN ({marks}) AND start_ts - ? <= ? AND end_ts + ? >= ? ORDER BY start_ts",
                    _json([*fields, cfg.update.booking_margin_s, now_ts, cfg.clips.grace_s, now_ts]))  # fmt: skip
        for booking_id, field_id, start_ts, end_ts in rows:  # type: ignore[misc]
            clock = dt.datetime.fromtimestamp(end_ts, cfg.tz).strftime("%H:%M")
            state = "booked" if start_ts <= now_ts else "booked soon"
            reasons.append(f"field {field_id} {state}: {booking_id} until {clock}")
            until = max(until or 0.0, end_ts + cfg.clips.grace_s)
    rows = dbop(cfg, "query", str(cfg.db_path),
                "SELECT t.task_type, t.booking_id FROM pending_tasks t LEFT JOIN bookings b ON b.booking_id = t.booking_id"
                " WHERE t.status = 'processing' AND (t.task_type = 'clip' OR (t.task_type = 'upload_r2'"
                " AND b.end_ts >= ?))", _json([now_ts - LIVE_UPLOAD_S]))  # fmt: skip
    for task_type, booking_id in rows:  # type: ignore[misc]
        reasons.append(
            f"{'a clip is being cut' if task_type == 'clip' else 'a live upload runs'} for {booking_id}"
        )
    return reasons, until


def why_not_now(cfg: Config, now: dt.datetime | None = None) -> tuple[list[str], str]:
    """(reasons, when to look again in words); no reasons: free now."""
    now_ts = time.time() if now is None else now.timestamp()
    local = dt.datetime.fromtimestamp(now_ts, cfg.tz)
    reasons, until = blockers(cfg, now_ts)
    window = cfg.update.maintenance_window
    if window and not in_window(window, local):
        reasons.append(f"outside the maintenance window {window}")
        return reasons, f"the window opens at {next_window_start(window, local):%H:%M}"
    if until:
        return reasons, f"after {dt.datetime.fromtimestamp(until, cfg.tz):%H:%M:%S}"
    return reasons, "when the clip or upload finishes" if reasons else "now"


def _json(params: list[Any]) -> str:
    import json

    return json.dumps(params)
