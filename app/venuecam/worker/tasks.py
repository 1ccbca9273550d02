"""Registering the worker's tasks on a huey instance, bound to one config.

Every process that enqueues (worker, watchdog, statusd) registers the same names, so a
message written by one is executable by the worker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from huey import crontab

from venuecam.worker.app import EXECUTE, RUN_JOB, SCAN

if TYPE_CHECKING:
    from huey import SqliteHuey

    from venuecam.config import Config

log = logging.getLogger("worker")


@dataclass
class Tasks:
    huey: SqliteHuey
    execute: Any
    run_job: Any
    scan: Any


def _every_minutes(seconds: float) -> crontab:
    minutes = max(1, round(seconds / 60))
    return crontab(minute="*" if minutes == 1 else f"*/{minutes}")


def register(huey: SqliteHuey, cfg: Config, periodic: bool = False) -> Tasks:
    """Register the tasks; `periodic=True` only in the worker (the one that schedules)."""

    @huey.task(name=EXECUTE)
    def execute(task_id: int) -> None:
        from venuecam.worker.execute import execute_row

        execute_row(cfg, tasks, task_id)

    @huey.task(name=RUN_JOB)
    def run_job(job_id: str) -> None:
        from venuecam.jobs.runner import run_job as run
        from venuecam.worker import duties

        run(cfg, job_id)
        # New or changed bookings: queue what is due and schedule the next booking's scan.
        duties.scan_and_dispatch(cfg, tasks)

    @huey.task(name=SCAN)
    def scan() -> None:
        from venuecam.worker import duties

        duties.scan_and_dispatch(cfg, tasks)

    tasks = Tasks(huey=huey, execute=execute, run_job=run_job, scan=scan)

    if periodic:
        _register_periodic(huey, cfg, tasks)
    return tasks


def _register_periodic(huey: SqliteHuey, cfg: Config, tasks: Tasks) -> None:
    from venuecam.worker import duties

    @huey.periodic_task(_every_minutes(cfg.booking_api.sync_interval_s), name="venuecam.periodic_sync")
    def periodic_sync() -> None:
        duties.sync_bookings(cfg, tasks)

    @huey.periodic_task(_every_minutes(cfg.clips.scan_interval_s), name="venuecam.periodic_scan")
    def periodic_scan() -> None:
        duties.scan_and_dispatch(cfg, tasks)

    @huey.periodic_task(crontab(minute="*"), name="venuecam.reconcile")
    def reconcile() -> None:
        duties.reconcile(cfg, tasks)

    @huey.periodic_task(crontab(minute="*/5"), name="venuecam.retention")
    def retention() -> None:
        duties.retention(cfg)

    # huey's crontab runs in UTC; the seeds' "daily at 3 AM" is venue time, checked inside.
    @huey.periodic_task(crontab(minute="0"), name="venuecam.daily_cleanup")
    def daily_cleanup() -> None:
        duties.daily_cleanup(cfg)
