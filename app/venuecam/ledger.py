"""The task ledger: every unit of work is a `pending_tasks` row before anything acts on it.

huey executes; the ledger is the truth. A row moves:

    pending --claim--> processing --complete--> completed (and the next step's row, same commit)
       ^                  |  \\--fail (attempts left)--> pending (next_retry_at = now + schedule)
       |                  |   \\-fail (last attempt)---> failed   (kept; `retry_failed` re-drives)
       |                  \\--release_offline / defer--> pending (attempt not counted)
       \\--reap_stale (heartbeat too old: worker died)--/
    pending/processing --cancel--> cancelled

A row waiting longer than `queue.expiration_hours` is *expired* (`overdue`): a fact shown in
status and on the LEDs, not a state; it is still delivered (the reconnect wake, "process
now" and the reconciler dispatch it like any waiting row) unless the operator gives it up
(`cancel`, from `venuecam queue cancel`).

Every change is one IMMEDIATE transaction, so two processes never both claim a row.
All functions take `now` so tests drive the clock.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from peewee import fn

from venuecam import retry
from venuecam.models import PendingTask, TaskStatus
from venuecam.timeutil import utcnow

ACTIVE = (TaskStatus.PENDING, TaskStatus.PROCESSING)
# What `due` hands out per query; `dispatch.dispatch_due` pages until nothing is left.
DUE_PAGE = 500


@dataclass(frozen=True)
class NewRow:
    """A unit of work to record: `enqueue(**asdict)`, or with `complete(..., then=)`."""

    task_type: str
    unique_key: str
    data: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 1
    booking_id: str | None = None
    priority_ts: float = 0.0
    delay_s: float = 0.0


def _db():  # type: ignore[no-untyped-def]
    return PendingTask._meta.database


def enqueue(
    task_type: str,
    unique_key: str,
    data: dict[str, Any],
    *,
    max_attempts: int,
    booking_id: str | None = None,
    priority_ts: float = 0.0,
    now: dt.datetime | None = None,
    delay_s: float = 0.0,
) -> tuple[PendingTask, bool]:
    """Create the row for a unit of work, or return the existing one. Returns (row, created)."""
    now = now or utcnow()
    with _db().atomic():
        existing = PendingTask.get_or_none(PendingTask.unique_key == unique_key)
        if existing is not None:
            return existing, False
        row = PendingTask.create(
            task_type=task_type,
            unique_key=unique_key,
            task_data=json.dumps(data, sort_keys=True),
            max_attempts=max_attempts,
            booking_id=booking_id,
            priority_ts=priority_ts,
            next_retry_at=now + dt.timedelta(seconds=delay_s),
            created_at=now,
            updated_at=now,
        )
        return row, True


def enqueue_row(spec: NewRow, now: dt.datetime | None = None) -> tuple[PendingTask, bool]:
    return enqueue(
        spec.task_type, spec.unique_key, spec.data, max_attempts=spec.max_attempts,
        booking_id=spec.booking_id, priority_ts=spec.priority_ts, now=now, delay_s=spec.delay_s,
    )  # fmt: skip


def get(task_id: int) -> PendingTask | None:
    return PendingTask.get_or_none(PendingTask.id == task_id)


def claim(task_id: int, now: dt.datetime | None = None) -> PendingTask | None:
    """Take a due pending row for execution; None if it is not due, not pending or gone."""
    now = now or utcnow()
    with _db().atomic():
        n = (
            PendingTask.update(
                status=TaskStatus.PROCESSING,
                attempts=PendingTask.attempts + 1,
                started_at=now,
                heartbeat_at=now,
                updated_at=now,
            )
            .where(
                (PendingTask.id == task_id)
                & (PendingTask.status == TaskStatus.PENDING)
                & ((PendingTask.next_retry_at.is_null()) | (PendingTask.next_retry_at <= now))
            )
            .execute()
        )
        return get(task_id) if n else None


def heartbeat(task_id: int, now: dt.datetime | None = None, **progress: Any) -> None:
    """Mark a running task alive; optionally store progress fields (bytes_done, ...)."""
    now = now or utcnow()
    fields: dict[Any, Any] = {PendingTask.heartbeat_at: now, PendingTask.updated_at: now}
    for k, v in progress.items():
        fields[getattr(PendingTask, k)] = v
    with _db().atomic():
        PendingTask.update(fields).where(PendingTask.id == task_id).execute()


def save_progress(
    task_id: int, progress: dict[str, Any], now: dt.datetime | None = None, **extra: Any
) -> None:
    """Persist resumable state (e.g. a multipart upload id and its finished parts)."""
    heartbeat(task_id, now, progress_json=json.dumps(progress, sort_keys=True), **extra)


def complete(task_id: int, now: dt.datetime | None = None, then: NewRow | None = None) -> PendingTask | None:
    """processing -> completed; with `then`, the next step's row is created in the same commit,
    so a crash can never leave a finished step without its successor. Returns that row."""
    now = now or utcnow()
    with _db().atomic():
        n = (
            PendingTask.update(
                status=TaskStatus.COMPLETED,
                finished_at=now,
                updated_at=now,
                error_msg=None,
                next_retry_at=None,
            )
            .where((PendingTask.id == task_id) & (PendingTask.status == TaskStatus.PROCESSING))
            .execute()
        )
        if then is None or not n:
            return None  # cancelled meanwhile: its successor must not appear either
        row, _ = enqueue_row(then, now)
        return row


def fail(task_id: int, error: str, schedule_s: Sequence[int], now: dt.datetime | None = None) -> PendingTask:
    """Record a failed attempt: back to pending after the schedule's delay, or `failed` when spent.

    schedule_s[i] is the wait after the (i+1)-th failed attempt; max_attempts bounds the count.
    """
    now = now or utcnow()
    with _db().atomic():
        row = PendingTask.get_by_id(task_id)
        if row.status != TaskStatus.PROCESSING:
            return row  # cancelled meanwhile: leave it so
        if row.attempts >= row.max_attempts:
            row.status = TaskStatus.FAILED
            row.next_retry_at = None
            row.finished_at = now
        else:
            delay = retry.delay_after(schedule_s, row.attempts)
            row.status = TaskStatus.PENDING
            row.next_retry_at = now + dt.timedelta(seconds=delay)
        row.error_msg = error[:2000]
        row.updated_at = now
        row.save()
        return row


def release_offline(
    task_id: int, error: str, retry_in_s: float = 60.0, now: dt.datetime | None = None
) -> None:
    """The attempt failed because the device is offline: it does not count.

    The row waits for the watchdog's reconnect wake-up (or `retry_in_s` as a safety net).
    """
    now = now or utcnow()
    with _db().atomic():
        PendingTask.update(
            status=TaskStatus.PENDING,
            attempts=fn.MAX(PendingTask.attempts - 1, 0),
            offline_failures=PendingTask.offline_failures + 1,
            next_retry_at=now + dt.timedelta(seconds=retry_in_s),
            error_msg=error[:2000],
            updated_at=now,
        ).where((PendingTask.id == task_id) & (PendingTask.status == TaskStatus.PROCESSING)).execute()


def defer(task_id: int, error: str, retry_in_s: float, now: dt.datetime | None = None) -> PendingTask | None:
    """The attempt failed for a reason outside the task (the disk is full): back to pending
    after `retry_in_s`, the attempt not counted, so the row can never end `failed` for it."""
    now = now or utcnow()
    with _db().atomic():
        PendingTask.update(
            status=TaskStatus.PENDING,
            attempts=fn.MAX(PendingTask.attempts - 1, 0),
            next_retry_at=now + dt.timedelta(seconds=retry_in_s),
            error_msg=error[:2000],
            updated_at=now,
        ).where((PendingTask.id == task_id) & (PendingTask.status == TaskStatus.PROCESSING)).execute()
        return get(task_id)


def due(
    now: dt.datetime | None = None,
    task_types: Iterable[str] | None = None,
    limit: int | None = None,
    after: tuple[float, int] | None = None,
) -> list[PendingTask]:
    """Pending rows whose time has come, oldest booking first; `after` = the last (priority_ts,
    id) of the previous page, to walk them all."""
    now = now or utcnow()
    q = PendingTask.select().where(
        (PendingTask.status == TaskStatus.PENDING)
        & ((PendingTask.next_retry_at.is_null()) | (PendingTask.next_retry_at <= now))
    )
    if task_types is not None:
        q = q.where(PendingTask.task_type.in_(list(task_types)))
    if after is not None:
        q = q.where(
            (PendingTask.priority_ts > after[0])
            | ((PendingTask.priority_ts == after[0]) & (PendingTask.id > after[1]))
        )
    return list(q.order_by(PendingTask.priority_ts, PendingTask.id).limit(limit or DUE_PAGE))


def mark_dispatched(task_ids: Iterable[int], now: dt.datetime | None = None) -> None:
    ids = list(task_ids)
    if not ids:
        return
    with _db().atomic():
        PendingTask.update(dispatched_at=now or utcnow()).where(PendingTask.id.in_(ids)).execute()


def reap_stale(stale_after_s: float, now: dt.datetime | None = None) -> list[int]:
    """Running rows whose heartbeat stopped (worker killed): back to pending, due now.

    The attempt that died stays counted, so a task that kills its worker every time still ends.
    """
    now = now or utcnow()
    return _reap(PendingTask.heartbeat_at < now - dt.timedelta(seconds=stale_after_s), now)


def reap_interrupted(now: dt.datetime | None = None) -> list[int]:
    """At the worker's start: every running row back to pending, due now, whatever its
    heartbeat says. None can be running yet, and a box that booted with its clock behind
    (no RTC) sees the last heartbeats in its future: by age they would wait until its clock
    passed them, up to an hour after a reboot on fake-hwclock's time, days on an unset one."""
    return _reap(PendingTask.id.is_null(False), now or utcnow())


