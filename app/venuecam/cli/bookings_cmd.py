"""`venuecam bookings [--date D] [--status S]`: bookings the box knows (seed 001)."""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import urlencode


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--date", help="only this venue-local date (YYYY-MM-DD)")
    p.add_argument("--status", help="only this status (success, cancelled, pending, expired)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def run(args: argparse.Namespace) -> int:
    from venuecam.status.render import table
    from venuecam.statusd.client import call_or_exit

    query = {k: v for k, v in (("date", args.date), ("status", args.status)) if v}
    query["limit"] = str(args.limit)
    body = call_or_exit(args.config, "GET", f"/api/bookings?{urlencode(query)}")
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    rows = body["data"]
    if not rows:
        print("no bookings")
        return 0
    cols = [("bookingId", "BOOKING"), ("date", "DATE"), ("startTime", "START"), ("endTime", "END"),
            ("fieldId", "FIELD"), ("fieldName", "FIELD NAME"), ("status", "STATUS"), ("userName", "USER")]  # fmt: skip
    sys.stdout.write(table(rows, cols, max_width=30))
    print(f"{body['count']} booking(s)")
    return 0
