"""The capture program for real: `venuecam capture` processes recording with ffmpeg.

Small and fast settings (320x240 @ 10 fps, 1 s segments). The Pi camera path runs against a
fake `picamera2` package (the only faked boundary); it produces H.264 with ffmpeg.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from capture_rig import SMALL, VENUECAM, Capture, max_gap, picamera_capture, write_fake_picamera2
from conftest import free_port
from venuecam.capture.segments import parse_segment_name, segment_name

# Segment times are measured against this machine's clock and scheduling (abutting within a
# frame or two), not against a background image build's load.
pytestmark = pytest.mark.usefixtures("no_background_build")


@pytest.fixture
def captures() -> Iterator[list[Capture]]:
    started: list[Capture] = []
    yield started
    for c in started:
        c.kill()


@pytest.fixture
def camera(tmp_path: Path, captures: list[Capture]) -> Capture:
    c = Capture(tmp_path, {"name": "CAMERA_A", "source": "testsrc", **SMALL})
    captures.append(c)
    return c


def make_ts(path: Path, seconds: float) -> Path:
    """A real MPEG-TS recording made by ffmpeg (not by the code under test)."""
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-f", "mpegts", "-y", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


# ---------------------------------------------------------------- recording


def test_segments_are_recorded_validated_and_indexed_back_to_back(camera: Capture) -> None:
    before = time.time()
    camera.start()
    segments = camera.wait_segments(5)
    assert camera.stop() == 0
    segments = camera.segments()
    for s in segments:
        path = Path(s.path)
        assert path.is_file() and path.stat().st_size == s.bytes > 0
        assert path.parent.parent == camera.cfg.segments_dir / "CAMERA_A"
        assert parse_segment_name(path.name) == pytest.approx(s.start_ts, abs=1e-6)
        assert path.parent.name == time.strftime("%Y-%m-%d", time.gmtime(s.start_ts))
        assert s.end_ts > s.start_ts
        # Each lasts a segment, except the last, which the stop cut short. Cuts are on the
        # clock at the next keyframe (one a second): one where a keyframe just missed a
        # boundary runs to the next one, a keyframe interval longer.
        assert 0.5 < s.duration <= 2.1 or (s is segments[-1] and s.duration > 0)
        assert (s.codec, s.width, s.height) == ("h264", 320, 240)
    # Wall-clock starts: after the test began, continuous, no overlaps, no gaps.
    assert segments[0].start_ts >= before
    for a, b in zip(segments, segments[1:], strict=False):
        assert abs(b.start_ts - a.end_ts) < 0.5, (a.path, b.path)


def test_only_a_runs_first_segment_is_ffprobed(tmp_path: Path, captures: list[Capture]) -> None:
    """ffprobe costs whole seconds of a Pi's CPU: once per ffmpeg run, the rest are checked
    against it from their own bytes and ffmpeg's segment list. Counted through a shim that
    runs the real ffprobe."""
    shim = tmp_path / "bin"
    shim.mkdir()
    calls = tmp_path / "ffprobe-calls"
    real = subprocess.run(["sh", "-c", "command -v ffprobe"], capture_output=True, text=True).stdout.strip()
    (shim / "ffprobe").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexec {real} "$@"\n')
    (shim / "ffprobe").chmod(0o755)
    c = Capture(tmp_path, {"name": "CAMERA_A", "source": "testsrc", **SMALL},
                env={"PATH": f"{shim}:{os.environ['PATH']}"})  # fmt: skip
    captures.append(c)
    c.start()
    segments = c.wait_segments(5)
    assert c.stop() == 0
    assert len(calls.read_text().splitlines()) == 1, calls.read_text()
    for s in segments:  # what the probe of the first said, and each one's own length and size
        assert (s.codec, s.width, s.height) == ("h264", 320, 240)
        assert s.bytes == Path(s.path).stat().st_size and 0 < s.duration <= 2.1


def test_a_later_segment_that_is_not_a_ts_file_is_refused_by_name(tmp_path: Path) -> None:
    from venuecam.capture.indexer import validate_like
    from venuecam.errors import BadInputError
    from venuecam.media.probe import probe

    first = probe(make_ts(tmp_path / "000000.ts", 1.0))
    good = validate_like(make_ts(tmp_path / "000001.ts", 1.0), first, 1.0, 1)
    assert (good.codec, good.width, good.duration) == (first.codec, first.width, 1.0)
    bad = tmp_path / "000002.ts"
    bad.write_bytes(b"not a transport stream\n" * 50)
    for path, duration, why in ((bad, 1.0, "no video timestamp"), (tmp_path / "000001.ts", 9.0, "duration")):
        with pytest.raises(BadInputError) as e:
            validate_like(path, first, duration, 1)
        assert path.name in str(e.value) and why in str(e.value)


def test_sigterm_finalises_the_open_segment_and_exits_0(camera: Capture) -> None:
    camera.start()
    camera.wait_segments(2)
    assert camera.stop() == 0
    indexed = {s.path for s in camera.segments()}
    on_disk = {str(p) for p in (camera.cfg.segments_dir / "CAMERA_A").rglob("*.ts")}
    assert on_disk == indexed  # nothing left behind unindexed, in a run dir or elsewhere
    assert "stopping on SIGTERM" in camera.log


# ---------------------------------------------------------------- sources that cannot work


def test_missing_usb_camera_exits_non_zero_naming_the_device(tmp_path: Path, captures: list[Capture]) -> None:
    c = Capture(tmp_path, {"name": "CAMERA_A", "source": "/dev/video99", **SMALL})
    captures.append(c)
    assert c.start().wait_exit() != 0
    assert "🎥 CAPTURE: camera CAMERA_A: video device /dev/video99 does not exist" in c.log
    assert c.segments() == []


def test_dead_rtsp_camera_exits_non_zero_without_leaking_its_password(
    tmp_path: Path, captures: list[Capture]
) -> None:
    url = f"rtsp://admin:cam-secret-pw@127.0.0.1:{free_port()}/stream"  # nothing listens there
    c = Capture(tmp_path, {"name": "CAMERA_A", "source": url, **SMALL})
    captures.append(c)
    assert c.start().wait_exit() != 0
    assert "🎥 CAPTURE: camera CAMERA_A: RTSP source rtsp://admin:********@127.0.0.1" in c.log
    assert "cam-secret-pw" not in c.log


def test_unknown_camera_name_is_a_clear_error(camera: Capture) -> None:
    out = subprocess.run(
        [VENUECAM, "--config", str(camera.config_path), "capture", "--camera", "NOPE"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 1
    assert "no camera named 'NOPE'" in out.stderr


# ---------------------------------------------------------------- leftovers from a crash


def test_leftover_truncated_and_empty_segments_at_start(camera: Capture) -> None:
    day_dir = camera.cfg.segments_dir / "CAMERA_A" / "2025-01-01"
    day_dir.mkdir(parents=True)
    start = 1735689600.0  # 2025-01-01T00:00:00Z
    truncated = make_ts(day_dir / segment_name(start), 1.0)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])  # power cut mid-write
    empty = day_dir / segment_name(start + 1)
    empty.touch()
    foreign = day_dir / "notes.ts"
    foreign.write_bytes(b"not ours")

    camera.start()
    camera.wait_segments(2)
    assert camera.stop() == 0

    by_path = {s.path: s for s in camera.segments()}
    assert str(truncated) in by_path
    kept = by_path[str(truncated)]
    assert kept.start_ts == pytest.approx(start)
    assert 0 < kept.duration < 1.0
    assert kept.end_ts == pytest.approx(start + kept.duration)
    assert not empty.exists() and str(empty) not in by_path
    assert f"deleting unusable segment: {empty}: empty file" in camera.log
    assert foreign.exists() and f"ignoring {foreign}" in camera.log


# ---------------------------------------------------------------- restarts


def test_kill_9_and_restart_leaves_only_a_short_gap(camera: Capture) -> None:
    camera.start()
    camera.wait_segments(3)
    time.sleep(0.5)  # into the next segment, so the kill cuts one short
    camera.kill()  # SIGKILL: no chance to finalise; ffmpeg dies with it (PDEATHSIG)
    before = camera.segments()
    # ffmpeg dies a moment after capture (PDEATHSIG) and may open one last segment before it
    # does: "after the restart" is measured from the restart, not from the kill.
    restarted_at = time.time()
    camera.start()
    after = camera.wait_segments(len(before) + 3)
    assert camera.stop() == 0
    assert "recovered segment" in camera.log  # the segment open at the kill
    assert after[-1].start_ts > restarted_at
    assert max_gap(camera.segments()) < 3.0
    # Nothing indexed twice and nothing overlapping by more than a frame or two.
    for a, b in zip(after, after[1:], strict=False):
        assert b.start_ts > a.end_ts - 0.3


# ---------------------------------------------------------------- the Pi camera (fake picamera2)


@pytest.fixture
def fake_picamera2(tmp_path: Path) -> Path:
    return write_fake_picamera2(tmp_path)


def test_picamera2_source_records_indexed_segments(
    tmp_path: Path, fake_picamera2: Path, captures: list[Capture]
) -> None:
    import json

    c = picamera_capture(tmp_path, fake_picamera2, FAKE_PICAMERA2_LOG=str(tmp_path / "picam.json"))
    captures.append(c)
    segments = c.start().wait_segments(3)
    assert c.stop() == 0
    assert all((s.codec, s.width, s.height) == ("h264", 320, 240) for s in segments)
    assert max_gap(c.segments()) < 0.5
    asked = json.loads((tmp_path / "picam.json").read_text())
    assert asked["config"]["main"]["size"] == [320, 240]
    assert asked["encoder"] == {"bitrate": 200_000, "repeat": True, "iperiod": 10}


def test_stalled_source_exits_non_zero(tmp_path: Path, fake_picamera2: Path, captures: list[Capture]) -> None:
    c = picamera_capture(tmp_path, fake_picamera2, FAKE_PICAMERA2_STALL_AFTER_S="2.5")
    captures.append(c)
    assert c.start().wait_exit() == 1
    assert "🎥 CAPTURE: camera PICAM: source stalled: no segment closed for 3s" in c.log
    assert len(c.segments()) >= 1  # what was recorded before the stall is kept


def test_picamera2_missing_exits_non_zero_with_a_clear_message(
    tmp_path: Path, captures: list[Capture]
) -> None:
    c = Capture(tmp_path, {"name": "PICAM", "source": "picamera2", **SMALL})
    captures.append(c)
    assert c.start().wait_exit() == 1
    assert "cannot import picamera2" in c.log
