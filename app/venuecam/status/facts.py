"""Collect the box's facts into one JSON-able snapshot (statusd, the LED service).

Everything comes from the database (the ledger is the truth), the file system, the kernel
clock and supervisord. Nothing here writes. Time is passed in.

The database questions are fixed SQL strings, not peewee queries: statusd asks them on every
`venuecam status`, and building the SQL text through the ORM cost more than SQLite answering
it (each is an indexed lookup, a bounded LIMIT or a GROUP BY over a covering index; no
ledger row becomes a model object). Values still go through the models' fields, so the
stored formats stay the models' business.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from typing import Any

from venuecam import shared_state
from venuecam.config import Config
from venuecam.models import TASK_TYPES, PendingTask, Segment, SyncJob, TaskStatus, TaskType
from venuecam.status import clock, supervisor_rpc
from venuecam.storage import ratecap
from venuecam.timeutil import iso, naive_utc_to_ts, utcnow

UNKNOWN_CONNECTIVITY = {
    "status": "UNKNOWN",
    "since": None,
    "last_check": None,
    "latency_ms": None,
    "detail": "no connectivity check recorded yet",
}
FAILED_SHOWN = 10
UPLOADS_SHOWN = 20

_TASKS = PendingTask._meta.table_name
# Covered by the (task_type, status) index: never touches the rows themselves.
SQL_COUNTS = f"SELECT task_type, status, COUNT(*) FROM {_TASKS} GROUP BY task_type, status"
# The status index holds the rowid: newest failures first without a sort.
SQL_FAILED = (
    f"SELECT id, task_type, booking_id, attempts, max_attempts, error_msg, updated_at FROM {_TASKS}"
    " WHERE status = ? ORDER BY id DESC LIMIT ?"
)
SQL_UPLOADING = (
    "SELECT id, booking_id, task_data, unique_key, bytes_done, bytes_total, attempts, heartbeat_at"
    f" FROM {_TASKS} WHERE task_type = ? AND status = ? ORDER BY id LIMIT ?"
)
SQL_RECENT = f"SELECT COUNT(*) FROM {_TASKS} WHERE task_type = ? AND status = ? AND finished_at >= ?"
# Expired work: waiting or running rows older than queue.expiration_hours (the status index
# narrows it to the rows still waiting, a handful unless the box has been offline for days).
SQL_EXPIRED = (
    f"SELECT task_type, COUNT(*), MIN(created_at) FROM {_TASKS}"
    " WHERE status IN (?, ?) AND created_at < ? GROUP BY task_type"
)
SQL_LAST_SEGMENT = f"SELECT MAX(end_ts) FROM {Segment._meta.table_name} WHERE camera = ?"
SQL_LAST_SYNC = (
    f"SELECT job_id, state, progress, finished_at, error_msg FROM {SyncJob._meta.table_name}"
    " WHERE job_type = ? ORDER BY id DESC LIMIT 1"
)


def _rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return PendingTask._meta.database.execute_sql(sql, params).fetchall()


def _when(field: Any, raw: Any) -> dt.datetime | None:
    """A stored DateTimeField value as the model would return it."""
    return None if raw is None else field.python_value(raw)


def connectivity() -> dict[str, Any]:
    value = shared_state.get_json(shared_state.CONNECTIVITY)
    if not value or value.get("status") not in ("ONLINE", "OFFLINE", "UNKNOWN"):
        return dict(UNKNOWN_CONNECTIVITY)
    return {**UNKNOWN_CONNECTIVITY, "detail": "", **value}


def platform_auth() -> dict[str, Any]:
    value = shared_state.get_json(shared_state.PLATFORM_AUTH)
    if not value or not isinstance(value.get("ok"), bool):
        return {"ok": None, "since": None, "message": "no platform call recorded yet"}
    return {"ok": value["ok"], "since": value.get("since"), "message": str(value.get("message", ""))}


def queue_counts() -> dict[str, dict[str, int]]:
    """{task_type: {status: n}}, every known type and status present (zeros included)."""
    out: dict[str, dict[str, int]] = {t: {s: 0 for s in _STATUSES} for t in TASK_TYPES}
    for task_type, status, n in _rows(SQL_COUNTS):
        out.setdefault(task_type, {s: 0 for s in _STATUSES})[status] = n
    return out


_STATUSES = (
    TaskStatus.PENDING,
    TaskStatus.PROCESSING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
)


def expired(cfg: Config, now: dt.datetime) -> dict[str, Any]:
    """Work waiting longer than queue.expiration_hours: still delivered when it can be, and
    shown (status, needs_attention, the fault LED) until it is or the operator gives it up."""
    cutoff = PendingTask.created_at.db_value(now - dt.timedelta(hours=cfg.queue.expiration_hours))
    by_type = {t: 0 for t in TASK_TYPES}
    oldest: dt.datetime | None = None
    for task_type, n, first in _rows(SQL_EXPIRED, (TaskStatus.PENDING, TaskStatus.PROCESSING, cutoff)):
        by_type[task_type] = int(n)
        first = _when(PendingTask.created_at, first)
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    return {
        "total": sum(by_type.values()),
        "by_type": by_type,
        "after_hours": cfg.queue.expiration_hours,
        "oldest_created_at": iso(oldest),
    }


def failed_tasks(limit: int = FAILED_SHOWN) -> list[dict[str, Any]]:
    updated = PendingTask.updated_at
    return [
        {
            "id": id_,
            "task_type": task_type,
            "booking_id": booking_id,
            "attempts": attempts,
            "max_attempts": max_attempts,
            "error": error or "",
            "updated_at": iso(_when(updated, updated_at)),
        }
        for id_, task_type, booking_id, attempts, max_attempts, error, updated_at in _rows(
            SQL_FAILED, (TaskStatus.FAILED, limit)
        )
    ]


def uploads_in_progress(now: dt.datetime) -> list[dict[str, Any]]:
    out = []
    # A handful run at once (queue.max_concurrent_uploads); the cap guards a damaged ledger.
    rows = _rows(SQL_UPLOADING, (TaskType.UPLOAD, TaskStatus.PROCESSING, UPLOADS_SHOWN))
    for id_, booking_id, task_data, unique_key, done, total, attempts, heartbeat in rows:
        total, done = int(total or 0), int(done or 0)
        out.append(
            {
                "id": id_,
                "booking_id": booking_id,
                "video": _task_video(task_data) or unique_key.split(":", 1)[-1],
                "bytes_done": done,
                "bytes_total": total,
                "percent": round(100.0 * done / total, 1) if total else None,
                "attempt": attempts,
                "heartbeat_age_s": _age_s(_when(PendingTask.heartbeat_at, heartbeat), now),
            }
        )
    return out


# The worker's live manager publishes every 2 s; older than this, the worker is not running.
LIVE_STALE_S = 30.0


def live_uploads(now_ts: float | None = None) -> list[dict[str, Any]]:
    """The videos being built and sent during their booking (venuecam.live), as last published."""
    doc = shared_state.get_json(shared_state.LIVE_UPLOADS) or {}
    rows = doc.get("uploads")
    if not isinstance(rows, list):
        return []
    age = (time.time() if now_ts is None else now_ts) - float(doc.get("published_ts") or 0)
    return [{**r, "stale": age > LIVE_STALE_S} for r in rows if isinstance(r, dict)]


def live_waiting() -> dict[str, int]:
    """Videos that would be built live but for `clips.live_max_videos` (they are cut after
    their booking if no place frees), and the cap, as the live manager last published."""
    doc = shared_state.get_json(shared_state.LIVE_UPLOADS) or {}
    try:
        return {"videos": max(0, int(doc.get("waiting") or 0)), "cap": int(doc.get("cap") or 0)}
    except (TypeError, ValueError):
        return {"videos": 0, "cap": 0}


def _task_video(task_data: str | None) -> str | None:
    try:
        data = json.loads(task_data or "{}")
    except ValueError:
        return None
    return data.get("unique_id") if isinstance(data, dict) else None


def recent_uploads(now: dt.datetime, hours: float = 24) -> int:
    since = PendingTask.finished_at.db_value(now - dt.timedelta(hours=hours))
    rows = _rows(SQL_RECENT, (TaskType.UPLOAD, TaskStatus.COMPLETED, since))
    return int(rows[0][0] or 0)


def cameras(cfg: Config, now: dt.datetime) -> list[dict[str, Any]]:
    now_ts = naive_utc_to_ts(now)
    out = []
    for cam in cfg.cameras:
        last = _rows(SQL_LAST_SEGMENT, (cam.name,))[0][0]
        age = None if last is None else round(now_ts - float(last), 1)
        limit = cam.stall_timeout_s + cam.segment_seconds
        run = shared_state.get_json(shared_state.capture_key(cam.name)) or {}
        out.append(
            {
                "name": cam.name,
                "field_id": cam.field_id,
                "last_segment_end": None if last is None else _ts_iso(float(last)),
                "last_segment_age_s": age,
                "recording": age is not None and age <= limit,
                "stall_after_s": limit,
                # "copy" (the camera's own H.264), "h264_v4l2m2m" (the Pi's encoder) or "libx264".
                "encoder": run.get("encoder"),
            }
        )
    return out


def disk(cfg: Config) -> dict[str, Any]:
    path = cfg.data_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    try:
        usage = shutil.disk_usage(path)
    except OSError as e:
        return {"path": str(cfg.data_dir), "error": e.strerror, "nearly_full": False}
    free_pct = round(100.0 * usage.free / usage.total, 1) if usage.total else 0.0
    # Retention keeps free space above min_free_percent; below disk_warn_percent it cannot.
    warn_at = cfg.retention.disk_warn_percent
    return {
        "path": str(cfg.data_dir),
        "total_bytes": usage.total,
        "free_bytes": usage.free,
        "free_percent": free_pct,
        "nearly_full_below_percent": warn_at,
        "nearly_full": free_pct < warn_at,
    }


def last_sync(job_type: str = "bookings") -> dict[str, Any] | None:
    rows = _rows(SQL_LAST_SYNC, (job_type,))
    if not rows:
        return None
    job_id, state, progress, finished_at, error = rows[0]
    return {
        "jobId": job_id,
        "state": state,
        "progress": progress,
        "finishedAt": iso(_when(SyncJob.finished_at, finished_at)),
        "error": error,
    }


def stored_facts() -> dict[str, Any]:
    """The part of a snapshot that depends only on what the database holds, not on `now`.

    statusd keeps it until `database_version()` changes (see StatusApp.snapshot).
    """
    return {
        "connectivity": connectivity(),
        "platform_auth": platform_auth(),
        "queue": queue_counts(),
        "failed_tasks": failed_tasks(),
        "leds": shared_state.get_json(shared_state.LEDS),
        "live_uploads": live_uploads(),
        "live_waiting": live_waiting(),
        "sync": last_sync(),
    }


def database_version() -> tuple[Any, int, int]:
    """Differs whenever anything was committed since the last call on this thread's connection.

    `PRAGMA data_version` moves with other connections' commits, `total_changes` with this
    connection's own writes; the connection itself is part of the answer because both
    counters are per connection.
    """
    conn = PendingTask._meta.database.connection()
    return conn, conn.execute("PRAGMA data_version").fetchone()[0], conn.total_changes


def collect(
    cfg: Config,
    now: dt.datetime | None = None,
    *,
    with_programs: bool = True,
    with_clock: bool = True,
    stored: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole snapshot. `with_programs`/`with_clock` skip the slower OS questions;
    `stored` is a still-valid `stored_facts()` answer, if the caller kept one."""
    now = now or utcnow()
    stored = stored if stored is not None else stored_facts()
    snapshot: dict[str, Any] = {
        "generated_at": iso(now),
        "device": {
            "device_id": cfg.device.device_id,
            "venue_id": cfg.device.venue_id,
            "demo": cfg.device.demo,
        },
        "connectivity": stored["connectivity"],
        "platform_auth": stored["platform_auth"],
        "queue": stored["queue"],
        "max_queue_size": cfg.queue.max_queue_size,
        "expired": expired(cfg, now),
        "failed_tasks": stored["failed_tasks"],
        "uploads": uploads_in_progress(now),
        "live_uploads": stored["live_uploads"],
        "live_waiting": stored["live_waiting"],
        "recent_uploads_24h": recent_uploads(now),
        "cameras": cameras(cfg, now),
        "disk": disk(cfg),
        "upload_cap": upload_cap(cfg, now),
        "clock": clock.read_clock(now).as_dict() if with_clock else None,
        "programs": supervisor_rpc.program_states(cfg.supervisor_socket) if with_programs else None,
        "leds": stored["leds"],
        "sync": stored["sync"],
        "update": update_facts(cfg),
    }
    return snapshot


