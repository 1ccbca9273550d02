"""How other programs (watchdog, statusd) ask the worker to act: through huey's queue file.

They never execute work themselves; they enqueue messages the worker's consumer runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from venuecam.jobs import service as job_service
from venuecam.worker import dispatch
from venuecam.worker.app import make_huey
from venuecam.worker.tasks import HueyTasks, register

if TYPE_CHECKING:
    from venuecam.config import Config
    from venuecam.models import PendingTask


class WorkerClient:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self._tasks: HueyTasks | None = None

    @property
    def tasks(self) -> HueyTasks:
        if self._tasks is None:
            self._tasks = register(make_huey(self.cfg), self.cfg)
        return self._tasks

    def run_job(self, job_id: str) -> None:
        """Run a sync job (seed 002) in the worker: its ledger row, sent now (or, offline, when
        the link is back)."""
        dispatch.dispatch_new(self.tasks, job_service.ensure_ledger_row(self.cfg, job_id))

    def wake(self) -> int:
        """Every waiting row due now, and dispatched: the link is back, or a human said "process now"."""
        return dispatch.wake(self.tasks)

    def dispatch_due(self) -> int:
        return dispatch.dispatch_due(self.tasks)

    def send(self, rows: Iterable[PendingTask]) -> int:
        return dispatch.send(self.tasks, rows)

    def scan(self) -> None:
        self.tasks.scan()
