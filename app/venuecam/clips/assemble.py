"""Turning a clip plan into an MP4 (stream copy), a small preview and a JPEG thumbnail.

How the MP4 is made, and why (measured on 360 x 10 s 1080p segments, see tests/bench):
- ffmpeg's concat demuxer opens and probes every listed file (~25 ms CPU each, ~9 s for an
  hour), while its `concat:` protocol reads a list of files as one byte stream (~2 s for the
  hour). MPEG-TS from one capture run is byte-concatenable, so each *run* of segments whose
  timestamps continue one another becomes one `concat:` input, and the concat demuxer only
  joins the runs (after a gap, a capture restart or an overlap) and trims the first and last
  (`inpoint`/`outpoint`), so only the segments needed are read.
- `-movflags +faststart` writes the whole file twice (moov moved to the front afterwards).
  Instead the mov muxer reserves room for the moov after `ftyp` (`-moov_size`, sized from the
  packet count) and writes it there at the end: moov before mdat in one pass, a plain
  progressive MP4 every browser plays from the start. Should the estimate ever be too small,
  the muxer fails and we fall back to `+faststart`.
- The output is handed to the disk while ffmpeg writes it (`files.WritebackFollower`), so the
  final fsync does not wait for the whole clip and the rest of the box is not throttled.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from venuecam.clips import files
from venuecam.clips.plan import ClipItem, ClipPlan
from venuecam.errors import NO_SPACE_TEXT, BadInputError, ClipError, DiskFullError
from venuecam.media import tsinfo
from venuecam.media.probe import probe
from venuecam.media.runner import CommandError, run

log = logging.getLogger(__name__)

# Two files belong to one byte-concatenated run when their first timestamps differ by their
# wall-clock starts within this much.
PTS_CONTINUITY_TOLERANCE_S = 0.75
# Worst case moov bytes per sample (stsz 4, stts+ctts 16, stss 4, co64 8, stsc 12).
MOOV_BYTES_PER_SAMPLE = 44
MOOV_SLACK_BYTES = 64 * 1024
AUDIO_PACKETS_PER_S = 50  # AAC at 48 kHz is ~47 packets/s


@dataclass(frozen=True)
class AssembleResult:
    duration_s: float
    size_bytes: int
    sha256: str


@dataclass
class Run:
    """Items whose bytes are read as one stream (`concat:` protocol)."""

    items: list[ClipItem] = field(default_factory=list)
    first_pts_s: list[float] = field(default_factory=list)  # each file's first timestamp

    def url(self) -> str:
        if len(self.items) == 1:
            return self.items[0].path
        return "concat:" + "|".join(item.path for item in self.items)

    def ffconcat_lines(self) -> list[str]:
        first, last = self.items[0], self.items[-1]
        lines = [f"file {_quote(self.url())}"]
        # inpoint/outpoint are in the input's own timestamps, not seconds from its start.
        if first.trimmed_start:
            lines.append(f"inpoint {self.first_pts_s[0] + first.inpoint_s:.6f}")
        if last.trimmed_end:
            lines.append(f"outpoint {self.first_pts_s[-1] + last.outpoint_s:.6f}")
        return lines


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def _first_pts_s(path: str) -> float:
    """The first video timestamp of a segment file, in seconds."""
    if any(ord(c) < 32 for c in path):
        raise ClipError(f"segment path {path!r} has control characters; refusing it in a concat list")
    if tsinfo.is_ts(path):
        pts = tsinfo.first_video_pts(path)
        if pts is None:
            raise ClipError(f"segment {path}: no MPEG-TS video found (empty or corrupt)")
        return pts / tsinfo.PTS_HZ
    try:
        return probe(path).start_time
    except BadInputError as e:
        raise ClipError(f"segment {path}: {e}") from None


def build_runs(items: Sequence[ClipItem]) -> list[Run]:
    """Group plan items into byte-concatenable runs; a new run starts wherever that is unsafe."""
    runs: list[Run] = []
    prev: ClipItem | None = None
    for item in items:
        pts = _first_pts_s(item.path)
        joinable = (
            prev is not None
            and item.contiguous
            and not item.trimmed_start
            and not prev.trimmed_end
            and tsinfo.is_ts(item.path)
            and tsinfo.is_ts(prev.path)
            and "|" not in item.path
            and "|" not in prev.path
            and _continues(runs[-1].first_pts_s[-1], pts, item.segment_start_ts - prev.segment_start_ts)
        )
        if joinable:
            runs[-1].items.append(item)
            runs[-1].first_pts_s.append(pts)
        else:
            runs.append(Run([item], [pts]))
        prev = item
    return runs


def _continues(prev_pts_s: float, pts_s: float, wall_delta_s: float) -> bool:
    # A backwards step (capture restarted, or the 33-bit wrap) is never a continuation.
    return pts_s > prev_pts_s and abs((pts_s - prev_pts_s) - wall_delta_s) <= PTS_CONTINUITY_TOLERANCE_S


def _stream_info(path: str, timeout: float) -> tuple[float, bool]:
    """(video frame rate, has audio) of the first input, for sizing the moov."""
    if tsinfo.is_ts(path):
        head = tsinfo.head_info(path)  # ~1 ms against ~0.2 s for ffprobe
        if head.fps > 0:
            return head.fps, head.has_audio
    argv = [
        "ffprobe", "-v", "error", "-print_format", "json",
        "-show_entries", "stream=codec_type,avg_frame_rate,r_frame_rate", path,
    ]  # fmt: skip
    try:
        streams = json.loads(run(argv, timeout=timeout).stdout or "{}").get("streams", [])
    except (CommandError, ValueError):
        return 0.0, True
    fps = 0.0
    for s in streams:
        if s.get("codec_type") == "video":
            for key in ("avg_frame_rate", "r_frame_rate"):
                num, _, den = str(s.get(key, "0/1")).partition("/")
                if den and float(den) and float(num):
                    fps = max(fps, float(num) / float(den))
    return fps, any(s.get("codec_type") == "audio" for s in streams)


def moov_reserve_bytes(seconds: float, fps: float, has_audio: bool) -> int:
    fps = fps if 0 < fps <= 240 else 60.0
    packets = seconds * (fps * 1.1 + (AUDIO_PACKETS_PER_S if has_audio else 0))
    return int(packets * MOOV_BYTES_PER_SAMPLE) + MOOV_SLACK_BYTES


def top_level_atoms(path: Path) -> list[tuple[str, int, int]]:
    """(type, offset, size) of an MP4's top-level boxes."""
    atoms: list[tuple[str, int, int]] = []
    size_total = path.stat().st_size
    with open(path, "rb") as f:
        pos = 0
        while pos + 8 <= size_total:
            f.seek(pos)
            head = f.read(16)
            size = int.from_bytes(head[0:4], "big")
            kind = head[4:8].decode("latin-1")
            if size == 1 and len(head) >= 16:
                size = int.from_bytes(head[8:16], "big")
            elif size == 0:
                size = size_total - pos
            if size < 8:
                break
            atoms.append((kind, pos, size))
            pos += size
    return atoms


