"""The capture loop for one camera: start ffmpeg, file and index each closed segment, watch
for a stalled or dead source, stop cleanly on request.

Exit status (what supervisord sees): 0 after a requested stop (SIGTERM/SIGINT), the last
segment finalised and indexed; 1 when the source is missing, dead or stalled, so that
supervisord restarts the program. Signal handlers only call `request_stop()`; the loop acts.
Nothing here touches the network beyond the camera itself: recording never waits on uploads.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from venuecam import logs, shared_state, wallclock
from venuecam.config import CameraConfig
from venuecam.errors import CaptureError
from venuecam.logs import mask_url
from venuecam.media.probe import Probe
from venuecam.media.runner import CommandError, popen, run

from . import indexer, probe
from .command import (
    COPY,
    LIST_NAME,
    SourceKind,
    build_ffmpeg_argv,
    choose_encoder,
    ffmpeg_env,
    rtsp_probe_argv,
    source_kind,
)
from .picam import PicameraApi, PicameraSource
from .segment_index import SegmentIndex, Timing
from .segments import AnchorEstimator, ListEntry, mono_to_wall, parse_list, parse_progress_line, stall_window

log = logging.getLogger("capture")

# ffmpeg gets this long after SIGTERM (or EOF on stdin) to close its segment, then SIGKILL.
STOP_GRACE_S = 5.0
POLL_S = 0.2
# Progress reports before this much media time may come before the first packet is written.
MIN_ANCHOR_MEDIA_TIME_S = 0.25
# The first segment may also wait for the source to open (RTSP connect, probing, sensor start).
STARTUP_GRACE_S = 10.0
# A closed segment is filed this long after the list names it (see `_file_pending`).
FILE_DELAY_S = 1.0


class Recorder:
    def __init__(
        self,
        cam: CameraConfig,
        segments_dir: Path,
        index: SegmentIndex,
        picamera_api: PicameraApi | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
        ffmpeg: str = "ffmpeg",
        hardware_encoder: Callable[[], bool] = probe.hardware_encoder,
        v4l2_offers_h264: Callable[[str], bool] = probe.v4l2_offers_h264,
        trusted: Callable[[float], bool] = lambda wall: wallclock.trust(wall).trusted,
    ) -> None:
        self.cam = cam
        self.segments_dir = segments_dir
        self.index = index
        self.picamera_api = picamera_api
        self.wall = wall
        self.mono = mono
        self.ffmpeg = ffmpeg
        self.hardware_encoder = hardware_encoder
        self.v4l2_offers_h264 = v4l2_offers_h264
        self.trusted = trusted
        self.boot_id = wallclock.boot_id()
        self.encoder = ""
        self.kind = source_kind(cam.source)
        self._stop_requested: int | None = None
        self._stderr_tail: deque[str] = deque(maxlen=12)
        self._segments_indexed = 0
        # How far the segment list has been read, and an incomplete last line.
        self._list_offset = 0
        self._list_buffer = ""
        # Closed segments waiting to be filed: (when the list named them, the entry).
        self._pending: deque[tuple[float, ListEntry]] = deque()
        self._anchor_warned = False
        # The run's first segment as ffprobe saw it: the rest of the run are checked against it.
        self._run_info: Probe | None = None

    # ------------------------------------------------------------ called from signal handlers

    def request_stop(self, signum: int = signal.SIGTERM) -> None:
        self._stop_requested = signum

    # ------------------------------------------------------------ the program

    def run(self) -> int:
        name = self.cam.name
        try:
            input_codec = self._check_source()
        except CaptureError as e:
            log.error("%s camera %s: %s", logs.CAPTURE, name, e)
            return 1
        recovered = indexer.recover(self.index, self.segments_dir, name, self.cam.segment_seconds)
        if recovered:
            log.info(
                "%s camera %s: indexed %d segments left by an earlier run", logs.CAPTURE, name, recovered
            )
        if self._stop_requested is not None:
            return 0
        run_dir = indexer.runs_root(self.segments_dir, name) / str(int(self.wall() * 1000))
        run_dir.mkdir(parents=True, exist_ok=True)
        self.encoder = choose_encoder(
            self.cam, input_codec, hardware_encoder=not self._copies(input_codec) and self.hardware_encoder()
        )
        self._publish_encoder(input_codec)
        argv = build_ffmpeg_argv(self.cam, run_dir, input_codec, ffmpeg=self.ffmpeg, encoder=self.encoder)
        return self._record(run_dir, argv)

    def _copies(self, input_codec: str | None) -> bool:
        return choose_encoder(self.cam, input_codec, hardware_encoder=False) == COPY

    def _publish_encoder(self, input_codec: str | None) -> None:
        """Which encoder records this camera, for `venuecam status` (state row capture:<name>)."""
        value = json.dumps({"encoder": self.encoder, "input_codec": input_codec, "source": self.kind.value})
        try:
            self.index.set_state(shared_state.capture_key(self.cam.name), value)
        except Exception as e:  # status detail only: recording must not wait on it
            log.warning("%s camera %s: cannot record the encoder: %s", logs.CAPTURE, self.cam.name, e)

    def _check_source(self) -> str | None:
        """Fail fast, with the device or camera named, on a source that cannot work."""
        if self.kind is SourceKind.V4L2:
            if not os.path.exists(self.cam.source):
                raise CaptureError(f"video device {self.cam.source} does not exist (camera unplugged?)")
            return "h264" if self.v4l2_offers_h264(self.cam.source) else None
        if self.kind is SourceKind.RTSP:
            try:
                out = run(rtsp_probe_argv(self.cam.source), timeout=20).stdout
            except CommandError as e:
                raise CaptureError(f"RTSP source {mask_url(self.cam.source)} is not answering: {e}") from None
            return out.strip().splitlines()[0].strip() if out.strip() else None
        return None

    def _record(self, run_dir: Path, argv: list[str]) -> int:
        name = self.cam.name
        picam = PicameraSource(self.cam, self.picamera_api) if self.kind is SourceKind.PICAMERA2 else None
        stdin = subprocess.PIPE if picam else subprocess.DEVNULL
        proc = popen(
            argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ffmpeg_env(os.environ)
        )
        self._run_info = None
        started = self.mono()
        anchor = AnchorEstimator(fallback=started)
        self._save_anchor(run_dir, anchor)
        log.info(
            "%s camera %s: recording %s with %s (pid %d)",
            logs.CAPTURE, name, mask_url(self.cam.source), self.encoder or "ffmpeg", proc.pid,
        )  # fmt: skip
        exit_code = 1
        try:
            if picam:
                assert proc.stdin is not None
                picam.start(proc.stdin)
            exit_code = self._loop(proc, run_dir, anchor, started)
        except CaptureError as e:
            log.error("%s camera %s: %s", logs.CAPTURE, name, e)
        finally:
            self._stop_ffmpeg(proc, picam)
            # What ffmpeg listed as it stopped times no anchor: the last segment's end there
            # is its last frame's end (the trailer's), which had not yet come to pass when
            # the stop was read, and would pull that segment up to a frame early.
            self._read_list(run_dir, anchor, sample=False)
            self._file_pending(run_dir, anchor, everything=True)
            self._save_anchor(run_dir, anchor)
            indexer.recover_run(self.index, self.segments_dir, name, run_dir, self.cam.segment_seconds)
        return exit_code

    def _loop(
        self, proc: subprocess.Popen[bytes], run_dir: Path, anchor: AnchorEstimator, started: float
    ) -> int:
        name = self.cam.name
        stalled_after = stall_window(self.cam.stall_timeout_s, self.cam.segment_seconds)
        last_close = started + STARTUP_GRACE_S  # as if a segment closed then
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None and proc.stderr is not None
        for stream in (proc.stdout, proc.stderr):
            os.set_blocking(stream.fileno(), False)
            sel.register(stream, selectors.EVENT_READ, bytearray())
        while True:
            for key, _ in sel.select(timeout=POLL_S):
                self._read_stream(sel, key, proc, anchor, run_dir)
            if self._read_list(run_dir, anchor):
                last_close = self.mono()
            self._file_pending(run_dir, anchor)
            if self._stop_requested is not None:
                log.info(
                    "%s camera %s: stopping on %s",
                    logs.CAPTURE,
                    name,
                    signal.Signals(self._stop_requested).name,
                )
                return 0
            if proc.poll() is not None:
                self._read_to_end(sel, proc, anchor, run_dir)  # its last words say why
                raise CaptureError(f"ffmpeg exited with status {proc.returncode}: {self._stderr_summary()}")
            if self.mono() - last_close > stalled_after:
                raise CaptureError(
                    f"source stalled: no segment closed for {stalled_after:.0f}s: {self._stderr_summary()}"
                )

    def _read_stream(
        self,
        sel: selectors.BaseSelector,
        key: selectors.SelectorKey,
        proc: subprocess.Popen[bytes],
        anchor: AnchorEstimator,
        run_dir: Path,
    ) -> None:
        buf: bytearray = key.data
        try:
            chunk = os.read(key.fd, 65536)
        except BlockingIOError:
            return
        if not chunk:  # EOF: ffmpeg is exiting; poll() tells the loop.
            sel.unregister(key.fileobj)
            return
        buf += chunk
        *lines, rest = buf.split(b"\n")
        buf[:] = rest
        now = self.mono()
        for raw in lines:
            line = raw.decode(errors="replace").rstrip()
            if key.fileobj is proc.stdout:
                media = parse_progress_line(line)
                if media is not None and media >= MIN_ANCHOR_MEDIA_TIME_S:
                    before = anchor.anchor() if anchor.has_samples else None
                    anchor.add(now, media)
                    if before is None or abs(anchor.anchor() - before) > 0.001:
                        self._save_anchor(run_dir, anchor)
            elif line:
                self._stderr_tail.append(line)
                log.debug("camera %s: ffmpeg: %s", self.cam.name, line)

    def _read_to_end(
        self,
        sel: selectors.BaseSelector,
        proc: subprocess.Popen[bytes],
        anchor: AnchorEstimator,
        run_dir: Path,
    ) -> None:
        """After ffmpeg exited: read what is left in its pipes (bounded: it can write no more)."""
        for _ in range(64):
            ready = sel.select(timeout=0)
            if not ready:
                return
            for key, _ in ready:
                self._read_stream(sel, key, proc, anchor, run_dir)

    def _read_list(self, run_dir: Path, anchor: AnchorEstimator, sample: bool = True) -> int:
        """Queue every segment the list newly names as closed (each one a sample for the
        anchor unless `sample` is False). Returns how many."""
        try:
            with open(run_dir / LIST_NAME, encoding="utf-8", errors="replace") as f:
                f.seek(self._list_offset)
                text = self._list_buffer + f.read()
                self._list_offset = f.tell()
        except FileNotFoundError:
            return 0
        cut = text.rfind("\n") + 1
        self._list_buffer = text[cut:]
        entries = parse_list(text[:cut])
        now = self.mono()
        for entry in entries:
            # ffmpeg had media time `end` in hand by now (a running cut ends where the next
            # segment's first frame begins): one more sample for the anchor.
            if sample:
                anchor.add(now, entry.end)
            self._pending.append((now, entry))
        return len(entries)

    def _file_pending(self, run_dir: Path, anchor: AnchorEstimator, everything: bool = False) -> None:
        """File the queued segments that closed at least FILE_DELAY_S ago (all, when stopping).

        The delay lets the anchor settle first: while ffmpeg catches up on what it buffered
        at start-up, each progress report moves the estimate, and segments filed in between
        would not abut."""
        now = self.mono()
        while self._pending and (everything or now - self._pending[0][0] >= FILE_DELAY_S):
            _, entry = self._pending.popleft()
            self._file(run_dir, entry, anchor)

    def _file(self, run_dir: Path, entry: ListEntry, anchor: AnchorEstimator) -> None:
        now_mono, now_wall = self.mono(), self.wall()
        zero = anchor.anchor()
        start_ts = mono_to_wall(zero + entry.start, now_mono, now_wall)
        end_ts = mono_to_wall(zero + entry.end, now_mono, now_wall)
        # The monotonic start goes with it, so a segment filed before time synced is re-timed.
        timing = Timing(zero + entry.start, self.boot_id, self.trusted(now_wall))
        filed = indexer.file_segment(
            self.index, self.segments_dir, self.cam.name, run_dir / entry.filename, start_ts, end_ts,
            self.cam.segment_seconds, like=self._run_info, timing=timing,
        )  # fmt: skip
        if filed is None:
            return
        self._run_info = self._run_info or filed.info
        self._segments_indexed += 1
        level = logging.INFO if self._segments_indexed == 1 else logging.DEBUG
        log.log(
            level,
            "%s camera %s: segment %s indexed (%d bytes)",
            logs.CAPTURE,
            self.cam.name,
            filed.path.name,
            filed.bytes,
        )

    def _save_anchor(self, run_dir: Path, anchor: AnchorEstimator) -> None:
        try:
            indexer.write_anchor(run_dir, mono_to_wall(anchor.anchor(), self.mono(), self.wall()))
        except OSError as e:
            # A full disk (ENOSPC) must not crash the loop with a traceback and skip the
            # final filing: ffmpeg meets the same disk and exits, and that exit, with its
            # reason, ends the run. Recovery falls back to the last anchor or the run's name.
            (run_dir / f".{indexer.ANCHOR_NAME}.tmp").unlink(missing_ok=True)
            if not self._anchor_warned:
                self._anchor_warned = True
                log.warning(
                    "%s camera %s: cannot save the run's time anchor: %s", logs.CAPTURE, self.cam.name, e
                )

    def _stderr_summary(self) -> str:
        return " | ".join(list(self._stderr_tail)[-3:]) or "no message from ffmpeg"

    def _stop_ffmpeg(self, proc: subprocess.Popen[bytes], picam: PicameraSource | None) -> None:
        """SIGTERM (or, for picamera2, end of input) so the open segment is finalised; SIGKILL
        the whole group if ffmpeg does not finish within STOP_GRACE_S."""
        if picam is not None:
            try:
                picam.stop()
            except Exception as e:  # the camera failing to stop must not keep ffmpeg alive
                log.warning("%s camera %s: picamera2 stop failed: %s", logs.CAPTURE, self.cam.name, e)
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        elif proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("%s camera %s: ffmpeg ignored SIGTERM; killing it", logs.CAPTURE, self.cam.name)
            _signal_group(proc, signal.SIGKILL)
            proc.wait(STOP_GRACE_S)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
