"""ffprobe: is a media file whole, how long is it, what is in it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from venuecam.errors import BadInputError
from venuecam.media.runner import CommandError, run


@dataclass(frozen=True)
class Probe:
    duration: float
    codec: str
    width: int
    height: int
    fps: float
    start_time: float
    bytes: int


def probe(path: str | os.PathLike[str], timeout: float = 30.0) -> Probe:
    """Probe a video file; BadInputError (naming the file) if it is empty, corrupt or has no video."""
    p = Path(path)
    try:
        size = p.stat().st_size
    except OSError as e:
        raise BadInputError(f"{p}: cannot read: {e.strerror}") from None
    if size == 0:
        raise BadInputError(f"{p}: empty file")
    argv = [
        "ffprobe", "-v", "error", "-print_format", "json",
        "-show_entries", "format=duration,start_time:stream=codec_type,codec_name,width,height,avg_frame_rate",
        str(p),
    ]  # fmt: skip
    try:
        out = run(argv, timeout=timeout).stdout
    except CommandError as e:
        raise BadInputError(f"{p}: not a readable media file ({e})") from None
    info = json.loads(out or "{}")
    video = next((s for s in info.get("streams", []) if s.get("codec_type") == "video"), None)
    fmt = info.get("format", {})
    if video is None:
        raise BadInputError(f"{p}: no video stream")
    try:
        duration = float(fmt.get("duration") or 0.0)
    except ValueError:
        duration = 0.0
    num, _, den = str(video.get("avg_frame_rate", "0/1")).partition("/")
    fps = float(num) / float(den) if den and float(den) else 0.0
    return Probe(
        duration=duration,
        codec=str(video.get("codec_name", "")),
        width=int(video.get("width") or 0),
        height=int(video.get("height") or 0),
        fps=fps,
        start_time=float(fmt.get("start_time") or 0.0),
        bytes=size,
    )