def mp4_duration(path: Path) -> float:
    """The movie duration from the moov's mvhd box; BadInputError if the file has none."""
    moov = next(((off, size) for kind, off, size in top_level_atoms(path) if kind == "moov"), None)
    if moov is None:
        raise BadInputError(f"{path}: no moov box")
    with open(path, "rb") as f:
        pos, end = moov[0] + 8, moov[0] + moov[1]
        while pos + 8 <= end:
            f.seek(pos)
            head = f.read(8)
            size, kind = int.from_bytes(head[0:4], "big"), head[4:8]
            if size < 8:
                break
            if kind == b"mvhd":
                body = f.read(min(size - 8, 32))
                if body[0] == 1:  # version 1: 64-bit times
                    timescale = int.from_bytes(body[20:24], "big")
                    duration = int.from_bytes(body[24:32], "big")
                else:
                    timescale = int.from_bytes(body[12:16], "big")
                    duration = int.from_bytes(body[16:20], "big")
                if timescale:
                    return duration / timescale
                break
            pos += size
    raise BadInputError(f"{path}: no readable mvhd in moov")


def moov_before_mdat(path: Path) -> bool:
    kinds = [kind for kind, _, _ in top_level_atoms(path)]
    return "moov" in kinds and "mdat" in kinds and kinds.index("moov") < kinds.index("mdat")


class _NoFrames(Exception):
    """The remux wrote a file without a single video frame."""


def assemble_mp4(plan: ClipPlan, out_path: Path, timeout: float = 1800.0) -> AssembleResult:
    """Stream-copy the plan's pieces into one MP4 with moov at the front; fsynced, then renamed.

    Raises ClipError (naming the reason) if there is nothing to cut, ffmpeg fails, or the
    result is not what was planned; `out_path` is then untouched.

    A clip whose footage after a trimmed start holds no keyframe (less than a keyframe
    interval of it, e.g. the last moments before a power cut) comes out of a stream copy
    with no frame at all: it is cut again from that segment's start, so it begins up to one
    keyframe interval early rather than being an empty file.
    """
    if plan.empty:
        raise ClipError(f"{out_path.name}: nothing to cut (no segment covers the clip)")
    try:
        return _assemble(plan, Path(out_path), timeout)
    except _NoFrames:
        first = plan.items[0]
        if not first.trimmed_start:
            raise ClipError(f"{Path(out_path).name}: the segments gave no video frame") from None
        log.warning("%s: no keyframe after the in-point %.2f s of %s; cutting from that segment's start",
                    Path(out_path).name, first.inpoint_s, first.path)  # fmt: skip
        whole = replace(plan, items=[replace(first, inpoint_s=0.0), *plan.items[1:]],
                        covered_s=plan.covered_s + first.inpoint_s)  # fmt: skip
        try:
            return _assemble(whole, Path(out_path), timeout)
        except _NoFrames:
            raise ClipError(f"{Path(out_path).name}: the segments gave no video frame") from None


