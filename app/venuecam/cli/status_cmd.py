"""`venuecam status [--json]`: what the box is doing, at a glance, from the status socket.

Kept light on purpose (it runs in a fresh process, often over ssh): the TOML for the socket
path, a socket, json. No argparse for the usual command lines (see SWITCHES in cli/main.py).
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # no `typing` at run time: see cli/main.py
if TYPE_CHECKING:
    import argparse

SWITCHES = ("--json", "--no-color")  # every option below: on/off


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
