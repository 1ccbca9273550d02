"""The installer's page in a real headless Chromium against the whole appliance.

Two test-pattern cameras of different colours and sizes run under supervisord with the
worker, watchdog and statusd; the platform simulator and the moto S3 server are their own
processes. The test books a short match on CAMERA_A's field, stops CAMERA_B for a while,
waits for the booking's video to be delivered, then opens the page as the installer would
(`ssh -L` to the status socket: here a loopback forward) in aiming mode and checks, from the
DOM and a screenshot, each camera's picture, CAMERA_B's gap, the delivered booking and its
clip link (whose bytes are the delivered MP4).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import chromium
from conftest import base_sections, render_toml
from pictures import decode
from sockforward import Forward
from test_e2e_supervisord import local, supervisor_states, wait_until

CAMERAS = [
    # name, field, colour (testsrc:COLOUR), rgb, size
    ("CAMERA_A", 1, "red", (255, 0, 0), (320, 240)),
    ("CAMERA_B", 2, "blue", (0, 0, 255), (256, 144)),
]
STOPPED_S = 6  # CAMERA_B's gap: supervisorctl stop, wait, start
KEEP_SCREENSHOT = os.environ.get("VENUECAM_PAGE_SCREENSHOT")  # e.g. docs/installer-page.png

pytestmark = pytest.mark.slow


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text inside each <li> of a booking."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **want: str) -> list[dict[str, str]]:
        def ok(a: dict[str, str]) -> bool:
            return all(
                (v in a.get("class", "").split()) if k == "class_" else a.get(k.replace("_", "-")) == v
                for k, v in want.items()
            )

        return [a for t, a in self.tags if t == tag and ok(a)]


def supervisorctl(conf: Path, *args: str) -> str:
    ctl = Path(sys.executable).parent / "supervisorctl"
    done = subprocess.run([str(ctl), "-c", str(conf), *args], capture_output=True, text=True, timeout=30)
    return done.stdout + done.stderr


@pytest.fixture
def two_cameras(tmp_path: Path, s3: Any, platform: Any) -> Any:
    run_dir = Path(f"/tmp/vc-page-{os.getpid()}")  # AF_UNIX paths: short
    sections = base_sections(
        tmp_path,
        device={"log_dir": str(tmp_path / "logs"), "run_dir": str(run_dir)},
        booking_api={"base_url": platform.url, "sync_interval_s": 60},
        storage={"endpoint_url": s3.endpoint},
        cameras=[
            {
                "name": name,
                "field_id": field,
                "source": f"testsrc:{colour}",
                "segment_seconds": 2,
                "width": w,
                "height": h,
                "fps": 10,
                "bitrate_kbps": 300,
            }
            for name, field, colour, _, (w, h) in CAMERAS
        ],  # fmt: skip
        clips={"grace_s": 2, "scan_interval_s": 60},
        connectivity={"tcp_targets": [], "dns_names": [], "probe_service_hosts": True, "interval_s": 1.0},
    )
    cfg_path = tmp_path / "venuecam.toml"
    cfg_path.write_text(render_toml(sections))
    proc = subprocess.Popen(
        [sys.executable, "-m", "venuecam", "--config", str(cfg_path), "supervise"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
    )  # fmt: skip
    yield {"path": cfg_path, "tmp": tmp_path, "run": run_dir, "proc": proc}
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    shutil.rmtree(run_dir, ignore_errors=True)


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()


def test_the_page_shows_each_camera_its_gap_and_a_delivered_booking(two_cameras: Any, platform: Any) -> None:
    t0 = time.monotonic()

    def mark(what: str) -> None:
        print(f"{time.monotonic() - t0:6.1f} s  {what}", flush=True)

    chromium.binary()  # skip early when it is not installed
    run: Path = two_cameras["run"]
    start = int(time.time()) + 10  # recorded from start to end by both cameras' programs
    end = start + 6
    platform.add_bookings([{
        "booking_id": "BK-PAGE-1", "order_detail_id": 901, "field_id": 1, "field_name": "Lapangan A",
        "date": local(start).date().isoformat(), "start_time": local(start).strftime("%H:%M:%S"),
        "end_time": local(end).strftime("%H:%M:%S"), "status": "success",
        "user_name": "Budi Santoso", "user_phone": "081234567890",
    }])  # fmt: skip
    sup_sock = run / "supervisor.sock"
    wait_until("supervisord's socket", sup_sock.exists, 30, 0.2)
    wait_until(
        "every program RUNNING",
        lambda: (
            (s := supervisor_states(sup_sock)) and len(s) == 5 and all(v == "RUNNING" for v in s.values())
        ),
        60,
        0.5,
    )
    mark("running")
    conf = run / "supervisord.conf"
    # The gap: CAMERA_B stopped, as a dead camera or a pulled cable would.
    time.sleep(2)
    stopped_at = time.time()
    assert "stopped" in supervisorctl(conf, "stop", "capture:CAMERA_B")
    time.sleep(STOPPED_S)
    assert "started" in supervisorctl(conf, "start", "capture:CAMERA_B")

    uid = "BK-PAGE-1-CAMERA_A-full"
    note = wait_until(
        "the booking's delivery",
        lambda: [n for n in platform.notifications() if n["unique_id"] == uid],
        120,
        1,
    )[0]

    mark("delivered")
    with Forward(run / "status.sock") as fwd:
        # CAMERA_B records again (two segments after the restart), so its gap has an end.
        def b_back() -> bool:
            _, headers, _ = get(f"{fwd.url}/api/cameras/CAMERA_B/snapshot.jpg")
            return headers["x-venuecam-segment"] > time.strftime(
                "%Y%m%dT%H%M%S", time.gmtime(stopped_at + STOPPED_S + 2)
            )

        wait_until("CAMERA_B recording again", b_back, 30, 0.5)

        # Each camera's picture is a JPEG of that camera: its own size and colour.
        for name, _, _, rgb, (w, h) in CAMERAS:
            status, headers, body = get(f"{fwd.url}/api/cameras/{name}/snapshot.jpg")
            assert status == 200 and headers["content-type"] == "image/jpeg"
            pic = decode(body)
            assert (pic.width, pic.height) == (w, h)
            assert all(abs(a - b) < 40 for a, b in zip(pic.centre(), rgb, strict=True)), (name, pic.centre())

        mark("pictures checked")
        page_url = f"{fwd.url}/?aim=CAMERA_A,CAMERA_B"
        dom = chromium.dump_dom(page_url)
        shot = chromium.screenshot(page_url, two_cameras["tmp"] / "page.png")

        mark("page rendered")
        els = Elements()
        els.feed(dom)
        for name, *_ in CAMERAS:
            (card,) = els.find("article", data_camera=name)
            imgs = [a for a in els.find("img", class_="snap") if f"/{name}/" in a["data-src"]]
            assert len(imgs) == 1
            # Aiming mode ran: the script fetched the picture and put it in place with its time.
            assert imgs[0]["src"].startswith("blob:"), imgs[0]
            assert imgs[0].get("data-frame-time", "").endswith("Z")
        # CAMERA_B's gap: one that starts when the test stopped it and lasts about as long (the
        # day before the stack started is not a gap: the camera was not there yet).
        cam_b = dom[dom.index('data-camera="CAMERA_B"') :]
        gaps = {  # drawn on the 24 h track and again on the last hour's
            (float(a), float(b))
            for a, b in re.findall(
                r'class="gap"[^>]*data-start="([\d.]+)" data-end="([\d.]+)"', cam_b.split("</article>")[0]
            )
        }
        made = [(a, b) for a, b in gaps if stopped_at - 3 <= a <= stopped_at + 3]
        assert len(made) == 1 and len(gaps) == 1, (gaps, stopped_at)
        assert STOPPED_S - 1 <= made[0][1] - made[0][0] <= STOPPED_S + 8, made
        # The booking on CAMERA_A's field: delivered, with a link to its cut clip.
        (booking,) = [li for li in els.find("li", data_booking="BK-PAGE-1")]
        assert "state-delivered" in booking["class"].split()
        (link,) = els.find("a", class_="cut")
        assert link["href"] == f"clips/{uid}.mp4"
        assert "Budi" not in dom and "081234567890" not in dom  # players' names and phones stay off the page
        status, headers, mp4 = get(f"{fwd.url}/{link['href']}")
        assert status == 200 and headers["content-type"] == "video/mp4"
        assert hashlib.sha256(mp4).hexdigest() == note["sha256"]

    # The screenshot shows both pictures, each with its camera's colour and shape.
    png = shot.read_bytes()
    page = decode(png)
    for name, _, _, rgb, (w, h) in CAMERAS:
        left, top, right, bottom, n = page.box_of(rgb, tolerance=25)
        assert n > 20_000, (name, n)
        ratio = (right - left + 1) / (bottom - top + 1)
        assert abs(ratio - w / h) < 0.08, (name, ratio, w / h)
    mark("screenshot checked")
    if KEEP_SCREENSHOT:
        shutil.copy(shot, KEEP_SCREENSHOT)
