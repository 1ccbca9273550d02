"""A booking's video ready after the booking ends (issue 12): the live path beside the
after-booking path, the same bookings recorded the same way, the runs differing only by
`clips.live` (tests/live_rig.py drives them; read its docstring for what is measured).

Time is scaled: a booking of VENUECAM_BENCH_LIVE_BOOKING_S (default 90 s, 1/40 of an hour)
recorded at ~4 Mbit/s per camera over the netns link shaped to 20 Mbit/s / 40 ms: the same
bitrate-to-link ratio as a 60-minute booking. The after-booking path's upload grows with the
booking (x40 at 60 minutes); the live path's tail does not.

- `ready_after_end_s`: one camera, booking end -> platform notified (all three objects stored,
  the MP4's SHA-256 and size in the bucket as notified). `after_ready_after_end_s` beside it.
- `ready_after_end_p95_busy_s`: four cameras on four fields (16 Mbit/s recorded on the 20 Mbit/s
  link), bookings ending together, p95 (linear interpolation) over the videos of
  VENUECAM_BENCH_LIVE_ROUNDS rounds (default 2). `after_ready_after_end_p95_busy_s` beside it.
- `live_wire_overhead`: bytes the device's veth sent from the booking's start to the last
  notification (everything: parts, requests, probes, syncs, notifications; Ethernet, IP and TCP
  headers) / bytes of the three stored objects. One camera; `_busy` for four.
- `live_cpu_s_per_hour`: the worker process's CPU time (utime+stime, its reaped children's,
  its living descendants': the remux ffmpeg included) during the booking, per recorded hour
  per camera, live path on. `after_cpu_s_per_hour` is the same window with the live path off
  (the worker's idle baseline); `*_to_notified_*` count up to the last notification, where the
  after-booking path does its cutting and uploading.
- Where the time goes after the end: `*_segment_wait_s` (the booking's last segment ended that
  long after the booking: segments not aligned to the clock close up to a segment later) and
  `*_tail_mb` (MB the device sent after the end: 2.5 MB/s is the link's whole rate).

A build without `clips.live` (before the live path) gives the after-booking figures only.
Each run checks that its videos were stored by the path it is for (the worker's log).
Env: VENUECAM_BENCH_LIVE_ONLY=single|busy; VENUECAM_BENCH_LIVE_PATHS=after|live (one path).
Run alone: `flock /tmp/venuecam-heavy.lock .venv/bin/python tests/bench/run.py --only live_bench`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from live_rig import RunResult, Scenario, has_live_switch, percentile  # noqa: E402
from live_rig import run as run_scenario  # noqa: E402

BUSY_CAMERAS = 4


def _say(msg: str) -> None:
    print(msg, flush=True)


def _paths() -> dict[str, bool | None]:
    """Prefix -> the `clips.live` value its runs write (None: the key left out)."""
    want = os.environ.get("VENUECAM_BENCH_LIVE_PATHS", "after,live").split(",")
    if not has_live_switch():
        _say("   this build has no clips.live (no live path yet): the after-booking path only")
        return {"after_": None} if "after" in want else {}
    paths: dict[str, bool | None] = {}
    if "after" in want:
        paths["after_"] = False
    if "live" in want:
        paths[""] = True
    return paths


def _figures(prefix: str, res: RunResult, busy: bool) -> dict[str, float]:
    """The issue's names for the live path ("ready_after_end_s", "live_wire_overhead", ...),
    `after_` before the same names for the after-booking path."""
    ready = res.ready()
    tag = prefix or "live_"
    if busy:
        return {
            f"{prefix}ready_after_end_p95_busy_s": round(percentile(ready, 95), 2),
            f"{prefix}ready_after_end_max_busy_s": round(max(ready), 2),
            f"{tag}wire_overhead_busy": round(res.wire_overhead(), 4),
            f"{tag}recorded_mbit_busy": round(res.recorded_mbit(), 2),
            f"{tag}cpu_s_per_hour_busy": round(res.cpu_s_per_hour(), 1),
            f"{tag}tail_mb_busy": round(res.tail_mb(), 1),
            f"{tag}segment_wait_busy_s": round(res.segment_wait_s(), 2),
        }
    return {
        f"{prefix}ready_after_end_s": round(ready[0], 2),
        f"{tag}wire_overhead": round(res.wire_overhead(), 4),
        f"{tag}cpu_s_per_hour": round(res.cpu_s_per_hour(), 1),
        f"{tag}cpu_to_notified_s_per_hour": round(res.cpu_s_per_hour(total=True), 1),
        f"{tag}recorded_mbit": round(res.recorded_mbit(), 2),
        f"{tag}tail_mb": round(res.tail_mb(), 1),
        f"{tag}segment_wait_s": round(res.segment_wait_s(), 2),
    }


def _table(title: str, rows: list[tuple[str, str, str, str]]) -> None:
    _say(f"\n   {title}")
    _say(f"   {'':<30} {'live':>12} {'after-booking':>14}  target")
    for name, live, after, target in rows:
        _say(f"   {name:<30} {live:>12} {after:>14}  {target}")


def run(workdir: Path) -> dict[str, float]:
    booking_s = int(os.environ.get("VENUECAM_BENCH_LIVE_BOOKING_S", "90"))
    rounds = int(os.environ.get("VENUECAM_BENCH_LIVE_ROUNDS", "2"))
    only = os.environ.get("VENUECAM_BENCH_LIVE_ONLY", "")
    paths = _paths()
    scale = booking_s / 3600
    _say(f"   time scaled: bookings of {booking_s} s ({scale:.4f} of an hour, 1/{1 / scale:.0f}); "
         "~4 Mbit/s per camera over 20 Mbit/s / 40 ms")  # fmt: skip
    out: dict[str, float] = {
        "live_bench_booking_s": float(booking_s),
        "live_bench_time_scale": round(scale, 5),
    }
    results: dict[tuple[str, bool], RunResult] = {}
    for busy in (False, True):
        if only and only != ("busy" if busy else "single"):
            continue
        for prefix, live in paths.items():
            scn = Scenario(cameras=BUSY_CAMERAS if busy else 1, rounds=rounds if busy else 1,
                           booking_s=booking_s, live=live)  # fmt: skip
            name = f"{'busy' if busy else 'single'}-{prefix or 'live_'}".rstrip("_")
            _say(f"   {name}: {scn.cameras} camera(s), {scn.rounds} round(s), {scn.path} path")
            res = run_scenario(scn, workdir / name, log=_say)
            results[(prefix, busy)] = res
            out.update(_figures(prefix, res, busy))
    if busy_rounds := [r for (_, b), r in results.items() if b]:
        out["live_bench_busy_rounds"] = float(len(busy_rounds[0].rounds))

    def cell(key: str, fmt: str = "{:.1f}") -> str:
        return fmt.format(out[key]) if key in out else "-"

    _table(f"one camera, one booking of {booking_s} s (recorded "
           f"{cell('live_recorded_mbit', '{:.2f}')} / {cell('after_recorded_mbit', '{:.2f}')} Mbit/s)", [
        ("ready after end (s)", cell("ready_after_end_s"), cell("after_ready_after_end_s"), "<= 15"),
        ("wire bytes / object bytes", cell("live_wire_overhead", "{:.4f}"),
         cell("after_wire_overhead", "{:.4f}"), "<= 1.06"),
        ("worker CPU s / h / camera", cell("live_cpu_s_per_hour"), cell("after_cpu_s_per_hour"), "(booking)"),
        ("... up to notified", cell("live_cpu_to_notified_s_per_hour"),
         cell("after_cpu_to_notified_s_per_hour"), ""),
        ("MB sent after the end", cell("live_tail_mb"), cell("after_tail_mb"), ""),
        ("last segment closed after (s)", cell("live_segment_wait_s"), cell("after_segment_wait_s"), ""),
    ])  # fmt: skip
    _table(f"four cameras, bookings ending together (recorded {cell('live_recorded_mbit_busy', '{:.2f}')} / "
           f"{cell('after_recorded_mbit_busy', '{:.2f}')} Mbit/s each)", [
        ("p95 ready after end (s)", cell("ready_after_end_p95_busy_s"),
         cell("after_ready_after_end_p95_busy_s"), "<= 30"),
        ("max ready after end (s)", cell("ready_after_end_max_busy_s"),
         cell("after_ready_after_end_max_busy_s"), ""),
        ("wire bytes / object bytes", cell("live_wire_overhead_busy", "{:.4f}"),
         cell("after_wire_overhead_busy", "{:.4f}"), ""),
        ("worker CPU s / h / camera", cell("live_cpu_s_per_hour_busy"), cell("after_cpu_s_per_hour_busy"),
         "(booking)"),
        ("MB sent after the end", cell("live_tail_mb_busy"), cell("after_tail_mb_busy"), "(per round)"),
        ("last segment closed after (s)", cell("live_segment_wait_busy_s"),
         cell("after_segment_wait_busy_s"), "(mean)"),
    ])  # fmt: skip
    return out
