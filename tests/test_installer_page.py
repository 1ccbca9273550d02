"""The installer's view over the real statusd (under supervisord): camera pictures made from
real segments by ffmpeg, the page and its timeline, cut clips, the LAN listener's token and
read-only rules, `venuecam snapshot`, and the config keys. (The page in a real browser
against the whole stack: test_installer_page_browser.py.)"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import base_sections, free_port, render_toml
from fixtures_status import StatusBox, short_run_dir, start_status_box
from pictures import decode
from venuecam import config as config_mod
from venuecam import db as db_mod
from venuecam.errors import ConfigError
from venuecam.models import Booking, Segment, Video
from venuecam.statusd.snapshots import CACHE_S
from venuecam.timeutil import naive_utc_to_ts, utcnow

LAN_TOKEN = "lan-token-0123456789abcdef"
GAP = (40.0, 52.0)  # seconds before now: CAMERA_A recorded nothing then


def make_segment(path: Path, colour: str, size: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c={colour}:size={size}:rate=10", "-t", "2",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p", "-f", "mpegts", str(path)],
        check=True, timeout=30,
    )  # fmt: skip


@pytest.fixture(scope="module")
def page_box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatusBox]:
    """One statusd for the module's tests (they only read; one removes a file and puts it back)."""
    tmp_path = tmp_path_factory.mktemp("page")
    run_dir = short_run_dir()
    cams = [
        {"name": "CAMERA_A", "field_id": 1, "source": "testsrc:red", "segment_seconds": 2, "width": 320, "height": 240},
        {"name": "CAMERA_B", "field_id": 2, "source": "testsrc:blue", "segment_seconds": 2},
    ]  # fmt: skip
    lan_settings = {
        "lan_enabled": True,
        "lan_address": "127.0.0.1",
        "lan_port": free_port(),
        "lan_token": LAN_TOKEN,
    }
    sections = base_sections(tmp_path, device={"run_dir": str(run_dir)}, cameras=cams, status=lan_settings)
    (tmp_path / "venuecam.toml").write_text(render_toml(sections))
    cfg = config_mod.load(tmp_path / "venuecam.toml")
    database = db_mod.open_db(cfg.db_path)
    now = naive_utc_to_ts(utcnow())
    # CAMERA_A: 2 s segments for the last two minutes, except the gap; the newest two are real files.
    for k in range(60):
        a = now - 120 + 2 * k
        if GAP[0] < now - a <= GAP[1] + 2:
            continue
        path = cfg.segments_dir / "CAMERA_A" / f"{k:03d}.ts"
        Segment.create(camera="CAMERA_A", start_ts=a, end_ts=a + 2, duration=2.0, path=str(path), bytes=50_000,
                       codec="h264", width=320, height=240)  # fmt: skip
    make_segment(cfg.segments_dir / "CAMERA_A" / "058.ts", "red", "320x240")
    make_segment(cfg.segments_dir / "CAMERA_A" / "059.ts", "red", "320x240")
    start, end = now - 100, now - 70
    Booking.create(booking_id="BK-7", field_id=1, date="2026-01-01", start_time="10:00:00", end_time="10:30:00",
                   status="success", user_name="Siti Rahma", user_phone="0812999", start_ts=start, end_ts=end)  # fmt: skip
    clip = cfg.clips_dir / "BK-7" / "CAMERA_A" / "BK-7-CAMERA_A-full.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(bytes(range(256)) * 40)
    Video.create(unique_id="BK-7-CAMERA_A-full", booking_id="BK-7", camera="CAMERA_A", field_id=1, status="notified",
                 start_ts=start, end_ts=end, mp4_path=str(clip))  # fmt: skip
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"x")
    Video.create(unique_id="BK-8-CAMERA_A-full", booking_id="BK-8", camera="CAMERA_A", field_id=1, status="ready",
                 start_ts=start, end_ts=end, mp4_path=str(outside))  # fmt: skip
    database.close()
    workdir = tmp_path / "supervisor"
    workdir.mkdir()
    box = start_status_box(cfg, workdir)
    box.now = now  # type: ignore[attr-defined]
    yield box
    box.stop()
    shutil.rmtree(run_dir, ignore_errors=True)


