"""`venuecam queue [list|retry|process|cancel]`: the task ledger through the status socket.

`--status expired` lists waiting work older than queue.expiration_hours (still delivered);
`cancel --expired` (or `cancel ID...`) gives such work up for good."""

from __future__ import annotations

import argparse
import json
import sys
from urllib.parse import urlencode

STATUSES = ("pending", "processing", "completed", "failed", "cancelled", "expired")
TYPES = ("clip", "upload_r2", "notify_ayo_api", "sync")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", nargs="?", default="list", choices=("list", "retry", "process", "cancel"),
                   help="list tasks (default), re-drive failed ones, process the queue now, "
                        "or give up expired ones")  # fmt: skip
    p.add_argument("ids", nargs="*", type=int,
                   help="retry: only these task ids (default: every failed task); cancel: these expired tasks")  # fmt: skip
    p.add_argument("--expired", action="store_true", help="cancel: every expired task")
    p.add_argument("--status", choices=STATUSES, help="list: only tasks in this state")
    p.add_argument("--type", choices=TYPES, help="list: only tasks of this type")
    p.add_argument("--limit", type=int, default=50, help="list: at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def run(args: argparse.Namespace) -> int:
    from venuecam.status.render import table
    from venuecam.statusd.client import call_or_exit

    if args.ids and args.action not in ("retry", "cancel"):
        print("venuecam queue: task ids are only for `retry` and `cancel`", file=sys.stderr)
        return 2
    if args.expired and args.action != "cancel":
        print("venuecam queue: --expired is only for `cancel`", file=sys.stderr)
        return 2
    if args.action == "cancel" and not args.ids and not args.expired:
        print("venuecam queue cancel: name the expired tasks (ids) or say --expired for all of them",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.action == "process":
        body = call_or_exit(args.config, "POST", "/api/queue/process")
    elif args.action == "retry":
        body = call_or_exit(args.config, "POST", "/api/queue/retry", {"ids": args.ids} if args.ids else None)
    elif args.action == "cancel":
        body = call_or_exit(args.config, "POST", "/api/queue/cancel",
                            {"ids": args.ids} if args.ids else {"expired": True})  # fmt: skip
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
