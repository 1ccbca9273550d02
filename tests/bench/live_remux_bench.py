"""The live path's recurring CPU cost, alone: one hour's worth of segments (scaled: 60 s of
720p at 4 Mbit/s in 10 s segments) stream-copied and appended to a live MP4, then its moov
written, as `live.clip` does for each closed segment. Counts this process's CPU (the frame
records, hashing, writes) and the remux ffmpeg children's, per recorded hour.

Unlike `live_bench`'s `live_cpu_s_per_hour` (the whole worker during a scaled booking, which
multiplies the per-booking preview and thumbnail encode by the time scale), this is what an
hour of recording costs the live path on this machine, whatever the booking's length.
"""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

from venuecam.clips.plan import ClipItem
from venuecam.live import mp4file, remux

SECONDS = 60
SEGMENT_S = 10


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(workdir: Path) -> dict[str, float]:
    b = "4000k"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=s=1280x720:r=25,noise=alls=40:allf=t",
         "-t", str(SECONDS), "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-bf", "0", "-b:v", b,
         "-minrate", b, "-maxrate", b, "-bufsize", b, "-x264-params", "nal-hrd=cbr", "-f", "segment",
         "-segment_time", str(SEGMENT_S), "-segment_format", "mpegts", str(workdir / "s%03d.ts")],
        check=True, timeout=600,
    )  # fmt: skip
    segments = sorted(workdir.glob("s*.ts"))
    recorded_bytes = sum(p.stat().st_size for p in segments)
    before = _cpu()
    clip = mp4file.LiveMP4(workdir / "live.mp4")
    for p in segments:
        clip.append(remux.remux(ClipItem(str(p), 0.0, float(SEGMENT_S), 0.0, float(SEGMENT_S), True)))
        clip.flush()
    size, _ = clip.finish()
    spent = _cpu() - before
    recorded_s = clip.duration / remux.TIMESCALE
    per_hour = spent * 3600 / recorded_s
    print(f"   {recorded_s:.0f} s at {recorded_bytes * 8 / recorded_s / 1e6:.1f} Mbit/s -> {size / 1e6:.1f} MB: "
          f"{spent:.2f} s CPU, {per_hour:.1f} s per recorded hour ({per_hour / 36:.2f}% of a core)")  # fmt: skip
    return {"live_remux_cpu_s_per_hour": round(per_hour, 1),
            "live_remux_core_share_pct": round(per_hour / 36, 2)}  # fmt: skip
