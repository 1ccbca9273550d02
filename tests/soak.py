"""The soak (issue 13): many short bookings through the whole stack under supervisord, with
random faults for the whole run, then heal and check (tests/soak_check.py).

    nice -n 19 python tests/soak.py --bookings 1000 --out build/soak.json   # `make soak`
    SOAK_SEED=1234 make soak                                                # the same run again

The device lives in a network namespace joined to a "cloud" one (tests/netns.py) holding the
moto server behind tests/faultproxy.py and the platform simulator; its data directory is a
small tmpfs that the run fills and frees; its wall clock is libfaketime's (tests/faketime.py).
Accelerated: 2-4 s bookings, 1 s segments, 160x120 test pattern, retry schedules in seconds.

Faults come from a seeded bag (every kind once per round and a power cut
`--power-cut-share` times, in random order, one every `--fault-interval` s on average), all
planned before the first one (times and kinds: the mix prints at the start): link cut,
blackhole, store 5xx, store reset, store stall, platform 5xx, platform 429, platform lost
reply (it records the notification, the device times out and gets a real 409 on the retry),
kill -9 of one program, a power cut (every process SIGKILLed, then a reboot: the time-sync
flag is gone until "NTP" comes back a few seconds later, and every other reboot starts with
the clock off by minutes to days), and the disk filled to the last byte for a few seconds.
The defaults (1,000 bookings 3 s apart, a fault every ~4 s, one power cut per round of 11,
none within 35 s of the one before) plan about 750 faults and 68 power cuts over ~50 min,
and leave time for work between them (a reboot alone takes ~9 s on a loaded 2-core machine).
A platform fault waits for the ones before it on its endpoint (the simulator's queue), so
each is met by a request; those still unmet when the faults end meet the first ones of the
heal. Every lost reply that was met must show as a 409 (`late_replies` <= `platform_409s`).

A booking whose whole time fell in a reboot (or a full disk) has no footage: its clip fails,
visibly (counted as `no_footage`, its ledger row `failed`), and it is not counted as
expected. "No footage" is judged as the device's clip planner would, from the segment files
the run left: none readable, or less than its jitter tolerance (0.5 s) of them. Every other success
booking x camera must be notified exactly once. Needs root (namespaces, the tmpfs).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from conftest import S3_KEY_ID, S3_SECRET  # noqa: E402
from faketime import FakeClock, build_shim  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from netns import NetPair, missing_requirement  # noqa: E402
from resilience_rig import BUCKET, Stack, descendants, wait_until  # noqa: E402
from soak_check import figures, passed, write  # noqa: E402
from venuecam.clips.plan import plan_clip  # noqa: E402
from venuecam.media import tsinfo  # noqa: E402

TZ = ZoneInfo("Asia/Jakarta")
CLOCK_OFFSETS = ("-8d", "-3h", "-10m", "+10m", "+2h")
KINDS = ("link_cut", "blackhole", "store_5xx", "store_reset", "store_stall", "platform_5xx", "platform_429",
         "platform_lost_reply", "program_kill", "power_cut", "disk_fill")  # fmt: skip
# 3 s apart: with 1.5 s (25 min of faults) the heal stalled on 2 cores (database locked,
# 67-80 live runners before clips.live_max_videos); 3 s gives the box time between faults.
SPACING_S = 3.0
FAULT_INTERVAL_S = 4.0
POWER_CUT_SHARE = 1  # power cuts per round of the bag (every other kind once)
# A power cut planned sooner than this after the one before swaps places with a later fault
# of another kind: a reboot takes ~9 s to the worker running on a loaded 2-core machine, and
# cuts one after another would leave no time for work (seen: three in 8 s, no upload done).
POWER_CUT_GAP_S = 35.0
LINK_KINDS = ("link_cut", "blackhole")
QUIET_S = 65.0  # nothing to run for this long (past a periodic scan): the heal is over
COUNTER = {"link_cut": "link_faults", "blackhole": "link_faults", "store_5xx": "store_faults",
           "store_reset": "store_faults", "store_stall": "store_faults", "platform_5xx": "platform_faults",
           "platform_429": "platform_faults", "platform_lost_reply": "platform_faults",
           "program_kill": "program_kills", "power_cut": "power_cuts", "disk_fill": "disk_fills"}  # fmt: skip


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def fault_round(rng: random.Random, power_cut_share: int = POWER_CUT_SHARE) -> list[str]:
    """One round of the bag, shuffled: every kind once, a power cut `power_cut_share` times."""
    bag = [k for k in KINDS if k != "power_cut"] + ["power_cut"] * power_cut_share
    rng.shuffle(bag)
    return bag


def plan_faults(rng: random.Random, duration: float, interval: float, power_cut_share: int = POWER_CUT_SHARE,
                power_cut_gap: float = POWER_CUT_GAP_S) -> list[tuple[float, str]]:  # fmt: skip
    """(seconds from the start, kind) of every fault within `duration`: gaps drawn from
    0.3 .. 2 x interval - 0.3 s (mean `interval`), kinds from whole rounds of the bag, no
    power cut within `power_cut_gap` s of the one before (it swaps with the next other kind,
    or is left out when none is left)."""
    times: list[float] = []
    t = rng.uniform(0.3, 2 * interval - 0.3)
    while t < duration:
        times.append(t)
        t += rng.uniform(0.3, 2 * interval - 0.3)
    kinds: list[str] = []
    while len(kinds) < len(times):
        kinds += fault_round(rng, power_cut_share)
    kinds = kinds[: len(times)]
    last_cut = -power_cut_gap
    for i, t in enumerate(times):
        if kinds[i] == "power_cut" and t - last_cut < power_cut_gap:
            j = next((j for j in range(i + 1, len(kinds)) if kinds[j] != "power_cut"), None)
            if j is not None:
                kinds[i], kinds[j] = kinds[j], kinds[i]
        if kinds[i] == "power_cut":
            if t - last_cut < power_cut_gap:
                # No other kind left to swap with: more cuts than the gap allows. Swapped on,
                # they pile up at the end one after another (seen: 124 planned, 0.3 s apart),
                # which no box survives usefully; such a cut is left out (the plan's log says
                # how many were planned).
                kinds[i] = ""
                continue
            last_cut = t
    return [(t, k) for t, k in zip(times, kinds, strict=True) if k]


def fault_mix(kinds: list[str]) -> str:
    counts = {k: kinds.count(k) for k in sorted(set(kinds), key=lambda k: (-kinds.count(k), k))}
    return ", ".join(f"{k} {n}" for k, n in counts.items())


class Cloud:
    """The cloud namespace's services, driven from outside both namespaces."""

    def __init__(self, net: NetPair, tmp: Path) -> None:
        self.net = net
        self.tmp = tmp
        self.moto = net.start_moto()
        port = int(self.moto.endpoint.rsplit(":", 1)[1])
        self.proxy = FaultProxy.start((net.cloud_addr, 0), (net.cloud_addr, port), tmp / "proxy.sock",
                                      prefix=["ip", "netns", "exec", net.cloud])  # fmt: skip
        net.procs.append(self.proxy.proc)
        self.sim = net.start_simulator(log_path=tmp / "simulator.log")
        self.s3(f"c.create_bucket(Bucket={BUCKET!r}); print('{{}}')")

    def py(self, code: str, timeout: float = 300) -> Any:
        # From a file: a thousand bookings are longer than an argument may be.
        script = self.tmp / "cloud-call.py"
        script.write_text(textwrap.dedent(code))
        out = self.net.run([sys.executable, str(script)], ns="cloud", timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])

    def s3(self, code: str) -> Any:
        return self.py(f"""
            import sys, json
            sys.path.insert(0, {str(HERE)!r})
            import boto3
            c = boto3.client("s3", endpoint_url={self.moto.endpoint!r}, aws_access_key_id={S3_KEY_ID!r},
                             aws_secret_access_key={S3_SECRET!r}, region_name="us-east-1")
            {code}
        """)  # fmt: skip

    def sim_fault(self, endpoint: str, spec: dict[str, Any]) -> int:
        """After the endpoint's unspent faults, not instead of them: each one is met. Returns
        how many were still unmet before it (set without the queue, it would have replaced them)."""
        pending = self.sim_post("/_sim/faults", {endpoint: {**spec, "queue": True}})["faults"]
        return len(pending.get(endpoint, [])) - 1

    def sim_pending(self) -> dict[str, list[dict[str, Any]]]:
        return dict(self.sim_post("/_sim/faults", {})["faults"])

    def sim_post(self, path: str, body: Any) -> Any:
        data = json.dumps(body)
        return self.py(f"""
            import urllib.request
            req = urllib.request.Request({self.sim.url + path!r}, data={data!r}.encode(),
                                         headers={{"Content-Type": "application/json"}})
            print(urllib.request.urlopen(req, timeout=30).read().decode())
        """)  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return dict(self.py(f"""
            import urllib.request
            print(urllib.request.urlopen({self.sim.url + "/_sim/notifications"!r}, timeout=30).read().decode())
        """))  # fmt: skip

    def objects(self) -> dict[str, str]:
        return dict(
            self.s3("from resilience_rig import bucket_objects; print(json.dumps(bucket_objects(c)))")
        )

    def orphan_uploads(self) -> int:
        """Multipart uploads left incomplete in the bucket (their keys printed, to find whose)."""
        keys = list(self.s3(f"print(json.dumps([u['Key'] for u in "
                            f"c.list_multipart_uploads(Bucket={BUCKET!r}).get('Uploads', [])]))"))  # fmt: skip
        if keys:
            print(f"soak: {len(keys)} multipart upload(s) left incomplete: {keys}", flush=True)
        return len(keys)

    def stop(self) -> None:
        self.proxy.stop()
        self.sim.stop()


