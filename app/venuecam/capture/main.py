"""`venuecam capture --camera NAME`: the supervisord program `capture:<camera>`.

Thin on purpose: load the config, open the segment index (sqlite3, not peewee: see
`segment_index`), install signal handlers that only record the request, run the `Recorder`.
Imports nothing heavy (no boto3, no huey).
"""

from __future__ import annotations

import argparse
import signal

from venuecam import config, lean, logs

# One process per camera: OpenSSL's hashes are ~3 MB each, bz2 and lzma (shutil's) ~0.4.
# `venuecam` applies it (see `lean`) before it parses the arguments.
LEAVE_OUT = lean.OPENSSL_HASHES + lean.ARCHIVE_COMPRESSION


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", required=True, metavar="NAME", help="the [[cameras]] name to record")


def run(args: argparse.Namespace) -> int:
    from .recorder import Recorder
    from .segment_index import SegmentIndex

    cfg = config.load(args.config)
    cam = cfg.camera(args.camera)
    logs.setup(f"capture:{cam.name}", cfg.secrets())
    index = SegmentIndex(cfg.db_path)
    recorder = Recorder(cam, cfg.segments_dir, index)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: recorder.request_stop(signum))
    try:
        return recorder.run()
    finally:
        index.close()
