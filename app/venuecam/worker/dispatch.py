"""Handing due ledger rows to huey. Safe to repeat: a duplicate message claims nothing.

Network work (uploads, notifications) is held back while the watchdog says OFFLINE: it
waits in the ledger and the watchdog's reconnect wake-up dispatches it (seed 000's
"offline: queue directly"). Clips need no network and always go.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from venuecam import ledger, logs
from venuecam.models import PendingTask, TaskType
from venuecam.timeutil import utcnow

if TYPE_CHECKING:
    from venuecam.worker.tasks import Tasks

log = logging.getLogger("worker")
NETWORK_TYPES = (TaskType.UPLOAD, TaskType.NOTIFY)


def online() -> bool:
    from venuecam.connectivity.state import is_online

    return is_online()


def queued_task_ids(tasks: Tasks) -> set[int]:
    """Ledger ids that huey already holds (queued or scheduled)."""
    ids: set[int] = set()
    for t in list(tasks.huey.pending()) + list(tasks.huey.scheduled()):
        if t.name == tasks.execute.name and t.args:
            ids.add(int(t.args[0]))
    return ids


def send(tasks: Tasks, rows: Iterable[PendingTask]) -> int:
    """Enqueue each row now (or at its retry time), oldest booking first."""
    rows = sorted(rows, key=lambda r: (r.priority_ts, r.id))
    now = utcnow()
    for row in rows:
        if row.next_retry_at and row.next_retry_at > now:
            tasks.execute.schedule(
                args=(row.id,), eta=row.next_retry_at
            )  # naive UTC, as huey(utc=True) expects
        else:
            tasks.execute(row.id)
    ledger.mark_dispatched([r.id for r in rows], now)
    return len(rows)


def dispatch_due(tasks: Tasks, include_network: bool | None = None) -> int:
    """Send every due row that huey does not already hold."""
    if include_network is None:
        include_network = online()
    held = queued_task_ids(tasks)
    rows = [r for r in ledger.due(limit=1000) if r.id not in held]
    if not include_network:
        rows = [r for r in rows if r.task_type not in NETWORK_TYPES]
    n = send(tasks, rows)
    if n:
        log.info(
            "%s Dispatched %d due task(s)%s",
            logs.QUEUE,
            n,
            "" if include_network else " (offline: clips only)",
        )
    return n


def dispatch_new(tasks: Tasks, row: PendingTask) -> None:
    """A row just created: run it at once unless it needs the network and we are offline."""
    if row.task_type in NETWORK_TYPES and not online():
        log.info(
            "%s Task %d (%s) queued: offline, will run when the link is back",
            logs.QUEUE,
            row.id,
            row.task_type,
        )
        return
    send(tasks, [row])
