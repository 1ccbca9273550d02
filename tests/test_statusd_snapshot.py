"""statusd keeps the database part of its snapshot until the database changes: a commit by
another process (another connection) or by statusd itself must show in the next answer."""

from __future__ import annotations

import datetime as dt
import sqlite3
from typing import Any

from venuecam import config as config_mod
from venuecam import ledger
from venuecam.models import TaskType
from venuecam.statusd.app import StatusApp

NOW = dt.datetime(2026, 3, 1, 12, 0, 0)


def _pending_uploads(app: StatusApp) -> int:
    return int(app.snapshot()["queue"][TaskType.UPLOAD]["pending"])


def test_snapshot_sees_commits_from_other_connections_and_its_own(
    cfg: config_mod.Config, database: Any
) -> None:
    app = StatusApp(cfg)
    assert _pending_uploads(app) == 0
    assert _pending_uploads(app) == 0  # unchanged database: the kept answer

    other = sqlite3.connect(cfg.db_path)  # as the worker would, from its own process
    with other:
        other.execute(
            "INSERT INTO pending_tasks (task_type, task_data, attempts, max_attempts, status, created_at,"
            " updated_at, unique_key, priority_ts, offline_failures, progress_json, bytes_done, bytes_total)"
            " VALUES ('upload_r2', '{}', 0, 5, 'pending', '2026-03-01 11:00:00', '2026-03-01 11:00:00',"
            " 'upload_r2:other', 0, 0, '{}', 0, 0)"
        )
    other.close()
    assert _pending_uploads(app) == 1

    ledger.enqueue(TaskType.UPLOAD, "upload_r2:own", {}, max_attempts=5, now=NOW)  # this connection
    assert _pending_uploads(app) == 2
    snap = app.snapshot()
    assert snap["failed_tasks"] == [] and snap["connectivity"]["status"] == "UNKNOWN"