@dataclass(frozen=True)
class Piece:
    path: str
    start_ts: float
    end_ts: float


@dataclass
class Plan:
    bookings: list[dict[str, Any]]
    last_end: float


def plan_bookings(rng: random.Random, n: int, start: float, spacing: float, fields: int) -> Plan:
    """`n` bookings of 2-4 s, one starting every `spacing` s (on alternate fields, overlapping
    when spacing < length), every 20th cancelled. Times on whole seconds (the API's)."""
    out = []
    last_end = start
    for i in range(n):
        s = int(start + i * spacing)
        e = s + rng.randint(2, 4)
        last_end = max(last_end, e)
        ls, le = dt.datetime.fromtimestamp(s, TZ), dt.datetime.fromtimestamp(e, TZ)
        out.append({
            "booking_id": f"SOAK-{i:05d}", "order_detail_id": 10_000 + i, "field_id": 1 + i % fields,
            "field_name": f"Lapangan {1 + i % fields}", "date": ls.date().isoformat(),
            "start_time": ls.strftime("%H:%M:%S"), "end_time": le.strftime("%H:%M:%S"),
            "status": "cancelled" if i % 20 == 19 else "success", "user_name": "Soak Player",
            "user_phone": "081200000000", "_start": s, "_end": e,
        })  # fmt: skip
    return Plan(out, last_end)


