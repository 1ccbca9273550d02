"""Sync jobs: the runner (timeout, retries with backoff, progress, logs) with handlers
registered in the registry, and seed 002's four cases through the real statusd.

A job runs as the worker runs it: its ledger row executed by `worker.execute.execute_row`,
each failed attempt scheduled by the ledger (`queue.sync_schedule_s`), with the clock passed in."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fixtures_status import StatusBox
from venuecam import jobs, ledger, shared_state
from venuecam.config import Config
from venuecam.errors import AuthError, BadInputError
from venuecam.jobs import runner, service
from venuecam.jobs.registry import JobContext
from venuecam.models import JobLog, SyncJob, TaskStatus
from venuecam.worker.app import make_huey
from venuecam.worker.execute import execute_row
from venuecam.worker.tasks import HueyTasks, register

NOW = dt.datetime(2026, 3, 1, 12, 0, 0)


def run_job(
    cfg: Config, tasks: HueyTasks, job_id: str, now: dt.datetime = NOW
) -> tuple[dict[str, Any], list[float]]:
    """Execute the job's ledger row until the job is finished, each attempt at the time the
    ledger scheduled it. Returns the job's final status and the waits between attempts."""
    row = service.ledger_row(job_id)
    assert row is not None
    waits: list[float] = []
    t = now
    for _ in range(10):
        execute_row(cfg, tasks, row.id, now=t)
        row = ledger.get(row.id)
        if row.status != TaskStatus.PENDING:
            break
        waits.append((row.next_retry_at - t).total_seconds())
        t = row.next_retry_at
    return service.get_job(job_id), waits


@pytest.fixture
def tasks(cfg: Config) -> HueyTasks:
    """The worker's tasks on a huey queue file of this test's own (nothing consumes it)."""
    return register(make_huey(cfg), cfg)


