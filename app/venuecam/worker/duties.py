"""The worker's periodic duties: booking sync, clip scan, reconciler, retention, cleanup,
the sweep of abandoned uploads."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING

from huey import crontab

from venuecam import ledger, logs, pipeline, retention, shared_state, wallclock
from venuecam.booking import purge
from venuecam.jobs import service as job_service
from venuecam.models import PendingTask, TaskStatus
from venuecam.timeutil import iso, to_naive_utc, utcnow
from venuecam.worker import clockwatch, dispatch, upload_sweep

if TYPE_CHECKING:
    from huey import SqliteHuey

    from venuecam.config import Config
    from venuecam.worker.tasks import Tasks

log = logging.getLogger("worker")


def sync_bookings(cfg: Config, tasks: Tasks, requested_by: str = "schedule") -> None:
    """A booking sync (a seed-002 job, so statusd shows it), run by its ledger row; it queues
    a clip scan when it completes. While one is queued or running, that one is reused."""
    job_id = job_service.start_job(cfg, "bookings", requested_by=requested_by)
    row = job_service.ensure_ledger_row(cfg, job_id)
    if row.status == TaskStatus.PENDING:
        dispatch.dispatch_new(tasks, row)


def scan_and_dispatch(cfg: Config, tasks: Tasks) -> None:
    """Queue clips for finished bookings; schedule the next scan for the next booking's end,
    so a clip is cut when its booking ends rather than at the next periodic tick."""
    now_ts = time.time()
    rows = pipeline.scan(cfg, now_ts)
    if rows:
        dispatch.send(tasks, rows)
    upcoming = pipeline.next_booking_end(cfg, now_ts)
    # Sooner than the periodic scan can come: it is a crontab of whole minutes (`scan_period_s`),
    # not `scan_interval_s` itself (seen in the soak, at 2 s: a booking ending 3 s after a
    # scan waited for the next minute, and the chain of scans was broken).
    if upcoming is not None and upcoming - now_ts < scan_period_s(cfg):
        tasks.scan.schedule(eta=to_naive_utc(upcoming + 1))


def scan_period_s(cfg: Config) -> int:
    """The periodic scan's real period: `clips.scan_interval_s` in whole minutes, at least one."""
    return 60 * _minutes(cfg.clips.scan_interval_s)


def reconcile(cfg: Config, tasks: Tasks, now: dt.datetime | None = None) -> None:
    """Nothing lost: re-drive rows whose worker died, re-send due rows huey lacks; nothing
    quiet: say when waiting work expires or the queue grows past its warning size."""
    if now is None:
        clockwatch.look(tasks)  # a jump re-bases the ledger before heartbeats are judged by it
    now = now or utcnow()
    reaped = ledger.reap_stale(cfg.queue.stale_after_s, now)
    if reaped:
        log.warning("%s Re-driving %d task(s) whose worker stopped: %s", logs.QUEUE, len(reaped), reaped)
    report_expired(cfg, now)
    dispatch.dispatch_due(tasks, now=now)
    waiting = PendingTask.select().where(PendingTask.status == TaskStatus.PENDING).count()
    over = waiting > cfg.queue.max_queue_size
    previous = shared_state.get_json(shared_state.QUEUE_WARNING) or {}
    if over != bool(previous.get("over")):
        shared_state.put_json(
            shared_state.QUEUE_WARNING, {"over": over, "waiting": waiting, "limit": cfg.queue.max_queue_size}
        )
        if over:
            log.warning("%s %d tasks waiting, over the warning size %d (nothing is dropped)",
                        logs.QUEUE, waiting, cfg.queue.max_queue_size)  # fmt: skip


def report_expired(cfg: Config, now: dt.datetime) -> int:
    """One log line whenever the amount of expired work (waiting past queue.expiration_hours)
    changes; the work itself goes on (status and the LEDs show it)."""
    rows = ledger.overdue(cfg.queue.expiration_hours, now)
    previous = shared_state.get_json(shared_state.QUEUE_EXPIRED) or {}
    if len(rows) != previous.get("count", 0):
        oldest = min((r.created_at for r in rows), default=None)
        shared_state.put_json(shared_state.QUEUE_EXPIRED, {"count": len(rows), "oldest": iso(oldest)}, now)
        if len(rows) > int(previous.get("count", 0)):
            log.warning(
                "%s %d task(s) waiting longer than %d h (oldest since %s UTC): still delivered when they "
                "can be; `venuecam queue cancel --expired` gives them up: %s",
                logs.QUEUE, len(rows), cfg.queue.expiration_hours, oldest, [r.id for r in rows][:50],
            )  # fmt: skip
        else:
            log.info("%s %d task(s) waiting past the expiration now (was %s)",
                     logs.QUEUE, len(rows), previous.get("count", 0))  # fmt: skip
    return len(rows)


def run_retention(cfg: Config) -> None:
    now = time.time()
    retention.enforce(cfg, now, clock_trusted=wallclock.trust(now).trusted)


def daily_cleanup(cfg: Config, now: dt.datetime | None = None) -> None:
    """Daily at 03:00 venue time: completed rows after queue.completed_retention_days (seed
    000: 7 days; failed rows kept) and bookings after retention.booking_days (seed 001's
    DeleteOldBookings, 90 days). The connectivity log is the watchdog's to prune."""
    now = now or utcnow()
    if now.replace(tzinfo=dt.UTC).astimezone(cfg.tz).hour != 3:
        return
    n = ledger.purge_completed(cfg.queue.completed_retention_days, now)
    gone = purge.delete_old_bookings(cfg, now)
    log.info("%s Daily cleanup: %d completed task(s) removed; %s",
             logs.QUEUE, n, gone.summary(cfg.retention.booking_days))  # fmt: skip


def _minutes(seconds: float) -> int:
    return max(1, round(seconds / 60))


def _every_minutes(seconds: float) -> crontab:
    minutes = _minutes(seconds)
    return crontab(minute="*" if minutes == 1 else f"*/{minutes}")


def register_periodic(huey: SqliteHuey, cfg: Config, tasks: Tasks) -> None:
    """The worker's schedule (only the worker registers it)."""

    @huey.periodic_task(_every_minutes(cfg.booking_api.sync_interval_s), name="venuecam.periodic_sync")
    def periodic_sync() -> None:
        sync_bookings(cfg, tasks)

    @huey.periodic_task(_every_minutes(cfg.clips.scan_interval_s), name="venuecam.periodic_scan")
    def periodic_scan() -> None:
        scan_and_dispatch(cfg, tasks)

    @huey.periodic_task(crontab(minute="*"), name="venuecam.reconcile")
    def reconcile_task() -> None:
        reconcile(cfg, tasks)

    @huey.periodic_task(crontab(minute="*/5"), name="venuecam.retention")
    def retention_task() -> None:
        run_retention(cfg)

    @huey.periodic_task(crontab(minute="*/10"), name="venuecam.upload_sweep")
    def upload_sweep_task() -> None:
        upload_sweep.sweep(cfg)

    upload_sweep_task()  # and once now: a power cut is when an upload is most likely left behind

    # huey's crontab runs in UTC; the seeds' "daily at 3 AM" is venue time, checked inside.
    @huey.periodic_task(crontab(minute="0"), name="venuecam.daily_cleanup")
    def daily_cleanup_task() -> None:
        daily_cleanup(cfg)
