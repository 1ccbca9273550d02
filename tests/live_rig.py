"""Bookings recorded and delivered through a shaped link, timed from the booking's end: the rig
behind tests/bench/live_bench.py and its own test (tests/test_live_rig.py).

The whole appliance runs under supervisord in the device namespace of a tests/netns.py pair,
recording test-pattern cameras; moto and the platform simulator run in the cloud namespace,
behind the veth shaped to `rate_mbit` / `delay_ms`. Bookings are put on the simulator with
start and end on the box's own clock (the same host clock), and the box is told to sync them
(`venuecam sync bookings --force`, as an operator would). Each round's bookings start together and
end together, one per camera's field; the next round starts when the last is delivered.

What is measured, per video: booking end -> the simulator's receipt of its notification
(`received_at`, read from the simulator's state file on the host's file system, so polling
costs no process in the cloud namespace); per round: bytes the device's veth transmitted from
the booking's start to the last notification, and the worker's CPU time (its own and its
children's, ffmpeg included) during the booking and up to the last notification.

Every delivered video is checked before a figure is kept: the three objects stored, the MP4's
SHA-256 and size in the bucket equal to the notification's. A figure is never kept for a
video that did not arrive whole.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from conftest import S3_KEY_ID, S3_SECRET
from netns import NetPair, missing_requirement
from resilience_rig import BUCKET, Stack, descendants, wait_until

TZ = ZoneInfo("Asia/Jakarta")  # the simulator's and the config's venue time zone
CLK_TCK = os.sysconf("SC_CLK_TCK")


def has_live_switch() -> bool:
    """Whether this build's config knows `clips.live` (the live path, issue 12)."""
    from venuecam.config import ClipsConfig

    return "live" in {f.name for f in dataclasses.fields(ClipsConfig)}


