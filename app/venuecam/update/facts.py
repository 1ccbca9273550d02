"""The update's part of the status snapshot and the LEDs: read-only, cheap, never raises."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

HISTORY_SHOWN = 5


def _link(root: Path, name: str) -> str | None:
    try:
        return Path(os.readlink(root / name)).name
    except OSError:
        return None


def summary(
    install_dir: str, state_dir: str, max_wait_hours: float, now: dt.datetime | None = None
) -> dict[str, Any]:
    root = Path(install_dir)
    try:
        state = json.loads((Path(state_dir) / "state.json").read_text())
    except (OSError, ValueError):
        state = {}
    current = _link(root, "current")
    out: dict[str, Any] = {
        "release": current,
        "committed": _link(root, "committed") or current,
        "previous": state.get("previous"),
        "in_progress": None,
        "pending": None,
        "last": state.get("last"),
        "history": (state.get("history") or [])[:HISTORY_SHOWN],
        "poll": state.get("poll"),  # pull mode: the last look at the channel and what it said
        "attention": [],
    }
    op = state.get("op")
    if op:
        out["in_progress"] = {k: op.get(k) for k in ("from", "to", "step", "started_at", "origin")}
    pending = state.get("pending")
    if pending:
        out["pending"] = {
            k: pending.get(k) for k in ("version", "requested_at", "waiting", "next", "origin", "asked_human")
        }
        if pending.get("asked_human"):
            out["attention"].append(
                f"update to {pending.get('version')} has waited over {max_wait_hours:g} h for a free window "
                f"({'; '.join(pending.get('waiting') or [])}): `venuecam update --force` applies it now"
            )
    last = state.get("last") or {}
    if last.get("outcome") == "rolled_back" and state.get("acknowledged") != last.get("id"):
        out["attention"].append(last.get("reason") or f"rolled back to {last.get('release')}")
    reboot = state.get("reboot")
    if reboot and reboot.get("asked_human"):
        out["attention"].append(f"a reboot has waited over {max_wait_hours:g} h for a free window")
    return out
