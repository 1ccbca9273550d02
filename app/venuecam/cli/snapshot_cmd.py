"""`venuecam snapshot CAMERA [-o FILE]`: what the camera sees now, as a JPEG.

statusd makes it from the camera's newest closed segment (its last keyframe), so recording is
never disturbed and the picture is at most one segment old; `-o -` writes it to stdout.
"""

from __future__ import annotations

import sys
from urllib.parse import quote

TYPE_CHECKING = False  # no `typing` at run time: see cli/main.py
if TYPE_CHECKING:
    import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("camera", help="a camera's name from [[cameras]]")
    p.add_argument(
        "-o", "--output", default=None, help="where to write the JPEG (default CAMERA.jpg; - for stdout)"
    )


def run(args: argparse.Namespace) -> int:
    import json

    from venuecam.statusd.client import EXIT_API_ERROR, EXIT_SERVICE_DOWN, ServiceDown, StatusClient

    client = StatusClient.from_config(args.config)
    try:
        status, headers, body = client.request_raw(
            "GET", f"/api/cameras/{quote(args.camera, safe='')}/snapshot.jpg"
        )
    except ServiceDown as e:
        print(f"venuecam: {e}", file=sys.stderr)
        print("  is it running? `supervisorctl status statusd`", file=sys.stderr)
        return EXIT_SERVICE_DOWN
    if status != 200 or not headers.get("content-type", "").startswith("image/jpeg"):
        try:
            message = json.loads(body.decode("utf-8")).get("message", "")
        except (ValueError, AttributeError):
            message = body[:200].decode("utf-8", errors="replace")
        print(f"venuecam snapshot: {message} (HTTP {status})", file=sys.stderr)
        return EXIT_API_ERROR
    out = args.output or f"{args.camera}.jpg"
    if out == "-":
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return 0
    tmp = f"{out}.part"
    with open(tmp, "wb") as f:
        f.write(body)
    import os

    os.replace(tmp, out)
    when = headers.get("x-venuecam-frame-time", "?")
    print(
        f"{out}: {args.camera} at {when} ({len(body)} bytes, from segment {headers.get('x-venuecam-segment', '?')})"
    )
    return 0
