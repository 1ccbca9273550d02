"""booking-api.md 2b end to end: a booking whose times change after its video was delivered
gets it cut again and delivered as revision 2, same unique_id and keys, and the bucket keeps
serving the old MP4 until the new one is complete.

Real parts: the stack under supervisord, ffmpeg (the footage, the cuts), the S3 server (moto)
behind the fault proxy (which holds the new MP4's second part back for a while), and the
platform simulator, which keeps the highest revision and answers 409 to anything not newer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from faultproxy import FaultProxy
from recorded import as_segments, index, record_segments
from resilience_rig import BUCKET, TZ, Stack, bucket_objects, wait_until

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

UID = "BK-REV-1-CAMERA_A-full"


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, TZ)


def platform_booking(start: float, end: float) -> dict[str, Any]:
    return {
        "booking_id": "BK-REV-1", "order_detail_id": 789, "field_id": 1, "field_name": "Lapangan A",
        "date": local(start).date().isoformat(), "start_time": local(start).strftime("%H:%M:%S"),
        "end_time": local(end).strftime("%H:%M:%S"), "status": "success",
    }  # fmt: skip


@pytest.fixture
def stack(tmp_path: Path, proxy: FaultProxy, platform: Any) -> Iterator[Stack]:
    camera = {"name": "CAMERA_A", "field_id": 1, "source": "testsrc", "segment_seconds": 2,
              "width": 320, "height": 240, "fps": 10, "bitrate_kbps": 300}  # fmt: skip
    # 5 MiB parts from 5 MiB on: the clips below (about 8 MB) go up in two parts.
    s = Stack(tmp_path, proxy.endpoint, platform.url, cameras=[camera],
              storage={"multipart_threshold_mb": 5, "part_size_mb": 5})  # fmt: skip
    yield s
    s.stop()
    s.close_db()


def mp4_sha(s3: Any, key: str) -> str:
    return hashlib.sha256(s3.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()).hexdigest()


def test_a_changed_booking_is_cut_again_and_replaces_its_video_as_revision_2(
    stack: Stack, proxy: FaultProxy, s3: Any, platform: Any, tmp_path: Path
) -> None:
    # Footage from ten minutes ago (noisy, 6 Mbit/s, so a clip of it is two multipart parts).
    t0 = float(int(time.time()) - 600)
    stack.db()
    index(as_segments(record_segments(tmp_path / "segs", 16, 640, 480, bitrate_kbps=6000), t0), "CAMERA_A")
    stack.close_db()
    platform.add_bookings([platform_booking(t0 + 2, t0 + 10)])
    stack.start()
    first = wait_until("revision 1 delivered", lambda: platform.summary()["delivered"].get(UID), 120, 1.0)
    assert "revision" not in first and "replaces_sha256" not in first  # section 2's body, unchanged
    keys = sorted(k for k in bucket_objects(s3.client()) if UID in k)
    assert len(keys) == 3
    mp4 = next(k for k in keys if k.endswith(f"{UID}.mp4"))
    assert mp4_sha(s3, mp4) == first["sha256"]

    # The booking is extended by 4 s on the platform; the new MP4's part 2 is held back 8 s.
    changed_at = time.time()
    proxy.stall(after_bytes=256 * 1024, seconds=8, path_contains=f"{UID}.mp4", query_contains="partNumber=2")
    platform.add_bookings([platform_booking(t0 + 2, t0 + 14)])
    out = stack.cli("sync", "bookings", "--force", "--wait")
    assert out.returncode == 0, out.stdout + out.stderr

    def part2_stalled() -> bool:
        return any(
            r["method"] == "PUT" and f"{UID}.mp4" in r["key"] and r["part"] == 2 and r["t_start"] > changed_at
            and r["received"] > 0
            for r in proxy.stats()["records"]
        )  # fmt: skip

    wait_until("revision 2's upload at its second part", part2_stalled, 120, 0.2)
    # Mid-upload, the platform's URLs still serve the MP4 it was given: nothing half-written.
    assert mp4_sha(s3, mp4) == first["sha256"]
    assert platform.summary()["revisions"][UID] == 1

    second = wait_until("revision 2 delivered",
                        lambda: (p := platform.summary()["delivered"][UID]).get("revision") == 2 and p, 120, 1.0)  # fmt: skip
    assert second["replaces_sha256"] == first["sha256"] and second["sha256"] != first["sha256"]
    assert abs(second["duration_seconds"] - 12) <= 1.5 and abs(first["duration_seconds"] - 8) <= 1.5
    assert second["mp4_url"].split("?")[0] == first["mp4_url"].split("?")[0]  # presigned anew, same object
    assert sorted(k for k in bucket_objects(s3.client()) if UID in k) == keys  # the same keys
    assert mp4_sha(s3, mp4) == second["sha256"]
    summary = platform.summary()
    assert summary["replace_mismatches"] == [] and summary["violations"] == {}
    assert [(n["revision"], n["status"]) for n in summary["notifications"] if n["unique_id"] == UID] == [
        (1, 201),
        (2, 201),
    ]
    row = stack.task("notify_ayo_api", f"{UID}#r2")
    assert row is not None and row["status"] == "completed"

    # The platform keeps the highest revision: a repeat of either is 409 (counted as delivered).
    headers = {"Authorization": f"Bearer {platform.token}"}
    for rev, key, body in ((1, UID, first), (2, f"{UID}#r2", second)):
        r = requests.post(f"{platform.url}/api/v1/videos", json=body, timeout=10,
                          headers={**headers, "Idempotency-Key": key})  # fmt: skip
        assert r.status_code == 409, (rev, r.text)
    assert platform.summary()["delivered"][UID]["revision"] == 2
