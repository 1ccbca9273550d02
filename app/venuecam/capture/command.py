"""The ffmpeg command line for one camera. Pure: no I/O, tested with plain values.

Every source ends in the same output: MPEG-TS segments (readable up to the last whole
packet after a SIGKILL or power cut) written by the segment muxer into a per-run directory,
a CSV segment list that names a segment only once it is closed, and `-progress` key=value
lines on stdout from which the recorder learns the wall-clock time of media time zero.

Segments are cut on the wall clock (`-segment_atclocktime`): a new one starts at the first
keyframe ffmpeg muxes at or after each multiple of `segment_seconds` of UTC time, so a booking
that starts or ends on such a multiple starts or ends on a boundary (within one keyframe
interval), and the segment holding its end closes right after the end. A run's first segment
is shorter (from the start to the next boundary). ffmpeg reads the clock of day as local time:
it runs with TZ=UTC (`FFMPEG_ENV`), so boundaries do not depend on the box's time zone or
daylight saving time, and config requires `segment_seconds` to divide an hour, so boundaries
fall on every whole hour and the pattern does not slip at midnight.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from venuecam.config import CameraConfig

LIST_NAME = "list.csv"
SEGMENT_PATTERN = "%06d.ts"
# How often ffmpeg reports progress; each report is one sample for the start-time anchor.
PROGRESS_PERIOD_S = 0.5
# A dead RTSP camera must make ffmpeg fail, not wait forever (microseconds).
RTSP_IO_TIMEOUT_US = 5_000_000
# Set in ffmpeg's environment: `-segment_atclocktime` cuts on local time, and UTC has neither
# a zone offset nor daylight saving jumps. "UTC0" is POSIX syntax: no tz database needed.
FFMPEG_ENV = {"TZ": "UTC0"}


def ffmpeg_env(base: Mapping[str, str]) -> dict[str, str]:
    """The environment ffmpeg records in: `base` (the program's own) with `FFMPEG_ENV`."""
    return {**base, **FFMPEG_ENV}


class SourceKind(StrEnum):
    TESTSRC = "testsrc"
    RTSP = "rtsp"
    V4L2 = "v4l2"
    PICAMERA2 = "picamera2"


def source_kind(source: str) -> SourceKind:
    if source == "testsrc" or source.startswith("testsrc:"):
        return SourceKind.TESTSRC
    if source == "picamera2":
        return SourceKind.PICAMERA2
    if source.startswith(("rtsp://", "rtsps://")):
        return SourceKind.RTSP
    if source.startswith("/dev/video"):
        return SourceKind.V4L2
    raise ValueError(
        f"unknown camera source {source!r} (expected rtsp://..., /dev/videoN, picamera2 or testsrc)"
    )


# The encoders a source that gives raw frames can be recorded with, best first where present:
# the Pi 4's hardware H.264 encoder (V4L2 mem2mem, Raspberry Pi kernel) or x264 in software.
HW_ENCODER = "h264_v4l2m2m"
SW_ENCODER = "libx264"
COPY = "copy"


def input_args(cam: CameraConfig, input_codec: str | None = None) -> list[str]:
    """Arguments that open the camera's source (everything up to and including -i).

    `input_codec` "h264" on a V4L2 device asks the camera for its own H.264 stream."""
    kind = source_kind(cam.source)
    size = f"{cam.width}x{cam.height}"
    if kind is SourceKind.TESTSRC:
        # A moving pattern with the UTC wall clock burnt in, so a clip's timing can be checked by eye.
        # -re paces it like a live camera: frame n is produced at start + n/fps.
        clock = "drawtext=text='%{gmtime}Z':x=4:y=4:fontsize=16:fontcolor=white:box=1:boxcolor=black@0.6"
        # "testsrc:red": a plain frame of one colour (config_checks.is_test_colour checked it), so
        # test cameras can be told apart in their pictures.
        colour = cam.source.partition(":")[2]
        pattern = (
            f"color=c={colour}:size={size}:rate={cam.fps}"
            if colour
            else f"testsrc2=size={size}:rate={cam.fps}"
        )
        return ["-re", "-f", "lavfi", "-i", f"{pattern},{clock}"]
    if kind is SourceKind.V4L2:
        fmt = ["-input_format", "h264"] if input_codec == "h264" else []
        return [
            "-f", "v4l2", "-thread_queue_size", "512", *fmt,
            "-framerate", str(cam.fps), "-video_size", size, "-i", cam.source,
        ]  # fmt: skip
    if kind is SourceKind.RTSP:
        return ["-rtsp_transport", "tcp", "-timeout", str(RTSP_IO_TIMEOUT_US), "-i", cam.source]
    # picamera2's H264Encoder writes a raw H.264 elementary stream into our stdin.
    # Small probe: the frame rate is given, and the default 5 s probe would hold back the start.
    return [
        "-fflags", "+genpts", "-probesize", "32768", "-analyzeduration", "0",
        "-f", "h264", "-framerate", str(cam.fps), "-i", "pipe:0",
    ]  # fmt: skip


def encode_args(cam: CameraConfig, encoder: str = SW_ENCODER) -> list[str]:
    """Encoding for sources that give raw frames: a keyframe every second (so a segment can
    be cut on any second boundary and a clip starts within a second), constant-ish bitrate.
    libx264: cheap, low latency. h264_v4l2m2m: the Pi 4's encoder, no CPU for the pixels."""
    rate = f"{cam.bitrate_kbps}k"
    keys = ["-g", str(cam.fps), "-force_key_frames", "expr:gte(t,n_forced*1)"]
    if encoder == HW_ENCODER:
        return ["-c:v", HW_ENCODER, "-pix_fmt", "yuv420p", "-b:v", rate, *keys]
    return [
        "-c:v", SW_ENCODER, "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
        "-b:v", rate, "-maxrate", rate, "-bufsize", f"{cam.bitrate_kbps * 2}k",
        "-keyint_min", str(cam.fps), "-sc_threshold", "0", *keys,
    ]  # fmt: skip


def copies_stream(cam: CameraConfig, input_codec: str | None) -> bool:
    """Stream copy for sources that already deliver H.264: RTSP cameras, a USB (UVC) camera
    that offers H.264, picamera2's encoder."""
    kind = source_kind(cam.source)
    if kind is SourceKind.PICAMERA2:
        return True
    return kind in (SourceKind.RTSP, SourceKind.V4L2) and input_codec == "h264"


def choose_encoder(cam: CameraConfig, input_codec: str | None, hardware_encoder: bool) -> str:
    """What records `cam`: "copy", "h264_v4l2m2m" (when the box has it) or "libx264"."""
    if copies_stream(cam, input_codec):
        return COPY
    return HW_ENCODER if hardware_encoder else SW_ENCODER


def parse_v4l2_formats(ffmpeg_stderr: str) -> set[str]:
    """The pixel formats and codecs a V4L2 device offers, from `ffmpeg -list_formats all`.

    Lines look like `[video4linux2,v4l2 @ 0x..] Compressed:  h264 :  H.264 : 1920x1080 ...`
    and `[...] Raw       :  yuyv422 :  YUYV 4:2:2 : 640x480 ...`."""
    out = set()
    for line in ffmpeg_stderr.splitlines():
        _, sep, rest = line.partition("] ")
        if not sep:
            continue
        kind, _, tail = rest.partition(":")
        if kind.strip() in ("Compressed", "Raw") and tail.strip():
            out.add(tail.split(":", 1)[0].strip())
    return out


def v4l2_formats_argv(device: str, ffmpeg: str = "ffmpeg") -> list[str]:
    return [ffmpeg, "-hide_banner", "-nostdin", "-f", "v4l2", "-list_formats", "all", "-i", device]


def build_ffmpeg_argv(
    cam: CameraConfig,
    run_dir: Path,
    input_codec: str | None = None,
    ffmpeg: str = "ffmpeg",
    encoder: str | None = None,
) -> list[str]:
    """The whole ffmpeg command that records `cam` into `run_dir`.

    `input_codec` is what a probe of an RTSP or V4L2 source found ("h264" means stream copy;
    anything else, or unknown, is re-encoded); `encoder` is `choose_encoder()`'s answer
    (default: copy where possible, else libx264). Output: `run_dir/000000.ts`, ... and
    `run_dir/list.csv`.
    """
    kind = source_kind(cam.source)
    if encoder is None:
        encoder = choose_encoder(cam, input_codec, hardware_encoder=False)
    codec = ["-c:v", "copy"] if encoder == COPY else encode_args(cam, encoder)
    stdin = [] if kind is SourceKind.PICAMERA2 else ["-nostdin"]
    return [
        ffmpeg, "-hide_banner", "-loglevel", "warning", "-nostats", *stdin,
        "-progress", "pipe:1", "-stats_period", str(PROGRESS_PERIOD_S),
        *input_args(cam, input_codec),
        "-map", "0:v:0", "-an", *codec,
        "-f", "segment", "-segment_time", str(cam.segment_seconds), "-segment_format", "mpegts",
        # Cut at each multiple of segment_time of the (UTC) clock, at the next keyframe. The
        # wrap duration is left unlimited on purpose: a clock step (NTP, fake-hwclock) then
        # costs at most one short segment, and no cut is ever skipped (a limit would skip the
        # cut whenever no packet reaches the muxer soon enough after the boundary, and make a
        # segment of up to twice segment_time). The offset stays 0: boundaries on the multiples.
        "-segment_atclocktime", "1",
        "-reset_timestamps", "0",
        # Write each packet through, so a SIGKILL or power cut loses only what the kernel had
        # not written back, not ffmpeg's own buffer (a whole short segment at low bitrates).
        "-segment_format_options", "flush_packets=1",
        "-segment_list", str(run_dir / LIST_NAME), "-segment_list_type", "csv",
        str(run_dir / SEGMENT_PATTERN),
    ]  # fmt: skip


def rtsp_probe_argv(url: str, ffprobe: str = "ffprobe") -> list[str]:
    """ffprobe asking an RTSP camera which codec its first video stream uses."""
    return [
        ffprobe, "-v", "error", "-rtsp_transport", "tcp", "-timeout", str(RTSP_IO_TIMEOUT_US),
        "-select_streams", "v:0", "-show_entries", "stream=codec_name", "-of", "csv=p=0", url,
    ]  # fmt: skip
