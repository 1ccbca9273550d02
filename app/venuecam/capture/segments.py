"""Segment naming, segment-list parsing and start-time arithmetic. Pure functions.

How a segment's wall-clock start is derived
-------------------------------------------
ffmpeg's segment list gives each closed segment's start and end as offsets (seconds of
media time) from the first packet of the run. The recorder turns media time into wall time
with an *anchor*: the monotonic instant of media time zero, estimated from ffmpeg's
`-progress` reports. A report read at monotonic time `m` saying media time `t` has been
written means media time zero happened at or before `m - t` (ffmpeg cannot write media
faster than a live source produces it; it can only be late), so the smallest `m - t` over a
sliding window (`AnchorEstimator`) is the best estimate; the window lets it follow a camera
clock that drifts against ours. A segment-list line read at `m` naming a segment that ends at
`e` is one more such sample (`m - e`). Segments are filed about a second after they close, so
the estimate has settled after ffmpeg's start-up catch-up (it first writes, faster than real
time, what it buffered while probing the input). A segment's start is converted to wall time when it is
indexed, with the wall clock read at that moment, so a wall-clock step (NTP setting the
clock of a Pi that has no RTC) applies to every segment indexed after it.

Accuracy: within about one frame plus one progress period's scheduling jitter of when the
frame reached ffmpeg (tens of ms for testsrc and USB cameras). An RTSP camera's own
encode-and-send latency (typically 0.2-1 s) is not visible to us and is not subtracted.

Where the boundaries fall
-------------------------
ffmpeg cuts on the wall clock (`command.build_ffmpeg_argv`: at the first keyframe it muxes
at or after each multiple of `segment_seconds`), and the anchor is learnt from when ffmpeg
writes: both read the same clock at about the same moment, so a filed segment (all but a
run's first) starts at or just after a multiple, within one keyframe interval plus the
anchor's accuracy. Nothing here assumes a segment lasts `segment_seconds`: a run's first is
shorter, a clock step makes one short one, and the list gives each its own bounds.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path

SUFFIX = ".ts"
_NAME_RE = re.compile(r"^(\d{8}T\d{6}\.\d{6})Z(?:-\d+)?\.ts$")
_STAMP_FORMAT = "%Y%m%dT%H%M%S.%f"


@dataclass(frozen=True)
class ListEntry:
    """One line of ffmpeg's CSV segment list: a closed segment and its media-time bounds."""

    filename: str
    start: float
    end: float


def parse_list_line(line: str) -> ListEntry | None:
    """`000003.ts,30.000000,40.000000` -> ListEntry; None for a blank or malformed line."""
    parts = line.strip().rsplit(",", 2)
    if len(parts) != 3 or not parts[0]:
        return None
    name = parts[0].strip('"')
    try:
        start, end = float(parts[1]), float(parts[2])
    except ValueError:
        return None
    if end < start:
        return None
    return ListEntry(name, start, end)


def parse_list(text: str) -> list[ListEntry]:
    """Every complete line of a segment list (a last line without newline is still being written)."""
    complete = text[: text.rfind("\n") + 1] if "\n" in text else ""
    return [e for line in complete.splitlines() if (e := parse_list_line(line)) is not None]


def segment_name(start_ts: float) -> str:
    """The file name of a segment starting at UTC epoch `start_ts`: 20250123T100000.123456Z.ts"""
    stamp = dt.datetime.fromtimestamp(start_ts, dt.UTC).strftime(_STAMP_FORMAT)
    return f"{stamp}Z{SUFFIX}"


def segment_path(segments_dir: Path, camera: str, start_ts: float) -> Path:
    """<segments_dir>/<camera>/<YYYY-MM-DD UTC>/<YYYYmmddTHHMMSS.ffffff>Z.ts"""
    day = dt.datetime.fromtimestamp(start_ts, dt.UTC).date().isoformat()
    return segments_dir / camera / day / segment_name(start_ts)


def parse_segment_name(name: str) -> float | None:
    """The UTC epoch start encoded in a segment's file name, or None if it is not one of ours."""
    m = _NAME_RE.match(name)
    if not m:
        return None
    stamp = dt.datetime.strptime(m.group(1), _STAMP_FORMAT).replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def duration_is_sane(duration: float, segment_seconds: int) -> bool:
    """A segment is usable if it has some video and is not absurdly long for its settings."""
    return 0.0 < duration < 2 * segment_seconds + 2


def stall_window(stall_timeout_s: float, segment_seconds: int) -> float:
    """Seconds without a newly closed segment after which the source counts as stalled.

    Never shorter than one segment plus a margin: a segment cannot close sooner than that,
    so a smaller configured timeout would call every healthy camera stalled.
    """
    return max(float(stall_timeout_s), segment_seconds + 2.0)


def mono_to_wall(mono: float, now_mono: float, now_wall: float) -> float:
    """A monotonic instant as wall-clock epoch seconds, using the clocks read together now."""
    return now_wall - (now_mono - mono)


def parse_progress_line(line: str) -> float | None:
    """Media time in seconds from an ffmpeg `-progress` line (`out_time_us=1500000`), else None."""
    key, sep, value = line.strip().partition("=")
    if not sep or key not in ("out_time_us", "out_time_ms"):  # both are microseconds in ffmpeg
        return None
    try:
        us = int(value)
    except ValueError:
        return None
    return us / 1e6 if us >= 0 else None


class AnchorEstimator:
    """Estimates the monotonic instant of media time zero from (read at, media time) samples.

    Keeps the smallest `read_at - media_time` seen within the last `window_s` seconds of
    samples; until the first sample, falls back to `fallback` (the moment ffmpeg started).
    """

    def __init__(self, fallback: float, window_s: float = 60.0) -> None:
        self.fallback = fallback
        self.window_s = window_s
        self._samples: deque[tuple[float, float]] = deque()  # (read_at, read_at - media_time)

    def add(self, read_at: float, media_time: float) -> None:
        self._samples.append((read_at, read_at - media_time))
        while self._samples and self._samples[0][0] < read_at - self.window_s:
            self._samples.popleft()

    @property
    def has_samples(self) -> bool:
        return bool(self._samples)

    def anchor(self) -> float:
        if not self._samples:
            return self.fallback
        return min(offset for _, offset in self._samples)
