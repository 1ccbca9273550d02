"""`venuecam status [--json]`: what the box is doing, at a glance, from the status socket.

Kept light on purpose (it runs in a fresh process over ssh): config, json, http.client.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="the full snapshot as JSON (for scripts)")
    p.add_argument("--no-color", action="store_true", help="plain text even on a terminal")


def run(args: argparse.Namespace) -> int:
    from venuecam.status.render import render
    from venuecam.statusd.client import call_or_exit

    body = call_or_exit(args.config, "GET", "/api/queue-status")
    data = body.get("data", {}) if isinstance(body, dict) else {}
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    color = sys.stdout.isatty() and not args.no_color and "NO_COLOR" not in os.environ
    sys.stdout.write(render(data, color=color))
    return 0
