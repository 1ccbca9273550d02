"""`venuecam capture --camera NAME`: the supervisord program `capture:<camera>`.

Thin on purpose: load the config, open the database, install signal handlers that only
record the request, run the `Recorder`. Imports nothing heavy (no boto3, no huey).
"""

from __future__ import annotations

import argparse
import signal

from venuecam import config, lean, logs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--camera", required=True, metavar="NAME", help="the [[cameras]] name to record")


def run(args: argparse.Namespace) -> int:
    # One process per camera: OpenSSL's hashes (which peewee would map) are ~3 MB each.
    lean.leave_out(lean.OPENSSL_HASHES)
    from venuecam.db import open_db

    from .recorder import Recorder

    cfg = config.load(args.config)
    cam = cfg.camera(args.camera)
    logs.setup(f"capture:{cam.name}", cfg.secrets())
    db = open_db(cfg.db_path)
    recorder = Recorder(cam, cfg.segments_dir, db)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: recorder.request_stop(signum))
    try:
        return recorder.run()
    finally:
        db.close()
