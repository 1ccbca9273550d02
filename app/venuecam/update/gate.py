"""The health gate: is the release that just started really working, within a time limit?

Passes when, all at once:
- every supervisord program is RUNNING and has run `health_stable_s` without a restart
  (a program that exits, backs off or goes FATAL after the switch fails the gate at once);
- the status socket answers `/healthz`;
- every camera that was recording before the update wrote a new segment that ffprobe reads;
- when the box was online before: a booking sync started after the switch completed, and
  the new release uploaded, read back and deleted a probe object in the bucket.

What was down before the update (a camera unplugged, the link out) is not held against the
new release; the result says which checks were skipped and why.
"""

from __future__ import annotations

import json
import subprocess
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from venuecam.config import Config
from venuecam.status.supervisor_rpc import UnixTransport
from venuecam.statusd.client import ServiceDown, StatusClient
from venuecam.update.stack import Stack, StackError, dbop, run_as_owner

POLL_S = 0.5
BAD_STATES = ("BACKOFF", "EXITED", "FATAL", "STOPPED", "UNKNOWN")


@dataclass
class Result:
    ok: bool
    reason: str = ""
    seconds: float = 0.0
    checks: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "seconds": round(self.seconds, 1),
            "checks": self.checks,
        }


def baseline(cfg: Config) -> dict[str, Any]:
    """What worked before the update, from the running box's own status."""
    try:
        status, body = StatusClient(cfg.status_socket, timeout=10).get("/api/queue-status")
    except ServiceDown:
        status, body = 0, {}
    data = body.get("data", {}) if isinstance(body, dict) and status == 200 else {}
    cams = [c["name"] for c in data.get("cameras", []) if c.get("recording")]
    online = (data.get("connectivity") or {}).get("status") == "ONLINE"
    return {"cameras": cams, "online": online, "status_ok": bool(data)}


def _rpc(cfg: Config) -> Any:
    return xmlrpc.client.ServerProxy(
        "http://localhost/RPC2", transport=UnixTransport(str(cfg.supervisor_socket), 5)
    )


def _why_exited(cfg: Config, name: str, info: dict[str, Any]) -> str:
    try:
        tail = _rpc(cfg).supervisor.tailProcessStdoutLog(name, 0, 3000)[0]
    except (OSError, xmlrpc.client.Error):
        tail = ""
    lines = [ln for ln in tail.strip().splitlines() if ln.strip()]
    last = lines[-1][-200:] if lines else info.get("spawnerr") or ""
    return f"{info.get('statename')} ({info.get('description', '')}){': ' + last if last else ''}"


