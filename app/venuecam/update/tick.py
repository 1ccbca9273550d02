"""What `venuecam-update.timer` runs every minute (`venuecam update --tick`), as root:

1. finish or undo an update whose updater died (the lock is free, the journal is mid-way);
2. pull mode: poll the channel when `poll_interval_s` has passed, fetch a release meant for us;
3. apply a deferred update, or a reboot the box asked for (ours, or Debian's
   /run/reboot-required), when the box is free; past `max_wait_hours` ask a human (status).

Cheap when there is nothing to do: the journal is read, nothing heavy is imported.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from venuecam.timeutil import iso, utcnow
from venuecam.update.journal import Busy

REBOOT_REQUIRED = Path("/run/reboot-required")


def _age_h(stamp: str | None) -> float:
    import datetime as dt

    if not stamp:
        return 0.0
    t = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return (dt.datetime.now(dt.UTC) - t).total_seconds() / 3600


def tick(up: Any, now: float | None = None) -> int:
    now = time.time() if now is None else now
    try:
        with up.journal.lock():
            up.recover()
            state = up.journal.read()
            if up.u.channel_url:
                last = (state.get("poll") or {}).get("at_ts", 0)
                if now - last >= up.u.poll_interval_s and not state.get("pending"):
                    _poll(up, now)
            state = up.journal.read()
            if state.get("pending"):
                return _pending(up, state["pending"])
            if state.get("reboot") or REBOOT_REQUIRED.exists():
                return _reboot(up, state.get("reboot") or {"requested_at": iso(utcnow()), "forced": False})
    except Busy:
        return 0
    return 0


def _poll(up: Any, now: float) -> None:
    from venuecam.update import channel

    try:
        said, pending = channel.poll(up)
    except Exception as e:  # a bad channel or a cut link must not stop the timer: shown in status
        said, pending = f"poll failed: {e.__class__.__name__}: {e}", None
    up.out(said)
    up.journal.update(poll={"at": iso(utcnow()), "at_ts": now, "result": said})
    if pending:
        pending.update(requested_at=iso(utcnow()), waiting=[], next="now", asked_human=False)
        up.journal.update(pending=pending)


def _pending(up: Any, pending: dict[str, Any]) -> int:
    if not pending.get("forced"):
        reasons, when = up.blockers()
        if reasons:
            asked = _age_h(pending.get("requested_at")) > up.u.max_wait_hours
            up.journal.update(pending={**pending, "waiting": reasons, "next": when, "asked_human": asked})
            up.out(f"update to {pending['version']} waits: {'; '.join(reasons)}")
            return 0
    up.journal.update(pending=None)
    try:
        try:
            v = up.check_bundle(Path(pending["bundle"]))
        except Exception as e:
            up.journal.finish({"outcome": "failed", "to": pending.get("version"), "reason": str(e),
                               "finished_at": iso(utcnow()), "origin": pending.get("origin")})  # fmt: skip
            return 1
        result = up.apply(v, forced=bool(pending.get("forced")), download=pending.get("download"),
                          origin=pending.get("origin", "deferred"))  # fmt: skip
        return {"committed": 0, "rolled_back": 4}.get(result["outcome"], 1)
    finally:
        up.journal.discard(Path(pending["bundle"]))


def _reboot(up: Any, request: dict[str, Any]) -> int:
    if not request.get("forced"):
        reasons, _ = up.blockers()
        if reasons:
            asked = _age_h(request.get("requested_at")) > up.u.max_wait_hours
            up.journal.update(reboot={**request, "waiting": reasons, "asked_human": asked})
            up.out(f"reboot waits: {'; '.join(reasons)}")
            return 0
    up.journal.update(reboot=None)
    up.out("rebooting")
    up.stack.reboot()
    return 0
