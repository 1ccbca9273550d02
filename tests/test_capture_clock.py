"""Segments cut on the clock, for real: `venuecam capture` with ffmpeg's `testsrc` and the fake
picamera2, the boundaries read back from the segment index as the clip and live paths see them.

A cut waits for the first keyframe at or after each multiple of `segment_seconds` of the
clock; these sources give a keyframe every second, so a boundary is at most a second (plus
the start-time anchor's jitter) after its multiple. The clock-step test runs the capture
program under libfaketime (wall clock stepped by the test, monotonic clock real, as NTP steps
a Pi's clock) and checks that ffmpeg neither floods the disk with tiny segments nor stops
cutting, and follows the new clock.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from capture_rig import SMALL, Capture, picamera_capture, write_fake_picamera2
from faketime import FakeClock, build_shim
from venuecam.models import Segment

KEYFRAME_S = 1.0  # what encode_args and the (fake) Pi camera give
# How far a filed start may sit from ffmpeg's cut: the anchor's accuracy (about a frame and
# a progress period's scheduling jitter, see capture/segments.py), with room for a busy box.
JITTER_S = 0.25
# Jitter of this machine, not of a background image build sharing its two cores.
pytestmark = pytest.mark.usefixtures("no_background_build")


@pytest.fixture
def captures() -> Iterator[list[Capture]]:
    started: list[Capture] = []
    yield started
    for c in started:
        c.kill()


def after_multiple(ts: float, seconds: int) -> float:
    """How far `ts` is after the nearest multiple of `seconds` at or before it; a start a
    little before a multiple (jitter) comes out as a small negative number."""
    d = ts % seconds
    return d - seconds if d > seconds - JITTER_S else d


def assert_on_the_clock(segments: list[Segment], seconds: int) -> None:
    """Every segment but the run's first starts on a boundary, and each abuts the one before."""
    for s in segments[1:]:
        off = after_multiple(s.start_ts, seconds)
        assert -JITTER_S <= off <= KEYFRAME_S + JITTER_S, (seconds, s.start_ts, off)
    for a, b in zip(segments, segments[1:], strict=False):
        assert abs(b.start_ts - a.end_ts) < 0.1, (a.start_ts, a.end_ts, b.start_ts)


def wait_for_phase(phase: float, period: int) -> None:
    """Sleep until the wall clock is `phase` seconds past a multiple of `period`."""
    time.sleep((phase - time.time()) % period)


def assert_first_ends_on_the_next_boundary(first: Segment, seconds: int) -> None:
    next_boundary = math.floor(first.start_ts / seconds + 1) * seconds
    assert first.end_ts <= next_boundary + KEYFRAME_S + JITTER_S, (first.start_ts, first.end_ts)


def test_segments_are_cut_on_multiples_of_the_clock(tmp_path: Path, captures: list[Capture]) -> None:
    runs = {}
    for seconds in (2, 5):
        folder = tmp_path / f"t{seconds}"
        folder.mkdir()
        cam = {"name": "CAMERA_A", "source": "testsrc", **SMALL, "segment_seconds": seconds}
        # The 5 s camera's box in a (made-up) zone 2 s east of UTC: were ffmpeg cutting on the
        # box's local time, its boundaries would all be 2 s off the UTC multiples.
        env = {"TZ": "XYZ-0:00:02"} if seconds == 5 else {}
        runs[seconds] = Capture(folder, cam, env=env)
        captures.append(runs[seconds])
    # Started a second past a multiple of 5: ffmpeg's first frame comes some tenths later,
    # so the 5 s camera's first segment runs to the next boundary, a second or more short.
    wait_for_phase(1.0, 5)
    started = time.time()
    for c in runs.values():  # both at once: half the wall time
        c.start()
    runs[5].wait_segments(3, timeout=40)  # about 15 s: a short first one, two whole, one open
    for c in runs.values():
        assert c.stop() == 0
    for seconds, c in runs.items():
        segments = c.segments()
        assert len(segments) >= 15 // seconds, (seconds, len(segments), c.log)
        assert_on_the_clock(segments, seconds)
        first, middle = segments[0], segments[1:-1]
        assert first.start_ts >= started
        assert_first_ends_on_the_next_boundary(first, seconds)
        # The rest last a segment, give or take where the keyframes fell; the last is cut by the stop.
        for s in middle:
            assert seconds - KEYFRAME_S - JITTER_S <= s.duration <= seconds + KEYFRAME_S + JITTER_S, (
                s.duration
            )
    assert runs[5].segments()[0].duration < 5 - 0.5