def lan(box: StatusBox, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", box.cfg.status.lan_port, timeout=20)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def test_a_cameras_picture_is_its_newest_segment_and_bad_names_get_clear_errors(page_box: StatusBox) -> None:
    status, headers, jpeg = page_box.client.request_raw("GET", "/api/cameras/CAMERA_A/snapshot.jpg")
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert headers["x-venuecam-segment"] == "059.ts"
    pic = decode(jpeg)
    assert (pic.width, pic.height) == (320, 240)
    r, g, b = pic.centre()
    assert r > 220 and g < 40 and b < 40
    status, body = page_box.client.get("/api/cameras/NOPE/snapshot.jpg")
    assert status == 404 and body["message"] == "no camera named 'NOPE' (cameras: CAMERA_A, CAMERA_B)"
    status, body = page_box.client.get("/api/cameras/CAMERA_B/snapshot.jpg")
    assert status == 503 and "CAMERA_B has no recorded segment yet" in body["message"]


def test_the_newest_segment_removed_the_one_before_gives_the_picture(page_box: StatusBox) -> None:
    database = db_mod.open_db(page_box.cfg.db_path)
    newest = Segment.select().where(Segment.camera == "CAMERA_A").order_by(Segment.end_ts.desc()).get()
    gone = page_box.cfg.segments_dir / "CAMERA_A" / "060.ts"  # indexed, then removed by retention
    row = Segment.create(camera="CAMERA_A", start_ts=newest.end_ts, end_ts=newest.end_ts + 2, duration=2.0,
                         path=str(gone), bytes=1, codec="h264", width=320, height=240)  # fmt: skip
    time.sleep(CACHE_S)  # the picture made before is no longer fresh
    try:
        status, headers, jpeg = page_box.client.request_raw("GET", "/api/cameras/CAMERA_A/snapshot.jpg")
        assert status == 200 and headers["x-venuecam-segment"] == "059.ts"
        assert decode(jpeg).width == 320
    finally:
        row.delete_instance()
        database.close()


def test_the_page_and_its_timeline_show_the_gap_the_booking_and_its_clip(page_box: StatusBox) -> None:
    status, headers, html = page_box.client.request_raw("GET", "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8"
    text = html.decode()
    assert '<article class="cam" id="cam-CAMERA_A"' in text and 'data-camera="CAMERA_B"' in text
    assert 'href="clips/BK-7-CAMERA_A-full.mp4"' in text and "<b>delivered</b>" in text
    assert "Siti" not in text and "0812999" not in text
    status, body = page_box.client.get("/api/timeline?hours=1")
    assert status == 200
    cam_a, cam_b = body["data"]["cameras"]
    made = page_box.now  # type: ignore[attr-defined]
    # The segments left out started 54..42 s before `made`: the hole is from the end of the one
    # before them to the start of the one after. (A tail gap appears once the last segment is
    # older than a stall; the time before the first segment is not a gap.)
    inner = [g for g in cam_a["gaps"] if g[1] < body["data"]["end"] - 1]
    assert (
        len(inner) == 1 and abs(inner[0][0] - (made - 54)) < 0.5 and abs(inner[0][1] - (made - 40)) < 0.5
    ), (
        cam_a["gaps"],
        made,
    )
    assert cam_a["before"] is not None and abs(cam_a["before"][1] - (made - 120)) < 0.5
    assert cam_b["stretches"] == [] and cam_b["bookings"] == []
    (bk,) = cam_a["bookings"]
    assert bk["booking_id"] == "BK-7" and bk["state"] == "delivered"
    status, body = page_box.client.get("/api/timeline?hours=lots")
    assert status == 400 and body["message"] == "hours: expected an integer, got 'lots'"


def test_a_cut_clip_is_served_whole_or_by_range_and_only_from_the_clips_directory(
    page_box: StatusBox,
) -> None:
    data = bytes(range(256)) * 40
    status, headers, body = page_box.client.request_raw("GET", "/clips/BK-7-CAMERA_A-full.mp4")
    assert status == 200 and body == data and headers["content-type"] == "video/mp4"
    sock = page_box.cfg.status_socket
    out = subprocess.run(["curl", "-s", "-i", "--unix-socket", str(sock), "-H", "Range: bytes=10-19",
                          "http://localhost/clips/BK-7-CAMERA_A-full.mp4"], capture_output=True, timeout=20)  # fmt: skip
    head, _, part = out.stdout.partition(b"\r\n\r\n")
    assert (
        head.startswith(b"HTTP/1.1 206")
        and b"Content-Range: bytes 10-19/10240" in head
        and part == data[10:20]
    )
    status, body = page_box.client.get("/clips/BK-8-CAMERA_A-full.mp4")
    assert status == 403 and "outside the clips directory" in body["message"]
    status, body = page_box.client.get("/clips/BK-9-CAMERA_A-full.jpg")
    assert status == 404 and body["message"] == "no video 'BK-9-CAMERA_A-full'"


def test_the_lan_listener_wants_the_token_serves_only_the_page_and_never_writes(page_box: StatusBox) -> None:
    status, _, body = lan(page_box, "/")
    assert status == 401 and "needs the LAN token" in json.loads(body)["message"]
    status, _, _ = lan(page_box, "/", headers={"Authorization": "Bearer wrong-token-0123456789"})
    assert status == 401
    status, headers, _ = lan(page_box, f"/?token={LAN_TOKEN}&aim=CAMERA_A")
    assert status == 303 and headers["location"] == "/?aim=CAMERA_A"
    cookie = headers["set-cookie"].split(";")[0]
    assert LAN_TOKEN not in headers["set-cookie"] and "HttpOnly" in headers["set-cookie"]
    status, headers, html = lan(page_box, "/", headers={"Cookie": cookie})
    assert status == 200 and b"CAMERA_A" in html
    status, headers, jpeg = lan(page_box, "/api/cameras/CAMERA_A/snapshot.jpg", headers={"Cookie": cookie})
    assert status == 200 and decode(jpeg).height == 240
    status, _, body = lan(page_box, "/api/queue-status", headers={"Cookie": cookie})
    assert status == 403 and "not served on the LAN listener" in json.loads(body)["message"]
    status, _, body = lan(
        page_box, "/api/queue/process", "POST", headers={"Authorization": f"Bearer {LAN_TOKEN}"}
    )
    assert status == 403 and "read-only" in json.loads(body)["message"]


def test_no_answer_carries_a_secret(page_box: StatusBox) -> None:
    secrets = [s for s in page_box.cfg.secrets() if s]
    assert LAN_TOKEN in secrets
    answers = []
    for path in ("/", "/api/timeline", "/api/cameras/CAMERA_A/snapshot.jpg", "/api/cameras/NOPE/snapshot.jpg",
                 "/clips/BK-7-CAMERA_A-full.mp4", "/clips/nope.jpg"):  # fmt: skip
        status, headers, body = page_box.client.request_raw("GET", path)
        answers.append(json.dumps(headers).encode() + body)
    for path in ("/", f"/?token={LAN_TOKEN}", "/?token=wrong"):
        status, headers, body = lan(page_box, path)
        answers.append(json.dumps(headers).encode() + body)
    leaked = [s for s in secrets for a in answers if s.encode() in a]
    assert leaked == []


def test_a_write_from_another_site_is_refused(page_box: StatusBox) -> None:
    out = subprocess.run(["curl", "-s", "--unix-socket", str(page_box.cfg.status_socket), "-X", "POST",
                          "-H", "Origin: http://evil.example", "http://localhost/api/queue/process"],
                         capture_output=True, text=True, timeout=20)  # fmt: skip
    body = json.loads(out.stdout)
    assert body["code"] == 403 and "another site" in body["message"]


def test_venuecam_snapshot_writes_the_picture_or_says_why_not(page_box: StatusBox, tmp_path: Path) -> None:
    out = tmp_path / "a.jpg"
    cmd = [sys.executable, "-m", "venuecam", "--config", page_box.cfg.source_path, "snapshot"]
    done = subprocess.run([*cmd, "CAMERA_A", "-o", str(out)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "CAMERA_A at " in done.stdout and decode(out.read_bytes()).width == 320
    done = subprocess.run([*cmd, "CAMERA_B"], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode == 1 and "CAMERA_B has no recorded segment yet" in done.stderr
    assert not (tmp_path / "CAMERA_B.jpg").exists()


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"lan_enabled": True}, "status.lan_token: required when status.lan_enabled is true"),
        ({"lan_token": "short"}, "status.lan_token: expected at least 16 printable ASCII characters"),
        ({"lan_token": "has space 0123456789"}, "status.lan_token: expected at least 16"),
        ({"lan_address": "venue-wifi"}, "status.lan_address: expected an IP address of this box"),
        ({"lan_port": 0}, "status.lan_port: expected a port number 1..65535"),
        (
            {"tcp_enabled": True, "lan_enabled": True, "lan_token": LAN_TOKEN, "lan_port": 8080},
            "status.lan_port: must differ from status.tcp_port (8080)",
        ),
    ],  # fmt: skip
)
def test_lan_settings_are_checked(
    make_config: Callable[..., config_mod.Config], status: Any, message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        make_config(status=status)
    assert message in str(e.value)
    assert "0123456789" not in str(e.value)  # a bad token is not repeated


@pytest.mark.parametrize("source", ["testsrc:red,drawbox", "testsrc:", "testsrc:0x12345", "testsrc:re d"])
def test_a_test_colour_is_a_colour_and_nothing_more(
    make_config: Callable[..., config_mod.Config], source: str
) -> None:
    with pytest.raises(ConfigError, match="testsrc:COLOUR"):
        make_config(cameras=[{"name": "A", "field_id": 1, "source": source}])


def test_the_lan_listener_is_off_by_default(make_config: Callable[..., config_mod.Config]) -> None:
    cfg = make_config(cameras=[{"name": "A", "field_id": 1, "source": "testsrc:0x00ff00"}])
    assert cfg.status.lan_enabled is False and cfg.status.lan_token == ""
