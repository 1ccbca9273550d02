"""Running `venuecam capture` for real in tests: the program in a process with its own config
and log, its segments read back from the index; and the fake `picamera2` package (the only
faked boundary of the Pi camera path: it produces H.264 with ffmpeg)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import base_sections, render_toml
from venuecam import config as config_mod
from venuecam.db import open_db
from venuecam.models import Segment

VENUECAM = str(Path(sys.executable).parent / "venuecam")
SMALL = {"field_id": 1, "segment_seconds": 1, "width": 320, "height": 240, "fps": 10, "bitrate_kbps": 200}


class Capture:
    """One `venuecam capture --camera NAME` process, its log in a file."""

    def __init__(self, tmp: Path, cam: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.name = cam["name"]
        self.config_path = tmp / "venuecam.toml"
        self.config_path.write_text(render_toml(base_sections(tmp, cameras=[cam])))
        self.cfg = config_mod.load(self.config_path)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> Capture:
        self.runs += 1
        self.log_path = self.tmp / f"capture-{self.runs}.log"
        with open(self.log_path, "wb") as log:
            argv = [VENUECAM, "--config", str(self.config_path), "capture", "--camera", self.name]
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def segments(self) -> list[Segment]:
        db = open_db(self.cfg.db_path)
        try:
            return list(Segment.select().where(Segment.camera == self.name).order_by(Segment.start_ts))
        finally:
            db.close()

    def wait_segments(self, count: int, timeout: float = 30.0) -> list[Segment]:
        wait_for(
            lambda: len(self.segments()) >= count, timeout, lambda: f"{count} segments; log:\n{self.log}"
        )
        return self.segments()

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"capture did not exit within {timeout}s; log:\n{self.log}")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_for(cond: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what()}")


def max_gap(segments: list[Segment]) -> float:
    return max(b.start_ts - a.end_ts for a, b in zip(segments, segments[1:], strict=False))


FAKE_PICAMERA2 = {
    "__init__.py": """
        import json, os, subprocess, threading, time

        class Picamera2:
            def __init__(self, camera_num=0):
                self.config = None
                self._stop = threading.Event()
                self._thread = None
                self._proc = None

            def create_video_configuration(self, main=None, controls=None, **kw):
                return {"main": main or {}, "controls": controls or {}}

            def configure(self, config):
                self.config = config

            def start_recording(self, encoder, output, **kw):
                log = os.environ.get("FAKE_PICAMERA2_LOG")
                if log:
                    with open(log, "w") as f:
                        json.dump({"config": self.config, "encoder": vars(encoder)}, f)
                width, height = self.config["main"]["size"]
                fps = int(self.config["controls"]["FrameRate"])
                self._proc = subprocess.Popen(
                    ["ffmpeg", "-v", "error", "-nostdin", "-re", "-f", "lavfi",
                     "-i", f"testsrc2=size={width}x{height}:rate={fps}", "-c:v", "libx264",
                     "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(encoder.iperiod),
                     "-f", "h264", "pipe:1"],
                    stdout=subprocess.PIPE,
                )
                stall_after = float(os.environ.get("FAKE_PICAMERA2_STALL_AFTER_S", "inf"))
                self._thread = threading.Thread(target=self._pump, args=(output, stall_after), daemon=True)
                self._thread.start()

            def _pump(self, output, stall_after):
                began = time.monotonic()
                while not self._stop.is_set():
                    if time.monotonic() - began > stall_after:
                        self._proc.kill()  # the sensor stops delivering; the process lives on
                        self._stop.wait()
                        return
                    chunk = self._proc.stdout.read1(65536)
                    if not chunk:
                        return
                    try:
                        output.outputframe(chunk)
                    except (BrokenPipeError, ValueError):
                        return

            def stop_recording(self):
                self._stop.set()
                if self._proc:
                    self._proc.kill()
                    self._proc.wait()
                if self._thread:
                    self._thread.join(5)

            def close(self):
                pass
    """,
    "encoders.py": """
        class H264Encoder:
            def __init__(self, bitrate=None, repeat=False, iperiod=None, **kw):
                self.bitrate, self.repeat, self.iperiod = bitrate, repeat, iperiod
    """,
    "outputs.py": """
        class FileOutput:
            def __init__(self, file=None):
                self.fileoutput = file

            def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):
                self.fileoutput.write(frame)
                self.fileoutput.flush()
    """,
}


def write_fake_picamera2(folder: Path) -> Path:
    """The fake package under `folder`/fakes; returns the directory to put on PYTHONPATH."""
    pkg = folder / "fakes" / "picamera2"
    pkg.mkdir(parents=True)
    for name, body in FAKE_PICAMERA2.items():
        (pkg / name).write_text(textwrap.dedent(body))
    return pkg.parent


def picamera_capture(tmp_path: Path, fakes: Path, segment_seconds: int = 1, **env: str) -> Capture:
    cam = {
        "name": "PICAM",
        "source": "picamera2",
        **SMALL,
        "stall_timeout_s": 1,
        "segment_seconds": segment_seconds,
    }
    return Capture(tmp_path, cam, env={"PYTHONPATH": str(fakes), **env})