def test_the_pi_camera_is_cut_on_the_clock_too(tmp_path: Path, captures: list[Capture]) -> None:
    c = picamera_capture(tmp_path, write_fake_picamera2(tmp_path), segment_seconds=5)
    captures.append(c)
    # Started halfway between two multiples: cut from the start instead of on the clock, every
    # boundary would sit about 2.5 s off.
    wait_for_phase(2.5, 5)
    c.start().wait_segments(3, timeout=40)  # a keyframe a second (iperiod = fps)
    assert c.stop() == 0
    segments = c.segments()
    assert_on_the_clock(segments, 5)
    assert_first_ends_on_the_next_boundary(segments[0], 5)
    assert segments[0].duration < 5 - 0.5


def filed(db_path: Path) -> list[tuple[float, float]]:
    """(start_ts, end_ts) in the order capture filed them (a step back breaks start order)."""
    con = sqlite3.connect(db_path, timeout=30)
    try:
        return list(con.execute("SELECT start_ts, end_ts FROM segments ORDER BY id"))
    finally:
        con.close()


def test_a_clock_step_costs_one_short_segment_and_cutting_follows_the_new_clock(
    tmp_path: Path, captures: list[Capture]
) -> None:
    seconds = 2
    clock = FakeClock(tmp_path, build_shim(tmp_path))
    cam = {"name": "CAMERA_A", "source": "testsrc", **SMALL, "segment_seconds": seconds}
    c = Capture(tmp_path, cam, env=clock.env)
    captures.append(c)
    c.start().wait_segments(3)
    # Steps that are not whole segments, so the boundaries of the new clock are elsewhere:
    # NTP sets the clock 5.3 s forward, later 7 s back (libfaketime offsets count from real time).
    marks = [0]
    for offset in ("+5.3", "-1.7"):
        clock.set(offset)
        marks.append(len(filed(c.cfg.db_path)))
        c.wait_segments(marks[-1] + 6, timeout=30)  # it goes on cutting after each step
    assert c.stop() == 0
    rows = filed(c.cfg.db_path)
    marks.append(len(rows))
    # Per clock: skip what the step caught (a segment closed but not yet filed, the one open
    # across the step, the short one its first cut made); all after are on the new clock.
    for lo, hi in zip(marks, marks[1:], strict=False):
        settled = rows[lo + (3 if lo else 1) : hi]
        assert len(settled) >= 2, (lo, hi, rows)
        for start, _ in settled:
            assert -JITTER_S <= after_multiple(start, seconds) <= KEYFRAME_S + JITTER_S, (start, rows)
    durations = [end - start for start, end in rows[:-1]]  # the last was cut by the stop
    # No flood: a cut needs a keyframe after the last one, so nothing shorter than about a
    # keyframe interval, and no more segments than the time recorded allows plus one per step.
    assert min(durations) > KEYFRAME_S - JITTER_S, durations
    assert max(durations) < seconds + KEYFRAME_S + JITTER_S, durations
    # One short segment per step at most (the run's first may be short too).
    assert sum(d < seconds - 0.5 for d in durations[1:]) <= 2, durations
    recorded = sum(durations)
    assert len(durations) <= recorded / seconds + 2 + 2, (len(durations), recorded)
