"""The booking platform simulator: its schedule (pure) and the real process."""

from __future__ import annotations

import datetime as dt
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from conftest import API_TOKEN, free_port
from fixtures_platform import PlatformSim, booking, start_simulator
from venuecam.errors import BadInputError
from venuecam.simulator.schedule import parse_duration, parse_schedule
from venuecam.simulator.state import check_notification

JKT = ZoneInfo("Asia/Jakarta")
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
NOW = dt.datetime(2025, 1, 23, 22, 50, 7, tzinfo=JKT)


def get_bookings(sim: PlatformSim, date: str, offset: int = 0, limit: int = 100, **kw: Any) -> Any:
    params = {"venue_id": sim.venue_id, "date": date, "offset": offset, "limit": limit}
    return requests.get(
        f"{sim.url}/api/v1/bookings", params=params, headers=kw.get("headers", AUTH), timeout=10
    )


def video(unique_id: str = "BK-1-CAMERA_A-full", **over: Any) -> dict[str, Any]:
    p = {"unique_id": unique_id, "booking_id": "BK-1", "order_detail_id": 789, "field_id": 1,
         "camera": "CAMERA_A", "video_type": "full", "mp4_url": "https://x/a.mp4",
         "preview_url": "https://x/a_preview.mp4", "thumbnail_url": "https://x/a.jpg",
         "duration_seconds": 180.0, "size_bytes": 1000, "sha256": "0" * 64}  # fmt: skip
    p.update(over)
    return p


def post_video(sim: PlatformSim, body: Any, key: str | None = "BK-1-CAMERA_A-full", **kw: Any) -> Any:
    headers = dict(kw.get("headers", AUTH))
    if key is not None:
        headers["Idempotency-Key"] = key
    return requests.post(f"{sim.url}/api/v1/videos", json=body, headers=headers, timeout=10)


# ---------------------------------------------------------------- schedule (pure)


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "4m", "1h", "1.5m")] == [90, 90, 240, 3600, 90]
    with pytest.raises(BadInputError, match="4 minutes"):
        parse_duration("4 minutes")


def test_schedule_every_4m_on_two_fields() -> None:
    s = parse_schedule("every=4m,length=3m,fields=1,2,start=now", JKT, NOW)
    day = s.bookings_on("2025-01-23")
    # 22:50:07 to midnight: slots at 22:50:07 + 4 min * n, n = 0..17, two fields each.
    assert len(day) == 18 * 2
    first, second = day[0], day[1]
    assert (first["booking_id"], first["field_id"], first["start_time"], first["end_time"]) == (
        "BK-1", 1, "22:50:07", "22:53:07",
    )  # fmt: skip
    assert (second["booking_id"], second["field_id"]) == ("BK-2", 2)
    assert len({b["booking_id"] for b in day}) == len(day)
    # The last slot of the day starts 23:58:07 and crosses midnight.
    assert (day[-1]["start_time"], day[-1]["end_time"]) == ("23:58:07", "00:01:07")
    nxt = s.bookings_on("2025-01-24")
    assert nxt[0]["booking_id"] == "BK-37" and nxt[0]["start_time"] == "00:02:07"
    assert s.bookings_on("2025-01-22") == []


def test_schedule_start_forms() -> None:
    assert parse_schedule("start=now+30s", JKT, NOW).start == NOW + dt.timedelta(seconds=30)
    assert parse_schedule("start=2025-01-23T10:00:00", JKT, NOW).start == dt.datetime(
        2025, 1, 23, 10, tzinfo=JKT
    )


@pytest.mark.parametrize(
    ("spec", "words"),
    [("every=4m,colour=red", "unknown keys"), ("every=soon", "duration"), ("fields=a", "fields should be numbers"),
     ("every=0", "positive"), ("start=yesterday", "start"), ("garbage", "not key=value")],
)  # fmt: skip
def test_bad_schedules_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(BadInputError, match=words):
        parse_schedule(spec, JKT, NOW)


def test_notification_validation() -> None:
    assert check_notification(video(), "BK-1-CAMERA_A-full") == ("BK-1-CAMERA_A-full", 1)
    with pytest.raises(BadInputError, match="Idempotency-Key"):
        check_notification(video(), None)
    with pytest.raises(BadInputError, match="differs from unique_id"):
        check_notification(video(), "BK-2-CAMERA_A-full")
    with pytest.raises(BadInputError, match=r"video_type.*sha256"):
        check_notification(video(video_type="long", sha256="xyz"), "BK-1-CAMERA_A-full")
    with pytest.raises(BadInputError, match="size_bytes"):
        check_notification(video(size_bytes="1000"), "BK-1-CAMERA_A-full")
    # booking-api.md 2b: a replacement carries its revision in the key too
    rev2 = video(revision=2, replaces_sha256="a" * 64)
    assert check_notification(rev2, "BK-1-CAMERA_A-full#r2") == ("BK-1-CAMERA_A-full", 2)
    with pytest.raises(BadInputError, match=r"expected BK-1-CAMERA_A-full#r2"):
        check_notification(rev2, "BK-1-CAMERA_A-full")
    with pytest.raises(BadInputError, match="revision: expected an integer >= 1"):
        check_notification(video(revision=0), "BK-1-CAMERA_A-full")
    with pytest.raises(BadInputError, match="replaces_sha256: expected 64"):
        check_notification(video(revision=2, replaces_sha256="old"), "BK-1-CAMERA_A-full#r2")


