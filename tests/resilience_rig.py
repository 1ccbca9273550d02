"""The whole appliance under supervisord for fault tests and benchmarks (tests/test_e2e_supervisord.py
is the template): its config, its life cycle (start, stop, kill -9 of one program, a power cut),
clips made directly for upload-only tests, and the checks every fault test ends with.

Every check reads real state: the device's SQLite files, the bucket, the platform's record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from conftest import base_sections, render_toml

TZ = ZoneInfo("Asia/Jakarta")
BUCKET = "venue-videos"
MIB = 1024 * 1024


def wait_until(what: str, fn: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc; no psutil here)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class ClipFiles:
    unique_id: str
    booking_id: str
    sha256: str
    size: int
    paths: dict[str, Path]


class Stack:
    """`venuecam supervise` with a generated config; `prefix` runs it in a namespace."""

    def __init__(self, tmp: Path, storage_endpoint: str, platform_url: str,
                 prefix: Sequence[str] = (), env: dict[str, str] | None = None,
                 **over: dict[str, Any]) -> None:  # fmt: skip
        self.tmp = tmp
        self.prefix = list(prefix)
        self.env = dict(env or {})  # added to the stack's environment (libfaketime, the clock seam)
        sections = {
            "device": {"log_dir": str(tmp / "logs")},
            "booking_api": {"base_url": platform_url, "sync_interval_s": 60, "timeout_s": 3.0},
            "storage": {"endpoint_url": storage_endpoint},
            "cameras": [],
            "clips": {"grace_s": 3, "scan_interval_s": 60},
            "connectivity": {"tcp_targets": [], "dns_names": [], "interval_s": 0.5, "timeout_s": 1.0},
            "queue": {
                "upload_schedule_s": [1, 2, 3],
                "notify_schedule_s": [1, 2, 3],
                "clip_schedule_s": [1, 2, 3],
                "stale_after_s": 20,
            },  # fmt: skip
        }
        for k, v in over.items():
            sections[k] = v if isinstance(v, list) else {**sections.get(k, {}), **v}
        self.path = tmp / "venuecam.toml"
        self.path.write_text(render_toml(base_sections(tmp, **sections)))
        from venuecam import config

        self.cfg = config.load(self.path)
        self.proc: subprocess.Popen[bytes] | None = None
        self._db: Any = None

    # ------------------------------------------------------------ life cycle

    @property
    def sock(self) -> Path:
        return self.cfg.supervisor_socket

    def start(self, wait: bool = True) -> None:
        self.sock.unlink(missing_ok=True)
        log = open(self.tmp / "supervise.out", "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "venuecam", "--config", str(self.path), "supervise"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock", **self.env},
        )  # fmt: skip
        log.close()
        if wait:
            self.wait_running()

    def wait_running(self, timeout: float = 60) -> dict[str, str]:
        wait_until("supervisord's socket", self.sock.exists, 30)
        return dict(
            wait_until(
                "every program RUNNING",
                lambda: (s := self.states()) and all(v == "RUNNING" for v in s.values()) and s,
                timeout,
            )
        )

    def rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        return xmlrpc.client.ServerProxy(
            "http://localhost", transport=SupervisorTransport(None, None, f"unix://{self.sock}")
        )

    def states(self) -> dict[str, str]:
        try:
            return {
                f"{p['group']}:{p['name']}": p["statename"] for p in self.rpc().supervisor.getAllProcessInfo()
            }
        except (OSError, xmlrpc.client.Fault):
            return {}

    def pid(self, program: str) -> int:
        return int(self.rpc().supervisor.getProcessInfo(program)["pid"])

    def kill9(self, program: str) -> int:
        """SIGKILL one program (supervisord restarts it); returns the killed pid."""
        pid = self.pid(program)
        if pid <= 1:  # not running: pid 0, and kill(0) would signal our own process group
            raise RuntimeError(f"{program} is not running (pid {pid})")
        for child in descendants(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
        return pid

    def supervisord_pid(self) -> int:
        assert self.proc is not None
        # With a namespace prefix, `ip netns exec` execs into python, which execs supervisord.
        return self.proc.pid

    def power_cut(self) -> None:
        """Every process of the stack SIGKILLed at once, as a power cut would stop them."""
        assert self.proc is not None
        root = self.supervisord_pid()
        pids = [root, *descendants(root)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)  # freeze first: nobody reacts to a sibling's death
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)
        for pid in pids:
            wait_until(f"pid {pid} gone", lambda p=pid: not Path(f"/proc/{p}").exists(), 10, 0.05)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.power_cut()

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`venuecam --config <this stack's> ARGS`, as an operator on the box would run it."""
        return subprocess.run(
            [sys.executable, "-m", "venuecam", "--config", str(self.path), *args],
            capture_output=True, text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )  # fmt: skip

    def status(self) -> dict[str, Any]:
        """`venuecam status --json`'s data."""
        out = self.cli("status", "--json")
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    def log(self, program: str) -> str:
        p = self.cfg.log_dir / f"{program}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    # ------------------------------------------------------------ the device's database

    def db(self) -> Any:
        if self._db is None:
            from venuecam import db as db_mod

            self._db = db_mod.open_db(self.cfg.db_path)
        return self._db

    def close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def make_clip(self, booking_id: str, mp4_bytes: int, field_id: int = 1, camera: str = "CAMERA_A",
                  order_detail_id: int = 789, enqueue: bool = True) -> ClipFiles:  # fmt: skip
        """A finished booking with its clip files cut already (random bytes stand in for video)
        and its upload row queued: upload-only tests need no minutes of recording."""
        from venuecam import pipeline
        from venuecam.models import Booking, Video, VideoStatus
        from venuecam.storage.keys import unique_id

        self.db()
        end = time.time() - 120
        start = end - 600
        uid = unique_id(booking_id, camera, "full")
        clips = self.cfg.clips_dir
        clips.mkdir(parents=True, exist_ok=True)
        paths = {
            "mp4": clips / f"{uid}.mp4",
            "preview": clips / f"{uid}_preview.mp4",
            "thumb": clips / f"{uid}.jpg",
        }
        sha = hashlib.sha256()
        with paths["mp4"].open("wb") as f:
            left = mp4_bytes
            while left > 0:
                block = os.urandom(min(left, 4 * MIB))
                sha.update(block)
                f.write(block)
                left -= len(block)
        paths["preview"].write_bytes(os.urandom(300_000))
        paths["thumb"].write_bytes(os.urandom(20_000))
        local = dt.datetime.fromtimestamp(start, TZ)
        with Booking._meta.database.atomic():
            Booking.create(
                booking_id=booking_id, order_detail_id=order_detail_id, field_id=field_id,
                date=local.date().isoformat(), start_time=local.strftime("%H:%M:%S"),
                end_time=dt.datetime.fromtimestamp(end, TZ).strftime("%H:%M:%S"), status="success",
                start_ts=start, end_ts=end,
            )  # fmt: skip
            video = Video.create(
                unique_id=uid, booking_id=booking_id, camera=camera, field_id=field_id, video_type="full",
                status=VideoStatus.READY, start_ts=start, end_ts=end, mp4_path=str(paths["mp4"]),
                preview_path=str(paths["preview"]), thumb_path=str(paths["thumb"]), duration_s=600.0,
                size_bytes=mp4_bytes, sha256=sha.hexdigest(),
            )  # fmt: skip
        if enqueue:
            pipeline.enqueue_upload(self.cfg, video)
        return ClipFiles(uid, booking_id, sha.hexdigest(), mp4_bytes, paths)

    def dispatch(self) -> int:
        """Hand every due row to the worker now (what the watchdog's wake-up does)."""
        from venuecam.worker.client import WorkerClient

        self.db()
        return WorkerClient(self.cfg).dispatch_due()

    def tasks(self) -> list[dict[str, Any]]:
        con = sqlite3.connect(self.cfg.db_path, timeout=30)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM pending_tasks ORDER BY id")]
        finally:
            con.close()

    def task(self, task_type: str, unique_id: str) -> dict[str, Any] | None:
        for t in self.tasks():
            if t["unique_key"] == f"{task_type}:{unique_id}":
                return t
        return None

    def integrity(self) -> dict[str, str]:
        """PRAGMA integrity_check of both databases (run with the stack stopped or running)."""
        out = {}
        for p in (self.cfg.db_path, self.cfg.huey_path):
            con = sqlite3.connect(p, timeout=30)
            try:
                out[p.name] = con.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                con.close()
        return out


