"""The installer's check of a booted box: `venuecam-hw-check` on it (or `make hw-check BOX=...`).

Real hardware only, as gpiozero's own real-pin tests: each check skips, saying why, where
its hardware is not there (so `make test` on a PC skips them all). Self-contained: on the
box this file runs from /usr/lib/venuecam/hw-check with the release's Python, no checkout.

- LEDs: each venuecam LED is driven on and off for a second, read back from the GPIO line
  (a person watching sees them light in turn: online, backlog, fault).
- Cameras: each configured USB (V4L2) camera records three seconds that ffprobe can read;
  a Pi camera (picamera2) is opened.
- SD card: 64 MiB written to the data partition with fsync; the speed is printed, and a
  card slower than 2 MB/s (worn out, or a fake) fails: it cannot keep up with recording.
- Watchdog: the hardware watchdog exists and systemd feeds it; venuecam.service has one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

MODEL = Path("/proc/device-tree/model")
CONFIG = Path(os.environ.get("VENUECAM_CONFIG", "/etc/venuecam/venuecam.toml"))
SUPERVISORCTL = ["/opt/venuecam/current/bin/supervisorctl", "-c", "/run/venuecam/supervisord.conf"]
# A card slower than this cannot keep up with recording (several cameras' segments plus the
# database). An emulated card (QEMU's SD model, ~1.4 MB/s) is checked with a lower floor.
MIN_SD_MB_S = float(os.environ.get("VENUECAM_HW_MIN_SD_MB_S", "2.0"))


def pi_model() -> str:
    try:
        return MODEL.read_text().strip("\0\n ")
    except OSError:
        return ""


pytestmark = pytest.mark.skipif("Raspberry Pi" not in pi_model(), reason="not running on a Raspberry Pi")


def box_config():  # type: ignore[no-untyped-def]
    from venuecam import config

    if not CONFIG.exists():
        pytest.skip(f"no {CONFIG}: the box is not provisioned yet")
    return config.load(CONFIG)


# The models the README's "Supported Raspberry Pi models and bases" table names (device tree
# model strings); the Pi 5 only on Raspberry Pi OS.
SUPPORTED = ("Raspberry Pi 3 Model B", "Raspberry Pi 3 Model A Plus", "Raspberry Pi Zero 2 W",
             "Raspberry Pi 4 Model B", "Raspberry Pi 400", "Raspberry Pi Compute Module 4",
             "Raspberry Pi 5")  # fmt: skip


def test_the_model_is_one_the_readme_supports() -> None:
    model = pi_model()
    print(f"\nmodel: {model}")
    assert model.startswith(SUPPORTED), f"{model!r} is not in the README's supported models"


def test_leds_light_in_turn() -> None:
    pytest.importorskip("gpiod", reason="python3-libgpiod is not installed")
    from gpiozero import LED

    from venuecam.leds.gpiod_factory import GpiodFactory

    cfg = box_config()
    if not cfg.leds.enabled:
        pytest.skip("leds.enabled is false in the config")
    # The watchdog program owns the lines while it runs: pause it for the walk.
    paused = subprocess.run([*SUPERVISORCTL, "stop", "watchdog"], capture_output=True).returncode == 0
    try:
        factory = GpiodFactory()
        pins = {"online": cfg.leds.online_pin, "backlog": cfg.leds.backlog_pin, "fault": cfg.leds.fault_pin}
        for name, pin in pins.items():
            led = LED(pin, pin_factory=factory)
            try:
                led.on()
                assert led.pin.state, f"{name} LED (GPIO{pin}) did not read back as on"
                print(f"\n{name} LED on GPIO{pin} of {factory.chip_path}: on", end="")
                time.sleep(1.0)
                led.off()
                assert not led.pin.state, f"{name} LED (GPIO{pin}) did not read back as off"
            finally:
                led.close()
        factory.close()
    finally:
        if paused:
            subprocess.run([*SUPERVISORCTL, "start", "watchdog"], capture_output=True)


def test_cameras_record() -> None:
    cfg = box_config()
    local = [c for c in cfg.cameras if c.source.startswith("/dev/video") or c.source == "picamera2"]
    if not local:
        pytest.skip("no USB or Pi camera in the config (RTSP and test sources need no hardware)")
    for cam in local:
        if cam.source == "picamera2":
            picamera2 = pytest.importorskip("picamera2", reason="picamera2 is not installed on this base")
            with picamera2.Picamera2() as picam:
                print(f"\n{cam.name}: Pi camera {picam.camera_properties.get('Model', '?')}")
            continue
        assert Path(cam.source).exists(), f"{cam.name}: {cam.source} does not exist (camera unplugged?)"
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "probe.ts"
            proc = subprocess.run(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "v4l2",
                 "-video_size", f"{cam.width}x{cam.height}", "-i", cam.source, "-t", "3",
                 "-c:v", "libx264", "-preset", "ultrafast", str(out)],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert proc.returncode == 0, (
                f"{cam.name}: ffmpeg could not record {cam.source}: {proc.stderr[-500:]}"
            )
            probe = subprocess.run(
                ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height",
                 "-of", "csv=p=0", str(out)],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            assert probe.stdout.strip(), f"{cam.name}: the recording is not readable"
            print(f"\n{cam.name}: {cam.source} recorded ({probe.stdout.strip()})")


def test_sd_card_write_speed() -> None:
    data = Path("/var/lib/venuecam")
    if not data.is_dir() or shutil.disk_usage(data).free < 256 * 2**20:
        pytest.skip("no data partition with 256 MiB free")
    block = os.urandom(2**20)
    path = data / ".hw-check-write"
    start = time.monotonic()
    try:
        with open(path, "wb") as f:
            for _ in range(64):
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        elapsed = time.monotonic() - start
    finally:
        path.unlink(missing_ok=True)
    speed = 64 / elapsed
    print(f"\nSD card: 64 MiB written and synced at {speed:.1f} MB/s")
    assert speed >= MIN_SD_MB_S, f"the card writes {speed:.1f} MB/s: too slow to record on (replace it)"


def test_watchdog_armed() -> None:
    if "modprobe.blacklist=bcm2835_wdt" in Path("/proc/cmdline").read_text():
        pytest.skip("the watchdog driver is kept out on this boot's command line (emulated Pi)")
    if not Path("/dev/watchdog0").exists():
        pytest.fail("no /dev/watchdog0: the hardware watchdog driver (bcm2835_wdt) is not loaded")
    runtime = subprocess.run(
        ["systemctl", "show", "-p", "RuntimeWatchdogUSec", "--value"], capture_output=True, text=True
    ).stdout.strip()
    assert runtime not in ("", "0", "infinity"), (
        f"systemd does not feed the watchdog (RuntimeWatchdogUSec={runtime})"
    )
    service = subprocess.run(
        ["systemctl", "show", "-p", "WatchdogUSec", "--value", "venuecam.service"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert service not in ("", "0"), "venuecam.service has no WatchdogSec"
    print(f"\nwatchdog: systemd feeds /dev/watchdog0 every {runtime}; venuecam.service watchdog {service}")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-rs"]))
