"""The app's side of running on a Raspberry Pi (issue 10), on this machine:

- GPIO that cannot be opened is a fault in `venuecam status` and an ERROR in the log (this
  machine has no GPIO chip at all: the real failure, not a simulated one);
- the encoder: a USB camera offering H.264 is recorded by copy, raw frames by the Pi's
  encoder where the box has one, else libx264 (real ffmpeg answers `-encoders`);
- `source = "picamera2"` without libcamera is a config error at start (exit 78), not a loop;
- Wi-Fi needs wifi_country; a config saved with a byte order mark loads;
- the systemd watchdog: pings only while the stack is healthy, over a real datagram socket,
  and `venuecam supervise` under a notify socket reports READY and pings with supervisord up.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import base_sections, render_toml
from venuecam import config as config_mod
from venuecam import db as db_mod
from venuecam import sdnotify
from venuecam.capture import command, probe
from venuecam.config import CameraConfig
from venuecam.errors import ConfigError
from venuecam.leds import gpiod_factory
from venuecam.status import facts, render, shapes
from venuecam.watchdog.service import Watchdog

NOW = dt.datetime(2026, 3, 1, 12, 0, 0)
UVC_FORMATS = """\
[video4linux2,v4l2 @ 0x55d0] Compressed:       mjpeg :          Motion-JPEG : 1920x1080 1280x720
[video4linux2,v4l2 @ 0x55d0] Compressed:        h264 :                H.264 : 1920x1080 1280x720
[video4linux2,v4l2 @ 0x55d0] Raw       :     yuyv422 :           YUYV 4:2:2 : 640x480 320x240
/dev/video0: Immediate exit requested
"""


def cam(source: str) -> CameraConfig:
    return CameraConfig(name="CAM", field_id=1, source=source, fps=25, bitrate_kbps=3000)


# ---------------------------------------------------------------- GPIO


def test_gpio_that_cannot_be_opened_is_a_fault_in_status_and_the_log(
    make_config: Callable[..., config_mod.Config], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = make_config(leds={"enabled": True, "pin_factory": "gpiod"})
    database = db_mod.open_db(cfg.db_path)
    try:
        wd = Watchdog(cfg, probes=[], has_route=lambda host: True)
        with caplog.at_level("INFO"):
            wd.tick_leds()
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "GPIO cannot be opened" in errors[0].getMessage()
        snapshot = facts.collect(cfg, NOW, with_programs=False, with_clock=False)
        text = render.render(shapes.queue_status(snapshot)["data"])
        line = next(x for x in text.splitlines() if x.startswith("leds:"))
        assert "FAULT: GPIO cannot be opened" in line and "pin factory gpiod" in line
        # Retried later, logged once: the journal is not flooded every second.
        wd._last_led = float("-inf")
        caplog.clear()
        wd.tick_leds()
        assert not [r for r in caplog.records if r.levelname == "ERROR"]
    finally:
        database.close()


def test_gpiod_factory_names_what_it_looked_at() -> None:
    with pytest.raises(OSError, match="no /dev/gpiochip"):
        gpiod_factory.find_chip(object(), paths=[])
    reason = gpiod_factory.available()
    assert reason and ("python3-libgpiod" in reason or "gpiochip" in reason)


def test_default_pin_factory_on_the_box_is_gpiod(monkeypatch: pytest.MonkeyPatch) -> None:
    from venuecam.leds import service

    assert service.DEFAULT_FACTORY == "gpiod"
    with pytest.raises((ImportError, OSError)):
        service.make_pin_factory("")  # no gpiod module or no chip here: a real error, not None


# ---------------------------------------------------------------- the encoder


def test_uvc_h264_is_offered_and_recorded_by_copy() -> None:
    offered = command.parse_v4l2_formats(UVC_FORMATS)
    assert offered == {"mjpeg", "h264", "yuyv422"}
    c = cam("/dev/video0")
    argv = command.build_ffmpeg_argv(
        c, Path("/run"), input_codec="h264", encoder=command.choose_encoder(c, "h264", True)
    )
    assert argv[argv.index("-input_format") + 1] == "h264"
    assert argv[argv.index("-c:v") + 1] == "copy"


@pytest.mark.parametrize(
    ("source", "codec", "hw", "want"),
    [
        ("/dev/video0", None, False, "libx264"),
        ("/dev/video0", None, True, "h264_v4l2m2m"),
        ("/dev/video0", "h264", True, "copy"),
        ("testsrc", None, True, "h264_v4l2m2m"),
        ("testsrc", None, False, "libx264"),
        ("rtsp://cam/1", "h264", True, "copy"),
        ("rtsp://cam/1", "hevc", False, "libx264"),
        ("picamera2", None, True, "copy"),
    ],
)
def test_encoder_choice(source: str, codec: str | None, hw: bool, want: str) -> None:
    c = cam(source)
    encoder = command.choose_encoder(c, codec, hw)
    assert encoder == want
    argv = command.build_ffmpeg_argv(c, Path("/run"), input_codec=codec, encoder=encoder)
    assert argv[argv.index("-c:v") + 1] == want
    if want != "copy":
        assert argv[argv.index("-g") + 1] == "25"  # a keyframe every second either way


def test_hardware_encoder_needs_both_the_device_and_ffmpeg(tmp_path: Path) -> None:
    assert probe.hardware_encoder(sysfs=str(tmp_path)) is False  # no V4L2 device at all
    (tmp_path / "video10").mkdir()
    (tmp_path / "video10" / "name").write_text("bcm2835-codec-decode\n")
    assert probe.hardware_encoder(sysfs=str(tmp_path)) is False  # a decoder is not an encoder
    (tmp_path / "video11").mkdir()
    (tmp_path / "video11" / "name").write_text("bcm2835-codec-encode\n")
    # This machine's real ffmpeg lists h264_v4l2m2m among its encoders.
    assert probe.hardware_encoder(sysfs=str(tmp_path)) is True
    assert probe.hardware_encoder(sysfs=str(tmp_path), ffmpeg="/nonexistent/ffmpeg") is False


def test_v4l2_probe_of_a_missing_device_offers_nothing() -> None:
    assert probe.v4l2_offers_h264("/dev/video-does-not-exist") is False


# ---------------------------------------------------------------- config rules


def test_picamera2_without_libcamera_is_a_config_error_at_start(tmp_path: Path) -> None:
    sections = base_sections(tmp_path, cameras=[{"name": "PI", "field_id": 1, "source": "picamera2"}])
    path = tmp_path / "venuecam.toml"
    path.write_text(render_toml(sections))
    proc = subprocess.run(
        [sys.executable, "-m", "venuecam", "--config", str(path), "supervise", "--print"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 78, proc.stderr
    assert "cameras[0].source: picamera2 needs the Pi camera stack" in proc.stderr
    assert "Raspberry Pi OS" in proc.stderr


def test_wifi_needs_a_country(tmp_path: Path) -> None:
    sections = base_sections(tmp_path, provision={"wifi_ssid": "Venue", "wifi_psk": "abcdefgh12"})
    path = tmp_path / "venuecam.toml"
    path.write_text(render_toml(sections))
    with pytest.raises(ConfigError, match=r"provision\.wifi_country: required when provision\.wifi_ssid"):
        config_mod.load(path)
    sections["provision"]["wifi_country"] = "ID"
    path.write_text(render_toml(sections))
    assert config_mod.load(path).provision.wifi_country == "ID"


def test_a_config_saved_with_a_byte_order_mark_and_crlf_loads(tmp_path: Path) -> None:
    path = tmp_path / "venuecam.toml"
    text = render_toml(base_sections(tmp_path)).replace("\n", "\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert config_mod.load(path).device.device_id


# ---------------------------------------------------------------- the systemd watchdog


def states(**programs: str) -> dict[str, object]:
    return {"available": True, "programs": [{"name": n, "state": s} for n, s in programs.items()]}


def test_health_needs_the_core_programs_and_allows_a_restart() -> None:
    t = sdnotify.HealthTracker(grace_s=90)
    ok = states(worker="RUNNING", watchdog="RUNNING", statusd="RUNNING", **{"capture:CAM": "BACKOFF"})
    assert t.observe(ok, 0).healthy  # a camera that is down never reboots the box
    down = states(worker="BACKOFF", watchdog="RUNNING", statusd="RUNNING")
    assert t.observe(down, 10).healthy  # restarting: within grace
    assert t.observe(states(worker="STARTING", watchdog="RUNNING", statusd="RUNNING"), 60).healthy
    verdict = t.observe(down, 101)
    assert not verdict.healthy and "worker BACKOFF" in verdict.reason
    assert t.observe(ok, 102).healthy  # back: the grace starts over next time
    assert t.observe(down, 103).healthy
    gone = {"available": False, "error": "supervisord unavailable: ConnectionRefusedError"}
    assert t.observe(gone, 150).healthy is True  # still within the grace begun at 103
    assert not t.observe(gone, 200).healthy


def test_notifier_sends_datagrams_only_when_systemd_asked(tmp_path: Path) -> None:
    assert not sdnotify.Notifier({}).enabled
    assert sdnotify.Notifier({}).send("READY=1") is False
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        n = sdnotify.Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000"})
        assert n.enabled and n.watchdog_s == 30.0
        assert n.send("READY=1", "STATUS=up")
        assert server.recv(100) == b"READY=1\nSTATUS=up"
    other = sdnotify.Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"})
    assert other.watchdog_s == 0.0  # the watchdog is someone else's


@pytest.mark.slow
def test_supervise_under_systemd_reports_ready_and_pings(tmp_path: Path) -> None:
    """`venuecam supervise` with a notify socket: supervisord as its child, READY=1 once it
    answers, then WATCHDOG=1 while worker, watchdog and statusd run; SIGTERM stops it all."""
    sections = base_sections(tmp_path, cameras=[], leds={"enabled": False})
    path = tmp_path / "venuecam.toml"
    path.write_text(render_toml(sections))
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(1.0)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "6000000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "venuecam", "--config", str(path), "supervise"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    got: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not ({"READY=1", "WATCHDOG=1"} <= set(got)):
            try:
                got += server.recv(4096).decode().splitlines()
            except TimeoutError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert "READY=1" in got and "WATCHDOG=1" in got, got
        assert got.index("READY=1") < got.index("WATCHDOG=1")
        assert any(line.startswith("STATUS=") for line in got)
    finally:
        proc.terminate()
        code = proc.wait(60)
        server.close()
    assert code == 0, proc.stderr.read().decode() if proc.stderr else ""
