"""One closed segment (or the part of it a booking needs) as samples: ffmpeg stream-copies it
to a fragmented MP4 on a pipe, `fragments` reads the result. Nothing is re-encoded."""

from __future__ import annotations

import os
import subprocess

from venuecam.clips.plan import ClipItem
from venuecam.errors import ClipError
from venuecam.live import fragments
from venuecam.media.runner import die_with_parent

TIMESCALE = 90_000  # MPEG-TS's own clock: durations stay exact
# Recording never waits for the live path: its ffmpeg yields the CPU to capture's.
NICE = 10


def _child_setup() -> None:  # runs in the child between fork and exec
    die_with_parent()
    os.nice(NICE)


def remux_argv(item: ClipItem, ffmpeg: str = "ffmpeg") -> list[str]:
    seek = ["-ss", f"{item.inpoint_s:.3f}"] if item.trimmed_start else []
    # `-t` is output duration: with `-ss` before `-i`, output time 0 is the in-point.
    until = ["-t", f"{item.outpoint_s - item.inpoint_s:.3f}"] if item.trimmed_end else []
    return [
        ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", *seek, "-i", item.path, *until,
        "-map", "0:v:0", "-c", "copy", "-f", "mp4",
        "-movflags", "frag_keyframe+empty_moov+default_base_moof",
        "-video_track_timescale", str(TIMESCALE), "pipe:1",
    ]  # fmt: skip


def remux(item: ClipItem, timeout: float = 120.0) -> fragments.Segment:
    """ClipError naming the file when ffmpeg fails or gives no frame."""
    try:
        proc = subprocess.run(
            remux_argv(item), capture_output=True, timeout=timeout, preexec_fn=_child_setup, check=False
        )
    except subprocess.TimeoutExpired:
        raise ClipError(f"segment {item.path}: remux timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ClipError(
            f"segment {item.path}: ffmpeg could not remux it: {' / '.join(tail) or proc.returncode}"
        )
    try:
        return fragments.parse(proc.stdout)
    except ClipError:
        raise
    except Exception as e:  # BadInputError and friends: say which file
        raise ClipError(f"segment {item.path}: {e}") from None
