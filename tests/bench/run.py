"""`make bench`: every benchmark in one run; a table on stdout and build/bench.json.

Each area's module returns {"name": number}; figures are measured here, never hard-coded.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).parent
MODULES = [
    "clip_bench",
    "status_bench",
    "stack_bench",
    "net_bench",
    "resilience_bench",
    "page_bench",
    "cap_bench",
    "live_bench",
    "live_remux_bench",
    "update_bench",
]
TARGETS = {
    "clip_vs_cp_ratio": "<= 1.5",
    "reencode_vs_clip_ratio": ">= 20",
    "status_cli_ms": "<= 150",
    "rss_statusd_mb": "<= 30",
    "page_statusd_cpu_pct": "<= 5 (of one core)",
    "rss_stack_mb": "<= 150",
    "upload_goodput_frac_0loss": ">= 0.93",
    "upload_goodput_frac_1loss": ">= 0.90",
    "resent_bytes_after_kill": "<= one part",
    "resent_bytes_after_long_cut": "<= one part",
    "resume_after_heal_s": "<= 1",
    "offline_detect_s": "<= 10",
    "drain_start_s": "<= 5",
    "upload_cap_8mbit_ratio": "0.9 to 0.952 (bodies at cap / 1.05)",
    "upload_cap_8mbit_3x_ratio": "0.9 to 0.952 (bodies at cap / 1.05)",
    "upload_cap_peak_1s_ratio": "<= 1.2 (a burst of 0.25 s)",
    "ready_after_end_s": "<= 15 (time scaled: live_bench_time_scale)",
    "ready_after_end_p95_busy_s": "<= 30",
    "live_wire_overhead": "<= 1.06",
    "live_cpu_s_per_hour": "a small share of 3600 (one core)",
    "live_remux_cpu_s_per_hour": "a small share of 3600 (one core)",
    "update_install_reuse_ratio": ">= 2 (host; the emulated Pi: tests/image figures)",
    "update_bundle_delta_ratio": ">= 10 (a release that changes only the app)",
}


def _stop_on_term(signum: int, frame: object) -> None:
    # SIGTERM (`timeout`, a kill) unwinds like Ctrl-C: each bench's `finally` and `with` blocks
    # stop the stacks, servers and namespaces it started instead of leaving them running.
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_term)
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="build/bench.json")
    ap.add_argument("--only", nargs="*", help="run only these modules")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    results: dict[str, float] = {}
    failed: list[str] = []
    for name in args.only or MODULES:
        started = time.monotonic()
        print(f"== {name} ...", flush=True)
        try:
            mod = importlib.import_module(name)
            with tempfile.TemporaryDirectory(prefix=f"venuecam-{name}-") as work:
                figures = mod.run(Path(work))
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        results.update({k: float(v) for k, v in figures.items()})
        print(f"   {name} took {time.monotonic() - started:.0f} s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"\n{'figure':<34} {'measured':>14}  target")
    for k in sorted(results):
        print(f"{k:<34} {results[k]:>14.4g}  {TARGETS.get(k, '')}")
    print(f"\nwritten to {out}")
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
