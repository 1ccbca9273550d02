"""The last hours per camera (recorded stretches, gaps, bookings and their videos) and the
connectivity over the same hours: what the installer's page draws. Reads only.

Stretches are found by SQLite itself (window functions over the camera's segments), so a
day of 10 s segments, 8,640 rows a camera, comes back as a handful of rows.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from venuecam.config import Config
from venuecam.models import Booking, ConnectivityLog, Segment, Video, VideoStatus
from venuecam.timeutil import naive_utc_to_ts

WINDOW_H = 24
# Segments closer than this count as one stretch: a capture restart leaves a hole of seconds,
# back-to-back segments touch within a frame.
JOIN_S = 1.5

SQL_STRETCHES = f"""
WITH s AS (
  SELECT start_ts, end_ts,
         CASE WHEN start_ts - MAX(end_ts) OVER prev > ? THEN 1 ELSE 0 END AS brk
  FROM {Segment._meta.table_name} WHERE camera = ? AND end_ts > ? AND start_ts < ?
  WINDOW prev AS (ORDER BY start_ts ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), g AS (SELECT start_ts, end_ts, SUM(brk) OVER (ORDER BY start_ts) AS grp FROM s)
SELECT MIN(start_ts), MAX(end_ts), COUNT(*) FROM g GROUP BY grp ORDER BY 1
"""
# The camera's first recording still on the box (segments are kept for days, so before it
# the box or the camera was simply not there yet: not a gap). Via the (camera, end_ts) index.
SQL_FIRST = f"SELECT MIN(end_ts) FROM {Segment._meta.table_name} WHERE camera = ?"
SQL_BOOKINGS = (
    "SELECT booking_id, field_id, status, date, start_time, end_time, start_ts, end_ts"
    f" FROM {Booking._meta.table_name} WHERE end_ts > ? AND start_ts < ? ORDER BY start_ts LIMIT 500"
)
SQL_VIDEOS = (
    "SELECT unique_id, booking_id, camera, video_type, status, status_msg, duration_s, size_bytes,"
    f" mp4_path, thumb_path, gaps_json, revision FROM {Video._meta.table_name}"
    " WHERE end_ts > ? AND start_ts < ? ORDER BY start_ts LIMIT 2000"
)
_LOG = ConnectivityLog._meta.table_name
SQL_LINK_BEFORE = f"SELECT timestamp, status FROM {_LOG} WHERE timestamp < ? ORDER BY timestamp DESC LIMIT 1"
SQL_LINK = f"SELECT timestamp, status FROM {_LOG} WHERE timestamp >= ? ORDER BY timestamp"

# A video's state in the installer's words (the page's legend).
VIDEO_LABEL = {
    VideoStatus.PENDING: "cutting",
    VideoStatus.LIVE: "live",
    VideoStatus.READY: "cut",
    VideoStatus.UPLOADED: "uploaded",
    VideoStatus.NOTIFIED: "delivered",
    VideoStatus.FAILED: "failed",
    VideoStatus.CANCELLED: "cancelled",
    VideoStatus.EXPIRED: "expired",
}


def _rows(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    return Segment._meta.database.execute_sql(sql, params).fetchall()


def stretches(camera: str, start: float, end: float) -> list[tuple[float, float, int]]:
    """(start, end, segments) of each recorded stretch of `camera` between start and end."""
    return [(max(a, start), min(b, end), n) for a, b, n in _rows(SQL_STRETCHES, (JOIN_S, camera, start, end))]


def gaps(
    recorded: list[tuple[float, float, int]],
    start: float,
    end: float,
    tail_s: float,
    first: float | None = None,
) -> list[list[float]]:
    """The holes between stretches in [start, end]: nothing was recorded there. The last
    `tail_s` seconds are not a gap yet (the segment being written now is not indexed), nor is
    the time before the camera's `first` recording."""
    out: list[list[float]] = []
    cursor = start if first is None else max(start, first)
    for a, b, _ in recorded:
        if a - cursor > JOIN_S:
            out.append([cursor, a])
        cursor = max(cursor, b)
    if end - cursor > tail_s:
        out.append([cursor, end])
    return out


def connectivity(start: dt.datetime, end: dt.datetime, stale_s: float) -> list[dict[str, Any]]:
    """[{status, start, end}] over the window from connectivity_log: each row's status holds
    until the next row; past `stale_s` without a row (watchdog down) the state is UNKNOWN."""
    field = ConnectivityLog.timestamp
    rows = _rows(SQL_LINK_BEFORE, (field.db_value(start),)) + _rows(SQL_LINK, (field.db_value(start),))
    points = [(naive_utc_to_ts(field.python_value(t)), s) for t, s in rows]
    lo, hi = naive_utc_to_ts(start), naive_utc_to_ts(end)
    spans: list[dict[str, Any]] = []

    def add(status: str, a: float, b: float) -> None:
        a, b = max(a, lo), min(b, hi)
        if b <= a:
            return
        if spans and spans[-1]["status"] == status and abs(spans[-1]["end"] - a) < 1e-6:
            spans[-1]["end"] = b
        else:
            spans.append({"status": status, "start": a, "end": b})

    if not points or points[0][0] > lo:
        add("UNKNOWN", lo, points[0][0] if points else hi)
    for i, (t, status) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else hi
        known_until = min(nxt, t + stale_s)
        add(status, t, known_until)
        add("UNKNOWN", known_until, nxt)
    return spans


def _video(row: tuple[Any, ...], uploading: dict[str, float | None]) -> dict[str, Any]:
    uid, booking_id, camera, kind, status, msg, duration, size, mp4, thumb, gaps_json, revision = row
    label = VIDEO_LABEL.get(status, status)
    if uid in uploading:
        pct = uploading[uid]
        label = "uploading" + ("" if pct is None else f" {pct:.0f}%")
    try:
        holes = json.loads(gaps_json or "[]")
    except ValueError:
        holes = []
    return {
        "unique_id": uid,
        "booking_id": booking_id,
        "camera": camera,
        "video_type": kind,
        "status": status,
        "label": label,
        "status_msg": msg or "",
        "duration_s": duration,
        "size_bytes": size,
        "has_clip": bool(mp4),
        "has_thumb": bool(thumb),
        "gaps_s": round(sum(b - a for a, b in holes if b > a), 1),
        "revision": revision,
    }


def collect(
    cfg: Config, now: dt.datetime, uploads: list[dict[str, Any]], hours: int = WINDOW_H
) -> dict[str, Any]:
    """Everything the page draws below the pictures, for the `hours` before `now`."""
    end = naive_utc_to_ts(now)
    start = end - hours * 3600
    uploading = {u["video"]: u.get("percent") for u in uploads}
    videos: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in _rows(SQL_VIDEOS, (start, end)):
        videos.setdefault((row[1], row[2]), []).append(_video(row, uploading))
    bookings = _rows(SQL_BOOKINGS, (start, end + 12 * 3600))  # and what is coming up today
    cams = []
    for cam in cfg.cameras:
        recorded = stretches(cam.name, start, end)
        tail = cam.segment_seconds + cam.stall_timeout_s
        first_end = _rows(SQL_FIRST, (cam.name,))[0][0]
        if first_end is None:
            before: list[float] | None = [start, end]  # never recorded yet
        elif first_end > start and recorded:
            before = [start, recorded[0][0]]  # its first recording is within the window
        else:
            before = None
        mine = []
        for booking_id, field_id, status, date, t0, t1, b0, b1 in bookings:
            vids = videos.get((booking_id, cam.name), [])
            if field_id != cam.field_id and not vids:
                continue
            mine.append(
                {
                    "booking_id": booking_id,
                    "status": status,
                    "date": date,
                    "local": f"{(t0 or '')[:5]}-{(t1 or '')[:5]}",
                    "start": b0,
                    "end": b1,
                    "state": booking_state(status, b0, b1, end, vids),
                    "videos": vids,
                }
            )
        cams.append(
            {
                "name": cam.name,
                "field_id": cam.field_id,
                "stretches": [[a, b] for a, b, _ in recorded],
                "segments": sum(n for _, _, n in recorded),
                "recorded_s": round(sum(b - a for a, b, _ in recorded), 1),
                "gaps": []
                if first_end is None
                else gaps(recorded, start, end, tail, before[1] if before else None),
                # Before the camera's first recording on the box (installed since): not a gap.
                "before": before,
                "bookings": mine,
            }
        )
    stale = 3 * cfg.connectivity.sample_interval_s + 10
    link = connectivity(now - dt.timedelta(hours=hours), now, stale)
    return {"start": start, "end": end, "hours": hours, "cameras": cams, "connectivity": link}


def booking_state(
    status: str | None, start: float, end: float, now: float, videos: list[dict[str, Any]]
) -> str:
    """One word for a booking on one camera: what its video is doing, or why there is none."""
    if status != "success":
        return status or "unknown"
    if videos:
        full = [v for v in videos if v["video_type"] == "full"] or videos
        return str(full[-1]["label"])
    if now < start:
        return "upcoming"
    if now < end:
        return "recording"
    return "waiting to be cut"
