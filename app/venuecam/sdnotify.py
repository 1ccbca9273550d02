"""systemd's notify protocol and the stack's health, for `venuecam supervise` under Type=notify.

When systemd starts venuecam.service with `WatchdogSec=`, `venuecam supervise` stays the main
process: supervisord runs as its child, and the watchdog is pinged only while the stack is
healthy (supervisord answers and the core programs run). A wedged stack stops the pings,
systemd kills and restarts the service, and repeated failures reboot the box (the unit's
`StartLimitAction=reboot`); the kernel's hardware watchdog, fed by systemd itself
(`RuntimeWatchdogSec=`), covers a hung kernel or PID 1.

`health()` is pure (states in, verdict out); `Notifier` is the only I/O: one datagram per
message to `$NOTIFY_SOCKET`, nothing at all when systemd did not ask for it.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

# Programs whose absence means the appliance is not doing its job. A camera that is down
# is a fault for a person (LED, status), not a reason to restart or reboot the box.
CORE_PROGRAMS = ("worker", "watchdog", "statusd")
# How long a core program may be down (restarting, backing off) or supervisord may not
# answer before the stack counts as wedged. Longer than supervisord's own restart backoff.
GRACE_S = 90.0


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    reason: str


class HealthTracker:
    """Turns snapshots of supervisord's program states into a verdict with a grace period.

    `observe()` takes `supervisor_rpc.program_states()`'s answer and a monotonic time; a problem
    must last GRACE_S before the verdict turns unhealthy, so an ordinary restart never stops
    the watchdog pings."""

    def __init__(self, grace_s: float = GRACE_S, core: tuple[str, ...] = CORE_PROGRAMS) -> None:
        self.grace_s = grace_s
        self.core = core
        self._problem_since: float | None = None
        self._problem = ""

    def observe(self, states: dict[str, Any], now: float) -> Verdict:
        problem = _problem(states, self.core)
        if not problem:
            self._problem_since, self._problem = None, ""
            return Verdict(True, "all core programs running")
        if self._problem_since is None:
            self._problem_since = now
        self._problem = problem
        if now - self._problem_since >= self.grace_s:
            return Verdict(False, f"{problem} for {now - self._problem_since:.0f}s")
        return Verdict(True, f"{problem} (for {now - self._problem_since:.0f}s, within grace)")


def _problem(states: dict[str, Any], core: tuple[str, ...]) -> str:
    if not states.get("available"):
        return states.get("error") or "supervisord unavailable"
    by_name = {p["name"]: p["state"] for p in states.get("programs", [])}
    down = [f"{name} {by_name.get(name, 'missing')}" for name in core if by_name.get(name) != "RUNNING"]
    return "not running: " + ", ".join(down) if down else ""


class Notifier:
    """sd_notify(3) without libsystemd: a datagram to $NOTIFY_SOCKET, if systemd set one."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is written with a leading '@'.
        self.address = "\0" + path[1:] if path.startswith("@") else path
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and mine else 0.0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        if not self.address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto("\n".join(fields).encode(), self.address)
            except OSError:
                return False
        return True
