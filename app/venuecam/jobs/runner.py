"""Run one attempt of a sync job in the calling process (the worker): timeout, progress, logs.

    queued --claim--> active --handler returns--> completed
      ^                 |  \\--raises, attempts left--> queued ("retrying": the ledger row
      |                 |                              schedules the next attempt)
      '-----------------+   \\-raises: last attempt, or PermanentError--> failed
                        \\--runs past the timeout--> that attempt fails (retried like an error)

Each attempt is one claim of the job's ledger row (task type `sync`), so sync jobs retry
through the same schedule machinery as all other work (`queue.sync_schedule_s`, seed 002's
3 attempts with exponential backoff), and no huey thread sleeps between attempts.

The handler runs in a thread so the runner can keep a heartbeat and enforce the timeout;
a handler that overruns is told to stop at its next `progress()` call (threads cannot be
killed). A job deleted meanwhile (forced re-sync) stops the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from peewee import fn

from venuecam import logs
from venuecam.config import Config
from venuecam.errors import PermanentError, VenuecamError
from venuecam.jobs import store
from venuecam.jobs.registry import HANDLERS, JobContext
from venuecam.models import SyncJob
from venuecam.timeutil import utcnow

log = logging.getLogger("venuecam.jobs")

JOB_TIMEOUT_S = 30 * 60
HEARTBEAT_S = 5.0


class JobStopped(VenuecamError):
    """Raised inside the handler (at `progress()`) when the job timed out or was removed."""


def _db() -> Any:
    return SyncJob._meta.database


def _update(job_id: str, **fields: Any) -> int:
    with _db().atomic():
        return int(SyncJob.update(**fields).where(SyncJob.job_id == job_id).execute())


def _log(job_id: str, level: str, message: str, clock: Callable[[], dt.datetime]) -> None:
    with _db().atomic():
        store.add_log(job_id, level, logs.redact(message), clock())


class _Attempt:
    """One run of the handler in a thread, with a stop flag the progress callback checks."""

    def __init__(
        self,
        ctx_factory: Callable[[Callable[..., None]], JobContext],
        job_id: str,
        clock: Callable[[], dt.datetime],
    ):
        self.job_id = job_id
        self.clock = clock
        self.stop_reason: str | None = None
        self.result: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.ctx = ctx_factory(self.progress)
        self.thread = threading.Thread(target=self._run, name=f"job-{job_id}", daemon=True)

    def progress(
        self,
        stage: str,
        message: str = "",
        offset: int | None = None,
        current_total: int | None = None,
        expected_total: int | None = None,
    ) -> None:
        if self.stop_reason:
            raise JobStopped(self.stop_reason)
        info = {
            "stage": stage,
            "message": message,
            "offset": offset,
            "currentTotal": current_total,
            "expectedTotal": expected_total,
        }
        fields: dict[str, Any] = {"progress_json": json.dumps(info), "heartbeat_at": self.clock()}
        if expected_total and current_total is not None:
            # 100 only when the job has completed
            fields["progress"] = max(0, min(99, int(100 * current_total / expected_total)))
        if not _update(self.job_id, **fields):
            self.stop_reason = "the job was removed (forced re-sync)"
            raise JobStopped(self.stop_reason)

    def _run(self) -> None:
        try:
            self.result = HANDLERS[self.ctx.job_type](self.ctx)
        except BaseException as e:  # handed to the runner thread, which decides
            self.error = e
        finally:
            _db().close()  # this thread's own connection

    def run(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        self.thread.start()
        while True:
            self.thread.join(min(HEARTBEAT_S, max(0.0, deadline - time.monotonic())))
            if not self.thread.is_alive():
                return
            if time.monotonic() >= deadline:
                self.stop_reason = f"timed out after {timeout_s:g} s"
                return
            if not _update(self.job_id, heartbeat_at=self.clock()):
                self.stop_reason = "the job was removed (forced re-sync)"
                return


@dataclass(frozen=True)
class AttemptOutcome:
    """How one attempt ended: "completed", "failed" (for good), "retrying" (`error` says why;
    the ledger row schedules the next attempt), or "not run" (the job is gone or finished)."""

    state: str
    error: BaseException | None = None
    status: dict[str, Any] | None = None  # the job's status dict afterwards


def _claim(job_id: str, attempt: int, now: dt.datetime) -> SyncJob | None:
    """queued -> active for this attempt. Also from active: the ledger row's claim is exclusive,
    so an active job met here is one whose worker died mid-attempt (the reaper re-drove it)."""
    with _db().atomic():
        n = (
            SyncJob.update(state=store.ACTIVE, attempts=attempt, heartbeat_at=now,
                           started_at=fn.COALESCE(SyncJob.started_at, now))
            .where((SyncJob.job_id == job_id) & SyncJob.state.in_(store.RUNNING_STATES))
            .execute()
        )  # fmt: skip
    return store.get_row(job_id) if n else None


def run_attempt(
    cfg: Config,
    job_id: str,
    attempt: int,
    max_attempts: int,
    retry_in: Callable[[BaseException], float | None],
    now: dt.datetime | None = None,
    *,
    timeout_s: float = JOB_TIMEOUT_S,
) -> AttemptOutcome:
    """Run attempt `attempt` of job `job_id` here. `retry_in(error)` says when the next attempt
    runs after a failure (None: there is none). Nothing waits here: a failed attempt leaves
    the job queued with its error and "retrying" progress, and the caller (the worker's sync
    handler) lets its ledger row schedule the next one (`queue.sync_schedule_s`)."""

    def clock() -> dt.datetime:
        return now or utcnow()

    job = _claim(job_id, attempt, clock())
    if job is None:
        row = store.get_row(job_id)
        if row is not None:
            log.info("%s Job %s is %s already; not run again", logs.BOOKING, job_id, row.state)
        return AttemptOutcome("not run", status=None if row is None else store.job_dict(row))
    if job.job_type not in HANDLERS:
        _finish_failed(job_id, f"unknown job type {job.job_type!r}", clock)
        return AttemptOutcome("failed", status=_status(job_id))
    _log(job_id, "info", f"Attempt {attempt}/{max_attempts} started", clock)

    def make_ctx(progress: Callable[..., None]) -> JobContext:
        def job_log(level: str, message: str) -> None:
            _log(job_id, level, message, clock)

        return JobContext(cfg, job_id, job.job_type, attempt, progress, job_log)

    run = _Attempt(make_ctx, job_id, clock)
    run.run(timeout_s)
    if run.stop_reason is None and run.error is None:
        result = run.result if isinstance(run.result, dict) else {"result": run.result}
        _update(
            job_id,
            state=store.COMPLETED,
            progress=100,
            result_json=json.dumps(result, default=str),
            error_msg=None,
            finished_at=clock(),
            heartbeat_at=clock(),
            progress_json=json.dumps({"stage": "done", "message": "Sync completed"}),
        )
        _log(job_id, "info", f"Completed: {_summary(result)}", clock)
        log.info("%s Job %s completed: %s", logs.BOOKING, job_id, _summary(result))
        return AttemptOutcome("completed", status=_status(job_id))
    if store.get_row(job_id) is None:
        return AttemptOutcome("not run")  # removed by a forced re-sync meanwhile
    err: BaseException = run.error if run.error is not None else JobStopped(str(run.stop_reason))
    error = run.stop_reason or f"{err.__class__.__name__}: {err}"
    permanent = isinstance(run.error, PermanentError)
    _log(job_id, "error", f"Attempt {attempt}/{max_attempts} failed: {error}", clock)
    retry_in_s = None if permanent else retry_in(err)
    if retry_in_s is None:
        why = "not retried" if permanent else f"after {attempt} attempts"
        _finish_failed(job_id, f"{error} ({why})", clock)
        return AttemptOutcome("failed", err, _status(job_id))
    _update(
        job_id,
        state=store.QUEUED,
        error_msg=logs.redact(error)[:2000],
        heartbeat_at=clock(),
        progress_json=json.dumps({"stage": "retrying", "message": f"Retrying in {retry_in_s:g} s"}),
    )
    _log(job_id, "warn", f"Retrying in {retry_in_s:g} s", clock)
    return AttemptOutcome("retrying", err, _status(job_id))


def fail_job(job_id: str, error: str, now: dt.datetime | None = None) -> None:
    """End a job that is not finished yet as failed (its ledger row gave up)."""
    row = store.get_row(job_id)
    if row is not None and row.state in store.RUNNING_STATES:
        _finish_failed(job_id, error, lambda: now or utcnow())


def _finish_failed(job_id: str, error: str, clock: Callable[[], dt.datetime]) -> None:
    error = logs.redact(error)[:2000]
    _update(job_id, state=store.FAILED, error_msg=error, finished_at=clock())
    _log(job_id, "error", f"Failed: {error}", clock)
    log.warning("%s Job %s failed: %s", logs.BOOKING, job_id, error)


def _status(job_id: str) -> dict[str, Any] | None:
    row = store.get_row(job_id)
    return None if row is None else store.job_dict(row)


def _summary(result: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in result.items() if isinstance(v, int | float | str | bool)]
    return ", ".join(parts[:8]) or "ok"