class InlineWorker:
    """Runs the job right here, as the worker process would (the real executor, no stand-in)."""

    def __init__(self, cfg: Config, tasks: HueyTasks) -> None:
        self.cfg = cfg
        self.tasks = tasks
        self.ran: list[str] = []

    def run_job(self, job_id: str) -> None:
        self.ran.append(job_id)
        run_job(self.cfg, self.tasks, job_id)


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The registry, restored after the test (tests add their own job types)."""
    saved = dict(jobs.HANDLERS)
    yield jobs.HANDLERS
    jobs.HANDLERS.clear()
    jobs.HANDLERS.update(saved)


def test_a_registered_handler_runs_to_completion_with_progress_and_logs(
    cfg: Config, database: Any, handlers: dict, tasks: HueyTasks
) -> None:
    @jobs.register("fields")
    def sync_fields(ctx: JobContext) -> dict[str, Any]:
        ctx.progress("fetching", "Fetching batch 1", 0, 50, 100)
        ctx.log("info", "got 50 fields")
        ctx.progress("fetching", "Fetching batch 2", 50, 100, 100)
        return {"success": True, "total": 100}

    job_id = service.start_job(cfg, "fields", "test", now=NOW)
    final, waits = run_job(cfg, tasks, job_id)
    assert final["found"] and waits == []
    assert (final["state"], final["progress"], final["attempts"]) == ("completed", 100, 1)
    assert final["result"] == {"success": True, "total": 100}
    assert final["progressInfo"]["stage"] == "done"
    logs = service.job_logs(job_id)
    assert [(row["level"], row["message"]) for row in logs] == [
        ("info", "Job created (requested by test)"),
        ("info", "Attempt 1/3 started"),
        ("info", "got 50 fields"),
        ("info", "Completed: success=True, total=100"),
    ]
    assert logs[0]["createdAt"] == "2026-03-01T12:00:00Z" and logs[0]["jobId"] == job_id
    # run again (a duplicate delivery): nothing happens
    assert run_job(cfg, tasks, job_id)[0]["attempts"] == 1
    assert runner.run_attempt(cfg, job_id, 2, 3, lambda e: None, now=NOW).state == "not run"
    assert service.get_job(job_id)["attempts"] == 1
    assert service.ledger_row(job_id).status == TaskStatus.COMPLETED


def test_failures_are_retried_with_exponential_backoff(
    cfg: Config, database: Any, handlers: dict, tasks: HueyTasks
) -> None:
    calls: list[int] = []

    @jobs.register("flaky")
    def flaky(ctx: JobContext) -> dict[str, Any]:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"platform timeout #{ctx.attempt}")
        return {"success": True}

    job_id = service.start_job(cfg, "flaky", "test", now=NOW)
    final, waits = run_job(cfg, tasks, job_id)
    assert calls == [1, 2, 3] and waits == [5.0, 10.0]  # queue.sync_schedule_s
    assert (final["state"], final["attempts"]) == ("completed", 3)
    levels = [row["level"] for row in service.job_logs(job_id)]
    assert levels.count("error") == 2 and levels.count("warn") == 2


def test_a_job_fails_after_three_attempts_and_at_once_on_a_permanent_error(
    cfg: Config, database: Any, handlers: dict, tasks: HueyTasks
) -> None:
    @jobs.register("broken")
    def broken(ctx: JobContext) -> dict[str, Any]:
        raise ValueError("bad page from platform")

    @jobs.register("unauthorized")
    def unauthorized(ctx: JobContext) -> dict[str, Any]:
        raise AuthError("platform answered 401")

    final, waits = run_job(cfg, tasks, service.start_job(cfg, "broken", "t", now=NOW))
    assert (final["state"], final["attempts"]) == ("failed", 3)
    assert final["error"] == "ValueError: bad page from platform (after 3 attempts)"
    assert waits == [5.0, 10.0]
    # The job's story is in its row; its ledger row is done, not a dead letter lighting the LED.
    assert service.ledger_row(final["jobId"]).status == TaskStatus.COMPLETED
    final, waits = run_job(cfg, tasks, service.start_job(cfg, "unauthorized", "t", now=NOW))
    assert (final["state"], final["attempts"], waits) == ("failed", 1, [])
    assert "not retried" in final["error"]
    assert shared_state.get_json(shared_state.PLATFORM_AUTH)["ok"] is False  # status and the LEDs say so


def test_a_job_past_its_timeout_is_stopped_at_its_next_progress_call(
    cfg: Config, database: Any, handlers: dict
) -> None:
    stopped = threading.Event()

    @jobs.register("slow")
    def slow(ctx: JobContext) -> dict[str, Any]:
        try:
            for i in range(10_000):
                ctx.progress("fetching", f"batch {i}", i, i, 10_000)
                stopped.wait(0.02)
        except runner.JobStopped:
            stopped.set()
            raise
        return {"success": True}

    job_id = service.start_job(cfg, "slow", "t", now=NOW)
    outcome = runner.run_attempt(cfg, job_id, 1, 1, lambda e: None, now=NOW, timeout_s=0.3)
    final = outcome.status
    assert outcome.state == "failed" and isinstance(outcome.error, runner.JobStopped)
    assert final["state"] == "failed" and final["error"].startswith("timed out after 0.3 s")
    assert stopped.wait(5), "the handler was told to stop"


def test_start_job_reuses_an_active_job_and_cleanup_fails_stuck_ones(cfg: Config, database: Any) -> None:
    first = service.start_job(cfg, "bookings", "schedule", now=NOW)
    assert service.start_job(cfg, "bookings", "schedule", now=NOW + dt.timedelta(minutes=1)) == first
    # never started for 11 minutes: stuck
    result = service.cleanup_stuck(cfg, now=NOW + dt.timedelta(minutes=11))
    assert result == {
        "success": True,
        "message": "Cleaned up 1 stuck job(s)",
        "cleaned": 1,
        "breakdown": {"active": 0, "waiting": 1, "completed": 0, "failed": 0},
    }
    assert service.get_job(first)["state"] == "failed"
    assert service.job_logs(first)[-1]["level"] == "warn"
    # an active job whose heartbeat stopped is stuck too; a fresh one is not
    second = service.start_job(cfg, "bookings", "schedule", now=NOW + dt.timedelta(minutes=12))
    assert second != first
    SyncJob.update(state="active", heartbeat_at=NOW + dt.timedelta(minutes=12)).where(
        SyncJob.job_id == second
    ).execute()
    assert service.cleanup_stuck(cfg, now=NOW + dt.timedelta(minutes=13))["cleaned"] == 0
    assert service.cleanup_stuck(cfg, now=NOW + dt.timedelta(minutes=20))["breakdown"]["active"] == 1
    assert [j["jobId"] for j in service.list_jobs()] == [second, first]


def test_unknown_sync_types_are_refused_and_change_nothing(
    cfg: Config, database: Any, tasks: HueyTasks
) -> None:
    with pytest.raises(BadInputError, match="unknown sync type 'weather'"):
        service.request_sync(cfg, "weather", False, "t", InlineWorker(cfg, tasks), now=NOW)
    with pytest.raises(BadInputError):
        service.start_job(cfg, "weather", "t")
    assert SyncJob.select().count() == 0 and JobLog.select().count() == 0


def test_seed_002_four_cases_through_statusd(status_box: StatusBox, handlers: dict) -> None:
    c = status_box.client
    # 1. first sync: a new job, queued (the worker client queued it; no consumer runs here)
    status, first = c.post("/api/sync/bookings")
    assert status == 202, first
    assert first == {
        "success": True,
        "message": "Sync started in the background.",
        "status": "queued",
        "jobId": first["jobId"],
    }
    job_a = first["jobId"]
    assert job_a.startswith("sync-bookings-")

    # 2. sync again while A runs: the same job and its progress. The worker's part is played
    # by the real runner in this process, with a handler registered for "bookings".
    at_half, release = threading.Event(), threading.Event()

    def bookings(ctx: JobContext) -> dict[str, Any]:
        ctx.progress("fetching", "Fetching batch 52: offset 52, limit 100", 52, 5200, 10000)
        at_half.set()
        assert release.wait(30)
        return {"success": True, "message": "Sync completed", "total": 10000}

    handlers["bookings"] = bookings
    worker_tasks = register(make_huey(status_box.cfg), status_box.cfg)
    row = service.ledger_row(job_a)
    run = threading.Thread(target=execute_row, args=(status_box.cfg, worker_tasks, row.id))
    run.start()
    assert at_half.wait(30)
    status, again = c.post("/api/sync/bookings")
    assert status == 200
    assert (again["success"], again["status"], again["jobId"], again["progress"]) == (
        False,
        "running",
        job_a,
        52,
    )
    assert again["message"] == "A sync is still running. Use force=true to start again."
    status, job = c.get(f"/api/jobs/{job_a}")
    assert status == 200 and job["found"] is True and job["state"] == "active" and job["type"] == "bookings"
    assert job["progressInfo"] == {
        "stage": "fetching",
        "message": "Fetching batch 52: offset 52, limit 100",
        "offset": 52,
        "currentTotal": 5200,
        "expectedTotal": 10000,
    }
    assert job["requestedBy"].startswith("unix:") and isinstance(job["createdAt"], int)
    release.set()
    run.join(30)

    # 3. sync again after A completed: A's result and how long ago
    status, done = c.post("/api/sync/bookings")
    assert status == 200
    assert (done["success"], done["status"], done["jobId"]) == (True, "completed", job_a)
    assert done["lastSync"]["minutesAgo"] == 0 and isinstance(done["lastSync"]["finishedAt"], int)
    assert done["lastSync"]["result"] == {"success": True, "message": "Sync completed", "total": 10000}
    assert done["message"] == "The last sync succeeded 0 minutes ago. Use force=true to sync again."
    status, logs = c.get(f"/api/jobs/{job_a}/logs")
    assert status == 200 and logs["count"] == len(logs["logs"]) >= 3
    assert {"id", "jobId", "level", "message", "createdAt"} == set(logs["logs"][0])
    assert logs["logs"][-1]["message"].startswith("Completed:")

    # 4. force: every previous job cleaned, a new one
    status, forced = c.post("/api/sync/bookings?force=true")
    assert status == 202
    assert (forced["success"], forced["status"], forced["forced"]) == (True, "queued", True)
    assert forced["jobId"] != job_a
    assert forced["message"] == "All previous jobs were cleaned up. A new sync started in the background."
    assert c.get(f"/api/jobs/{job_a}")[0] == 404
    status, listing = c.get("/api/jobs")
    assert [j["jobId"] for j in listing["data"]] == [forced["jobId"]]
