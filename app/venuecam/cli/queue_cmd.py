"""`venuecam queue [list|retry|process]`: the task ledger through the status socket."""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import urlencode

STATUSES = ("pending", "processing", "completed", "failed", "cancelled", "expired")
TYPES = ("clip", "upload_r2", "notify_ayo_api")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=("list", "retry", "process"),
                   help="list tasks (default), re-drive failed ones, or process the queue now")  # fmt: skip
    p.add_argument("ids", nargs="*", type=int, help="retry: only these task ids (default: every failed task)")
    p.add_argument("--status", choices=STATUSES, help="list: only tasks in this state")
    p.add_argument("--type", choices=TYPES, help="list: only tasks of this type")
    p.add_argument("--limit", type=int, default=50, help="list: at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def run(args: argparse.Namespace) -> int:
    from venuecam.status.render import table
    from venuecam.statusd.client import call_or_exit

    if args.ids and args.action != "retry":
        print("venuecam queue: task ids are only for `retry`", file=sys.stderr)
        return 2
    if args.action == "process":
        body = call_or_exit(args.config, "POST", "/api/queue/process")
    elif args.action == "retry":
        body = call_or_exit(args.config, "POST", "/api/queue/retry", {"ids": args.ids} if args.ids else None)
    else:
        query = {k: v for k, v in (("status", args.status), ("type", args.type)) if v}
        query["limit"] = str(args.limit)
        body = call_or_exit(args.config, "GET", f"/api/queue/tasks?{urlencode(query)}")
        if not args.json:
            rows = body["data"]
            for r in rows:
                r["tries"] = f"{r['attempts']}/{r['max_attempts']}"
            cols = [("id", "ID"), ("task_type", "TYPE"), ("status", "STATE"), ("booking_id", "BOOKING"),
                    ("tries", "TRIES"), ("next_retry_at", "NEXT TRY"), ("error_msg", "LAST ERROR")]  # fmt: skip
            sys.stdout.write(table(rows, cols, max_width=50) if rows else "no tasks\n")
            return 0
    print(json.dumps(body, indent=2) if args.json else body.get("message", body))
    return 0