def upload_cap(cfg: Config, now: dt.datetime) -> dict[str, Any]:
    """The upload cap in force at `now` (naive UTC) by `storage.max_upload_mbit`, and the
    schedule; times of day in venue time, `until` also as UTC like every other timestamp."""
    windows = cfg.storage.max_upload_mbit
    local = now.replace(tzinfo=dt.UTC).astimezone(cfg.tz)
    cap = ratecap.cap_at(windows, local)
    until = cap.until
    return {
        "mbit": cap.mbit,
        "until": None if until is None else iso(until.astimezone(dt.UTC).replace(tzinfo=None)),
        "until_local": None if until is None else until.strftime("%H:%M"),
        "next_mbit": cap.next_mbit,
        "schedule": [w.as_table() for w in windows],
        "timezone": cfg.device.timezone,
    }


def update_facts(cfg: Config) -> dict[str, Any]:
    """The release running and the update journal (venuecam.update.facts); never raises."""
    from venuecam.update.facts import summary

    try:
        return summary(cfg.update.install_dir, cfg.update.state_dir, cfg.update.max_wait_hours)
    except Exception as e:  # the status must render whatever the journal holds
        return {"release": None, "attention": [], "error": f"update state unreadable: {e.__class__.__name__}"}


def _age_s(value: dt.datetime | None, now: dt.datetime) -> float | None:
    if value is None or not isinstance(value, dt.datetime):
        return None
    return round((now - value).total_seconds(), 1)


def _ts_iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
