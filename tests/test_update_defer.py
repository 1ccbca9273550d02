"""Never during a booking: an update asked for while a court of the box is booked waits and
starts only after the booking (plus the clip grace) ends; --force does not wait."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from update_rig import Box, Releases, wait_for

pytestmark = pytest.mark.slow
TZ = ZoneInfo("Asia/Jakarta")


def booking(start: float, end: float) -> dict[str, Any]:
    s, e = dt.datetime.fromtimestamp(start, TZ), dt.datetime.fromtimestamp(end, TZ)
    return {"booking_id": "BK-UPD-1", "order_detail_id": 1, "field_id": 1, "field_name": "A",
            "date": s.date().isoformat(), "start_time": s.strftime("%H:%M:%S"), "end_time": e.strftime("%H:%M:%S"),
            "status": "success", "user_name": "x", "user_phone": "0"}  # fmt: skip


def test_update_during_a_booking_starts_only_after_it_ends(
    box: Box, releases: Releases, platform: Any
) -> None:
    good = releases.build("0.2.0", "migrate")
    start = time.time() - 5
    end = start + 25  # time enough to sync it and ask twice; the update then waits ~20 s
    platform.add_bookings([booking(start, end)])
    r = box.venuecam("sync", "bookings", "--force")
    assert r.returncode == 0, r.stderr
    wait_for("the booking in the box's database",
             lambda: "BK-UPD-1" in box.venuecam("bookings").stdout, 30)  # fmt: skip

    r = box.venuecam("update", str(good))
    assert r.returncode == 0 and "deferred: field 1 booked: BK-UPD-1" in r.stdout, r.stdout + r.stderr
    assert box.state()["pending"]["version"] == "0.2.0"
    status = json.loads(box.venuecam("status", "--json").stdout)
    assert status["update"]["pending"]["waiting"][0].startswith("field 1 booked")

    proc = box.update_bg(str(good), "--wait", "--json")
    # It waits in its loop (no op journaled) until the booking and the clip grace are over;
    # `started_at` below says it did not begin before.
    assert proc.poll() is None and box.link("current") == "0.1.0" and box.state()["op"] is None
    out, _ = proc.communicate(timeout=end - time.time() + 300)
    result = json.loads(out[out.index("{") :])
    assert proc.returncode == 0 and result["outcome"] == "committed", out
    started = dt.datetime.fromisoformat(result["started_at"].replace("Z", "+00:00")).timestamp()
    assert started >= end + box.cfg.clips.grace_s - 1, (started, end)
    assert box.link("current") == "0.2.0" and box.state()["pending"] is None
    print(
        f"\nFIGURE deferral: asked {end - start - 5:.0f} s before the booking ended, started {started - end:.1f} s after"
    )


def test_forced_update_does_not_wait(box: Box, releases: Releases, platform: Any) -> None:
    good = releases.build("0.2.0", "migrate")
    start = time.time() - 5
    platform.add_bookings([booking(start, start + 600)])
    box.venuecam("sync", "bookings", "--force")
    wait_for("the booking", lambda: "BK-UPD-1" in box.venuecam("bookings").stdout, 30)
    r = box.venuecam("update", str(good), "--force", "--json", timeout=400)
    assert r.returncode == 0 and json.loads(r.stdout)["forced"] is True, r.stdout + r.stderr
