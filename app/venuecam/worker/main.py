"""`venuecam worker`: the huey consumer (a supervisord program)."""

from __future__ import annotations

import argparse

from venuecam import config, db, lean, ledger, logs

# The platform speaks JSON: no charset guesser (~3 MB); no archives: no bz2/lzma. See `lean`.
LEAVE_OUT = lean.CHARSET_GUESSING + lean.ARCHIVE_COMPRESSION


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workers", type=int, default=0, help="worker threads (default: uploads + 2)")


def run(args: argparse.Namespace) -> int:
    # Imported here, after `venuecam` applied LEAVE_OUT (see `lean`): these pull in requests.
    from huey.consumer import Consumer

    from venuecam.live.manager import LiveManager
    from venuecam.worker import clockwatch, dispatch, duties
    from venuecam.worker.app import make_huey
    from venuecam.worker.execute import WorkerRunner
    from venuecam.worker.tasks import register

    cfg = config.load(args.config)
    log = logs.setup("worker", cfg.secrets())
    db.open_db(cfg.db_path)
    # One worker per box: whatever the ledger says is running died with the previous worker.
    reaped = ledger.reap_interrupted()
    if reaped:
        log.warning(
            "%s Worker restarted: re-driving %d interrupted task(s): %s", logs.QUEUE, len(reaped), reaped
        )
    revived = ledger.revive_legacy_expired()
    if revived:
        log.warning("%s %d task(s) an earlier release had stopped as expired are waiting again: %s",
                    logs.QUEUE, len(revived), revived)  # fmt: skip
    huey = make_huey(cfg)
    tasks = register(huey, cfg, WorkerRunner(cfg))
    duties.register_periodic(huey, cfg, tasks)
    # Wall-clock jumps re-base the ledger (and "today" moved: sync bookings); a sync re-times segments.
    clockwatch.start(tasks, on_jump=lambda: duties.sync_bookings(cfg, tasks, requested_by="clock"))
    # Start-up: a booking sync, a clip scan and everything due, without waiting for the clock.
    duties.sync_bookings(cfg, tasks, requested_by="startup")
    # Videos built while their booking is played; picks up those a restart interrupted.
    LiveManager(cfg, tasks).start()
    tasks.scan()
    dispatch.dispatch_due(tasks)
    workers = args.workers or cfg.queue.max_concurrent_uploads + 2
    log.info("%s Worker starting with %d threads", logs.QUEUE, workers)
    consumer = Consumer(
        huey,
        workers=workers,
        worker_type="thread",
        periodic=True,
        flush_locks=True,
        # supervisord stops with SIGTERM: let running tasks finish (an upload resumes anyway).
        graceful_signal="TERM",
        shutdown_timeout=20,
        check_worker_health=True,
    )
    consumer.run()
    return 0
