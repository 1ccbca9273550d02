"""What statusd and the worker's schedule ask of sync jobs. Seed 002's rules:

| condition                  | behaviour                           | response                                   |
|----------------------------|-------------------------------------|--------------------------------------------|
| no job yet                 | create job A, ask the worker to run | jobId A, status queued                     |
| A queued or running        | nothing new                         | jobId A, status running, progress          |
| A completed                | nothing new                         | jobId A, status completed, lastSync{...}   |
| A failed (or found stuck)  | create job B                        | jobId B, status queued                     |
| force=true                 | delete every job of the type, new B | jobId B, status queued, forced: true       |

The job id changes only with force (or when the last one failed). Jobs are never run here:
each job gets a ledger row (task type `sync`, created in the same commit as the job) and
`worker.run_job(job_id)` asks the worker process to run it; its attempts and their backoff
are the ledger's (`queue.sync_schedule_s`).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Protocol

from venuecam import ledger, logs, retry
from venuecam.config import Config
from venuecam.connectivity.state import is_online
from venuecam.errors import BadInputError
from venuecam.jobs import store
from venuecam.jobs.registry import HANDLERS
from venuecam.models import JobLog, PendingTask, SyncJob, TaskStatus, TaskType
from venuecam.timeutil import utcnow

log = logging.getLogger("venuecam.jobs")

# A job queued this long and never started has no worker taking it.
QUEUED_STUCK_S = 600
# Finished jobs of the periodic schedule are pruned after this long (they arrive every 5 min).
KEEP_FINISHED_DAYS = 7


class Worker(Protocol):
    def run_job(self, job_id: str) -> None: ...


def _db() -> Any:
    return SyncJob._meta.database


def _check_type(job_type: str) -> None:
    if job_type not in HANDLERS:
        known = ", ".join(sorted(HANDLERS))
        raise BadInputError(f"unknown sync type {job_type!r} (known: {known})")


def ledger_key(job_id: str) -> str:
    return f"{TaskType.SYNC}:{job_id}"


def ledger_row(job_id: str) -> PendingTask | None:
    return PendingTask.get_or_none(PendingTask.unique_key == ledger_key(job_id))


def ensure_ledger_row(cfg: Config, job_id: str, now: dt.datetime | None = None) -> PendingTask:
    """The job's ledger row (made with the job; made here for a job an earlier release left)."""
    row, _ = ledger.enqueue(
        TaskType.SYNC, ledger_key(job_id), {"job_id": job_id},
        max_attempts=retry.max_attempts(cfg.queue.sync_schedule_s), now=now,
    )  # fmt: skip
    return row


def _create(cfg: Config, job_type: str, requested_by: str, now: dt.datetime) -> SyncJob:
    job = SyncJob.create(
        job_id=store.new_job_id(job_type, now),
        job_type=job_type,
        state=store.QUEUED,
        requested_by=requested_by[:100] or "unknown",
        created_at=now,
        progress_json='{"stage": "queued", "message": "Waiting for the worker"}',
    )
    store.add_log(job.job_id, "info", f"Job created (requested by {job.requested_by})", now)
    ensure_ledger_row(cfg, job.job_id, now)
    return job


def _cancel_rows(job_ids: list[str], reason: str, now: dt.datetime) -> None:
    rows = PendingTask.select(PendingTask.id).where(
        PendingTask.unique_key.in_([ledger_key(j) for j in job_ids])
    )
    ledger.cancel([r.id for r in rows], reason, now)


def _dispatch(worker: Worker, job: SyncJob, now: dt.datetime) -> None:
    """Ask the worker; if that fails the job is marked failed, not left queued forever."""
    try:
        worker.run_job(job.job_id)
    except Exception as e:
        with _db().atomic():
            SyncJob.update(
                state=store.FAILED, error_msg=f"could not reach the worker: {e}", finished_at=now
            ).where(SyncJob.id == job.id).execute()
            store.add_log(job.job_id, "error", f"Could not hand the job to the worker: {e}", now)
            _cancel_rows([job.job_id], "could not reach the worker", now)
        raise


def _stuck_query(cfg: Config, now: dt.datetime, job_type: str | None = None) -> Any:
    queued_cutoff = now - dt.timedelta(seconds=QUEUED_STUCK_S)
    beat_cutoff = now - dt.timedelta(seconds=cfg.queue.stale_after_s)
    q = SyncJob.select().where(
        ((SyncJob.state == store.QUEUED) & (SyncJob.created_at < queued_cutoff))
        | (
            (SyncJob.state == store.ACTIVE)
            & (SyncJob.heartbeat_at.is_null() | (SyncJob.heartbeat_at < beat_cutoff))
        )
    )
    if job_type:
        q = q.where(SyncJob.job_type == job_type)
    return q


def _waiting_for_retry(job: SyncJob, now: dt.datetime) -> bool:
    """A queued job whose ledger row waits for its next attempt, became due only recently, or
    is held back because the box is offline (syncs need the network) is not stuck: the worker
    will take it (the reconciler re-sends it if huey lost it; the reconnect wake when offline)."""
    row = ledger_row(job.job_id)
    if row is None or row.status != TaskStatus.PENDING or row.next_retry_at is None:
        return False
    return row.next_retry_at > now - dt.timedelta(seconds=QUEUED_STUCK_S) or not is_online()


