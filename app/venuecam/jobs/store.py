"""Reading and writing `SyncJob` / `JobLog` rows, and their JSON shapes (seeds 002 and 003)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from venuecam.models import JobLog, SyncJob
from venuecam.timeutil import iso, naive_utc_to_ts

QUEUED, ACTIVE, COMPLETED, FAILED = "queued", "active", "completed", "failed"
RUNNING_STATES = (QUEUED, ACTIVE)


def epoch_ms(value: dt.datetime | None) -> int | None:
    if value is None or not isinstance(value, dt.datetime):
        return None
    return int(round(naive_utc_to_ts(value) * 1000))


def new_job_id(job_type: str, now: dt.datetime) -> str:
    """`sync-<type>-<epoch ms>`; a suffix when two jobs start in the same millisecond."""
    base = f"sync-{job_type}-{epoch_ms(now)}"
    job_id, n = base, 1
    while SyncJob.select().where(SyncJob.job_id == job_id).exists():
        n += 1
        job_id = f"{base}-{n}"
    return job_id


def get_row(job_id: str) -> SyncJob | None:
    return SyncJob.get_or_none(SyncJob.job_id == job_id)


def latest(job_type: str) -> SyncJob | None:
    return SyncJob.select().where(SyncJob.job_type == job_type).order_by(SyncJob.id.desc()).first()


def add_log(job_id: str, level: str, message: str, now: dt.datetime) -> None:
    JobLog.create(job_id=job_id, level=level, message=message[:4000], created_at=now)


def progress_info(job: SyncJob) -> dict[str, Any]:
    try:
        info = json.loads(job.progress_json or "{}")
    except ValueError:
        info = {}
    keys = ("stage", "message", "offset", "currentTotal", "expectedTotal")
    return {k: info.get(k) for k in keys}


def result_of(job: SyncJob) -> Any:
    if not job.result_json:
        return None
    try:
        return json.loads(job.result_json)
    except ValueError:
        return None


def job_dict(job: SyncJob) -> dict[str, Any]:
    """Seed 002's status shape, with timing, attempts, result and error added."""
    return {
        "found": True,
        "jobId": job.job_id,
        "type": job.job_type,
        "state": job.state,
        "progress": job.progress,
        "progressInfo": progress_info(job),
        "createdAt": epoch_ms(job.created_at),
        "startedAt": epoch_ms(job.started_at),
        "finishedAt": epoch_ms(job.finished_at),
        "heartbeatAt": epoch_ms(job.heartbeat_at),
        "attempts": job.attempts,
        "requestedBy": job.requested_by,
        "result": result_of(job),
        "error": job.error_msg,
    }


def log_dict(row: JobLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "jobId": row.job_id,
        "level": row.level,
        "message": row.message,
        "createdAt": iso(row.created_at),
    }