@dataclass
class Soak:
    tmp: Path
    seed: int
    bookings: int = 1000
    cameras: int = 2
    spacing: float = SPACING_S
    fault_interval: float = FAULT_INTERVAL_S
    power_cut_share: int = POWER_CUT_SHARE
    power_cut_gap: float = POWER_CUT_GAP_S
    disk_mb: int = 192
    heal_timeout: float = 600  # the heal gives up after this long without progress
    rng: random.Random = field(init=False)
    counters: dict[str, int] = field(default_factory=dict)
    heals: list[tuple[float, str, Callable[[], None]]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.fault_rng = random.Random(self.seed * 1_000_003 + 13)  # the plan: its own stream
        self.counters = {k: 0 for k in ("power_cuts", "program_kills", "link_faults", "store_faults",
                                        "platform_faults", "clock_jumps", "disk_fills", "lost_replies")}  # fmt: skip
        self.link_busy = False
        self.max_lag = 0.0
        self.queued_platform_faults = 0

    # ------------------------------------------------------------ set-up

    def run(self) -> dict[str, Any]:
        why = missing_requirement()
        if why:
            raise SystemExit(f"the soak needs root: {why}")
        data = self.tmp / "data"
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.disk_mb}m", "tmpfs", str(data)], check=True
        )
        try:
            with NetPair() as net:
                self.net = net
                cloud = Cloud(net, self.tmp)
                try:
                    return self._run(cloud)
                finally:
                    cloud.stop()
        finally:
            subprocess.run(["umount", "-l", str(data)], check=False)

    def _stack(self, cloud: Cloud) -> Stack:
        self.clock = FakeClock(self.tmp, build_shim(self.tmp))
        self.flag = self.tmp / "synchronized"
        self.flag.touch()
        from venuecam import wallclock

        cams = [{"name": f"CAM_{chr(65 + i)}", "field_id": 1 + i % 2, "source": "testsrc", "segment_seconds": 1,
                 "width": 160, "height": 120, "fps": 5, "bitrate_kbps": 100} for i in range(self.cameras)]  # fmt: skip
        return Stack(
            self.tmp, cloud.proxy.endpoint, cloud.sim.url, prefix=["ip", "netns", "exec", self.net.device],
            env={**self.clock.env, wallclock.ENV_SYNC_FLAG: str(self.flag)},
            cameras=cams,
            booking_api={"sync_interval_s": 5, "timeout_s": 3.0, "page_size": 250},
            clips={"grace_s": 2, "scan_interval_s": 2, "preview_seconds": 2, "preview_height": 120},
            queue={"upload_schedule_s": [1, 2, 3, 4, 5, 5, 5], "notify_schedule_s": [1, 2, 3, 4, 5, 5, 5],
                   "clip_schedule_s": [1, 1, 2], "sync_schedule_s": [1, 2, 3], "stale_after_s": 10},
            retention={"min_free_percent": 1.0, "disk_warn_percent": 1.0},
        )  # fmt: skip

    def _run(self, cloud: Cloud) -> dict[str, Any]:
        self.cloud = cloud
        self.stack = self._stack(cloud)
        try:
            return self._soak(self.stack)
        except BaseException:
            # Stopped (a SIGTERM, an error): the stack must not outlive its namespaces.
            if self.stack.proc is not None and self.stack.proc.poll() is None:
                self.stack.power_cut()
            raise

    def _soak(self, stack: Stack) -> dict[str, Any]:
        cloud = self.cloud
        # The first booking once the stack is recording: its start-up sync has them all (the
        # periodic one runs each minute only).
        plan = plan_bookings(self.rng, self.bookings, time.time() + 12, self.spacing, min(2, self.cameras))
        public = [{k: v for k, v in b.items() if not k.startswith("_")} for b in plan.bookings]
        for date in sorted({b["date"] for b in public}):
            body = {"bookings": [b for b in public if b["date"] == date], "date": date}
            cloud.sim_post("/_sim/bookings", body)
        stack.start()
        wait_until("the first segments", lambda: self._segments() >= self.cameras, 60)
        duration = plan.last_end + 4 - time.time()
        faults = plan_faults(
            self.fault_rng, duration, self.fault_interval, self.power_cut_share, self.power_cut_gap
        )
        cuts = [t for t, k in faults if k == "power_cut"]
        closest = min((b - a for a, b in zip(cuts, cuts[1:], strict=False)), default=0.0)
        log(f"{self.bookings} bookings until +{duration - 4:.0f} s, {self.cameras} cameras; {len(faults)} faults "
            f"planned over {duration:.0f} s (one every ~{self.fault_interval:g} s, {self.power_cut_share} power "
            f"cuts per round of {len(KINDS) - 1 + self.power_cut_share}, power cuts >= {closest:.1f} s apart): "
            f"{fault_mix([k for _, k in faults])}")  # fmt: skip
        self._fault_loop(faults)
        while time.time() < plan.last_end + 4:  # fewer faults than time (or none): the bookings go on
            self._heal_due()
            time.sleep(0.2)
        log(f"faults over: {self.counters} (at most {self.max_lag:.1f} s behind the plan); healing")
        self._heal_all()
        if stack.proc is None or stack.proc.poll() is not None:
            self._boot()
        stack.wait_running(120)
        expected_ids = {f"{b['booking_id']}-CAM_{chr(65 + c)}-full"
                        for b in plan.bookings if b["status"] == "success"
                        for c in range(self.cameras) if 1 + c % 2 == b["field_id"]}  # fmt: skip
        self._wait_settled(expected_ids)
        stack.stop()
        return self._verdict(plan, expected_ids)

    # ------------------------------------------------------------ faults

    def _fault_loop(self, faults: list[tuple[float, str]]) -> None:
        """Each fault at its planned time (at once when behind), healing what is due between."""
        start = time.monotonic()
        kinds = [k for _, k in faults]
        for i, (at, _) in enumerate(faults):
            while (now := time.monotonic()) < start + at:
                self._heal_due()
                time.sleep(min(0.2, start + at - now))
            self.max_lag = max(self.max_lag, now - start - at)
            self._heal_due()
            if kinds[i] in LINK_KINDS and self.link_busy:
                # One link fault at a time: a later fault of another kind takes this turn.
                j = next((j for j in range(i + 1, len(kinds)) if kinds[j] not in LINK_KINDS), None)
                if j is not None:
                    kinds[i], kinds[j] = kinds[j], kinds[i]
            if self.stack.proc is not None:
                self._fault(kinds[i])

    def _later(self, seconds: float, what: str, fn: Callable[[], None]) -> None:
        self.heals.append((time.monotonic() + seconds, what, fn))

    def _heal_due(self) -> None:
        now = time.monotonic()
        due = [h for h in self.heals if h[0] <= now]
        self.heals = [h for h in self.heals if h[0] > now]
        for _, _, fn in due:
            fn()

    def _heal_all(self) -> None:
        for _, _, fn in sorted(self.heals, key=lambda h: h[0]):
            fn()
        self.heals = []
        self.cloud.proxy.clear()
        # The platform's faults not yet met stay: each is met once, by the heal's first requests.

    def _fault(self, kind: str) -> None:
        r, net, proxy, stack = self.rng, self.net, self.cloud.proxy, self.stack
        if kind in LINK_KINDS and self.link_busy:
            return
        self.counters[COUNTER[kind]] += 1
        if kind == "link_cut":
            net.link_down()
            self.link_busy = True
            self._later(r.uniform(1, 5), "link up", self._link_up)
        elif kind == "blackhole":
            net.blackhole(True)
            self.link_busy = True
            self._later(r.uniform(1, 5), "blackhole off", self._unblackhole)
        elif kind == "store_5xx":
            proxy.fail(status=r.choice([500, 502, 503, 504]), count=r.randint(1, 4))
        elif kind == "store_reset":
            proxy.drop(count=r.randint(1, 2), after_bytes=r.choice([0, 1000, 20_000]))
        elif kind == "store_stall":
            proxy.stall(count=1, after_bytes=r.choice([0, 10_000]), seconds=r.uniform(1, 4))
        elif kind == "platform_5xx":
            ep = r.choice(["videos", "videos", "bookings"])
            self._platform_fault(ep, {"mode": r.choice(["500", "502", "503"]), "count": r.randint(1, 3)})
        elif kind == "platform_429":
            self._platform_fault("videos", {"mode": "429", "count": r.randint(1, 2),
                                            "retry_after": str(r.randint(1, 3))})  # fmt: skip
        elif kind == "platform_lost_reply":
            # Answered after the device's 3 s timeout: recorded, then its retry is a real 409.
            self._platform_fault("videos", {"mode": "timeout", "count": 1, "delay": 4.0})
            self.counters["lost_replies"] += 1
        elif kind == "program_kill":
            running = sorted(p for p, st in stack.states().items() if st == "RUNNING")
            if running:
                self._kill9(r.choice(running))
        elif kind == "power_cut":
            self._power_cut()
        elif kind == "disk_fill":
            self._fill_disk(r.uniform(2, 5))

    def _platform_fault(self, endpoint: str, spec: dict[str, Any]) -> None:
        if self.cloud.sim_fault(endpoint, spec) > 0:
            self.queued_platform_faults += 1  # behind an unmet one: replacing it would have lost it

    def _kill9(self, program: str) -> None:
        # Not Stack.kill9: a program that stopped since has pid 0, and kill(0) is our own group.
        with contextlib.suppress(OSError, xmlrpc.client.Fault):
            pid = self.stack.pid(program)
            if pid > 1:
                for child in descendants(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGKILL)
                os.kill(pid, signal.SIGKILL)

    def _link_up(self) -> None:
        self.net.link_up()
        self.link_busy = False

    def _unblackhole(self) -> None:
        self.net.blackhole(False)
        self.link_busy = False

    def _power_cut(self) -> None:
        self.stack.power_cut()
        self.flag.unlink(missing_ok=True)  # /run is gone with the power: not synchronised yet
        if self.counters["power_cuts"] % 2 == 0:
            self.clock.set(self.rng.choice(CLOCK_OFFSETS))  # fake-hwclock's stale time, or a drifted one
            self.counters["clock_jumps"] += 1
        time.sleep(self.rng.uniform(0.2, 1.0))
        self._boot()
        self._later(self.rng.uniform(2, 6), "time synced", self._time_synced)

    def _time_synced(self) -> None:
        self.clock.set("+0")
        self.flag.touch()

    def _boot(self) -> None:
        self.stack.start(wait=False)

    def _fill_disk(self, seconds: float) -> None:
        data = self.tmp / "data"
        ballast = data / "soak-ballast"
        st = os.statvfs(data)
        free = st.f_bavail * st.f_frsize
        with contextlib.suppress(OSError), ballast.open("wb") as f:
            os.posix_fallocate(f.fileno(), 0, max(free - 4096, 4096))
        self._later(seconds, "disk freed", lambda: ballast.unlink(missing_ok=True))

    # ------------------------------------------------------------ the end

    def _wait_settled(self, expected: set[str]) -> None:
        """Until every expected video is notified, or nothing is left to do on the device, or
        `heal_timeout` s pass without progress (then the verdict names what is missing)."""
        seen: tuple[int, int] | None = None
        since = shown = 0.0
        while True:
            counts = self.cloud.summary()["counts"]
            done = sum(1 for u in expected if counts.get(u))
            busy = self._busy_rows()
            now = time.monotonic()
            if (done, busy) != seen:
                seen, since = (done, busy), now
            # Nothing left to run is not settled until a periodic scan (each minute) has
            # had its chance to queue a clip nobody asked for yet (seen: one was lost so).
            settled = done == len(expected) or (busy == 0 and now - since >= QUIET_S)
            if settled or now - shown >= 10:
                log(f"delivered {done}/{len(expected)}, {busy} ledger rows still to run")
                shown = now
            if settled:
                break
            if now - since > self.heal_timeout:
                log(f"no progress for {self.heal_timeout:.0f} s: judging it as it is")
                break
            time.sleep(2)
        time.sleep(2)  # a notification in flight lands (a duplicate would show)

    def _segments(self) -> int:
        con = sqlite3.connect(self.stack.cfg.db_path, timeout=30)
        try:
            return int(con.execute("SELECT count(*) FROM segments").fetchone()[0])
        except sqlite3.OperationalError:  # not made yet
            return 0
        finally:
            con.close()

    def _busy_rows(self) -> int:
        con = sqlite3.connect(self.stack.cfg.db_path, timeout=30)
        try:
            return int(con.execute(
                "SELECT count(*) FROM pending_tasks WHERE task_type != 'sync' AND status NOT IN ('completed', 'failed')"
            ).fetchone()[0])  # fmt: skip
        finally:
            con.close()

    def _verdict(self, plan: Plan, expected_ids: set[str]) -> dict[str, Any]:
        con = sqlite3.connect(self.stack.cfg.db_path, timeout=30)
        con.row_factory = sqlite3.Row
        try:
            videos = {r["unique_id"]: dict(r) for r in con.execute("SELECT * FROM videos")}
            segs = list(con.execute("SELECT camera, start_ts, end_ts, path FROM segments WHERE clock_ok = 1"))
            failed = [dict(r) for r in con.execute("SELECT unique_key, task_type, error_msg FROM pending_tasks "
                                                   "WHERE status = 'failed'")]  # fmt: skip
        finally:
            con.close()
        by_id = {b["booking_id"]: b for b in plan.bookings}

        def has_footage(uid: str) -> bool:
            # As the device's clip planner sees it: readable files, more than its jitter of them.
            b = by_id[uid.split("-CAM_")[0]]
            cam = "CAM_" + uid.split("-CAM_")[1].split("-")[0]
            mine = [Piece(p, a, z) for c, a, z, p in segs if c == cam and z > b["_start"] and a < b["_end"]]
            readable = [
                x for x in mine if Path(x.path).is_file() and tsinfo.first_video_pts(x.path) is not None
            ]
            return bool(readable) and not plan_clip(readable, b["_start"], b["_end"]).empty

        no_footage = {u for u in expected_ids if not has_footage(u)}
        expected = {u: (videos.get(u) or {}).get("sha256") or "" for u in expected_ids - no_footage}
        summary = self.cloud.summary()
        notes = summary["notifications"]
        result = figures(expected, notes, self.cloud.objects(), self.cloud.orphan_uploads(),
                         bookings=len(plan.bookings), **self.counters)  # fmt: skip
        delivered_ids = {n["unique_id"] for n in notes if n["status"] == 201}
        unexpected = sorted(delivered_ids - set(expected))
        allowed_failures = {f"clip:{u}" for u in no_footage}
        bad_failed = [f for f in failed if f["unique_key"] not in allowed_failures]
        integrity = self.stack.integrity()
        unmet = sum(f["mode"] == "timeout" for f in self.cloud.sim_pending().get("videos", []))
        result.update(
            no_footage=len(no_footage), unexpected_deliveries=len(unexpected), unexpected_ids=unexpected,
            failed_tasks=len(bad_failed), failed=bad_failed[:20], platform_409s=sum(n["status"] == 409 for n in notes),
            late_replies=self.counters["lost_replies"] - unmet, fault_interval=self.fault_interval,
            power_cut_share=self.power_cut_share, spacing=self.spacing,
            queued_platform_faults=self.queued_platform_faults,
            integrity_ok=int(all(v == "ok" for v in integrity.values())), integrity=integrity,
            wall_s=round(time.monotonic() - self.t0, 1), seed=self.seed,
        )  # fmt: skip
        return result


