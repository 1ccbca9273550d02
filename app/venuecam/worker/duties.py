"""The worker's periodic duties: booking sync, clip scan, reconciler, retention, cleanup."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING

from venuecam import ledger, logs, pipeline, shared_state
from venuecam.models import ConnectivityLog, PendingTask, SyncJob, TaskStatus
from venuecam.timeutil import to_naive_utc, utcnow
from venuecam.worker import dispatch

if TYPE_CHECKING:
    from venuecam.config import Config
    from venuecam.worker.tasks import Tasks

log = logging.getLogger("worker")
QUEUE_WARNING = "queue_warning"


def sync_bookings(cfg: Config, tasks: Tasks) -> None:
    """One scheduled booking sync (a seed-002 job, so statusd shows it), then plan the next scan."""
    from venuecam.jobs import runner, service

    job_id = service.start_job(cfg, "bookings", requested_by="schedule")
    runner.run_job(cfg, job_id)
    job = SyncJob.get_or_none(SyncJob.job_id == job_id)
    if job is not None and job.state == "completed":
        shared_state.clear_auth_problem()
    elif job is not None and job.error_msg and "AuthError" in job.error_msg:
        shared_state.set_auth_problem(job.error_msg)
    scan_and_dispatch(cfg, tasks)


def scan_and_dispatch(cfg: Config, tasks: Tasks) -> None:
    """Queue clips for finished bookings; schedule the next scan for the next booking's end,
    so a clip is cut when its booking ends rather than at the next periodic tick."""
    now_ts = time.time()
    rows = pipeline.scan(cfg, now_ts)
    if rows:
        dispatch.send(tasks, rows)
    upcoming = pipeline.next_booking_end(cfg, now_ts)
    if upcoming is not None and upcoming - now_ts < cfg.clips.scan_interval_s:
        tasks.scan.schedule(eta=to_naive_utc(upcoming + 1))


def reconcile(cfg: Config, tasks: Tasks, now: dt.datetime | None = None) -> None:
    """Nothing lost: re-drive rows whose worker died, expire old work, re-send due rows huey lacks."""
    now = now or utcnow()
    reaped = ledger.reap_stale(cfg.queue.stale_after_s, now)
    if reaped:
        log.warning("%s Re-driving %d task(s) whose worker stopped: %s", logs.QUEUE, len(reaped), reaped)
    expired = ledger.expire_old(cfg.queue.expiration_hours, now)
    if expired:
        log.warning(
            "%s %d task(s) older than %d h marked expired (files kept): %s",
            logs.QUEUE, len(expired), cfg.queue.expiration_hours, expired,
        )  # fmt: skip
    dispatch.dispatch_due(tasks)
    waiting = PendingTask.select().where(PendingTask.status == TaskStatus.PENDING).count()
    over = waiting > cfg.queue.max_queue_size
    previous = shared_state.get_json(QUEUE_WARNING) or {}
    if over != bool(previous.get("over")):
        shared_state.put_json(
            QUEUE_WARNING, {"over": over, "waiting": waiting, "limit": cfg.queue.max_queue_size}
        )
        if over:
            log.warning("%s %d tasks waiting, over the warning size %d (nothing is dropped)",
                        logs.QUEUE, waiting, cfg.queue.max_queue_size)  # fmt: skip


def retention(cfg: Config) -> None:
    from venuecam.retention import enforce

    enforce(cfg, time.time())


def daily_cleanup(cfg: Config, now: dt.datetime | None = None) -> None:
    """Seed 000: completed rows removed after 7 days, daily at 03:00 venue time; failed kept."""
    now = now or utcnow()
    if now.replace(tzinfo=dt.UTC).astimezone(cfg.tz).hour != 3:
        return
    n = ledger.purge_completed(cfg.queue.completed_retention_days, now)
    with ConnectivityLog._meta.database.atomic():
        m = ConnectivityLog.delete().where(ConnectivityLog.timestamp < now - dt.timedelta(days=7)).execute()
    log.info("%s Daily cleanup: %d completed task(s) and %d connectivity row(s) removed", logs.QUEUE, n, m)
