"""Executing one ledger row: claim it, keep it alive, run its handler, record the outcome.

Outcomes (seed 000's retry-all-errors policy, with booking-api.md's exceptions):
- success -> completed; the handler has already queued the next step;
- OfflineError, or any transient error while the watchdog says OFFLINE -> the attempt does
  not count; the row waits for the reconnect wake-up;
- a full disk (ENOSPC) -> the attempt does not count either; the row retries after the
  type's longest delay, so it waits for space and is never dead-lettered for it;
- anything else -> a counted failed attempt, retried on the type's schedule, `failed` when spent.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from venuecam import ledger, logs
from venuecam.errors import AuthError, OfflineError, TransientError, is_disk_full
from venuecam.models import PendingTask, TaskStatus, TaskType
from venuecam.timeutil import utcnow

if TYPE_CHECKING:
    from venuecam.config import Config
    from venuecam.worker.tasks import Tasks

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


def schedule_for(cfg: Config, task_type: str) -> list[int]:
    return {
        TaskType.UPLOAD: cfg.queue.upload_schedule_s,
        TaskType.NOTIFY: cfg.queue.notify_schedule_s,
        TaskType.CLIP: cfg.queue.clip_schedule_s,
    }[task_type]


def _handler(task_type: str) -> Callable[[Config, Tasks, PendingTask], None]:
    from venuecam.worker import handlers

    return {
        TaskType.CLIP: handlers.handle_clip,
        TaskType.UPLOAD: handlers.handle_upload,
        TaskType.NOTIFY: handlers.handle_notify,
    }[task_type]


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


def execute_row(cfg: Config, tasks: Tasks, task_id: int) -> None:
    row = ledger.get(task_id)
    if row is None or row.status != TaskStatus.PENDING:
        return  # done, cancelled or already running elsewhere: a duplicate message
    from venuecam.worker.dispatch import NETWORK_TYPES, online

    if row.task_type in NETWORK_TYPES and not online():
        return  # offline: it waits; the watchdog's wake-up dispatches it again
    now = utcnow()
    if row.next_retry_at is not None and row.next_retry_at > now:
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
        _run_claimed(cfg, tasks, task_id)
    finally:
        if slot is not None:
            slot.release()


def _run_claimed(cfg: Config, tasks: Tasks, task_id: int) -> None:
    row = ledger.claim(task_id)
    if row is None:
        return
    ident = f"task {row.id} ({row.task_type}, booking {row.booking_id})"
    log.info(
        "%s Processing task %d (type: %s, attempt: %d/%d, booking: %s)",
        logs.QUEUE, row.id, row.task_type, row.attempts, row.max_attempts, row.booking_id,
    )  # fmt: skip
    beat = _Heartbeat(row.id)
    beat.start()
    try:
        _handler(row.task_type)(cfg, tasks, row)
    except Exception as e:
        _record_failure(cfg, tasks, row, ident, e)
    else:
        ledger.complete(row.id)
        log.info("%s Task %d completed (%s, booking %s)", logs.QUEUE, row.id, row.task_type, row.booking_id)
    finally:
        beat.stopped.set()


def _record_failure(cfg: Config, tasks: Tasks, row: PendingTask, ident: str, e: Exception) -> None:
    from venuecam.worker.dispatch import online

    msg = logs.redact(f"{type(e).__name__}: {e}")
    if isinstance(e, OfflineError) or (isinstance(e, TransientError) and not online()):
        ledger.release_offline(row.id, msg)
        log.warning("%s %s failed while offline (not counted): %s", logs.QUEUE, ident, msg)
        return
    if is_disk_full(e):
        _defer_disk_full(cfg, tasks, row, ident, msg)
        return
    if isinstance(e, AuthError):
        from venuecam import shared_state

        shared_state.set_auth_problem(str(e))
    if not isinstance(e, TransientError | AuthError):
        log.exception("%s %s failed: %s", logs.QUEUE, ident, msg)
    after = ledger.fail(row.id, msg, schedule_for(cfg, row.task_type))
    if after.status == TaskStatus.FAILED:
        log.error("%s %s failed after %d attempts: %s", logs.QUEUE, ident, after.attempts, msg)
    else:
        log.warning(
            "%s %s failed (attempt %d/%d), retry at %s UTC: %s",
            logs.RETRY, ident, after.attempts, after.max_attempts, after.next_retry_at, msg,
        )  # fmt: skip
        from venuecam.worker import dispatch  # scheduled in huey at its retry time

        if after.next_retry_at is not None:
            dispatch.send(tasks, [after])


# Space freed by retention or a human is used within this long, whatever the type's schedule.
DISK_FULL_RETRY_MAX_S = 900


def _defer_disk_full(cfg: Config, tasks: Tasks, row: PendingTask, ident: str, msg: str) -> None:
    """Waiting for space, not failing: the longest delay of the schedule, because every
    attempt on a full disk writes until the disk refuses (wear on an SD card)."""
    retry_in = min(max(schedule_for(cfg, row.task_type), default=60), DISK_FULL_RETRY_MAX_S)
    after = ledger.defer(row.id, msg, retry_in)
    log.warning(
        "%s %s: disk full (ENOSPC), attempt not counted; retry in %d s once space is freed: %s",
        logs.RETRY, ident, retry_in, msg,
    )  # fmt: skip
    if after is not None and after.status == TaskStatus.PENDING:
        from venuecam.worker import dispatch

        dispatch.send(tasks, [after])
