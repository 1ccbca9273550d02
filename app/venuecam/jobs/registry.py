"""Sync handlers by job type. Adding a sync type is one function and one `register` line.

A handler gets a `JobContext`, reports progress through `ctx.progress(...)`, may write job
log lines with `ctx.log(level, message)`, and returns a JSON-able result dict. It raises on
failure: `PermanentError` (e.g. `AuthError`) fails the job at once, anything else is retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from venuecam.config import Config


@dataclass(frozen=True)
class JobContext:
    cfg: Config
    job_id: str
    job_type: str
    attempt: int
    progress: Callable[..., None]
    log: Callable[[str, str], None]


Handler = Callable[[JobContext], dict[str, Any]]


def sync_bookings_job(ctx: JobContext) -> dict[str, Any]:
    # Imported here: the booking client pulls in requests, which only the worker needs.
    from venuecam.booking.sync import sync_bookings

    result = sync_bookings(ctx.cfg, progress=ctx.progress)
    if hasattr(result, "as_dict"):
        return dict(result.as_dict())
    return dict(result)


HANDLERS: dict[str, Handler] = {
    "bookings": sync_bookings_job,
}


def register(job_type: str) -> Callable[[Handler], Handler]:
    """Decorator: `@register("fields")` makes `POST /api/sync/fields` run the function."""

    def add(fn: Handler) -> Handler:
        HANDLERS[job_type] = fn
        return fn

    return add
