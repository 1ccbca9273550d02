"""The huey instance and the task names. One module creates huey; tasks are registered on it.

Task names are explicit: renaming a function must not strand queued messages (PITFALLS).
huey is only the executor: every task's truth is its ledger row, so a lost huey message
is re-dispatched by the reconciler and a duplicate one finds nothing to claim.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from huey import SqliteHuey

if TYPE_CHECKING:
    from venuecam.config import Config

EXECUTE = "venuecam.execute"
RUN_JOB = "venuecam.run_job"
SCAN = "venuecam.scan"


def make_huey(cfg: Config) -> SqliteHuey:
    cfg.huey_path.parent.mkdir(parents=True, exist_ok=True)
    # results=False: nobody reads task results (the ledger holds outcomes); fsync because the
    # box loses power; its own file so the app's transactions never lock huey's (PITFALLS).
    return SqliteHuey(
        name="venuecam",
        filename=str(cfg.huey_path),
        results=False,
        utc=True,
        fsync=True,
        timeout=15,
    )
