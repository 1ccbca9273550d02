"""Handing ledger rows to huey. Safe to repeat: a duplicate message claims nothing.

Network work (uploads, notifications, syncs) is held back while the watchdog says OFFLINE:
it waits in the ledger and the watchdog's reconnect wake-up dispatches it (seed 000's
"offline: queue directly"). Clips need no network and always go.

A row waiting out its backoff also has a message in huey's *schedule* for its retry time.
Dispatching due rows therefore skips only the rows already in huey's ready queue: a row the
wake-up (or "process now") made due gets a message that runs now, and the scheduled one,
when its time comes, finds nothing to claim.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from venuecam import ledger, logs
from venuecam.connectivity.state import is_online
from venuecam.models import PendingTask, TaskType
from venuecam.timeutil import utcnow
from venuecam.worker.tasks import Tasks

log = logging.getLogger("worker")
NETWORK_TYPES = (TaskType.UPLOAD, TaskType.NOTIFY, TaskType.SYNC)


def online() -> bool:
    return is_online()


def ready_task_ids(tasks: Tasks, now: dt.datetime | None = None) -> set[int]:
    """Ledger ids with a message in huey's queue that runs as soon as a thread is free. (A
    message sent with an eta waits in the queue too until the consumer moves it to the
    schedule: one whose eta is still ahead is not ready.)"""
    now = now or utcnow()
    ids: set[int] = set()
    for t in tasks.huey.pending():
        if t.name == tasks.execute.name and t.args and (t.eta is None or t.eta <= now):
            ids.add(int(t.args[0]))
    return ids


def send(tasks: Tasks, rows: Iterable[PendingTask], now: dt.datetime | None = None) -> int:
    """Enqueue each row now (or at its retry time), oldest booking first."""
    rows = sorted(rows, key=lambda r: (r.priority_ts, r.id))
    now = now or utcnow()
    for row in rows:
        if row.next_retry_at and row.next_retry_at > now:
            # naive UTC, as huey(utc=True) expects
            tasks.execute.schedule(args=(row.id,), eta=row.next_retry_at)
        else:
            tasks.execute(row.id)
    ledger.mark_dispatched([r.id for r in rows], now)
    return len(rows)


def dispatch_due(tasks: Tasks, include_network: bool | None = None, now: dt.datetime | None = None) -> int:
    """Send every due row that is not in huey's ready queue already, page by page."""
    if include_network is None:
        include_network = online()
    now = now or utcnow()
    ready = ready_task_ids(tasks, now)
    sent = 0
    after: tuple[float, int] | None = None
    while page := ledger.due(now, after=after):
        after = (page[-1].priority_ts, page[-1].id)
        rows = [r for r in page if r.id not in ready]
        if not include_network:
            rows = [r for r in rows if r.task_type not in NETWORK_TYPES]
        sent += send(tasks, rows, now)
    if sent:
        log.info("%s Dispatched %d due task(s)%s", logs.QUEUE, sent,
                 "" if include_network else " (offline: clips only)")  # fmt: skip
    return sent


def dispatch_new(tasks: Tasks, row: PendingTask) -> None:
    """A row just created: run it at once unless it needs the network and we are offline."""
    if row.task_type in NETWORK_TYPES and not online():
        log.info("%s Task %d (%s) queued: offline, will run when the link is back",
                 logs.QUEUE, row.id, row.task_type)  # fmt: skip
        return
    send(tasks, [row])


def wake(tasks: Tasks, now: dt.datetime | None = None) -> int:
    """Every waiting row due now, and dispatched: the link is back, or a human said "process
    now". Rows whose retry sits in huey's schedule run now too. Returns how many were sent."""
    now = now or utcnow()
    made_due = ledger.wake_all(now)
    sent = dispatch_due(tasks, include_network=True, now=now)
    log.info("%s Queue woken: %d waiting task(s) made due, %d dispatched", logs.QUEUE, made_due, sent)
    return sent
