"""What the box can record with: the camera's own H.264 (UVC), the Pi's hardware encoder.

Each question is asked once per capture run, before ffmpeg starts; the answers decide the
command line (see command.choose_encoder) and are recorded for `venuecam status`.
"""

from __future__ import annotations

import glob
import subprocess
from pathlib import Path

from venuecam.media.runner import CommandError, run

from .command import HW_ENCODER, parse_v4l2_formats, v4l2_formats_argv

# The Raspberry Pi kernel's V4L2 mem2mem H.264 encoder (Pi 4 and earlier; none on a Pi 5,
# nor under Debian's mainline kernel, which lacks the bcm2835-codec driver).
M2M_ENCODER_NAMES = ("bcm2835-codec-encode",)


def v4l2_offers_h264(device: str, ffmpeg: str = "ffmpeg") -> bool:
    """True when the USB camera at `device` can deliver H.264 itself (recorded by copy)."""
    try:
        # ffmpeg lists the formats and exits non-zero ("Immediate exit requested"): read stderr.
        proc = subprocess.run(
            v4l2_formats_argv(device, ffmpeg), capture_output=True, text=True, timeout=15, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "h264" in parse_v4l2_formats(proc.stderr)


def hardware_encoder(sysfs: str = "/sys/class/video4linux", ffmpeg: str = "ffmpeg") -> bool:
    """True when the kernel has the Pi's H.264 encoder device and this ffmpeg can drive it."""
    names = []
    for name_file in glob.glob(f"{sysfs}/video*/name"):
        try:
            names.append(Path(name_file).read_text().strip())
        except OSError:
            continue
    if not any(n in M2M_ENCODER_NAMES for n in names):
        return False
    try:
        encoders = run([ffmpeg, "-hide_banner", "-encoders"], timeout=15).stdout
    except (CommandError, OSError):
        return False
    return any(line.split()[1:2] == [HW_ENCODER] for line in encoders.splitlines() if line.strip())