def _reap(which: Any, now: dt.datetime) -> list[int]:
    with _db().atomic():
        rows = list(
            PendingTask.select(PendingTask.id).where((PendingTask.status == TaskStatus.PROCESSING) & which)
        )
        ids = [r.id for r in rows]
        if ids:
            PendingTask.update(
                status=TaskStatus.PENDING,
                next_retry_at=now,
                error_msg="worker stopped while running this task; re-driven",
                updated_at=now,
            ).where(PendingTask.id.in_(ids)).execute()
        return ids


def wake_all(now: dt.datetime | None = None, task_types: Iterable[str] | None = None) -> int:
    """Make every waiting row due now (the link came back: do not wait out the backoff)."""
    now = now or utcnow()
    with _db().atomic():
        q = PendingTask.update(next_retry_at=now, updated_at=now).where(
            (PendingTask.status == TaskStatus.PENDING) & (PendingTask.next_retry_at > now)
        )
        if task_types is not None:
            q = q.where(PendingTask.task_type.in_(list(task_types)))
        return q.execute()


# Rows `retry_failed` re-drives: dead letters, and those an earlier release stopped as expired.
REDRIVABLE = (TaskStatus.FAILED, TaskStatus.EXPIRED)


def redrivable(task_ids: Iterable[int] | None = None) -> list[PendingTask]:
    """The rows `retry_failed(task_ids)` would re-drive."""
    q = PendingTask.select().where(PendingTask.status.in_(REDRIVABLE))
    if task_ids is not None:
        q = q.where(PendingTask.id.in_(list(task_ids)))
    return list(q.order_by(PendingTask.id))