def _assemble(plan: ClipPlan, out_path: Path, timeout: float) -> AssembleResult:
    runs = build_runs(plan.items)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    script = out_path.with_name(f".{out_path.name}.{os.getpid()}.ffconcat")
    script.write_text(
        "ffconcat version 1.0\n" + "".join(line + "\n" for r in runs for line in r.ffconcat_lines())
    )
    fps, has_audio = _stream_info(plan.items[0].path, timeout=min(timeout, 30.0))
    reserve = moov_reserve_bytes(plan.covered_s, fps, has_audio)
    try:
        with files.atomic_output(out_path) as tmp:
            with files.WritebackFollower(tmp):
                _remux(script, tmp, ["-moov_size", str(reserve)], ["-movflags", "+faststart"], timeout)
            duration = mp4_duration(tmp)
            if duration <= 0:
                raise _NoFrames
            # Each trimmed start begins at the keyframe before it (keyframes come every ~1 s).
            tolerance = 1.5 + sum(1.0 for r in runs[1:] if r.items[0].trimmed_start)
            if abs(duration - plan.covered_s) > tolerance:
                raise ClipError(
                    f"{out_path.name}: assembled {duration:.1f} s but the segments cover "
                    f"{plan.covered_s:.1f} s; refusing a clip that does not match its segments"
                )
            if not moov_before_mdat(tmp):
                raise ClipError(f"{out_path.name}: moov is not before mdat (not progressive)")
            digest = files.sha256_and_fsync(tmp)
            size = tmp.stat().st_size
    except BadInputError as e:
        raise ClipError(f"{out_path.name}: assembled file is unreadable: {e}") from None
    finally:
        script.unlink(missing_ok=True)
    log.debug("assembled %s from %d runs, %d files", out_path, len(runs), len(plan.items))
    return AssembleResult(duration_s=duration, size_bytes=size, sha256=digest)


def _failed(name: str, what: str, e: CommandError) -> ClipError | DiskFullError:
    """ffmpeg's failure as our error: a full disk is its own kind (the task waits for space,
    it is not a broken clip), everything else a ClipError."""
    if NO_SPACE_TEXT.lower() in e.stderr.lower():
        return DiskFullError(f"{name}: disk full (ENOSPC), {what}: {e}")
    return ClipError(f"{name}: {what}: {e}")


def _remux(script: Path, tmp: Path, layout: list[str], fallback: list[str], timeout: float) -> None:
    def argv(extra: list[str]) -> list[str]:
        return [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "concat", "-safe", "0", "-protocol_whitelist", "file,concat,pipe",
            "-i", str(script),
            "-map", "0:v:0", "-map", "0:a?", "-c", "copy", *extra, "-f", "mp4", str(tmp),
        ]  # fmt: skip

    try:
        run(argv(layout), timeout=timeout)
    except CommandError as e:
        if "moov" not in e.stderr.lower() or NO_SPACE_TEXT.lower() in e.stderr.lower():
            raise _failed(tmp.name, "ffmpeg could not assemble the clip", e) from None
        log.warning("reserved moov too small (%s); falling back to +faststart", e)
        try:
            run(argv(fallback), timeout=timeout)
        except CommandError as e2:
            raise _failed(tmp.name, "ffmpeg could not assemble the clip", e2) from None


def make_preview(mp4: Path, out: Path, seconds: int = 30, height: int = 360, timeout: float = 600.0) -> Path:
    """A small re-encoded preview: the first `seconds`, at most `height` lines, no audio."""
    with files.atomic_output(Path(out)) as tmp:
        argv = [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-t", str(seconds), "-i", str(mp4),
            "-map", "0:v:0", "-an", "-vf", f"scale=-2:'min({height},ih)'",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-f", "mp4", str(tmp),
        ]  # fmt: skip
        try:
            run(argv, timeout=timeout)
        except CommandError as e:
            raise _failed(Path(out).name, "preview failed", e) from None
    return Path(out)


def make_thumbnail(mp4: Path, out: Path, at_s: float = 1.0, height: int = 360, timeout: float = 60.0) -> Path:
    """One JPEG frame at `at_s`. `-ss` goes before `-i`: a keyframe seek, not a decode of all before it."""
    with files.atomic_output(Path(out)) as tmp:
        argv = [
            "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
            "-ss", f"{max(0.0, at_s):.3f}", "-i", str(mp4),
            "-map", "0:v:0", "-frames:v", "1", "-vf", f"scale=-2:'min({height},ih)'",
            "-q:v", "3", "-f", "mjpeg", str(tmp),
        ]  # fmt: skip
        try:
            run(argv, timeout=timeout)
        except CommandError as e:
            raise _failed(Path(out).name, "thumbnail failed", e) from None
        if tmp.stat().st_size == 0:
            raise ClipError(f"{Path(out).name}: thumbnail is empty (no frame at {at_s:.1f} s)")
    return Path(out)
