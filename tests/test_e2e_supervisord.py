"""The whole appliance under supervisord, from a booking on the platform to its notification.

Real parts only: supervisord running every program, ffmpeg recording a test pattern, the
platform simulator and the moto S3 server as their own processes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from conftest import base_sections, render_toml
from venuecam import db as db_mod
from venuecam.models import PendingTask, TaskStatus, Video, VideoStatus

TZ = ZoneInfo("Asia/Jakarta")


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, TZ)


def supervisor_states(sock: Path) -> dict[str, str]:
    from supervisor.xmlrpc import SupervisorTransport

    proxy = xmlrpc.client.ServerProxy(
        "http://localhost", transport=SupervisorTransport(None, None, f"unix://{sock}")
    )
    return {f"{p['group']}:{p['name']}": p["statename"] for p in proxy.supervisor.getAllProcessInfo()}


def wait_until(what: str, fn: Any, timeout: float, interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture
def appliance(tmp_path: Path, s3: Any, platform: Any) -> Any:
    sections = base_sections(
        tmp_path,
        device={"log_dir": str(tmp_path / "logs")},
        booking_api={"base_url": platform.url, "sync_interval_s": 60},
        storage={"endpoint_url": s3.endpoint},
        cameras=[
            {
                "name": "CAMERA_A",
                "field_id": 1,
                "source": "testsrc",
                "segment_seconds": 2,
                "width": 320,
                "height": 240,
                "fps": 10,
                "bitrate_kbps": 300,
            }
        ],  # fmt: skip
        clips={"grace_s": 3, "scan_interval_s": 60},
        connectivity={"tcp_targets": [], "dns_names": [], "interval_s": 1.0},
    )
    cfg_path = tmp_path / "venuecam.toml"
    cfg_path.write_text(render_toml(sections))
    proc = subprocess.Popen(
        [sys.executable, "-m", "venuecam", "--config", str(cfg_path), "supervise"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
    )  # fmt: skip
    yield {"path": cfg_path, "tmp": tmp_path, "proc": proc}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_booking_recorded_cut_uploaded_and_notified(appliance: Any, s3: Any, platform: Any) -> None:
    start = int(time.time()) + 4
    end = start + 14
    platform.add_bookings([{
        "booking_id": "BK-E2E-1", "order_detail_id": 789, "field_id": 1, "field_name": "Lapangan A",
        "date": local(start).date().isoformat(), "start_time": local(start).strftime("%H:%M:%S"),
        "end_time": local(end).strftime("%H:%M:%S"), "status": "success",
        "user_name": "John Doe", "user_phone": "081234567890",
    }])  # fmt: skip
    tmp: Path = appliance["tmp"]
    sock = tmp / "run" / "supervisor.sock"

    wait_until("supervisord's socket", sock.exists, 30)
    states = wait_until(
        "every program RUNNING",
        lambda: (s := supervisor_states(sock)) and all(v == "RUNNING" for v in s.values()) and s,
        60,
    )
    assert set(states) == {"capture:CAMERA_A", "worker:worker", "watchdog:watchdog", "statusd:statusd"}

    uid = "BK-E2E-1-CAMERA_A-full"

    def delivered() -> list[dict[str, Any]]:
        return [n for n in platform.notifications() if n.get("unique_id") == uid]

    got = wait_until("the platform's notification", delivered, 150, interval=2)
    note = got[0]
    assert len(delivered()) == 1

    # The objects are in the bucket, and the MP4's bytes are the clip's SHA-256.
    client = s3.client()
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="venue-videos")["Contents"])
    date = local(start).date().isoformat()
    prefix = f"42/1/{date}/BK-E2E-1/CAMERA_A/{uid}"
    assert keys == sorted([f"{prefix}.jpg", f"{prefix}.mp4", f"{prefix}_preview.mp4"])
    body = client.get_object(Bucket="venue-videos", Key=f"{prefix}.mp4")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == note["sha256"]
    assert len(body) == note["size_bytes"]
    assert abs(note["duration_seconds"] - (end - start)) <= 1.5

    database = db_mod.open_db(tmp / "data" / "venuecam.db")
    try:
        video = Video.get(Video.unique_id == uid)
        assert video.status == VideoStatus.NOTIFIED and video.sha256 == note["sha256"]
        statuses = {(r.task_type, r.status) for r in PendingTask.select() if r.task_type != "sync"}
        # Built and uploaded live while the booking was played (clips.live): only the
        # notification went through the queue.
        assert statuses == {("notify_ayo_api", TaskStatus.COMPLETED)}
        # The booking syncs ran as ledger rows too (the start-up one at least is done).
        assert (
            PendingTask.select()
            .where((PendingTask.task_type == "sync") & (PendingTask.status == TaskStatus.COMPLETED))
            .exists()
        )
    finally:
        database.close()