# ---------------------------------------------------------------- the process


def test_bookings_need_the_token(platform: PlatformSim) -> None:
    assert get_bookings(platform, "2025-01-23", headers={}).status_code == 401
    assert get_bookings(platform, "2025-01-23", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert get_bookings(platform, "2025-01-23").status_code == 200


def test_bookings_are_served_verbatim_and_paged(platform: PlatformSim) -> None:
    dirty = [
        booking("BK-1"),
        booking("BK/2"),
        {"booking_id": 3, "date": "2025-01-23"},
        booking("BK-1", status="x"),
    ]
    platform.add_bookings(dirty, append=True)
    r = get_bookings(platform, "2025-01-23", offset=1, limit=2)
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"data": dirty[1:3], "meta": {"total": 4, "offset": 1, "limit": 2}}
    assert get_bookings(platform, "2025-01-24").json()["data"] == []


def test_adding_a_booking_again_replaces_it(platform: PlatformSim) -> None:
    platform.add_bookings([booking("BK-1"), booking("BK-2")])
    platform.add_bookings([booking("BK-1", status="cancelled")])
    data = get_bookings(platform, "2025-01-23").json()["data"]
    assert [(b["booking_id"], b["status"]) for b in data] == [("BK-1", "cancelled"), ("BK-2", "success")]


def test_other_venues_see_nothing(platform: PlatformSim) -> None:
    platform.add_bookings([booking("BK-1")])
    r = requests.get(f"{platform.url}/api/v1/bookings", params={"venue_id": "7", "date": "2025-01-23"},
                     headers=AUTH, timeout=10)  # fmt: skip
    assert r.json()["data"] == []


def test_bad_query_and_bad_controls_get_400(platform: PlatformSim) -> None:
    assert get_bookings(platform, "2025-01-23", limit=0).status_code == 400
    assert get_bookings(platform, "").status_code == 400
    r = requests.post(f"{platform.url}/_sim/faults", json={"bookings": {"mode": "explode"}}, timeout=10)
    assert r.status_code == 400 and "explode" in r.json()["error"]
    r = requests.post(f"{platform.url}/_sim/faults", json={"printer": {"mode": "500"}}, timeout=10)
    assert r.status_code == 400 and "unknown endpoint" in r.json()["error"]


def test_faults_apply_to_the_next_n_requests_after_k(platform: PlatformSim) -> None:
    platform.set_fault("bookings", "500", count=2, after=1)
    codes = [get_bookings(platform, "2025-01-23").status_code for _ in range(4)]
    assert codes == [200, 500, 500, 200]
    platform.set_fault("bookings", "429", retry_after="9")
    r = get_bookings(platform, "2025-01-23")
    assert (r.status_code, r.headers["Retry-After"]) == (429, "9")
    platform.set_fault("bookings", "html")
    assert get_bookings(platform, "2025-01-23").headers["Content-Type"].startswith("text/html")


def test_a_queued_fault_waits_for_the_one_before_it(platform: PlatformSim) -> None:
    platform.set_fault("bookings", "500", count=1)
    platform.set_fault("bookings", "429", count=1, retry_after="3", queue=True)
    pending = platform.set_fault("bookings", "503", count=2, queue=True)["faults"]["bookings"]
    assert [(f["mode"], f["count"]) for f in pending] == [("500", 1), ("429", 1), ("503", 2)]
    codes = [get_bookings(platform, "2025-01-23").status_code for _ in range(5)]
    assert codes == [500, 429, 503, 503, 200]
    assert requests.post(f"{platform.url}/_sim/faults", json={}, timeout=10).json() == {"faults": {}}
    platform.set_fault("bookings", "500", count=1)
    platform.set_fault("bookings", "502", count=1)  # without queue: instead of the one unspent
    assert [get_bookings(platform, "2025-01-23").status_code for _ in range(2)] == [502, 200]
    platform.set_fault("bookings", "500", count=1)
    platform.set_fault("bookings", "503", count=1, queue=True)
    platform.clear_faults()  # null clears the queued ones too
    assert get_bookings(platform, "2025-01-23").status_code == 200