# A run where more than this share of the booking x cameras had no footage at all (every
# second of them in reboots or a full disk) did not soak the delivery path: it fails.
MAX_NO_FOOTAGE_SHARE = 1 / 3


def verdict_ok(result: dict[str, Any]) -> bool:
    # A lost reply that was met leaves a 409: the retry's, or the late one's behind it.
    filmed = result["videos_expected"]
    return (passed(result) and not result["unexpected_deliveries"] and not result["failed_tasks"]
            and bool(result["integrity_ok"]) and result["platform_409s"] >= result["late_replies"]
            and filmed > 0 and result["no_footage"] <= MAX_NO_FOOTAGE_SHARE * (filmed + result["no_footage"]))  # fmt: skip


EXTRA_FIELDS = ("no_footage", "unexpected_deliveries", "failed_tasks", "platform_409s", "late_replies",
                "queued_platform_faults", "integrity_ok", "disk_fills", "spacing", "fault_interval", "power_cut_share",
                "seed")  # fmt: skip


def report(result: dict[str, Any], out: Path | None) -> None:
    width = max(map(len, result))
    for k, v in result.items():
        if not isinstance(v, list | dict) or v:
            print(f"  {k:<{width}}  {v}")
    if out is not None:
        write(result, out)
        doc = json.loads(out.read_text())
        doc.update({k: result[k] for k in EXTRA_FIELDS})
        out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _stop_on_term(signum: int, frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C (which a background run ignores): the stack, the servers, the
    # namespaces and the tmpfs are stopped and removed instead of left running.
    raise SystemExit(128 + signum)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _stop_on_term)
    ap = argparse.ArgumentParser(prog="soak.py", description=__doc__.splitlines()[0])
    ap.add_argument("--bookings", type=int, default=1000)
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--spacing", type=float, default=SPACING_S, help="seconds between booking starts")
    ap.add_argument(
        "--fault-interval", type=float, default=FAULT_INTERVAL_S, help="mean seconds between faults"
    )
    ap.add_argument("--power-cut-share", type=int, default=POWER_CUT_SHARE,
                    help="power cuts per round of the fault bag (every other kind once)")  # fmt: skip
    ap.add_argument("--power-cut-gap", type=float, default=POWER_CUT_GAP_S,
                    help="least seconds between two planned power cuts")  # fmt: skip
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED") or random.randrange(1 << 31)))
    ap.add_argument("--dir", type=Path, default=None, help="working directory (default: a new temp dir)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here (build/soak.json)")
    args = ap.parse_args(argv)
    import tempfile

    tmp = args.dir or Path(tempfile.mkdtemp(prefix="venuecam-soak-"))
    log(f"seed {args.seed} (SOAK_SEED={args.seed} reproduces), working in {tmp}")
    os.environ.setdefault("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")
    soak = Soak(tmp, args.seed, bookings=args.bookings, cameras=args.cameras, spacing=args.spacing,
                fault_interval=args.fault_interval, power_cut_share=args.power_cut_share,
                power_cut_gap=args.power_cut_gap)  # fmt: skip
    result = soak.run()
    report(result, args.out)
    ok = verdict_ok(result)
    log(("PASSED" if ok else "FAILED") + f" (seed {args.seed})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
