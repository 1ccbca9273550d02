"""`venuecam sync bookings [--force] [--wait]`: start a sync job now (seed 002's rules)."""

from __future__ import annotations

import argparse
import json
import time


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("type", nargs="?", default="bookings", help="what to sync (default: bookings)")
    p.add_argument("--force", action="store_true", help="clean previous jobs and start a new one")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def run(args: argparse.Namespace) -> int:
    from venuecam.statusd.client import call_or_exit

    path = f"/api/sync/{args.type}" + ("?force=true" if args.force else "")
    body = call_or_exit(args.config, "POST", path)
    if args.json and not args.wait:
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    print(body["message"])
    print(
        f"job {body['jobId']} ({body['status']}"
        + (f", {body['progress']}%" if "progress" in body else "")
        + ")"
    )
    if not args.wait or body["status"] == "completed":
        return 0
    last = ""
    while True:
        job = call_or_exit(args.config, "GET", f"/api/jobs/{body['jobId']}")
        info = job.get("progressInfo") or {}
        line = f"  {job['state']} {job['progress']}% {info.get('stage') or ''} {info.get('message') or ''}".rstrip()
        if line != last:
            print(line, flush=True)
            last = line
        if job["state"] in ("completed", "failed"):
            if args.json:
                print(json.dumps(job, indent=2, ensure_ascii=False))
            return 0 if job["state"] == "completed" else 1
        time.sleep(1.0)
