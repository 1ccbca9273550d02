"""Decode pictures in tests with the real ffmpeg: a JPEG's or PNG's size and its pixels."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass


@dataclass
class Pixels:
    width: int
    height: int
    rgb: bytes  # rgb24, row by row

    def at(self, x: int, y: int) -> tuple[int, int, int]:
        i = 3 * (y * self.width + x)
        return self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]

    def centre(self) -> tuple[int, int, int]:
        return self.at(self.width // 2, self.height // 2)

    def box_of(self, want: tuple[int, int, int], tolerance: int = 30) -> tuple[int, int, int, int, int]:
        """(left, top, right, bottom, count) of the pixels within `tolerance` of `want`."""
        left, top, right, bottom, n = self.width, self.height, -1, -1, 0
        r0, g0, b0 = want
        rgb, w = self.rgb, self.width
        for y in range(self.height):
            row = rgb[3 * w * y : 3 * w * (y + 1)]
            for x in range(0, w):
                r, g, b = row[3 * x], row[3 * x + 1], row[3 * x + 2]
                if abs(r - r0) <= tolerance and abs(g - g0) <= tolerance and abs(b - b0) <= tolerance:
                    n += 1
                    left, right = min(left, x), max(right, x)
                    top, bottom = min(top, y), max(bottom, y)
        return left, top, right, bottom, n


def decode(data: bytes) -> Pixels:
    """A JPEG or PNG (bytes) as rgb24 pixels; raises if ffmpeg cannot decode it."""
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=width,height,codec_name", "-of", "csv=p=0", "-"],
        input=data, capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    codec, width, height = probe.stdout.decode().strip().split(",")[:3]
    assert codec in ("mjpeg", "png"), codec
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", "-", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        input=data, capture_output=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    pixels = Pixels(int(width), int(height), raw)
    assert len(raw) == 3 * pixels.width * pixels.height
    return pixels