class Gate:
    def __init__(self, cfg: Config, config_path: str, stack: Stack, release_dir: Path,
                 base: dict[str, Any], since: float, out: Callable[[str], None] = lambda s: None) -> None:  # fmt: skip
        self.cfg, self.config_path, self.stack = cfg, config_path, stack
        self.release_dir, self.base, self.since, self.out = release_dir, base, since, out
        self.pids: dict[str, int] = {}
        self.checks: dict[str, str] = {}
        self.probed: bool | None = None
        self.segments_ok: set[str] = set()

    def run(self, timeout: float, stable_s: float) -> Result:
        t0 = time.monotonic()
        deadline = t0 + timeout
        for cam in self.cfg.cameras:
            if cam.name not in self.base.get("cameras", []):
                self.checks[f"camera {cam.name}"] = "skipped: not recording before the update"
        if not self.base.get("online"):
            self.checks["booking sync"] = self.checks["upload probe"] = "skipped: offline before the update"
        while True:
            failed = self._programs(stable_s)
            if failed:
                return Result(False, failed, time.monotonic() - t0, self.checks)
            pending = [self._socket(), *self._cameras(), self._sync(), self._probe()]
            failed = next((p[1] for p in pending if p and p[0] == "fail"), None)
            if failed:
                return Result(False, failed, time.monotonic() - t0, self.checks)
            waiting = [p[1] for p in pending if p and p[0] == "wait"]
            stable = self.checks.get("programs", "").startswith("ok")
            if not waiting and stable:
                return Result(True, "", time.monotonic() - t0, self.checks)
            if time.monotonic() > deadline:
                if not stable:
                    waiting.insert(0, self.checks.get("programs", "programs not up"))
                why = "; ".join(waiting)
                return Result(
                    False,
                    f"health gate timed out after {timeout:.0f} s: {why}",
                    time.monotonic() - t0,
                    self.checks,
                )
            time.sleep(POLL_S)

    # Each check returns None (passed), ("wait", what is missing) or ("fail", why).

    def _programs(self, stable_s: float) -> str | None:
        try:
            infos = _rpc(self.cfg).supervisor.getAllProcessInfo()
        except (OSError, xmlrpc.client.Error) as e:
            tail = self.stack.log_tail()
            self.checks["programs"] = (
                f"supervisord not answering ({e.__class__.__name__}){': ' + tail if tail else ''}"
            )
            return None
        youngest = None
        for info in infos:
            name = f"{info['group']}:{info['name']}"
            state, pid = info["statename"], info.get("pid") or 0
            if state == "RUNNING":
                if self.pids.get(name, pid) != pid:
                    return f"program {name} restarted after the switch: {_why_exited(self.cfg, name, info)}"
                self.pids[name] = pid
                up = info["now"] - info["start"]
                youngest = up if youngest is None else min(youngest, up)
            elif state in BAD_STATES and (name in self.pids or state in ("BACKOFF", "FATAL")):
                return f"program {name} {_why_exited(self.cfg, name, info)}"
            else:
                youngest = -1.0
        if youngest is not None and youngest >= stable_s:
            self.checks["programs"] = f"ok: {len(infos)} RUNNING for {youngest:.0f} s without a restart"
        else:
            self.checks["programs"] = (
                f"waiting: programs up for {max(youngest or 0, 0):.0f} of {stable_s:.0f} s"
            )
        return None

    def _socket(self) -> tuple[str, str] | None:
        try:
            status, _ = StatusClient(self.cfg.status_socket, timeout=5).get("/healthz")
        except ServiceDown as e:
            self.checks["status socket"] = f"waiting: {e}"
            return ("wait", "the status socket does not answer")
        if status != 200:
            self.checks["status socket"] = f"waiting: /healthz says {status}"
            return ("wait", f"/healthz answers {status}")
        self.checks["status socket"] = "ok"
        return None

    def _cameras(self) -> list[tuple[str, str] | None]:
        out: list[tuple[str, str] | None] = []
        for name in self.base.get("cameras", []):
            if name in self.segments_ok:
                continue
            try:
                rows = dbop(self.cfg, "query", str(self.cfg.db_path),
                            "SELECT path, start_ts FROM segments WHERE camera = ? AND start_ts >= ? ORDER BY start_ts DESC LIMIT 1",
                            json.dumps([name, self.since]))  # fmt: skip
            except StackError as e:
                rows = []
                self.checks[f"camera {name}"] = f"waiting: {e}"
            if not rows:
                self.checks[f"camera {name}"] = "waiting: no segment since the switch"
                out.append(("wait", f"camera {name} wrote no new segment"))
                continue
            path = rows[0][0]  # type: ignore[index]
            probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", path],
                                   capture_output=True, text=True, timeout=30)  # fmt: skip
            try:
                duration = float(json.loads(probe.stdout)["format"]["duration"])
            except (ValueError, KeyError, TypeError):
                duration = 0.0
            if probe.returncode != 0 or duration <= 0:
                return [
                    (
                        "fail",
                        f"camera {name}: new segment {Path(path).name} is not readable: {probe.stderr.strip()[:200]}",
                    )
                ]
            self.segments_ok.add(name)
            self.checks[f"camera {name}"] = f"ok: {Path(path).name} ({duration:.1f} s, ffprobe)"
        return out

    def _sync(self) -> tuple[str, str] | None:
        if not self.base.get("online"):
            return None
        try:
            status, body = StatusClient(self.cfg.status_socket, timeout=10).get("/api/jobs")
        except ServiceDown:
            return ("wait", "no booking sync yet (status socket down)")
        jobs = [j for j in (body.get("data", []) if isinstance(body, dict) else [])
                if j.get("type") == "bookings" and (j.get("createdAt") or 0) >= self.since * 1000]  # fmt: skip
        done = [j for j in jobs if j.get("state") == "completed"]
        if done:
            self.checks["booking sync"] = f"ok: {done[0]['jobId']}"
            return None
        failed = [j for j in jobs if j.get("state") == "failed"]
        if failed:
            return (
                "fail",
                f"booking sync {failed[0]['jobId']} failed: {(failed[0].get('error') or '')[:200]}",
            )
        self.checks["booking sync"] = "waiting: no completed sync since the switch"
        return ("wait", "no booking sync completed since the switch")

    def _probe(self) -> tuple[str, str] | None:
        if not self.base.get("online") or self.probed:
            return None
        if not self.checks.get("status socket", "").startswith("ok"):
            return ("wait", "upload probe not run yet")
        exe = self.release_dir / "bin" / "venuecam"
        r = run_as_owner(
            [str(exe), "--config", self.config_path, "update", "--probe-upload"],
            self.cfg.db_path,
            timeout=120,
        )
        if r.returncode != 0:
            last = (r.stderr or r.stdout).strip().splitlines()[-1:] or [f"exit {r.returncode}"]
            return ("fail", f"upload probe failed: {last[0][:300]}")
        self.probed = True
        self.checks["upload probe"] = f"ok: {r.stdout.strip()[:120]}"
        return None
