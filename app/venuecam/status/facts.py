"""Collect the box's facts into one JSON-able snapshot (statusd, the LED service).

Everything comes from the database (the ledger is the truth), the file system, the kernel
clock and supervisord. Nothing here writes. Time is passed in.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from typing import Any

from peewee import fn

from venuecam import ledger
from venuecam.config import Config
from venuecam.models import PendingTask, Segment, State, SyncJob, TaskStatus, TaskType
from venuecam.status import clock, supervisor_rpc
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


def read_state(key: str) -> dict[str, Any] | None:
    row = State.get_or_none(State.key == key)
    if row is None:
        return None
    try:
        value = json.loads(row.value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def connectivity() -> dict[str, Any]:
    value = read_state("connectivity")
    if not value or value.get("status") not in ("ONLINE", "OFFLINE", "UNKNOWN"):
        return dict(UNKNOWN_CONNECTIVITY)
    return {**UNKNOWN_CONNECTIVITY, "detail": "", **value}


def platform_auth() -> dict[str, Any]:
    value = read_state("platform_auth")
    if not value or not isinstance(value.get("ok"), bool):
        return {"ok": None, "since": None, "message": "no platform call recorded yet"}
    return {"ok": value["ok"], "since": value.get("since"), "message": str(value.get("message", ""))}


def queue_counts() -> dict[str, dict[str, int]]:
    """{task_type: {status: n}}, every known type and status present (zeros included)."""
    out: dict[str, dict[str, int]] = {
        t: {s: 0 for s in _STATUSES} for t in (TaskType.CLIP, TaskType.UPLOAD, TaskType.NOTIFY)
    }
    for (task_type, status), n in ledger.counts().items():
        out.setdefault(task_type, {s: 0 for s in _STATUSES})[status] = n
    return out


_STATUSES = (
    TaskStatus.PENDING,
    TaskStatus.PROCESSING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    TaskStatus.EXPIRED,
)


def failed_tasks(limit: int = FAILED_SHOWN) -> list[dict[str, Any]]:
    rows = (
        PendingTask.select()
        .where(PendingTask.status == TaskStatus.FAILED)
        .order_by(PendingTask.id.desc())  # newest rows first: walks the primary key, no sort
        .limit(limit)
    )
    return [
        {
            "id": r.id,
            "task_type": r.task_type,
            "booking_id": r.booking_id,
            "attempts": r.attempts,
            "max_attempts": r.max_attempts,
            "error": r.error_msg or "",
            "updated_at": iso(r.updated_at),
        }
        for r in rows
    ]


def uploads_in_progress(now: dt.datetime) -> list[dict[str, Any]]:
    rows = PendingTask.select().where(
        (PendingTask.status == TaskStatus.PROCESSING) & (PendingTask.task_type == TaskType.UPLOAD)
    )
    out = []
    # A handful run at once (queue.max_concurrent_uploads); the cap guards a damaged ledger.
    for r in rows.order_by(PendingTask.id).limit(UPLOADS_SHOWN):
        total = int(r.bytes_total or 0)
        done = int(r.bytes_done or 0)
        out.append(
            {
                "id": r.id,
                "booking_id": r.booking_id,
                "video": r.data.get("unique_id") or r.unique_key.split(":", 1)[-1],
                "bytes_done": done,
                "bytes_total": total,
                "percent": round(100.0 * done / total, 1) if total else None,
                "attempt": r.attempts,
                "heartbeat_age_s": _age_s(r.heartbeat_at, now),
            }
        )
    return out


def recent_uploads(now: dt.datetime, hours: float = 24) -> int:
    since = now - dt.timedelta(hours=hours)
    return (
        PendingTask.select(fn.COUNT(PendingTask.id))
        .where(
            (PendingTask.task_type == TaskType.UPLOAD)
            & (PendingTask.status == TaskStatus.COMPLETED)
            & (PendingTask.finished_at >= since)
        )
        .scalar()
        or 0
    )


def cameras(cfg: Config, now: dt.datetime) -> list[dict[str, Any]]:
    now_ts = naive_utc_to_ts(now)
    out = []
    for cam in cfg.cameras:
        # Newest first by end_ts (indexed): stops at this camera's latest segment.
        last = (
            Segment.select(Segment.end_ts)
            .where(Segment.camera == cam.name)
            .order_by(Segment.end_ts.desc())
            .limit(1)
            .scalar()
        )
        age = None if last is None else round(now_ts - float(last), 1)
        limit = cam.stall_timeout_s + cam.segment_seconds
        out.append(
            {
                "name": cam.name,
                "field_id": cam.field_id,
                "last_segment_end": None if last is None else _ts_iso(float(last)),
                "last_segment_age_s": age,
                "recording": age is not None and age <= limit,
                "stall_after_s": limit,
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
    job = SyncJob.select().where(SyncJob.job_type == job_type).order_by(SyncJob.id.desc()).first()
    if job is None:
        return None
    return {
        "jobId": job.job_id,
        "state": job.state,
        "progress": job.progress,
        "finishedAt": iso(job.finished_at),
        "error": job.error_msg,
    }


def collect(
    cfg: Config,
    now: dt.datetime | None = None,
    *,
    with_programs: bool = True,
    with_clock: bool = True,
) -> dict[str, Any]:
    """The whole snapshot. `with_programs`/`with_clock` skip the slower OS questions."""
    now = now or utcnow()
    counts = queue_counts()
    snapshot: dict[str, Any] = {
        "generated_at": iso(now),
        "device": {
            "device_id": cfg.device.device_id,
            "venue_id": cfg.device.venue_id,
            "demo": cfg.device.demo,
        },
        "connectivity": connectivity(),
        "platform_auth": platform_auth(),
        "queue": counts,
        "max_queue_size": cfg.queue.max_queue_size,
        "failed_tasks": failed_tasks(),
        "uploads": uploads_in_progress(now),
        "recent_uploads_24h": recent_uploads(now),
        "cameras": cameras(cfg, now),
        "disk": disk(cfg),
        "clock": clock.read_clock(now).as_dict() if with_clock else None,
        "programs": supervisor_rpc.program_states(cfg.supervisor_socket) if with_programs else None,
        "leds": read_state("leds"),
        "sync": last_sync(),
    }
    return snapshot


def _age_s(value: dt.datetime | None, now: dt.datetime) -> float | None:
    if value is None or not isinstance(value, dt.datetime):
        return None
    return round((now - value).total_seconds(), 1)


def _ts_iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
