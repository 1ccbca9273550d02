"""`venuecam simulator`: the booking platform simulator as its own process.

Prints one line `listening on http://HOST:PORT` on stdout when it is ready (tests wait for it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from venuecam import logs
from venuecam.errors import BadInputError
from venuecam.simulator.schedule import parse_schedule
from venuecam.simulator.server import SimServer
from venuecam.simulator.state import SimState


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to bind (only this one)")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--token", required=True, help="the bearer token clients must send")
    p.add_argument("--venue-id", required=True)
    p.add_argument("--timezone", default="UTC", help="venue time zone of generated bookings")
    p.add_argument("--schedule", default="", help='e.g. "every=4m,length=3m,fields=1,2,start=now"')
    p.add_argument("--state-file", default="", help="JSON file that keeps bookings and notifications")


def run(args: argparse.Namespace) -> int:
    log = logs.setup("venuecam.simulator", secrets=[args.token])
    try:
        tz = ZoneInfo(args.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInputError(f"--timezone: unknown time zone {args.timezone!r}") from None
    schedule = parse_schedule(args.schedule, tz, dt.datetime.now(tz)) if args.schedule else None
    state = SimState(schedule, args.state_file or None)
    server = SimServer(args.host, args.port, state, args.token, args.venue_id)
    host, port = server.server_address[:2]

    def stop(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    shown = f"[{host}]" if ":" in str(host) else host
    print(f"listening on http://{shown}:{port}", flush=True)
    if schedule:
        log.info("schedule: a %gs booking every %gs on fields %s from %s", schedule.length_s,
                 schedule.every_s, list(schedule.fields), schedule.start.isoformat())  # fmt: skip
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.stdout.flush()
    return 0
