"""`venuecam jobs [ID] [--logs]`: sync jobs (seed 002) and their logs (seed 003)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("job_id", nargs="?", help="one job's details")
    p.add_argument("--logs", action="store_true", help="with ID: the job's log lines")
    p.add_argument("--cleanup", action="store_true", help="mark stuck jobs (never started, or silent) failed")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")


def _when(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def run(args: argparse.Namespace) -> int:
    from venuecam.status.render import table
    from venuecam.statusd.client import call_or_exit

    if args.cleanup:
        body = call_or_exit(args.config, "POST", "/api/jobs/cleanup")
        print(json.dumps(body, indent=2) if args.json else body["message"])
        return 0
    if args.logs and not args.job_id:
        print("venuecam jobs: --logs needs a job ID", file=sys.stderr)
        return 2
    if args.job_id and args.logs:
        body = call_or_exit(args.config, "GET", f"/api/jobs/{args.job_id}/logs")
        if args.json:
            print(json.dumps(body, indent=2, ensure_ascii=False))
        else:
            for line in body["logs"]:
                print(f"{line['createdAt']} {line['level'].upper():<5} {line['message']}")
        return 0
    if args.job_id:
        job = call_or_exit(args.config, "GET", f"/api/jobs/{args.job_id}")
        if args.json:
            print(json.dumps(job, indent=2, ensure_ascii=False))
            return 0
        info = job.get("progressInfo") or {}
        print(
            f"job {job['jobId']} ({job['type']}): {job['state']}, {job['progress']}%, attempt {job['attempts']}"
        )
        print(
            f"  requested by {job['requestedBy']} at {_when(job['createdAt'])}, finished {_when(job['finishedAt'])}"
        )
        if info.get("stage"):
            print(f"  {info['stage']}: {info.get('message') or ''}")
        if job.get("error"):
            print(f"  error: {job['error']}")
        if job.get("result") is not None:
            print(f"  result: {json.dumps(job['result'], ensure_ascii=False)}")
        return 0
    body = call_or_exit(args.config, "GET", "/api/jobs?limit=50")
    if args.json:
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    rows = [
        {
            **j,
            "created": _when(j["createdAt"]),
            "finished": _when(j["finishedAt"]),
            "pct": f"{j['progress']}%",
        }
        for j in body["data"]
    ]
    cols = [("jobId", "JOB"), ("type", "TYPE"), ("state", "STATE"), ("pct", "PROGRESS"), ("created", "CREATED"),
            ("finished", "FINISHED"), ("requestedBy", "BY"), ("error", "ERROR")]  # fmt: skip
    sys.stdout.write(table(rows, cols, max_width=40) if rows else "no jobs\n")
    return 0
