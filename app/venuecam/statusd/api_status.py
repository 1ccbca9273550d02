"""Health, the status snapshot (seeds 000/004), Prometheus metrics, the task list."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from venuecam import ledger
from venuecam.models import TASK_TYPES, PendingTask, TaskStatus
from venuecam.status import shapes
from venuecam.statusd import params
from venuecam.statusd.messages import HttpError, Request, Response
from venuecam.timeutil import iso, utcnow

if TYPE_CHECKING:
    from venuecam.statusd.app import StatusApp

EXPIRED = "expired"  # not a stored state: waiting longer than queue.expiration_hours
TASK_STATUSES = (
    TaskStatus.PENDING,
    TaskStatus.PROCESSING,
    TaskStatus.COMPLETED,
    TaskStatus.FAILED,
    TaskStatus.CANCELLED,
    EXPIRED,
)


def healthz(app: StatusApp, req: Request) -> Response:
    try:
        PendingTask._meta.database.execute_sql("SELECT 1").fetchone()
    except Exception as e:  # the health answer itself must not fail
        return Response(503, {"status": "error", "database": f"unavailable: {e.__class__.__name__}"})
    return Response(200, {"status": "ok", "database": "ok", "uptime_s": round(app.uptime_s(), 1)})


def queue_status(app: StatusApp, req: Request) -> Response:
    return Response(200, shapes.queue_status(app.snapshot()))


def metrics(app: StatusApp, req: Request) -> Response:
    return Response(200, shapes.metrics(app.snapshot()), "text/plain; version=0.0.4; charset=utf-8")


def task_dict(t: PendingTask, expired_cutoff: dt.datetime | None = None) -> dict[str, Any]:
    return {
        "id": t.id,
        "task_type": t.task_type,
        "status": t.status,
        "booking_id": t.booking_id,
        "unique_key": t.unique_key,
        "attempts": t.attempts,
        "max_attempts": t.max_attempts,
        "next_retry_at": iso(t.next_retry_at),
        "created_at": iso(t.created_at),
        "updated_at": iso(t.updated_at),
        "error_msg": t.error_msg,
        "bytes_done": t.bytes_done,
        "bytes_total": t.bytes_total,
        "expired": expired_cutoff is not None and t.status in ledger.ACTIVE and t.created_at < expired_cutoff,
    }


def list_tasks(app: StatusApp, req: Request) -> Response:
    """`GET /api/queue/tasks?status=&type=&limit=`: ledger rows, newest first. `status=expired`:
    waiting or running rows created longer ago than queue.expiration_hours."""
    q = PendingTask.select()
    cutoff = utcnow() - dt.timedelta(hours=app.cfg.queue.expiration_hours)
    status = req.query.get("status")
    if status:
        if status not in TASK_STATUSES:
            raise HttpError(400, f"status: expected one of {', '.join(TASK_STATUSES)}, got {status[:40]!r}")
        if status == EXPIRED:
            q = q.where(PendingTask.status.in_(ledger.ACTIVE) & (PendingTask.created_at < cutoff))
        else:
            q = q.where(PendingTask.status == status)
    task_type = req.query.get("type")
    if task_type:
        if task_type not in TASK_TYPES:
            raise HttpError(400, f"type: expected one of {', '.join(TASK_TYPES)}, got {task_type[:40]!r}")
        q = q.where(PendingTask.task_type == task_type)
    limit = params.integer(req.query, "limit", 50, 1, 1000)
    rows = [task_dict(t, cutoff) for t in q.order_by(PendingTask.id.desc()).limit(limit)]
    return Response(200, {"success": True, "count": len(rows), "data": rows})