# ---------------------------------------------------------------- the checks every test ends with


def bucket_objects(client: Any) -> dict[str, str]:
    """key -> SHA-256 hex of the object's bytes as the store serves them."""
    out: dict[str, str] = {}
    token: dict[str, str] = {}
    while True:
        resp = client.list_objects_v2(Bucket=BUCKET, **token)
        for o in resp.get("Contents", []):
            body = client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            out[o["Key"]] = hashlib.sha256(body).hexdigest()
        if not resp.get("IsTruncated"):
            return out
        token = {"ContinuationToken": resp["NextContinuationToken"]}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MIB):
            h.update(block)
    return h.hexdigest()


def assert_delivered(clips: Sequence[ClipFiles], objects: dict[str, str], notes: dict[str, Any]) -> None:
    """Every clip: its three objects in the bucket (the MP4's bytes match its SHA-256) and
    exactly one delivered notification for its unique_id, carrying that SHA-256."""
    created = [n for n in notes["notifications"] if n["status"] == 201]
    assert not notes["violations"], notes["violations"]
    for clip in clips:
        mine = [k for k in objects if k.rsplit("/", 1)[-1].startswith(clip.unique_id)]
        assert len(mine) == 3, (clip.unique_id, sorted(objects))
        mp4 = next(k for k in mine if k.endswith(f"{clip.unique_id}.mp4"))
        assert objects[mp4] == clip.sha256
        for name in ("preview", "thumb"):
            key = next(k for k in mine if k != mp4 and (k.endswith(".jpg") == (name == "thumb")))
            if clip.paths[name].exists():
                assert objects[key] == sha256_file(clip.paths[name]), key
        delivered = [n for n in created if n["unique_id"] == clip.unique_id]
        assert len(delivered) == 1, (clip.unique_id, [n["status"] for n in notes["notifications"]])
        assert delivered[0]["payload"]["sha256"] == clip.sha256
        assert delivered[0]["payload"]["size_bytes"] == clip.size


def assert_ledger_done(stack: Stack, unique_ids: Sequence[str]) -> None:
    """Every step of every clip completed; nothing pending, failed or lost."""
    rows = stack.tasks()
    for uid in unique_ids:
        for kind in ("upload_r2", "notify_ayo_api"):
            row = next((r for r in rows if r["unique_key"] == f"{kind}:{uid}"), None)
            assert row is not None, f"{kind} row of {uid} is gone"
            assert row["status"] == "completed", (kind, uid, row["status"], row["error_msg"])
