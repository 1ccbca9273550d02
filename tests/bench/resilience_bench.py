"""Resume and resend figures: the whole stack under supervisord, the store behind
tests/faultproxy.py, which counts every PUT's payload bytes per key and part.

- resent_bytes_after_kill: the uploading worker SIGKILLed when half of a 256 MiB clip is
  sent, supervisord restarts it: payload bytes the store received twice (target <= one part).
- rclone_resent_bytes_after_kill: rclone (Debian's) killed the same way and run again.
- resent_bytes_after_long_cut: a drop-everything outage mid-upload (default 300 s, shorten
  with VENUECAM_BENCH_LONG_CUT_S), longer than TCP and client timeouts.
- resume_after_heal_s: after a 10 s link-down mid-upload, seconds from `ip link set up`
  to the next payload byte at the store (target <= 1; TCP alone takes 6-7 s).
- drain_start_s: link healed -> the first queued upload's first request at the store.

Run alone: `.venv/bin/python tests/bench/run.py --only resilience_bench`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

MIB = 1024 * 1024
PART = 5 * MIB
BIG = 256 * MIB
HEAL_CUT_S = 10.0


def _wait(what: str, fn: Any, timeout: float, interval: float = 0.05) -> Any:
    from resilience_rig import wait_until

    return wait_until(what, fn, timeout, interval)


def _sent(proxy: Any, needle: str) -> int:
    return int(proxy.put_bytes(needle))


def _done(stack: Any, uid: str) -> bool:
    r = stack.task("notify_ayo_api", uid)
    return r is not None and r["status"] == "completed"


# ---------------------------------------------------------------- loopback figures


def _loopback(work: Path) -> dict[str, float]:
    from conftest import S3_KEY_ID, S3_SECRET, start_moto
    from faultproxy import FaultProxy
    from fixtures_platform import start_simulator
    from resilience_rig import Stack

    moto = start_moto()
    moto.client().create_bucket(Bucket="venue-videos")
    port = int(moto.endpoint.rsplit(":", 1)[1])
    proxy = FaultProxy.start(("127.0.0.1", 0), ("127.0.0.1", port), work / "proxy.sock")
    sim = start_simulator(log_path=work / "simulator.log")
    out: dict[str, float] = {}
    try:
        tmp = work / "kill"
        tmp.mkdir()
        stack = Stack(tmp, proxy.endpoint, sim.url)
        clip = stack.make_clip("BK-BENCH-KILL", BIG)
        stack.close_db()
        stack.start()
        _wait("half the clip sent", lambda: _sent(proxy, clip.unique_id + ".mp4") >= BIG // 2, 600)
        stack.kill9("worker")
        _wait("the clip delivered", lambda: _done(stack, clip.unique_id), 900, 0.5)
        out["resent_bytes_after_kill"] = float(proxy.stats()["resent_bytes"])
        stack.stop()
        stack.close_db()

        proxy.reset()
        out["rclone_resent_bytes_after_kill"] = float(
            _rclone(work, proxy, clip.paths["mp4"], S3_KEY_ID, S3_SECRET)
        )
    finally:
        proxy.stop()
        sim.stop()
        moto.proc.terminate()
        moto.proc.wait(10)
    return out


def _rclone(work: Path, proxy: Any, path: Path, key_id: str, secret: str) -> int:
    exe = shutil.which("rclone")
    if not exe:
        raise RuntimeError("rclone not installed (apt-get install rclone)")
    env = {
        **os.environ,
        "RCLONE_CONFIG_BENCH_TYPE": "s3",
        "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
        "RCLONE_CONFIG_BENCH_ENDPOINT": proxy.endpoint,
        "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": key_id,
        "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": secret,
        "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
        "RCLONE_CONFIG_BENCH_REGION": "us-east-1",
        "RCLONE_CONFIG": str(work / "rclone.conf"),
    }
    env.pop("AWS_CA_BUNDLE", None)  # rclone's SDK cannot use a custom CA bundle on its transport
    # The same part size as ours, so "one part" means the same thing.
    argv = [exe, "copyto", str(path), "bench:venue-videos/rclone/clip.mp4", "--s3-chunk-size", "5M",
            "--s3-upload-cutoff", "5M", "--retries", "1", "-q",
            # moto answers rclone's verifying HEAD with 400; the proxy counts bytes either way.
            "--s3-no-head"]  # fmt: skip
    first = subprocess.Popen(argv, env=env, start_new_session=True)
    _wait("rclone half way", lambda: _sent(proxy, "rclone/clip.mp4") >= BIG // 2, 600)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    subprocess.run(argv, env=env, check=True, timeout=900)
    return int(proxy.stats()["resent_bytes"])


# ---------------------------------------------------------------- network-namespace figures


def _sustained_flow(proxy: Any, since: float, window_s: float = 0.5, min_bytes: int = 512 * 1024) -> float:
    """When data flows again: the first payload chunk after `since` that starts half a second
    carrying >= 512 KiB. A few packets the device's queue held through the cut and released
    on link-up are not a resumed upload."""
    time.sleep(2 * window_s)  # let the window after the candidate fill
    t = proxy.first_payload_after(since)
    while t is not None and proxy.bytes_between(t, t + window_s) < min_bytes:
        t = proxy.first_payload_after(t + 0.001)
        if t is not None and t > time.time() - window_s:
            time.sleep(window_s)
    if t is None:
        raise RuntimeError("no sustained flow after the heal")
    return float(t)


def _netns(work: Path) -> dict[str, float]:
    from faultproxy import FaultProxy
    from netns import NetPair, missing_requirement
    from resilience_rig import Stack

    why = missing_requirement()
    if why:
        raise RuntimeError(why)
    long_cut = float(os.environ.get("VENUECAM_BENCH_LONG_CUT_S", "300"))
    out: dict[str, float] = {}
    os.environ["S3_IGNORE_SUBDOMAIN_BUCKETNAME"] = "true"
    with NetPair() as net:
        moto = net.start_moto()
        port = int(moto.endpoint.rsplit(":", 1)[1])
        proxy = FaultProxy.start((net.cloud_addr, 0), (net.cloud_addr, port), work / "nproxy.sock",
                                 prefix=["ip", "netns", "exec", net.cloud])  # fmt: skip
        net.procs.append(proxy.proc)
        sim = net.start_simulator(log_path=work / "nsim.log")
        try:
            net.run([sys.executable, "-c", (
                f"import boto3; boto3.client('s3', endpoint_url={moto.endpoint!r}, aws_access_key_id='k', aws_secret_access_key='s',"
                " region_name='us-east-1').create_bucket(Bucket='venue-videos')")], ns="cloud")  # fmt: skip
            prefix = ["ip", "netns", "exec", net.device]

            def upload_under_way(name: str, booking: str) -> tuple[Stack, Any]:
                """A fresh stack uploading a 16-part clip over a 40 Mbit/s link, 3 parts sent."""
                tmp = work / name
                tmp.mkdir()
                stack = Stack(tmp, proxy.endpoint, sim.url, prefix=prefix)
                clip = stack.make_clip(booking, 16 * PART)
                stack.close_db()
                net.shape(rate_mbit=40)
                stack.start()
                _wait("upload under way", lambda: _sent(proxy, clip.unique_id + ".mp4") >= 3 * PART, 120)
                return stack, clip

            # resume_after_heal_s: 10 s link-down mid-upload.
            stack, clip = upload_under_way("heal", "BK-BENCH-HEAL")
            tmp = work / "heal"
            net.link_down()
            time.sleep(HEAL_CUT_S)
            healed = time.time()
            net.link_up()
            _wait("data flowing again", lambda: proxy.first_payload_after(healed), 120)
            out["resume_after_heal_s"] = round(_sustained_flow(proxy, healed) - healed, 3)
            net.unshape()
            _wait("heal clip delivered", lambda: _done(stack, clip.unique_id), 300, 0.5)

            # drain_start_s: a clip queued while offline, then the link heals.
            net.link_down()
            _wait("OFFLINE", lambda: (tmp / "run" / "offline").exists(), 30)
            clip2 = stack.make_clip("BK-BENCH-DRAIN", 2 * PART)
            stack.dispatch()  # held: offline
            time.sleep(3)
            healed = time.time()
            net.link_up()

            def first_request() -> float | None:
                ts = [r["t_start"] for r in proxy.stats()["records"]
                      if clip2.unique_id in r["key"] and r["t_start"] >= healed]  # fmt: skip
                return min(ts) if ts else None

            started = _wait("the queued upload started", first_request, 120)
            out["drain_start_s"] = round(started - healed, 3)
            _wait("drain clip delivered", lambda: _done(stack, clip2.unique_id), 300, 0.5)
            stack.stop()
            stack.close_db()

            # resent_bytes_after_long_cut: blackhole mid-upload for long_cut seconds.
            proxy.reset()
            stack, clip3 = upload_under_way("long", "BK-BENCH-LONG")
            net.blackhole(True)
            time.sleep(long_cut)
            healed = time.time()
            net.blackhole(False)
            _wait("data flowing after the long cut", lambda: proxy.first_payload_after(healed), 120)
            out["resume_after_long_cut_s"] = round(_sustained_flow(proxy, healed) - healed, 3)
            _wait("long-cut clip delivered", lambda: _done(stack, clip3.unique_id), 600, 0.5)
            out["resent_bytes_after_long_cut"] = float(proxy.stats()["resent_bytes"])
            out["long_cut_s"] = long_cut
            stack.stop()
            stack.close_db()
        finally:
            proxy.stop()
            sim.stop()
    return out


def run(workdir: Path) -> dict[str, float]:
    out: dict[str, float] = {"part_bytes": float(PART)}
    only = os.environ.get("VENUECAM_BENCH_RESILIENCE_ONLY", "")  # "loopback" or "netns"
    if only != "netns":
        out.update(_loopback(workdir))
    if only != "loopback":
        out.update(_netns(workdir))
    return out