def test_videos_first_201_then_409_and_all_counted(platform: PlatformSim) -> None:
    assert post_video(platform, video()).status_code == 201
    assert post_video(platform, video()).status_code == 409
    assert (
        post_video(platform, video("BK-1-CAMERA_B-full", camera="CAMERA_B"), "BK-1-CAMERA_B-full").status_code
        == 201
    )
    seen = platform.summary()
    assert seen["counts"] == {"BK-1-CAMERA_A-full": 2, "BK-1-CAMERA_B-full": 1}
    assert [n["status"] for n in seen["notifications"]] == [201, 409, 201]
    assert seen["violations"] == {}
    flat = platform.notifications()
    assert [(n["unique_id"], n["http_status"]) for n in flat] == [
        ("BK-1-CAMERA_A-full", 201), ("BK-1-CAMERA_A-full", 409), ("BK-1-CAMERA_B-full", 201),
    ]  # fmt: skip
    assert flat[0]["sha256"] == "0" * 64 and flat[2]["camera"] == "CAMERA_B"


def test_two_unique_ids_for_one_video_are_reported(platform: PlatformSim) -> None:
    post_video(platform, video())
    post_video(platform, video("BK-1-CAMERA_A-full-2"), "BK-1-CAMERA_A-full-2")
    assert platform.summary()["violations"] == {
        "BK-1|CAMERA_A|full": ["BK-1-CAMERA_A-full", "BK-1-CAMERA_A-full-2"]
    }


def test_videos_refuse_bad_requests(platform: PlatformSim) -> None:
    assert post_video(platform, video(), headers={}).status_code == 401
    assert post_video(platform, video(), key=None).status_code == 400
    r = post_video(platform, video(), key="BK-9-CAMERA_A-full")
    assert r.status_code == 400 and "differs from unique_id" in r.json()["error"]
    r = post_video(platform, video(field_id="one"))
    assert r.status_code == 400 and "field_id" in r.json()["error"]
    r = requests.post(f"{platform.url}/api/v1/videos", data=b"{oops", timeout=10,
                      headers={**AUTH, "Idempotency-Key": "k", "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert platform.summary()["counts"] == {}


def test_reset_forgets_everything(platform: PlatformSim) -> None:
    platform.add_bookings([booking("BK-1")])
    post_video(platform, video())
    platform.set_fault("bookings", "500", count=5)
    platform.reset()
    assert get_bookings(platform, "2025-01-23").json()["data"] == []
    assert platform.summary()["counts"] == {}


def test_a_scheduled_simulator_serves_generated_bookings(tmp_path: Path) -> None:
    sim = start_simulator(schedule="every=4m,length=3m,fields=1,2,start=2025-01-23T10:00:00",
                          log_path=tmp_path / "sim.log")  # fmt: skip
    try:
        page = get_bookings(sim, "2025-01-23", limit=4).json()
        assert page["meta"]["total"] == 14 * 60 // 4 * 2
        assert [(b["booking_id"], b["field_id"], b["start_time"]) for b in page["data"]] == [
            ("BK-1", 1, "10:00:00"), ("BK-2", 2, "10:00:00"), ("BK-3", 1, "10:04:00"), ("BK-4", 2, "10:04:00"),
        ]  # fmt: skip
    finally:
        sim.stop()
    assert sim.proc.returncode == 0  # SIGTERM is a clean stop


def test_a_restarted_simulator_keeps_its_notifications(tmp_path: Path) -> None:
    state = tmp_path / "sim-state.json"
    sim = start_simulator(state_file=state, log_path=tmp_path / "sim.log")
    try:
        assert post_video(sim, video()).status_code == 201
        sim.add_bookings([booking("BK-7")])
    finally:
        sim.stop()
    sim = start_simulator(state_file=state, log_path=tmp_path / "sim.log")
    try:
        assert post_video(sim, video()).status_code == 409
        assert sim.summary()["counts"] == {"BK-1-CAMERA_A-full": 2}
        assert [b["booking_id"] for b in get_bookings(sim, "2025-01-23").json()["data"]] == ["BK-7"]
    finally:
        sim.stop()


def test_it_binds_only_the_given_address(tmp_path: Path) -> None:
    sim = start_simulator(host="127.0.0.2", log_path=tmp_path / "sim.log")
    try:
        port = int(sim.url.rsplit(":", 1)[1])
        assert sim.url == f"http://127.0.0.2:{port}"
        assert get_bookings(sim, "2025-01-23").status_code == 200
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        sim.stop()


@pytest.mark.parametrize(
    ("extra", "words"),
    [(["--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
     (["--schedule", "every=soon"], "schedule: duration 'soon'")],
)  # fmt: skip
def test_bad_arguments_exit_with_one_clear_line(extra: list[str], words: str) -> None:
    argv = [sys.executable, "-m", "venuecam", "simulator", "--port", str(free_port()), "--token", API_TOKEN,
            "--venue-id", "42", *extra]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert words in proc.stderr and "Traceback" not in proc.stderr
    assert API_TOKEN not in proc.stderr + proc.stdout


def test_the_simulator_never_logs_the_token(platform: PlatformSim) -> None:
    get_bookings(platform, "2025-01-23")
    post_video(platform, video())
    assert "GET /api/v1/bookings" in platform.log_text()
    assert API_TOKEN not in platform.log_text()
