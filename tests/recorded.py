"""Recording real segments with ffmpeg the way capture writes them, and indexing them at a
chosen wall-clock time (tests that need a booking's video without minutes of recording)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from venuecam.media import tsinfo
from venuecam.media.probe import probe
from venuecam.models import Segment


@dataclass(frozen=True)
class Seg:
    path: str
    start_ts: float
    end_ts: float


def record_segments(
    folder: Path,
    seconds: int,
    width: int = 320,
    height: int = 240,
    audio: bool = False,
    bitrate_kbps: int | None = None,
) -> list[Path]:
    """What capture writes: 2 s MPEG-TS segments, H.264 with a keyframe every second.
    `bitrate_kbps` makes them that big (noise, constant bitrate): for multipart-sized clips."""
    folder.mkdir(parents=True, exist_ok=True)
    sound = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-c:a", "aac"] if audio else []
    size = []
    source = f"testsrc=s={width}x{height}:r=10"
    if bitrate_kbps:
        source += ",noise=alls=60:allf=t"
        b = f"{bitrate_kbps}k"
        size = ["-b:v", b, "-minrate", b, "-maxrate", b, "-bufsize", b, "-x264-params", "nal-hrd=cbr"]
    subprocess.run(
        [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", source, *sound, "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-keyint_min", "10",
            "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p", *size,
            "-f", "segment", "-segment_time", "2", "-segment_format", "mpegts",
            str(folder / "seg%03d.ts"),
        ],
        check=True,
        timeout=120,
    )  # fmt: skip
    return sorted(folder.glob("seg*.ts"))


def as_segments(paths: list[Path], base_ts: float) -> list[Seg]:
    """Wall-clock bounds from each file's first timestamp, as capture's index would hold them."""
    pts = [tsinfo.first_video_pts(p) for p in paths]
    assert all(p is not None for p in pts)
    secs = [p / 90_000 for p in pts]  # type: ignore[operator]
    out = []
    for i, path in enumerate(paths):
        end = secs[i + 1] if i + 1 < len(secs) else secs[i] + probe(path).duration
        out.append(Seg(str(path), base_ts + secs[i] - secs[0], base_ts + end - secs[0]))
    return out


def index(segments: list[Seg], camera: str) -> None:
    """Segment rows for them, as capture's indexer writes (needs the database open)."""
    with Segment._meta.database.atomic():
        for s in segments:
            Segment.create(camera=camera, start_ts=s.start_ts, end_ts=s.end_ts, duration=s.end_ts - s.start_ts,
                           path=s.path, bytes=Path(s.path).stat().st_size)  # fmt: skip
