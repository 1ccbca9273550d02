"""The worker's huey tasks: their names, and registering them on a huey instance.

Every process that enqueues (worker, watchdog, statusd) registers the same names, so a
message written by one is executable by the worker. Only the worker passes a `Runner`, the
code that executes them; the others register bodies that refuse to run, so this module (and
so statusd and the watchdog) never imports the handlers, ffmpeg, boto3 or the platform client.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from venuecam.worker.app import EXECUTE, RUN_JOB, SCAN

if TYPE_CHECKING:
    from huey import SqliteHuey

    from venuecam.config import Config


class TaskHandle(Protocol):
    """One registered huey task (huey's TaskWrapper): call it to enqueue, or schedule it."""

    name: str

    def __call__(self, *args: Any) -> Any: ...

    def schedule(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        eta: dt.datetime | None = None,
        delay: float | None = None,
    ) -> Any: ...


class Tasks(Protocol):
    """What dispatching needs: the huey instance and the tasks registered on it."""

    @property
    def huey(self) -> SqliteHuey: ...

    @property
    def execute(self) -> TaskHandle: ...  # execute(ledger row id)

    @property
    def scan(self) -> TaskHandle: ...  # a clip scan


class Runner(Protocol):
    """The worker's side: what each task does when the consumer runs it."""

    def execute(self, tasks: Tasks, task_id: int) -> None: ...

    def scan(self, tasks: Tasks) -> None: ...

    def legacy_job(self, tasks: Tasks, job_id: str) -> None: ...


@dataclass(frozen=True)
class HueyTasks:
    huey: SqliteHuey
    execute: TaskHandle
    scan: TaskHandle
    run_job: TaskHandle  # kept so messages queued by an earlier release still run


class NotTheWorker(RuntimeError):
    """A task body ran in a process that only enqueues (a wiring bug)."""


def register(huey: SqliteHuey, cfg: Config, runner: Runner | None = None) -> HueyTasks:
    """Register the tasks; `runner` only in the worker (the process that executes them)."""

    def run() -> Runner:
        if runner is None:
            raise NotTheWorker("only `venuecam worker` executes tasks")
        return runner

    @huey.task(name=EXECUTE)
    def execute(task_id: int) -> None:
        run().execute(tasks, task_id)

    @huey.task(name=SCAN)
    def scan() -> None:
        run().scan(tasks)

    @huey.task(name=RUN_JOB)
    def run_job(job_id: str) -> None:
        run().legacy_job(tasks, job_id)

    tasks = HueyTasks(huey=huey, execute=execute, scan=scan, run_job=run_job)
    return tasks
