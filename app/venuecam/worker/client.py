"""How other programs (watchdog, statusd) ask the worker to act: through huey's queue file.

They never execute work themselves; they enqueue messages the worker's consumer runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from venuecam import ledger, logs
from venuecam.worker import dispatch
from venuecam.worker.app import make_huey
from venuecam.worker.tasks import Tasks, register

if TYPE_CHECKING:
    from venuecam.config import Config
    from venuecam.models import PendingTask

log = logging.getLogger("worker-client")


class WorkerClient:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._tasks: Tasks | None = None

    @property
    def tasks(self) -> Tasks:
        if self._tasks is None:
            self._tasks = register(make_huey(self.cfg), self.cfg)
        return self._tasks

    def run_job(self, job_id: str) -> None:
        """Run a sync job (seed 002) in the worker."""
        self.tasks.run_job(job_id)

    def wake(self) -> int:
        """Every waiting row due now, and dispatched: the link is back, or a human said "process now"."""
        n = ledger.wake_all()
        sent = dispatch.dispatch_due(self.tasks, include_network=True)
        log.info("%s Queue woken: %d waiting task(s) made due, %d dispatched", logs.QUEUE, n, sent)
        return sent

    def dispatch_due(self) -> int:
        return dispatch.dispatch_due(self.tasks)

    def send(self, rows: Iterable[PendingTask]) -> int:
        return dispatch.send(self.tasks, rows)

    def scan(self) -> None:
        self.tasks.scan()