def _fail_stuck(cfg: Config, now: dt.datetime, job_type: str | None = None) -> dict[str, int]:
    """Mark stuck jobs failed (kept, with a log line). Returns {previous_state: n}. In a transaction."""
    breakdown = {"active": 0, "waiting": 0, "completed": 0, "failed": 0}
    for job in list(_stuck_query(cfg, now, job_type)):
        if job.state == store.QUEUED and _waiting_for_retry(job, now):
            continue
        was = "waiting" if job.state == store.QUEUED else "active"
        breakdown[was] += 1
        why = "never started" if was == "waiting" else "heartbeat stopped"
        SyncJob.update(state=store.FAILED, error_msg=f"stuck ({why}); cleaned up", finished_at=now).where(
            SyncJob.id == job.id
        ).execute()
        store.add_log(job.job_id, "warn", f"Job was stuck ({why}) and was cleaned up", now)
        _cancel_rows([job.job_id], f"sync job stuck ({why}); cleaned up", now)
    return breakdown


def request_sync(
    cfg: Config,
    job_type: str,
    force: bool,
    requested_by: str,
    worker: Worker,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """`POST /api/sync/<type>[?force=true]`: seed 002's response."""
    _check_type(job_type)
    now = now or utcnow()
    with _db().atomic():  # IMMEDIATE: two requests at once never both create a job
        if force:
            old = [j.job_id for j in SyncJob.select(SyncJob.job_id).where(SyncJob.job_type == job_type)]
            if old:
                JobLog.delete().where(JobLog.job_id.in_(old)).execute()
                SyncJob.delete().where(SyncJob.job_id.in_(old)).execute()
                _cancel_rows(old, "removed by a forced re-sync", now)
            job = _create(cfg, job_type, requested_by, now)
            response = {
                "success": True,
                "message": "All previous jobs were cleaned up. A new sync started in the background.",
                "status": store.QUEUED,
                "jobId": job.job_id,
                "forced": True,
                "cleaned": len(old),
            }
        else:
            _fail_stuck(cfg, now, job_type)
            last = store.latest(job_type)
            if last is not None and last.state in store.RUNNING_STATES:
                return {
                    "success": False,
                    "message": "A sync is still running. Use force=true to start again.",
                    "status": "running" if last.state == store.ACTIVE else store.QUEUED,
                    "jobId": last.job_id,
                    "progress": last.progress,
                    "progressInfo": store.progress_info(last),
                }
            if last is not None and last.state == store.COMPLETED:
                finished = last.finished_at or last.created_at
                minutes = max(0, int((now - finished).total_seconds() // 60))
                return {
                    "success": True,
                    "message": f"The last sync succeeded {minutes} minutes ago. Use force=true to sync again.",
                    "status": store.COMPLETED,
                    "jobId": last.job_id,
                    "lastSync": {
                        "finishedAt": store.epoch_ms(finished),
                        "minutesAgo": minutes,
                        "result": store.result_of(last),
                    },
                }
            job = _create(cfg, job_type, requested_by, now)
            response = {
                "success": True,
                "message": "Sync started in the background.",
                "status": store.QUEUED,
                "jobId": job.job_id,
            }
            if last is not None:  # the previous one failed: say so, start afresh
                response["message"] = (
                    f"The last sync failed ({last.error_msg}). A new sync started in the background."
                )
                response["previousJobId"] = last.job_id
    log.info(
        "%s Sync %s %s by %s%s",
        logs.BOOKING,
        job_type,
        job.job_id,
        requested_by,
        " (forced)" if force else "",
    )
    _dispatch(worker, job, now)
    return response


def start_job(
    cfg: Config, job_type: str, requested_by: str = "schedule", now: dt.datetime | None = None
) -> str:
    """For the periodic schedule: a new job unless one is already queued or running."""
    _check_type(job_type)
    now = now or utcnow()
    with _db().atomic():
        _fail_stuck(cfg, now, job_type)
        _prune(job_type, now)
        last = store.latest(job_type)
        if last is not None and last.state in store.RUNNING_STATES:
            return str(last.job_id)
        return str(_create(cfg, job_type, requested_by, now).job_id)


def _prune(job_type: str, now: dt.datetime) -> None:
    cutoff = now - dt.timedelta(days=KEEP_FINISHED_DAYS)
    old = [
        j.job_id
        for j in SyncJob.select(SyncJob.job_id).where(
            (SyncJob.job_type == job_type)
            & SyncJob.state.in_([store.COMPLETED, store.FAILED])
            & (SyncJob.finished_at < cutoff)
        )
    ]
    if old:
        JobLog.delete().where(JobLog.job_id.in_(old)).execute()
        SyncJob.delete().where(SyncJob.job_id.in_(old)).execute()


def cleanup_stuck(cfg: Config, now: dt.datetime | None = None, job_type: str | None = None) -> dict[str, Any]:
    """`POST /api/jobs/cleanup`: jobs queued but never started, or running without a heartbeat."""
    if job_type is not None:
        _check_type(job_type)
    now = now or utcnow()
    with _db().atomic():
        breakdown = _fail_stuck(cfg, now, job_type)
    cleaned = sum(breakdown.values())
    what = f"{job_type} " if job_type else ""
    return {
        "success": True,
        "message": f"Cleaned up {cleaned} stuck {what}job(s)",
        "cleaned": cleaned,
        "breakdown": breakdown,
    }


def get_job(job_id: str) -> dict[str, Any]:
    job = store.get_row(job_id)
    if job is None:
        return {"found": False, "jobId": job_id}
    return store.job_dict(job)


def list_jobs(limit: int | None = None) -> list[dict[str, Any]]:
    q = SyncJob.select().order_by(SyncJob.id.desc())
    if limit:
        q = q.limit(limit)
    return [store.job_dict(j) for j in q]


def job_logs(job_id: str) -> list[dict[str, Any]]:
    rows = JobLog.select().where(JobLog.job_id == job_id).order_by(JobLog.id)
    return [store.log_dict(r) for r in rows]