def retry_failed(task_ids: Iterable[int] | None = None, now: dt.datetime | None = None) -> int:
    """Re-drive dead-lettered rows by hand: a fresh set of attempts, due now. (The video a row
    works on is reset by `venuecam.redrive`, which calls this.)"""
    now = now or utcnow()
    with _db().atomic():
        q = PendingTask.update(
            status=TaskStatus.PENDING, attempts=0, next_retry_at=now, finished_at=None, updated_at=now
        ).where(PendingTask.status.in_(REDRIVABLE))
        if task_ids is not None:
            q = q.where(PendingTask.id.in_(list(task_ids)))
        return q.execute()


def reopen(task_ids: Iterable[int], now: dt.datetime | None = None) -> int:
    """Rows that ended without success (failed, cancelled, expired) -> pending with a fresh
    set of attempts, due now. Completed and active rows are left alone."""
    now = now or utcnow()
    ids = list(task_ids)
    with _db().atomic():
        return (
            PendingTask.update(
                status=TaskStatus.PENDING, attempts=0, next_retry_at=now, finished_at=None, updated_at=now
            )
            .where(PendingTask.id.in_(ids) & PendingTask.status.in_([*REDRIVABLE, TaskStatus.CANCELLED]))
            .execute()
        )


def cancel_for_booking(booking_id: str, reason: str, now: dt.datetime | None = None) -> int:
    now = now or utcnow()
    with _db().atomic():
        return (
            PendingTask.update(status=TaskStatus.CANCELLED, error_msg=reason, updated_at=now, finished_at=now)
            .where((PendingTask.booking_id == booking_id) & (PendingTask.status.in_(ACTIVE)))
            .execute()
        )


