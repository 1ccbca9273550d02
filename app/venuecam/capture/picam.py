"""The Raspberry Pi camera through picamera2: its H.264 encoder feeds ffmpeg's stdin.

picamera2 exists only on Raspberry Pi OS (its libcamera bindings come from that archive), so
it is imported lazily, here and nowhere else. The boundary is `PicameraApi`: the three names
we use from picamera2. Tests replace exactly that (a fake `picamera2` package), nothing of ours.
ffmpeg, not picamera2's FfmpegOutput, does the muxing: FfmpegOutput SIGKILLs ffmpeg when
Python dies, while a closed stdin lets ffmpeg finish the segment it is writing.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from venuecam.config import CameraConfig
from venuecam.errors import CaptureError


@dataclass(frozen=True)
class PicameraApi:
    """The subset of picamera2 we use: Picamera2, encoders.H264Encoder, outputs.FileOutput."""

    Picamera2: Any
    H264Encoder: Any
    FileOutput: Any


def load_api() -> PicameraApi:
    try:
        root = importlib.import_module("picamera2")
        encoders = importlib.import_module("picamera2.encoders")
        outputs = importlib.import_module("picamera2.outputs")
    except ImportError as e:
        raise CaptureError(
            f"source picamera2: cannot import picamera2 ({e}); install python3-picamera2 from Raspberry Pi OS"
        ) from None
    return PicameraApi(root.Picamera2, encoders.H264Encoder, outputs.FileOutput)


class PicameraSource:
    """Records the Pi camera as raw H.264 into `sink` (ffmpeg's stdin) until stopped."""

    def __init__(self, cam: CameraConfig, api: PicameraApi | None = None) -> None:
        self.cam = cam
        self.api = api
        self._picam: Any = None

    def start(self, sink: BinaryIO) -> None:
        api = self.api or load_api()
        cam = self.cam
        try:
            picam = api.Picamera2()
            config = picam.create_video_configuration(
                main={"size": (cam.width, cam.height)}, controls={"FrameRate": float(cam.fps)}
            )
            picam.configure(config)
            # iperiod = fps: a keyframe every second, like the ffmpeg-encoded sources.
            encoder = api.H264Encoder(bitrate=cam.bitrate_kbps * 1000, repeat=True, iperiod=cam.fps)
            picam.start_recording(encoder, api.FileOutput(sink))
        except Exception as e:  # whatever libcamera raises: the camera is not usable
            raise CaptureError(f"camera {cam.name}: picamera2 failed to start: {e}") from e
        self._picam = picam

    def stop(self) -> None:
        picam, self._picam = self._picam, None
        if picam is None:
            return
        try:
            picam.stop_recording()
        finally:
            picam.close()
