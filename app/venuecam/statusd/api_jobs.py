"""Seed 002/003's sync-job endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

from venuecam import jobs
from venuecam.errors import BadInputError
from venuecam.jobs import service
from venuecam.statusd import params
from venuecam.statusd.messages import HttpError, Request, Response, error_body

if TYPE_CHECKING:
    from venuecam.statusd.app import StatusApp


def sync(app: StatusApp, req: Request, job_type: str) -> Response:
    job_type = params.word(job_type, "sync type")
    force = params.flag(req.query, "force")
    if job_type not in jobs.HANDLERS:
        raise HttpError(404, f"unknown sync type {job_type!r} (known: {', '.join(sorted(jobs.HANDLERS))})")
    try:
        body = service.request_sync(app.cfg, job_type, force, req.peer, app.worker())
    except BadInputError as e:
        raise HttpError(400, str(e)) from None
    return Response(202 if body["status"] == "queued" and body["success"] else 200, body)


def list_all(app: StatusApp, req: Request) -> Response:
    limit = params.integer(req.query, "limit", 0, 0, 100000)
    data = service.list_jobs(limit or None)
    return Response(200, {"success": True, "count": len(data), "data": data})


def one(app: StatusApp, req: Request, job_id: str) -> Response:
    body = service.get_job(params.word(job_id, "job id", 128))
    if not body["found"]:
        return Response(404, {**error_body(404, f"job {job_id} not found"), **body})
    return Response(200, body)


def logs(app: StatusApp, req: Request, job_id: str) -> Response:
    job_id = params.word(job_id, "job id", 128)
    if not service.get_job(job_id)["found"]:
        raise HttpError(404, f"job {job_id} not found")
    rows = service.job_logs(job_id)
    return Response(200, {"success": True, "jobId": job_id, "count": len(rows), "logs": rows})


def cleanup(app: StatusApp, req: Request) -> Response:
    job_type = req.query.get("type") or None
    if job_type is not None and job_type not in jobs.HANDLERS:
        raise HttpError(400, f"type: unknown sync type {job_type[:40]!r}")
    return Response(200, service.cleanup_stuck(app.cfg, job_type=job_type))
