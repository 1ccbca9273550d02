"""Pure parts of capture: the ffmpeg command, segment list parsing, naming, start times."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from venuecam.capture.command import (
    build_ffmpeg_argv,
    copies_stream,
    ffmpeg_env,
    rtsp_probe_argv,
    source_kind,
)
from venuecam.capture.indexer import leftover_starts
from venuecam.capture.segments import (
    AnchorEstimator,
    ListEntry,
    duration_is_sane,
    mono_to_wall,
    parse_list,
    parse_list_line,
    parse_progress_line,
    parse_segment_name,
    segment_name,
    segment_path,
    stall_window,
)
from venuecam.config import CameraConfig


def camera(source: str, **over: int) -> CameraConfig:
    values = {"segment_seconds": 10, "width": 1280, "height": 720, "fps": 25, "bitrate_kbps": 4000}
    return CameraConfig(name="CAM", field_id=1, source=source, **{**values, **over})


def value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# ---------------------------------------------------------------- command


@pytest.mark.parametrize(
    ("source", "kind"),
    [("testsrc", "testsrc"), ("picamera2", "picamera2"), ("rtsp://h/s", "rtsp"), ("rtsps://h/s", "rtsp"),
     ("/dev/video2", "v4l2")],
)  # fmt: skip
def test_source_kind(source: str, kind: str) -> None:
    assert source_kind(source) == kind


def test_source_kind_rejects_unknown_source_by_name() -> None:
    with pytest.raises(ValueError, match="'http://x'"):
        source_kind("http://x")


def test_testsrc_is_encoded_live_with_a_keyframe_every_second(tmp_path: Path) -> None:
    argv = build_ffmpeg_argv(camera("testsrc"), tmp_path)
    assert argv[0] == "ffmpeg"
    assert "-re" in argv
    assert "testsrc2=size=1280x720:rate=25" in value_after(argv, "-i")
    assert value_after(argv, "-c:v") == "libx264"
    assert value_after(argv, "-preset") == "ultrafast"
    assert value_after(argv, "-tune") == "zerolatency"
    assert value_after(argv, "-g") == "25"
    assert value_after(argv, "-force_key_frames") == "expr:gte(t,n_forced*1)"
    assert value_after(argv, "-b:v") == "4000k"
    assert "-nostdin" in argv


def test_output_is_mpegts_segments_with_a_csv_list_in_the_run_dir(tmp_path: Path) -> None:
    argv = build_ffmpeg_argv(camera("testsrc", segment_seconds=7), tmp_path)
    assert value_after(argv, "-f") != "segment"  # the first -f is the input's
    assert argv[argv.index("segment") - 1] == "-f"
    assert value_after(argv, "-segment_time") == "7"
    assert value_after(argv, "-segment_format") == "mpegts"
    assert value_after(argv, "-segment_list") == str(tmp_path / "list.csv")
    assert value_after(argv, "-segment_list_type") == "csv"
    assert value_after(argv, "-progress") == "pipe:1"
    assert argv[-1] == str(tmp_path / "%06d.ts")


@pytest.mark.parametrize(
    ("source", "input_codec"),
    [("testsrc", None), ("rtsp://cam/stream", "h264"), ("rtsp://cam/stream", "hevc"), ("/dev/video0", None),
     ("/dev/video0", "h264"), ("picamera2", None)],
)  # fmt: skip
def test_every_source_is_cut_on_the_clock(tmp_path: Path, source: str, input_codec: str | None) -> None:
    argv = build_ffmpeg_argv(camera(source, segment_seconds=5), tmp_path, input_codec=input_codec)
    assert value_after(argv, "-segment_atclocktime") == "1"
    assert value_after(argv, "-segment_time") == "5"
    # Boundaries on the multiples themselves, and no cut ever skipped after a late packet.
    assert "-segment_clocktime_offset" not in argv
    assert "-segment_clocktime_wrap_duration" not in argv
    # The muxer's own options, so they must come after `-f segment` and before the output.
    assert argv.index("segment") < argv.index("-segment_atclocktime") < len(argv) - 1


def test_ffmpeg_cuts_on_utc_whatever_the_box_zone() -> None:
    env = ffmpeg_env({"TZ": "Asia/Kolkata", "PATH": "/usr/bin"})
    assert env == {"TZ": "UTC0", "PATH": "/usr/bin"}


def test_rtsp_h264_is_copied_over_tcp_with_a_timeout(tmp_path: Path) -> None:
    argv = build_ffmpeg_argv(camera("rtsp://cam/stream"), tmp_path, input_codec="h264")
    assert value_after(argv, "-rtsp_transport") == "tcp"
    assert int(value_after(argv, "-timeout")) > 0
    assert value_after(argv, "-i") == "rtsp://cam/stream"
    assert value_after(argv, "-c:v") == "copy"
    assert "-force_key_frames" not in argv


def test_rtsp_other_codec_is_reencoded(tmp_path: Path) -> None:
    assert not copies_stream(camera("rtsp://cam/stream"), "hevc")
    argv = build_ffmpeg_argv(camera("rtsp://cam/stream"), tmp_path, input_codec="hevc")
    assert value_after(argv, "-c:v") == "libx264"


def test_usb_camera_is_read_with_v4l2_and_encoded(tmp_path: Path) -> None:
    argv = build_ffmpeg_argv(camera("/dev/video3", width=640, height=480, fps=15), tmp_path)
    assert value_after(argv, "-f") == "v4l2"
    assert value_after(argv, "-video_size") == "640x480"
    assert value_after(argv, "-framerate") == "15"
    assert value_after(argv, "-i") == "/dev/video3"
    assert value_after(argv, "-g") == "15"


def test_picamera2_h264_comes_on_stdin_and_is_copied(tmp_path: Path) -> None:
    argv = build_ffmpeg_argv(camera("picamera2"), tmp_path)
    assert value_after(argv, "-i") == "pipe:0"
    assert value_after(argv, "-f") == "h264"
    assert value_after(argv, "-c:v") == "copy"
    assert "-nostdin" not in argv  # stdin is the video


def test_rtsp_probe_names_the_url_and_has_a_timeout() -> None:
    argv = rtsp_probe_argv("rtsp://cam/s")
    assert argv[0] == "ffprobe" and argv[-1] == "rtsp://cam/s"
    assert int(value_after(argv, "-timeout")) > 0


# ---------------------------------------------------------------- segment list


def test_parse_list_line() -> None:
    assert parse_list_line("000003.ts,30.000000,40.040000\n") == ListEntry("000003.ts", 30.0, 40.04)
    assert parse_list_line("") is None
    assert parse_list_line("000003.ts,abc,1") is None
    assert parse_list_line("000003.ts,5,4") is None  # ends before it starts


def test_parse_list_ignores_a_line_still_being_written() -> None:
    text = "000000.ts,0.000000,1.000000\n000001.ts,1.000000,2.0"
    assert parse_list(text) == [ListEntry("000000.ts", 0.0, 1.0)]
    assert parse_list("000000.ts,0.0,1.0") == []


def test_leftover_after_the_last_closed_segment_starts_where_it_ended() -> None:
    entries = [ListEntry("000000.ts", 0.0, 1.0), ListEntry("000001.ts", 1.0, 2.1)]
    starts = leftover_starts(["000000.ts", "000001.ts", "000002.ts"], entries)
    assert starts == {"000000.ts": 0.0, "000001.ts": 1.0, "000002.ts": 2.1}
    assert leftover_starts(["000000.ts"], []) == {"000000.ts": 0.0}


# ---------------------------------------------------------------- naming


def test_segment_name_and_path_use_the_utc_start() -> None:
    start = dt.datetime(2025, 1, 23, 23, 59, 58, 123456, tzinfo=dt.UTC).timestamp()
    assert segment_name(start) == "20250123T235958.123456Z.ts"
    path = segment_path(Path("/seg"), "CAM", start)
    assert path == Path("/seg/CAM/2025-01-23/20250123T235958.123456Z.ts")


def test_segment_name_round_trips() -> None:
    start = 1737676798.25
    assert parse_segment_name(segment_name(start)) == pytest.approx(start, abs=1e-6)
    assert parse_segment_name("20250123T235958.250000Z-1.ts") == pytest.approx(start, abs=1e-6)


@pytest.mark.parametrize("name", ["000001.ts", "20250123T235958Z.ts", "20250123T235958.123456Z.mp4", "x.ts"])
def test_foreign_names_are_not_segments(name: str) -> None:
    assert parse_segment_name(name) is None


# ---------------------------------------------------------------- validation and timing


def test_duration_is_sane() -> None:
    assert duration_is_sane(10.0, 10)
    assert duration_is_sane(0.04, 10)  # a segment cut short is still usable
    assert not duration_is_sane(0.0, 10)
    assert not duration_is_sane(22.0, 10)
    assert duration_is_sane(21.9, 10)


def test_stall_window_is_never_shorter_than_a_segment() -> None:
    assert stall_window(30, 10) == 30
    assert stall_window(1, 10) == 12


def test_progress_lines() -> None:
    assert parse_progress_line("out_time_us=1500000") == 1.5
    assert parse_progress_line("out_time_ms=2000000") == 2.0  # ffmpeg prints microseconds here too
    assert parse_progress_line("out_time_us=N/A") is None
    assert parse_progress_line("out_time_us=-5") is None
    assert parse_progress_line("frame=10") is None


def test_anchor_is_the_least_delayed_report() -> None:
    est = AnchorEstimator(fallback=100.0)
    assert est.anchor() == 100.0 and not est.has_samples
    est.add(read_at=101.30, media_time=1.0)  # read 0.3 s late
    est.add(read_at=101.55, media_time=1.5)  # read 0.05 s late: the better estimate
    est.add(read_at=102.20, media_time=2.0)
    assert est.anchor() == pytest.approx(100.05)


def test_anchor_follows_drift_within_the_window() -> None:
    est = AnchorEstimator(fallback=0.0, window_s=10.0)
    est.add(read_at=1.0, media_time=1.0)  # anchor 0.0
    est.add(read_at=20.0, media_time=19.5)  # 19 s later the camera clock has lost 0.5 s
    assert est.anchor() == pytest.approx(0.5)


def test_mono_to_wall() -> None:
    assert mono_to_wall(90.0, now_mono=100.0, now_wall=1_700_000_000.0) == 1_699_999_990.0
