"""Clip benchmark: assembling a 60-minute clip from 360 x 10 s segments, against a plain `cp`.

Input: 360 MPEG-TS segments of 1080p30 H.264 at ~4 Mbit/s, a keyframe every second. Encoding
an hour with libx264 would take most of an hour, so ONE 10 s segment is encoded and then
looped with `-stream_loop ... -c copy` through the segment muxer: 360 files whose timestamps
continue one another, exactly as capture's segment muxer writes them. Cached under
build/bench-cache/.

Figures:
- clip_60min_s: `assemble_mp4` of the whole hour (concat, MP4 with moov first, fsync, SHA-256).
- cp_60min_s: `cp` of the same 360 files plus `sync` of the copies (fsync each).
- clip_vs_cp_ratio: the two above; each the best of ROUNDS, with the page cache dropped
  before every run when we may (root); `cold_cache` says whether it was.
- reencode_vs_clip_ratio: a libx264 veryfast re-encode, measured on a 2-minute slice and
  scaled linearly to 60 minutes (`reencode_60min_s_scaled`), over clip_60min_s.
- preview_thumb_s: the 30 s 360p preview plus the thumbnail of the 60-minute clip.

Run alone: `.venv/bin/python tests/bench/clip_bench.py [workdir]`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from venuecam.clips.assemble import assemble_mp4, make_preview, make_thumbnail, moov_before_mdat
from venuecam.clips.plan import plan_clip
from venuecam.media import tsinfo
from venuecam.media.probe import probe

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "build" / "bench-cache" / "clip-1080p30-4M-v1"
SEGMENTS = 360
SEGMENT_S = 10
ROUNDS = 3
REENCODE_SLICE_SEGMENTS = 12  # 2 minutes
BASE_TS = 1_737_648_000.0


@dataclass(frozen=True)
class Seg:
    path: str
    start_ts: float
    end_ts: float


def _ffmpeg(*args: str, timeout: float = 1800) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=timeout
    )


def ensure_input() -> list[Path]:
    """360 segments of one continuous hour, generated once and cached."""
    segs_dir = CACHE / "segs"
    existing = sorted(segs_dir.glob("seg*.ts"))
    if len(existing) == SEGMENTS and (CACHE / "done").exists():
        return existing
    shutil.rmtree(CACHE, ignore_errors=True)
    segs_dir.mkdir(parents=True)
    one = CACHE / "one.ts"
    print("   generating one 10 s 1080p30 segment with libx264 ...", flush=True)
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=s=1920x1080:r=30,noise=alls=12:allf=t", "-t", str(SEGMENT_S),
        "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-maxrate", "4M", "-bufsize", "4M",
        "-g", "30", "-keyint_min", "30", "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p",
        "-f", "mpegts", str(one),
    )  # fmt: skip
    print(f"   looping it into {SEGMENTS} segments (continuous timestamps) ...", flush=True)
    _ffmpeg(
        "-stream_loop", str(SEGMENTS - 1), "-i", str(one), "-c", "copy",
        "-f", "segment", "-segment_time", str(SEGMENT_S), "-segment_format", "mpegts",
        str(segs_dir / "seg%04d.ts"),
    )  # fmt: skip
    made = sorted(segs_dir.glob("seg*.ts"))
    if len(made) != SEGMENTS:
        raise RuntimeError(f"expected {SEGMENTS} segments, the segment muxer wrote {len(made)}")
    (CACHE / "done").write_text("ok\n")
    return made


def index(paths: list[Path]) -> list[Seg]:
    """Wall-clock bounds as capture would index them (from each file's first timestamp)."""
    first = [tsinfo.first_video_pts(p) for p in paths]
    if any(p is None for p in first):
        raise RuntimeError("a cached segment has no video timestamp; delete build/bench-cache")
    secs = [p / tsinfo.PTS_HZ for p in first]  # type: ignore[operator]
    last_end = secs[-1] + probe(paths[-1]).duration
    ends = secs[1:] + [last_end]
    return [
        Seg(str(p), BASE_TS + s - secs[0], BASE_TS + e - secs[0])
        for p, s, e in zip(paths, secs, ends, strict=True)
    ]


def drop_caches() -> bool:
    """Cold page cache for a fair read; only root may, and only where /proc allows it."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def time_cp(paths: list[Path], dest: Path) -> float:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    drop_caches()
    started = time.perf_counter()
    subprocess.run(["cp", *map(str, paths), str(dest)], check=True)
    subprocess.run(["sync", *(str(dest / p.name) for p in paths)], check=True)  # fsync each copy
    took = time.perf_counter() - started
    shutil.rmtree(dest)
    return took


def time_clip(segs: list[Seg], out: Path) -> tuple[float, float]:
    out.unlink(missing_ok=True)
    plan = plan_clip(segs, segs[0].start_ts, segs[-1].end_ts)
    drop_caches()
    started = time.perf_counter()
    result = assemble_mp4(plan, out, timeout=1800)
    took = time.perf_counter() - started
    if abs(result.duration_s - plan.covered_s) > 1.0 or not moov_before_mdat(out):
        raise RuntimeError(f"bad clip: {result} for {plan.covered_s:.1f} s planned")
    return took, result.duration_s


def time_reencode_slice(paths: list[Path], out: Path) -> float:
    """libx264 veryfast re-encode of a 2-minute slice (the hour would take ~6 min)."""
    url = "concat:" + "|".join(str(p) for p in paths[:REENCODE_SLICE_SEGMENTS])
    started = time.perf_counter()
    _ffmpeg("-i", url, "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4M", "-an", "-f", "mp4", str(out))
    return time.perf_counter() - started


def run(workdir: Path) -> dict[str, float]:
    workdir = Path(workdir)
    paths = ensure_input()
    segs = index(paths)
    cold = drop_caches()
    cp_times, clip_times = [], []
    clip = workdir / "clip.mp4"
    duration = 0.0
    for _ in range(ROUNDS):
        cp_times.append(time_cp(paths, workdir / "cp"))
        took, duration = time_clip(segs, clip)
        clip_times.append(took)
    cp_s, clip_s = min(cp_times), min(clip_times)

    started = time.perf_counter()
    make_preview(clip, workdir / "clip_preview.mp4", seconds=30, height=360)
    make_thumbnail(clip, workdir / "clip.jpg", at_s=5.0)
    preview_thumb_s = time.perf_counter() - started

    slice_s = time_reencode_slice(paths, workdir / "reencode.mp4")
    scale = SEGMENTS / REENCODE_SLICE_SEGMENTS
    reencode_scaled = slice_s * scale
    print(
        f"   clip {duration:.0f} s of video; re-encode measured on {REENCODE_SLICE_SEGMENTS * SEGMENT_S} s "
        f"({slice_s:.1f} s) and scaled x{scale:.0f}; page cache {'dropped' if cold else 'NOT dropped (not root)'}",
        flush=True,
    )
    return {
        "clip_vs_cp_ratio": clip_s / cp_s,
        "reencode_vs_clip_ratio": reencode_scaled / clip_s,
        "preview_thumb_s": preview_thumb_s,
        "clip_60min_s": clip_s,
        "cp_60min_s": cp_s,
        "reencode_60min_s_scaled": reencode_scaled,
        "cold_cache": 1.0 if cold else 0.0,
    }


if __name__ == "__main__":
    if len(sys.argv) > 1:
        figures = run(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory(prefix="venuecam-clip-bench-") as tmp:
            figures = run(Path(tmp))
    for name, value in figures.items():
        print(f"{name:<26} {value:10.3f}")
