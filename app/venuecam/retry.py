"""The retry schedules: how many attempts a unit of work gets and how long it waits between them.

Pure functions of the config's lists (`queue.*_schedule_s`), shared by the ledger (which
records when a failed row is due again) and the sync-job runner (which tells the user when
its next attempt runs), so both always agree.

The first attempt runs at once; `schedule[i]` is the wait after the (i+1)-th failed attempt,
so a schedule of n delays gives n + 1 attempts. Seed 000's queue ("5 attempts at 5 min,
20 min, 45 min, 2 h, 5 h") comes after a direct first try ("online: try direct first, fall
back to the queue"); here that direct try is the ledger row's first attempt, so an upload is
tried 6 times in all and every delay of the seed's table is used (README, "Retries").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from venuecam.models import TaskType

if TYPE_CHECKING:
    from venuecam.config import Config


def max_attempts(schedule: Sequence[int]) -> int:
    """The first try runs at once; each delay in the schedule is one more attempt."""
    return len(schedule) + 1


def delay_after(schedule: Sequence[int], attempts: int) -> int:
    """Seconds to wait after the `attempts`-th failed attempt (the last delay repeats)."""
    if not schedule or attempts < 1:
        return 0
    return int(schedule[min(attempts, len(schedule)) - 1])


def retry_after(error: BaseException) -> float | None:
    """The wait a server asked for (HTTP 429 `Retry-After`), if the error carries one."""
    value = getattr(error, "retry_after", None)
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def schedule_for(cfg: Config, task_type: str) -> list[int]:
    """The configured schedule of a ledger task type."""
    return {
        TaskType.UPLOAD: cfg.queue.upload_schedule_s,
        TaskType.NOTIFY: cfg.queue.notify_schedule_s,
        TaskType.CLIP: cfg.queue.clip_schedule_s,
        TaskType.SYNC: cfg.queue.sync_schedule_s,
    }[task_type]
