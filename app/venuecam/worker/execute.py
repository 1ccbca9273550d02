"""Executing one ledger row: claim it, keep it alive, run its handler, record the outcome,
then dispatch what follows. The one place where a step's result becomes ledger state.

- success: the row is completed and the handler's next step created in the same commit
  (`ledger.complete(then=...)`); only then is that row handed to huey;
- the video changed under the handler (a booking change, a cancellation): completed, nothing
  follows (the newer revision has rows of its own);
- a failure: `policy.judge` says whether it counts; a counted one retries on the type's
  schedule and ends `failed` (the video too, `handlers.on_dead_letter`) when spent.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import TYPE_CHECKING

from venuecam import ledger, logs, retry, shared_state, videos
from venuecam.errors import AuthError, TransientError
from venuecam.jobs import service as job_service
from venuecam.models import PendingTask, TaskStatus, TaskType
from venuecam.timeutil import utcnow
from venuecam.worker import dispatch, duties, policy
from venuecam.worker.handlers import HANDLERS, Done, on_dead_letter
from venuecam.worker.tasks import Tasks

if TYPE_CHECKING:
    from venuecam.config import Config

log = logging.getLogger("worker")
HEARTBEAT_S = 10.0
UPLOAD_SLOT_RETRY_S = 5.0

_upload_slots: threading.BoundedSemaphore | None = None
_slots_lock = threading.Lock()


def _slots(cfg: Config) -> threading.BoundedSemaphore:
    global _upload_slots
    with _slots_lock:
        if _upload_slots is None:
            _upload_slots = threading.BoundedSemaphore(cfg.queue.max_concurrent_uploads)
        return _upload_slots


class _Heartbeat(threading.Thread):
    """Keeps `heartbeat_at` fresh so the reconciler can tell running from dead."""

    def __init__(self, task_id: int) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{task_id}")
        self.task_id = task_id
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            try:
                ledger.heartbeat(self.task_id)
            except Exception as e:  # a busy database must not kill the task
                log.warning("%s heartbeat for task %d failed: %s", logs.QUEUE, self.task_id, e)


def execute_row(cfg: Config, tasks: Tasks, task_id: int, now: dt.datetime | None = None) -> None:
    """Run ledger row `task_id` if it is pending and due. `now` is for tests (default: the clock)."""
    row = ledger.get(task_id)
    if row is None or row.status != TaskStatus.PENDING:
        return  # done, cancelled or already running elsewhere: a duplicate message
    if row.task_type in dispatch.NETWORK_TYPES and not dispatch.online():
        return  # offline: it waits; the watchdog's wake-up dispatches it again
    due_check = now or utcnow()
    if row.next_retry_at is not None and row.next_retry_at > due_check:
        # huey's scheduler can run a retry up to a second before its ledger time (seen:
        # due 11:50:11.822, run at 11:50:11); claim() refuses it and the message would be
        # lost until the reconciler's next minute. Send it again just after it is due.
        eta = row.next_retry_at.replace(microsecond=0) + dt.timedelta(seconds=1)
        tasks.execute.schedule(args=(task_id,), eta=eta)
        return
    slot = _slots(cfg) if row.task_type == TaskType.UPLOAD else None
    if slot is not None and not slot.acquire(blocking=False):
        # All upload slots busy: come back shortly rather than hold a worker thread.
        tasks.execute.schedule(args=(task_id,), delay=UPLOAD_SLOT_RETRY_S)
        return
    try:
        _run_claimed(cfg, tasks, task_id, now)
    finally:
        if slot is not None:
            slot.release()


def _run_claimed(cfg: Config, tasks: Tasks, task_id: int, now: dt.datetime | None) -> None:
    row = ledger.claim(task_id, now)
    if row is None:
        return
    ident = f"task {row.id} ({row.task_type}, booking {row.booking_id})"
    log.info("%s Processing task %d (type: %s, attempt: %d/%d, booking: %s)",
             logs.QUEUE, row.id, row.task_type, row.attempts, row.max_attempts, row.booking_id)  # fmt: skip
    beat = _Heartbeat(row.id)
    beat.start()
    try:
        try:
            done = HANDLERS[row.task_type](cfg, row)
        except videos.VideoChanged as e:
            log.info("%s %s: %s; nothing more to do for it", logs.QUEUE, ident, e)
            done = Done()
        except Exception as e:
            _record_failure(cfg, tasks, row, ident, e, now)
            return
    finally:
        beat.stopped.set()
    _record_success(tasks, row, done, now)


def _record_success(tasks: Tasks, row: PendingTask, done: Done, now: dt.datetime | None) -> None:
    successor = ledger.complete(row.id, now, then=done.next_step)
    log.info("%s Task %d completed (%s, booking %s)", logs.QUEUE, row.id, row.task_type, row.booking_id)
    if successor is not None:
        log.info("%s %s task %d queued (%s)", logs.QUEUE, successor.task_type, successor.id,
                 successor.unique_key.split(":", 1)[1])  # fmt: skip
        if successor.status == TaskStatus.PENDING:
            dispatch.dispatch_new(tasks, successor)
    if done.rescan:
        tasks.scan()


def _record_failure(
    cfg: Config, tasks: Tasks, row: PendingTask, ident: str, e: Exception, now: dt.datetime | None
) -> None:
    msg = logs.redact(f"{type(e).__name__}: {e}")
    schedule = retry.schedule_for(cfg, row.task_type)
    verdict = policy.judge(e, dispatch.online(), schedule)
    after: PendingTask | None
    if verdict.kind == policy.OFFLINE:
        ledger.release_offline(row.id, msg, verdict.delay_s or policy.OFFLINE_RETRY_S, now)
        log.warning("%s %s failed while offline (not counted): %s", logs.QUEUE, ident, msg)
        return  # the reconnect wake-up (or the reconciler) sends it again
    if not verdict.counted:
        after = ledger.defer(row.id, msg, verdict.delay_s or 0.0, now)
        why = "disk full (ENOSPC)" if verdict.kind == policy.DISK_FULL else "asked to wait"
        log.warning("%s %s: %s, attempt not counted; retry in %g s: %s",
                    logs.RETRY, ident, why, verdict.delay_s or 0.0, msg)  # fmt: skip
        if after is not None and after.status == TaskStatus.PENDING:
            dispatch.send(tasks, [after])
        return
    if isinstance(e, AuthError):
        shared_state.set_auth_problem(str(e))
    if not isinstance(e, TransientError | AuthError):
        log.exception("%s %s failed: %s", logs.QUEUE, ident, msg)
    after = ledger.fail(row.id, msg, schedule, now)
    if after.status == TaskStatus.FAILED:
        log.error("%s %s failed after %d attempts: %s", logs.QUEUE, ident, after.attempts, msg)
        on_dead_letter(cfg, after, msg)
    elif after.status == TaskStatus.PENDING:
        log.warning("%s %s failed (attempt %d/%d), retry at %s UTC: %s",
                    logs.RETRY, ident, after.attempts, after.max_attempts, after.next_retry_at, msg)  # fmt: skip
        dispatch.send(tasks, [after])  # scheduled in huey at its retry time


class WorkerRunner:
    """The worker process's `tasks.Runner`: what each huey task does when it runs."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def execute(self, tasks: Tasks, task_id: int) -> None:
        execute_row(self.cfg, tasks, task_id)

    def scan(self, tasks: Tasks) -> None:
        duties.scan_and_dispatch(self.cfg, tasks)

    def legacy_job(self, tasks: Tasks, job_id: str) -> None:
        """A `run_job` message an earlier release queued: the job's ledger row runs it now."""
        row = job_service.ensure_ledger_row(self.cfg, job_id)
        dispatch.send(tasks, [row])
