"""A box that booted with a stale clock, under supervisord, its wall clock faked by libfaketime
(the monotonic clock real), as a Pi without RTC boots on fake-hwclock's last saved time:

- while time has not synced, segments are filed with clock_ok 0 and `venuecam status`
  says "clock not set";
- then NTP steps the clock eight days forward: the worker sees the jump, re-bases the
  ledger (a waiting upload does not become eight days old, i.e. expired), syncs the
  bookings of the new "today", re-times the segments from their monotonic starts, and the
  booking recorded before the sync is cut from them, uploaded and notified once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from faketime import FakeClock, build_shim
from resilience_rig import Stack, wait_until
from venuecam import ledger, wallclock
from venuecam.models import TaskType
from venuecam.timeutil import to_naive_utc

pytestmark = pytest.mark.slow

TZ = ZoneInfo("Asia/Jakarta")
STALE = 8 * 86400  # fake-hwclock's time after a week and a day switched off
UID = "BK-CLOCK-1-CAMERA_A-full"
WAITING_UID = "BK-WAIT-CAMERA_A-full"
CAMERA = {"name": "CAMERA_A", "field_id": 1, "source": "testsrc", "segment_seconds": 2,
          "width": 320, "height": 240, "fps": 10, "bitrate_kbps": 300}  # fmt: skip


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, TZ)


@pytest.fixture
def box(tmp_path: Path, s3: Any, platform: Any) -> Iterator[tuple[Stack, FakeClock, Path]]:
    clock = FakeClock(tmp_path, build_shim(tmp_path))
    clock.set("-8d")
    flag = tmp_path / "synchronized"  # absent: timesyncd has not synchronised yet
    env = {**clock.env, wallclock.ENV_SYNC_FLAG: str(flag)}
    stack = Stack(tmp_path, s3.endpoint, platform.url, env=env, cameras=[CAMERA])
    yield stack, clock, flag
    stack.stop()
    stack.close_db()


def status(stack: Stack) -> dict[str, Any]:
    """`venuecam status --json` as an operator on the box runs it (the box's clock and seam)."""
    out = subprocess.run(
        [sys.executable, "-m", "venuecam", "--config", str(stack.path), "status", "--json"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **stack.env},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def segments(stack: Stack) -> list[tuple[float, float, int]]:
    con = sqlite3.connect(stack.cfg.db_path, timeout=30)
    try:
        return list(con.execute("SELECT start_ts, end_ts, clock_ok FROM segments ORDER BY start_ts"))
    finally:
        con.close()


def test_a_stale_clock_stepped_forward_loses_nothing_and_expires_nothing(
    box: tuple[Stack, FakeClock, Path], platform: Any
) -> None:
    stack, clock, flag = box
    start = int(time.time()) + 10
    end = start + 12
    platform.add_bookings([{
        "booking_id": "BK-CLOCK-1", "order_detail_id": 789, "field_id": 1, "field_name": "Lapangan A",
        "date": local(start).date().isoformat(), "start_time": local(start).strftime("%H:%M:%S"),
        "end_time": local(end).strftime("%H:%M:%S"), "status": "success",
        "user_name": "John Doe", "user_phone": "081234567890",
    }])  # fmt: skip
    # An upload waiting out an hour's backoff, queued by the stale clock.
    stack.db()
    waiting, _ = ledger.enqueue(
        TaskType.UPLOAD, f"{TaskType.UPLOAD}:{WAITING_UID}", {"unique_id": WAITING_UID}, max_attempts=3,
        now=to_naive_utc(time.time() - STALE), delay_s=3600,
    )  # fmt: skip
    stack.close_db()
    stack.start()

    wait_until("segments filed by the unset clock", lambda: len(segments(stack)) >= 3, 60)
    assert {ok for _, _, ok in segments(stack)} == {0}
    faults = status(stack)["needs_attention"]
    assert any(f.startswith("clock not set") for f in faults), faults

    wait_until("the booking over", lambda: time.time() > end + 1, 60)
    clock.set("+0")  # NTP steps the clock eight days forward
    flag.touch()

    def delivered() -> list[dict[str, Any]]:
        return [n for n in platform.notifications() if n.get("unique_id") == UID]

    note = wait_until("the notification", delivered, 150, interval=1)[0]
    assert len(delivered()) == 1
    assert abs(note["duration_seconds"] - (end - start)) <= 1.5  # cut from the re-timed segments
    log = stack.log("worker")
    assert "The wall clock jumped by +6912" in log, log[-3000:]
    assert "re-timed" in log
    wait_until("every segment re-timed", lambda: {ok for _, _, ok in segments(stack)} == {1}, 10)
    now = time.time()
    assert all(now - 300 < s < now for s, _, _ in segments(stack))  # none left eight days back

    data = status(stack)
    assert not any("clock not set" in f for f in data["needs_attention"]), data["needs_attention"]
    assert not data["expired"]["total"], data["expired"]  # eight days of clock, minutes of waiting
    row = stack.task(TaskType.UPLOAD, WAITING_UID)
    assert row is not None and row["id"] == waiting.id and row["status"] == "pending"
    retry_at = dt.datetime.fromisoformat(row["next_retry_at"]).replace(tzinfo=dt.UTC).timestamp()
    assert now + 3000 < retry_at < now + 3600  # still about an hour to wait, not eight days gone
    assert os.environ.get("LD_PRELOAD") is None  # this process was never faked