def product_default(section_cls: Any, name: str) -> Any:
    """A config key's shipped default: the bench runs the box as shipped where it can."""
    for f in dataclasses.fields(section_cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            break
    raise KeyError(f"{section_cls.__name__}.{name} has no default")


@dataclass(frozen=True)
class Scenario:
    """One run: `cameras` cameras on fields 1..N, `rounds` rounds of bookings ending together."""

    cameras: int = 1
    booking_s: int = 90
    rounds: int = 1
    # testsrc2 at 1280x720, 15 fps, asked for 3.9 Mbit/s: x264 records ~4.0 Mbit/s of MPEG-TS
    # in 10 s segments (3.7 gave 3.8; a lower resolution cannot reach 4 with this pattern).
    # The rate achieved is measured from the segments and printed each run.
    width: int = 1280
    height: int = 720
    fps: int = 15
    bitrate_kbps: int = 3900
    segment_seconds: int | None = None  # None: the camera default
    grace_s: int | None = None  # None: the clips default
    rate_mbit: float = 20.0
    delay_ms: float = 40.0
    # None: `clips.live` not written (the build's default path); True/False: written.
    live: bool | None = None
    lead_s: int = 15  # the booking starts this long after it is put on the platform
    deliver_timeout_s: float = 900.0

    def clips_section(self) -> dict[str, Any]:
        from venuecam.config import ClipsConfig

        grace = self.grace_s if self.grace_s is not None else product_default(ClipsConfig, "grace_s")
        out: dict[str, Any] = {
            "grace_s": grace,
            "scan_interval_s": product_default(ClipsConfig, "scan_interval_s"),
        }
        if self.live is not None:
            if not has_live_switch():
                raise ValueError("this build's config has no clips.live: run with live=None")
            out["live"] = self.live
        return out

    def camera_sections(self) -> list[dict[str, Any]]:
        from venuecam.config import CameraConfig

        seg = self.segment_seconds or product_default(CameraConfig, "segment_seconds")
        return [
            {"name": f"CAMERA_{chr(ord('A') + i)}", "field_id": i + 1, "source": "testsrc",
             "segment_seconds": seg, "width": self.width, "height": self.height, "fps": self.fps,
             "bitrate_kbps": self.bitrate_kbps}
            for i in range(self.cameras)
        ]  # fmt: skip

    @property
    def path(self) -> str:
        return "live" if self.expects_live else "after-booking"

    @property
    def expects_live(self) -> bool:
        """Which path the config chooses: `clips.live` defaults to true where it exists."""
        return has_live_switch() if self.live is None else self.live


@dataclass
class VideoResult:
    unique_id: str
    camera: str
    end_ts: float
    notified_at: float
    size: int  # the MP4's bytes, as notified and as stored
    sha256: str
    stored_bytes: int  # the three objects' bytes
    recorded_mbit: float  # the camera's rate over the booking, from its segments
    made_by: str  # "live" or "after-booking": which path stored it (the worker's log says)
    # How long after the booking's end its last segment ended (and so closed: capture is
    # paced to the clock): a wait no path can shorten unless segments end on the booking's end.
    segment_wait_s: float

    @property
    def ready_s(self) -> float:
        return self.notified_at - self.end_ts


@dataclass
class RoundResult:
    start_ts: float
    end_ts: float
    videos: list[VideoResult]
    tx_bytes: int  # device veth, booking start -> last notification
    tail_tx_bytes: int  # ... of which after the booking's end: what was left to send
    cpu_booking_s: float  # the worker (and its children) during the booking
    cpu_total_s: float  # ... from the booking's start to the last notification
    idle_tx_bytes_per_s: float  # the device's background (probes, syncs) before the booking

    @property
    def wire_overhead(self) -> float:
        return self.tx_bytes / sum(v.stored_bytes for v in self.videos)


@dataclass
class RunResult:
    scenario: Scenario
    rounds: list[RoundResult] = field(default_factory=list)

    @property
    def videos(self) -> list[VideoResult]:
        return [v for r in self.rounds for v in r.videos]

    def ready(self) -> list[float]:
        return [v.ready_s for v in self.videos]

    def wire_overhead(self) -> float:
        tx = sum(r.tx_bytes for r in self.rounds)
        return tx / sum(v.stored_bytes for v in self.videos)

    def cpu_s_per_hour(self, total: bool = False) -> float:
        """Worker CPU seconds per recorded hour per camera (`total`: up to the last notification)."""
        cpu = sum(r.cpu_total_s if total else r.cpu_booking_s for r in self.rounds)
        recorded_h = sum(r.end_ts - r.start_ts for r in self.rounds) * self.scenario.cameras / 3600
        return cpu / recorded_h

    def tail_mb(self) -> float:
        """MB the device sent after the bookings' end, per round."""
        return sum(r.tail_tx_bytes for r in self.rounds) / len(self.rounds) / 1e6

    def segment_wait_s(self) -> float:
        return sum(v.segment_wait_s for v in self.videos) / len(self.videos)

    def recorded_mbit(self) -> float:
        return sum(v.recorded_mbit for v in self.videos) / len(self.videos)


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    k = (len(s) - 1) * pct / 100
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# ---------------------------------------------------------------- what the rig reads


def process_cpu_s(pid: int) -> float:
    """utime+stime of `pid`, of its reaped children (cutime+cstime) and of its living
    descendants: everything the process has made the CPU do so far."""

    def fields(p: int) -> list[str]:
        return Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()

    f = fields(pid)  # f[0] is field 3 (state): utime is field 14 -> f[11]
    ticks = sum(int(x) for x in f[11:15])
    for child in descendants(pid):
        try:
            c = fields(child)
        except OSError:
            continue  # ended meanwhile: its time is in its parent's cutime once reaped
        ticks += int(c[11]) + int(c[12])
    return ticks / CLK_TCK


def veth_tx_bytes(net: NetPair) -> int:
    """Bytes the device's end of the veth transmitted (offloads off: wire-size frames,
    Ethernet headers included)."""
    out = subprocess.run(["ip", "-n", net.device, "-j", "-s", "link", "show", "dev", net.dev_if],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return int(json.loads(out)[0]["stats64"]["tx"]["bytes"])


def local(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, TZ)


def booking_record(booking_id: str, field_id: int, start: float, end: float, k: int) -> dict[str, Any]:
    return {
        "booking_id": booking_id, "order_detail_id": 9000 + k, "field_id": field_id,
        "field_name": f"Lapangan {chr(ord('A') + field_id - 1)}", "date": local(start).date().isoformat(),
        "start_time": local(start).strftime("%H:%M:%S"), "end_time": local(end).strftime("%H:%M:%S"),
        "status": "success", "user_name": "Bench Player", "user_phone": "081200000000",
    }  # fmt: skip


class Cloud:
    """moto and the simulator in the cloud namespace; the few calls into it run a short
    Python there (the host has no route into the pair)."""

    def __init__(self, net: NetPair, work: Path) -> None:
        os.environ["S3_IGNORE_SUBDOMAIN_BUCKETNAME"] = "true"  # moto: path style, whatever the host
        self.net = net
        self.moto = net.start_moto()
        self.state_file = work / "simulator.json"
        self.sim = net.start_simulator(log_path=work / "simulator.log", state_file=self.state_file)
        self.py(f"""
            import boto3
            boto3.client("s3", endpoint_url={self.moto.endpoint!r}, aws_access_key_id={S3_KEY_ID!r},
                         aws_secret_access_key={S3_SECRET!r}, region_name="us-east-1").create_bucket(Bucket={BUCKET!r})
            print("{{}}")
        """)  # fmt: skip

    def py(self, code: str, timeout: float = 300) -> Any:
        out = self.net.run([sys.executable, "-c", textwrap.dedent(code)], ns="cloud", timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])

    def add_bookings(self, bookings: list[dict[str, Any]]) -> None:
        body = json.dumps({"bookings": bookings})
        self.py(f"""
            import urllib.request
            req = urllib.request.Request({self.sim.url + "/_sim/bookings"!r}, data={body!r}.encode(),
                                         headers={{"Content-Type": "application/json"}})
            print(urllib.request.urlopen(req, timeout=10).read().decode())
        """)  # fmt: skip

    def notifications(self) -> list[dict[str, Any]]:
        """Every notification received, from the simulator's state file (written atomically)."""
        try:
            return list(json.loads(self.state_file.read_text())["notifications"])
        except (OSError, ValueError, KeyError):
            return []

    def objects(self, needle: str) -> dict[str, dict[str, Any]]:
        """key -> {"size", "sha256"} of the bucket's objects whose key holds `needle`."""
        return dict(self.py(f"""
            import hashlib, json, boto3
            c = boto3.client("s3", endpoint_url={self.moto.endpoint!r}, aws_access_key_id={S3_KEY_ID!r},
                             aws_secret_access_key={S3_SECRET!r}, region_name="us-east-1")
            out = {{}}
            for page in c.get_paginator("list_objects_v2").paginate(Bucket={BUCKET!r}):
                for o in page.get("Contents", []):
                    if {needle!r} in o["Key"]:
                        body = c.get_object(Bucket={BUCKET!r}, Key=o["Key"])["Body"].read()
                        out[o["Key"]] = {{"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}}
            print(json.dumps(out))
        """))  # fmt: skip

    def multipart_uploads(self) -> list[str]:
        """Keys of multipart uploads left open in the bucket (none once everything is delivered)."""
        return list(self.py(f"""
            import json, boto3
            c = boto3.client("s3", endpoint_url={self.moto.endpoint!r}, aws_access_key_id={S3_KEY_ID!r},
                             aws_secret_access_key={S3_SECRET!r}, region_name="us-east-1")
            print(json.dumps([u["Key"] for u in c.list_multipart_uploads(Bucket={BUCKET!r}).get("Uploads", [])]))
        """))  # fmt: skip

    def stop(self) -> None:
        self.sim.stop()  # not a group leader: NetPair's teardown would miss it


# ---------------------------------------------------------------- the run


def _recorded_mbit(stack: Stack, camera: str, start: float, end: float) -> float:
    """The camera's recorded rate over the booking: its filed segments' bytes / their duration."""
    con = sqlite3.connect(stack.cfg.db_path, timeout=30)
    try:
        rows = con.execute(
            "SELECT bytes, duration FROM segments WHERE camera = ? AND end_ts > ? AND start_ts < ?",
            (camera, start, end),
        ).fetchall()
    finally:
        con.close()
    seconds = sum(r[1] for r in rows)
    if not seconds:
        raise AssertionError(f"{camera}: no segments filed between {start} and {end}")
    return sum(r[0] for r in rows) * 8 / seconds / 1e6


def _segment_wait_s(stack: Stack, camera: str, end: float) -> float:
    """The end of the camera's first segment that reaches the booking's end, after that end."""
    con = sqlite3.connect(stack.cfg.db_path, timeout=30)
    try:
        (last,) = con.execute(
            "SELECT MIN(end_ts) FROM segments WHERE camera = ? AND end_ts >= ?", (camera, end - 0.05)
        ).fetchone()
    finally:
        con.close()
    if last is None:
        raise AssertionError(f"{camera}: no segment reaches the booking's end {end}")
    return float(last) - end


def _segments_filed(stack: Stack, cameras: list[str]) -> bool:
    con = sqlite3.connect(stack.cfg.db_path, timeout=30)
    try:
        have = {r[0] for r in con.execute("SELECT DISTINCT camera FROM segments")}
    except sqlite3.OperationalError:
        return False  # the schema is not made yet
    finally:
        con.close()
    return set(cameras) <= have


def _synced(stack: Stack, ids: list[str], starts: float) -> bool:
    con = sqlite3.connect(stack.cfg.db_path, timeout=30)
    try:
        marks = ",".join("?" * len(ids))
        rows = con.execute(f"SELECT booking_id, start_ts FROM bookings WHERE booking_id IN ({marks})", ids)
        got = {b: s for b, s in rows}
    finally:
        con.close()
    return set(got) == set(ids) and all(abs(s - starts) < 1 for s in got.values())


def _sleep_until(ts: float) -> None:
    while (left := ts - time.time()) > 0:
        time.sleep(min(left, 0.5))


# Bookings start and end on whole minutes and half hours: on the segment grid (segments are
# cut on the clock, capture/command.py). The scaled bookings keep that: on a 10 s grid.
BOOKING_GRID_S = 10


def _on_grid(ts: float) -> float:
    return float(math.ceil(ts / BOOKING_GRID_S) * BOOKING_GRID_S)


def _one_round(stack: Stack, cloud: Cloud, net: NetPair, scn: Scenario, k: int, tag: str,
               cameras: list[dict[str, Any]]) -> RoundResult:  # fmt: skip
    start = _on_grid(time.time() + scn.lead_s)
    end = start + scn.booking_s
    if local(start).date() != local(end + 300).date():
        # Across the venue's midnight the booking would span two dates: wait for the new day.
        _sleep_until(dt.datetime.combine(local(end + 300).date(), dt.time(0, 0, 5), TZ).timestamp())
        start = _on_grid(time.time() + scn.lead_s)
        end = start + scn.booking_s
    ids = {cam["name"]: f"BK-{tag}-R{k}-F{cam['field_id']}" for cam in cameras}
    cloud.add_bookings([booking_record(ids[c["name"]], c["field_id"], start, end, k) for c in cameras])
    out = stack.cli("sync", "bookings", "--force", "--wait")
    if out.returncode != 0:
        raise RuntimeError(f"venuecam sync bookings failed: {out.stdout}{out.stderr}")
    wait_until("the bookings synced", lambda: _synced(stack, list(ids.values()), start), 30)
    if time.time() > start - 3:
        raise RuntimeError(f"the sync took too long: the booking starts in {start - time.time():.1f} s")
    # The background the device sends anyway (probes, syncs), over the seconds before the start.
    idle0, idle_t0 = veth_tx_bytes(net), time.monotonic()
    _sleep_until(start)
    tx0 = veth_tx_bytes(net)
    idle_rate = (tx0 - idle0) / max(time.monotonic() - idle_t0, 0.1)
    worker = stack.pid("worker")
    cpu0 = process_cpu_s(worker)
    _sleep_until(end)
    cpu_end = process_cpu_s(worker)
    tx_end = veth_tx_bytes(net)
    uids = {c["name"]: f"{ids[c['name']]}-{c['name']}-full" for c in cameras}

    def delivered() -> dict[str, dict[str, Any]] | None:
        got = {n["unique_id"]: n for n in cloud.notifications() if n["status"] == 201}
        return {u: got[u] for u in uids.values()} if all(u in got for u in uids.values()) else None

    notes = wait_until("every video notified", delivered, scn.deliver_timeout_s, 0.2)
    tx1 = veth_tx_bytes(net)
    cpu1 = process_cpu_s(worker)
    if stack.pid("worker") != worker:
        raise RuntimeError("the worker restarted during the round: its CPU time is not one process's")
    worker_log = stack.log("worker")
    videos = []
    for cam in cameras:
        uid = uids[cam["name"]]
        note = notes[uid]
        objs = cloud.objects(uid)
        mp4 = [k for k in objs if k.endswith(f"/{uid}.mp4")]
        if len(objs) != 3 or len(mp4) != 1:
            raise AssertionError(f"{uid}: expected its MP4, preview and thumbnail stored, got {sorted(objs)}")
        stored = objs[mp4[0]]
        payload = note["payload"]
        if (stored["sha256"], stored["size"]) != (payload["sha256"], payload["size_bytes"]):
            raise AssertionError(f"{uid}: notified {payload['sha256']} / {payload['size_bytes']} B, "
                                 f"stored {stored['sha256']} / {stored['size']} B")  # fmt: skip
        videos.append(VideoResult(
            unique_id=uid, camera=cam["name"], end_ts=end, notified_at=float(note["received_at"]),
            size=stored["size"], sha256=stored["sha256"], stored_bytes=sum(o["size"] for o in objs.values()),
            recorded_mbit=_recorded_mbit(stack, cam["name"], start, end),
            segment_wait_s=_segment_wait_s(stack, cam["name"], end),
            made_by="live" if f"Upload completed live for {uid} " in worker_log else "after-booking",
        ))  # fmt: skip
        if videos[-1].made_by != scn.path:
            # A live video handed back would time the after-booking path under the live name.
            raise AssertionError(
                f"{uid} was stored by the {videos[-1].made_by} path, the run is for {scn.path}"
            )
    return RoundResult(start, end, videos, tx1 - tx0, tx1 - tx_end, cpu_end - cpu0, cpu1 - cpu0, idle_rate)


def run(scn: Scenario, work: Path, log: Any = None) -> RunResult:
    """One scenario from a fresh namespace pair, store and platform to its figures."""
    why = missing_requirement()
    if why:
        raise RuntimeError(why)
    from venuecam.config import ConnectivityConfig, StorageConfig

    say = log or (lambda msg: None)
    work.mkdir(parents=True, exist_ok=True)
    result = RunResult(scn)
    cameras = scn.camera_sections()
    tag = "LIVE" if scn.live else ("AFTER" if scn.live is False else "DEFAULT")
    with NetPair() as net:
        cloud = Cloud(net, work)
        stack = Stack(
            work, cloud.moto.endpoint, cloud.sim.url, prefix=["ip", "netns", "exec", net.device],
            cameras=cameras, clips=scn.clips_section(),
            # The shipped part size and probe cadence: both are on the wire being measured.
            storage={k: product_default(StorageConfig, k) for k in ("part_size_mb", "multipart_threshold_mb")},
            connectivity={k: product_default(ConnectivityConfig, k) for k in ("interval_s", "timeout_s")},
        )  # fmt: skip
        try:
            net.shape(rate_mbit=scn.rate_mbit, delay_ms=scn.delay_ms)
            stack.start()
            names = [c["name"] for c in cameras]
            wait_until("every camera's first segment filed", lambda: _segments_filed(stack, names), 90)
            for k in range(1, scn.rounds + 1):
                r = _one_round(stack, cloud, net, scn, k, tag, cameras)
                result.rounds.append(r)
                say(f"   {scn.path}, round {k}/{scn.rounds}: ready after end "
                    + ", ".join(f"{v.ready_s:.1f}" for v in r.videos) + " s; recorded "
                    + ", ".join(f"{v.recorded_mbit:.2f}" for v in r.videos) + " Mbit/s; last segment closed "
                    + ", ".join(f"{v.segment_wait_s:.1f}" for v in r.videos) + " s after the end; "
                    + f"{r.tail_tx_bytes / 1e6:.1f} MB sent after the end")  # fmt: skip
            left = cloud.multipart_uploads()
            if left:
                raise AssertionError(f"multipart uploads left open in the bucket: {left}")
        finally:
            stack.stop()
            stack.close_db()
            cloud.stop()
    return result
