"""`venuecam watchdog`: the supervised connectivity watchdog (or `--once` for one verdict)."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from typing import Any

from venuecam import config, db, lean, logs

LEAVE_OUT = lean.ARCHIVE_COMPRESSION  # zipfile's (imported by gpiozero's entry-point lookup)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once",
        action="store_true",
        help="run one probe round, print the verdict as JSON, exit 0 if reachable",
    )


def run(args: argparse.Namespace) -> int:
    cfg = config.load(args.config)
    logs.setup("watchdog", cfg.secrets())
    from venuecam.connectivity import probes
    from venuecam.watchdog.service import Watchdog

    probe_list = probes.probes_from_config(cfg)  # a bad entry stops us before anything is opened
    if args.once:
        rnd = probes.run_round(probe_list, cfg.connectivity.timeout_s)
        out: dict[str, Any] = {
            "ok": rnd.ok,
            "latency_ms": None if rnd.latency_s is None else round(rnd.latency_s * 1000, 1),
            "detail": rnd.detail,
            "probes": [{"probe": str(r.probe), "ok": r.ok, "error": r.error} for r in rnd.results],
        }
        print(json.dumps(out, indent=2))
        return 0 if rnd.ok else 1

    database = db.open_db(cfg.db_path)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()  # only record; the loop acts

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        Watchdog(cfg, probe_list).run(stop)
    finally:
        database.close()
    return 0