def cancel(
    task_ids: Iterable[int],
    reason: str,
    now: dt.datetime | None = None,
    statuses: Sequence[str] = (TaskStatus.PENDING,),
) -> list[int]:
    """Rows in `statuses` (waiting ones by default; never running ones: their handler is
    mid-way) -> cancelled with `reason`. Returns the ids cancelled."""
    now = now or utcnow()
    ids = list(task_ids)
    with _db().atomic():
        hit = [
            r.id
            for r in PendingTask.select(PendingTask.id).where(
                PendingTask.id.in_(ids) & PendingTask.status.in_(list(statuses))
            )
        ]
        if hit:
            PendingTask.update(
                status=TaskStatus.CANCELLED, error_msg=reason[:2000], updated_at=now, finished_at=now,
                next_retry_at=None,
            ).where(PendingTask.id.in_(hit)).execute()  # fmt: skip
        return hit


def rows_for_video(booking_id: str, unique_id: str, statuses: Sequence[str] = ACTIVE) -> list[PendingTask]:
    """Rows working on one video (any revision) in `statuses`."""
    rows = PendingTask.select().where(
        (PendingTask.booking_id == booking_id) & PendingTask.status.in_(list(statuses))
    )
    return [r for r in rows if r.data.get("unique_id") == unique_id]


def overdue(
    expiration_hours: float, now: dt.datetime | None = None, task_ids: Iterable[int] | None = None
) -> list[PendingTask]:
    """Waiting or running rows created longer ago than the expiration: *expired* work. It is
    still delivered; this is what status, the LEDs and `venuecam queue cancel` show."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(hours=expiration_hours)
    q = PendingTask.select().where(PendingTask.status.in_(ACTIVE) & (PendingTask.created_at < cutoff))
    if task_ids is not None:
        q = q.where(PendingTask.id.in_(list(task_ids)))
    return list(q.order_by(PendingTask.priority_ts, PendingTask.id))


def revive_legacy_expired(now: dt.datetime | None = None) -> list[int]:
    """Rows an earlier release marked `expired` (and so stopped) go back to waiting, due now:
    expiry no longer stops work. Called at worker start."""
    now = now or utcnow()
    with _db().atomic():
        ids = [
            r.id for r in PendingTask.select(PendingTask.id).where(PendingTask.status == TaskStatus.EXPIRED)
        ]
        if ids:
            PendingTask.update(
                status=TaskStatus.PENDING, next_retry_at=now, finished_at=None, updated_at=now
            ).where(PendingTask.id.in_(ids)).execute()
        return ids


def purge_completed(older_than_days: float, now: dt.datetime | None = None) -> int:
    """Remove completed rows older than the retention (seed 000: 7 days); failed rows stay."""
    now = now or utcnow()
    cutoff = now - dt.timedelta(days=older_than_days)
    with _db().atomic():
        return (
            PendingTask.delete()
            .where((PendingTask.status == TaskStatus.COMPLETED) & (PendingTask.finished_at < cutoff))
            .execute()
        )


# The times `rebase` moves: every one the ledger compares with "now".
TIME_COLUMNS = ("next_retry_at", "created_at", "updated_at", "started_at", "heartbeat_at", "dispatched_at",
                "finished_at")  # fmt: skip


def rebase(delta_s: float, new_clock: tuple[dt.datetime, dt.datetime]) -> int:
    """The wall clock jumped by `delta_s` (worker/clockwatch.py saw `wall - monotonic` move):
    move the times of every row not completed by the same amount, so a retry still waits
    what it had left and expiry still counts real waiting (a forward jump of a week must not
    expire every upload; a backward one must not stall retries). Rows last written within
    `new_clock` (since the jump, by its new clock) are left as they are. Returns rows moved."""
    delta = dt.timedelta(seconds=delta_s)
    since, until = new_clock
    moved = 0
    with _db().atomic():
        rows = list(
            PendingTask.select().where(
                (PendingTask.status != TaskStatus.COMPLETED)
                & ((PendingTask.updated_at < since) | (PendingTask.updated_at > until))
            )
        )
        for row in rows:
            fields = {
                getattr(PendingTask, c): getattr(row, c) + delta
                for c in TIME_COLUMNS
                if isinstance(getattr(row, c), dt.datetime)
            }
            moved += PendingTask.update(fields).where(PendingTask.id == row.id).execute()
    return moved


def counts() -> dict[tuple[str, str], int]:
    """(task_type, status) -> count, from the ledger (the truth for every status display)."""
    q = PendingTask.select(
        PendingTask.task_type, PendingTask.status, fn.COUNT(PendingTask.id).alias("n")
    ).group_by(PendingTask.task_type, PendingTask.status)
    return {(r.task_type, r.status): r.n for r in q}
