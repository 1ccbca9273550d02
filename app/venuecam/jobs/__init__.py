"""Background sync jobs (seed 002): one job per run, reused until forced, logs per job (seed 003).

- `registry`: job type -> handler; a new sync type is one function.
- `service`: what statusd and the schedule ask for (request, start, cleanup, read).
- `runner`: runs one job in the calling process (the worker), with timeout and retries.
"""

from venuecam.jobs.registry import HANDLERS, JobContext, register
from venuecam.jobs.service import cleanup_stuck, get_job, job_logs, list_jobs, request_sync, start_job

__all__ = [
    "HANDLERS",
    "JobContext",
    "cleanup_stuck",
    "get_job",
    "job_logs",
    "list_jobs",
    "register",
    "request_sync",
    "start_job",
]
