"""Nothing lost and nothing quiet, as an operator meets it: the whole stack under supervisord,
the S3 server (moto) and the platform simulator as their own processes, ffmpeg for footage,
and the `venuecam` command the operator types.

- A clip task that dead-letters (no footage for its booking) is re-driven with `venuecam
  queue retry` once the footage is there: it is cut, uploaded and delivered.
- A notification waiting out a long backoff, and expired (waiting past queue.expiration_hours),
  shows in `venuecam status` and on the LEDs; `venuecam queue process` delivers it at once.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recorded import as_segments, index, record_segments
from resilience_rig import MIB, TZ, Stack, bucket_objects, wait_until

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

CAMERA = {"name": "CAMERA_A", "field_id": 1, "source": "testsrc", "segment_seconds": 2,
          "width": 320, "height": 240, "fps": 10, "bitrate_kbps": 300}  # fmt: skip


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, TZ)


def platform_booking(booking_id: str, start: float, end: float) -> dict[str, Any]:
    return {
        "booking_id": booking_id, "order_detail_id": 789, "field_id": 1, "field_name": "Lapangan A",
        "date": local(start).date().isoformat(), "start_time": local(start).strftime("%H:%M:%S"),
        "end_time": local(end).strftime("%H:%M:%S"), "status": "success",
        "user_name": "Ana", "user_phone": "0812",
    }  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path, s3: Any, platform: Any, request: pytest.FixtureRequest) -> Iterator[Stack]:
    s = Stack(tmp_path, s3.endpoint, platform.url, **request.param)
    yield s
    s.stop()
    s.close_db()


@pytest.mark.parametrize(
    "stack", [{"cameras": [CAMERA], "queue": {"clip_schedule_s": [1, 1]}}], indirect=True
)
def test_a_dead_lettered_clip_redriven_with_queue_retry_is_delivered(
    stack: Stack, s3: Any, platform: Any, tmp_path: Path
) -> None:
    start = float(int(time.time()) - 600)  # ten minutes ago: capture was not recording then
    uid = "BK-REDRIVE-1-CAMERA_A-full"
    platform.add_bookings([platform_booking("BK-REDRIVE-1", start, start + 6)])
    stack.start()
    row = wait_until("the clip task dead-lettered",
                     lambda: (r := stack.task("clip", uid)) and r["status"] == "failed" and r, 60)  # fmt: skip
    assert row["attempts"] == 3 and "no segments" in row["error_msg"]
    status = stack.status()
    assert status["queue"]["clip"]["failed"] == 1
    assert any("1 task(s) failed" in a for a in status["needs_attention"])
    assert stack.task("upload_r2", uid) is None  # nothing went on to upload an empty video

    # The booking's footage is found (indexed late); the operator re-drives the failed task.
    stack.db()
    index(as_segments(record_segments(tmp_path / "late", 10), start - 2), "CAMERA_A")
    out = stack.cli("queue", "retry")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("1 failed task(s) re-driven"), out.stdout

    note = wait_until(
        "the platform's notification", lambda: platform.summary()["delivered"].get(uid), 60, 1.0
    )
    objects = bucket_objects(s3.client())
    mp4 = next(k for k in objects if k.endswith(f"{uid}.mp4"))
    assert objects[mp4] == note["sha256"] and abs(note["duration_seconds"] - 6) <= 1.5
    assert [n["status"] for n in platform.summary()["notifications"]] == [201]
    for kind in ("clip", "upload_r2", "notify_ayo_api"):
        assert stack.task(kind, uid)["status"] == "completed", kind
    assert stack.status()["queue"]["clip"]["failed"] == 0


@pytest.mark.parametrize("stack", [{"queue": {"notify_schedule_s": [900]}}], indirect=True)
def test_expired_work_is_shown_and_queue_process_delivers_it_at_once(
    stack: Stack, s3: Any, platform: Any
) -> None:
    clip = stack.make_clip("BK-OLDWAIT-1", 2 * MIB)
    platform.set_fault("videos", mode="503", count=1)
    stack.close_db()
    stack.start()
    row = wait_until(
        "the notification failed once",
        lambda: (r := stack.task("notify_ayo_api", clip.unique_id)) and r["attempts"] == 1
        and r["status"] == "pending" and r,
        60,
    )  # fmt: skip
    retry_at = dt.datetime.fromisoformat(row["next_retry_at"])
    assert retry_at - dt.datetime.fromisoformat(row["updated_at"]) >= dt.timedelta(seconds=890)  # 15 min away
    # As if it had waited a week (an outage): queued longer ago than queue.expiration_hours.
    con = sqlite3.connect(stack.cfg.db_path, timeout=30)
    with con:
        con.execute(
            "UPDATE pending_tasks SET created_at = datetime('now', '-8 days') WHERE id = ?", (row["id"],)
        )
    con.close()

    def expired_shown() -> dict[str, Any] | None:
        data = stack.status()
        leds = data.get("leds") or {}
        return data if "1 task(s) expired" in leds.get("causes", []) else None

    data = wait_until("the fault LED shows expired work", expired_shown, 30, 1.0)
    assert data["expired"]["total"] == 1 and data["expired"]["by_type"]["notify_ayo_api"] == 1
    assert any("1 task(s) expired" in a and "queue cancel --expired" in a for a in data["needs_attention"])
    assert data["leds"]["leds"]["fault"]["mode"] == "blink"
    listed = stack.cli("queue", "list", "--status", "expired")
    assert listed.returncode == 0 and "notify_ayo_api" in listed.stdout and listed.stdout.count("\n") == 2

    sent_at = time.monotonic()
    out = stack.cli("queue", "process")
    assert out.returncode == 0 and "1 task(s) dispatched" in out.stdout, out.stdout + out.stderr
    note = wait_until(
        "the notification", lambda: platform.summary()["delivered"].get(clip.unique_id), 30, 0.2
    )
    assert time.monotonic() - sent_at < 30  # not at its retry time, 15 minutes away
    assert note["sha256"] == clip.sha256
    assert [n["status"] for n in platform.summary()["notifications"]] == [201]
    wait_until("nothing expired any more", lambda: stack.status()["expired"]["total"] == 0, 30, 1.0)
    assert stack.task("notify_ayo_api", clip.unique_id)["status"] == "completed"
