"""Network benchmarks in two namespaces (root): how fast the watchdog sees an outage, and
upload goodput over a shaped uplink, ours against rclone's.

- `offline_detect_s`: link loss to OFFLINE published, worst of a cable pull (`ip link set
  down`) and a blackhole (link up, packets dropped), the watchdog at its default settings.
  Also `offline_detect_linkdown_s`, `offline_detect_blackhole_s`, `online_detect_s`.
- `upload_goodput_frac_{0,1}loss`, `rclone_goodput_frac_{0,1}loss`: a 256 MiB file to moto
  in the cloud namespace over 20 Mbit/s with 40 ms one-way delay (each way) and 0% / 1%
  random loss of packets reaching the cloud. Goodput fraction = bytes / (elapsed x rate).
  Also `upload_parts_frac_*` (the same over the parts alone) and `store_complete_s_*` (the
  store's CompleteMultipartUpload): the end-to-end figure includes moto assembling the object.
  The device namespace gets the TCP settings the image ships (rootfs sysctl.d: default
  congestion control `bbr`, see `DEVICE_CONGESTION`; `net.core.default_qdisc=fq` is global,
  not per namespace, and the shaped link's root qdisc is tbf here, so BBR paces by itself).
  rclone runs as a user runs it there (its defaults); our uploader sets BBR per socket anyway.
  `rclone_cubic_goodput_frac_1loss` (only with VENUECAM_NET_BENCH_RCLONE_CUBIC=1: about 20
  minutes): rclone with cubic pinned on the route, as on an image without our sysctl.d file.

Env: VENUECAM_NET_BENCH_MB (file size, default 256) for a quick run;
VENUECAM_NET_BENCH_SKIP_UPLOAD=1 to measure the watchdog only; VENUECAM_NET_BENCH_OURS_ONLY=1
to measure our uploader only (no watchdog, no rclone); VENUECAM_NET_BENCH_RCLONE_CUBIC=1 to
add rclone under cubic at 1% loss.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from conftest import S3_KEY_ID, S3_SECRET, base_sections, free_port, render_toml  # noqa: E402
from netns import NetPair, congestion_controls, missing_requirement  # noqa: E402

RATE_MBIT = 20.0
DELAY_MS = 40.0
BUCKET = "venue-videos"
# What the image's sysctl.d makes the default (rootfs/); falls back to the kernel's default
# where the kernel does not offer it.
DEVICE_CONGESTION = "bbr"


def _wait(cond, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
    """Seconds until cond() held (polled every 20 ms)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.02)
    raise TimeoutError(f"{what}: not within {timeout}s")


# ---------------------------------------------------------------- the watchdog


def watchdog_figures(workdir: Path) -> dict[str, float]:
    from venuecam import config
    from venuecam.connectivity.state import peek

    with NetPair() as net:
        http_port, tcp_port = free_port(), free_port()
        net.popen([sys.executable, "-m", "http.server", "--bind", net.cloud_addr, http_port], ns="cloud",
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        net.wait_for_port(net.cloud_addr, http_port)
        net.listen(tcp_port)
        url = f"http://{net.cloud_addr}:{http_port}"
        # Default probe timing (interval, timeout, thresholds); only the targets are local.
        sections = base_sections(workdir, storage={"endpoint_url": url}, booking_api={"base_url": url + "/api"},
                                 connectivity={"tcp_targets": [f"{net.cloud_addr}:{tcp_port}"], "dns_names": []})  # fmt: skip
        workdir.mkdir(parents=True, exist_ok=True)
        path = workdir / "venuecam.toml"
        path.write_text(render_toml(sections))
        cfg = config.load(path)
        log = open(workdir / "watchdog.log", "wb")  # noqa: SIM115 - closed with the process
        net.popen([sys.executable, "-m", "venuecam", "--config", path, "watchdog"], ns="device", stderr=log)

        def status(s: str):  # type: ignore[no-untyped-def]
            return lambda: peek(cfg.run_dir)[0] == s

        _wait(status("ONLINE"), 30, "ONLINE at start")
        out: dict[str, float] = {}
        time.sleep(1.3)  # land the cut at a random-ish point of the probe cycle
        net.link_down()
        out["offline_detect_linkdown_s"] = _wait(status("OFFLINE"), 60, "OFFLINE after link down")
        net.link_up()
        out["online_detect_s"] = _wait(status("ONLINE"), 60, "ONLINE after link up")
        time.sleep(0.7)
        net.blackhole(True)
        out["offline_detect_blackhole_s"] = _wait(status("OFFLINE"), 60, "OFFLINE under blackhole")
        net.blackhole(False)
        heal = _wait(status("ONLINE"), 60, "ONLINE after blackhole")
        out["online_detect_s"] = max(out["online_detect_s"], heal)
        out["offline_detect_s"] = max(out["offline_detect_linkdown_s"], out["offline_detect_blackhole_s"])
        log.close()
        return out


# ---------------------------------------------------------------- upload goodput

OURS = """
import json, sys, time
from venuecam.config import StorageConfig
from venuecam.storage.client import make_client, tcp_settings
from venuecam.storage.multipart import upload_file
endpoint, path, key, key_id, secret = sys.argv[1:6]
storage = StorageConfig(bucket="venue-videos", access_key_id=key_id, secret_access_key=secret,
                        endpoint_url=endpoint, region="us-east-1")
client = make_client(storage)
calls = []  # (operation, start, end): where the time goes, for the breakdown figures
client.meta.events.register("before-call.s3", lambda model, **_: calls.append([model.name, time.monotonic(), None]))
def ended(model, **_):
    next(c for c in reversed(calls) if c[0] == model.name and c[2] is None)[2] = time.monotonic()
client.meta.events.register("after-call.s3", ended)
state = {}
t = time.monotonic()
upload_file(client, "venue-videos", key, path, part_size=storage.part_size_mb * 1024 * 1024,
            state=state, save_state=lambda s: None)
elapsed = time.monotonic() - t
parts = [c for c in calls if c[0] == "UploadPart"]
complete = [c for c in calls if c[0] == "CompleteMultipartUpload"]
print(json.dumps({"elapsed": elapsed, "congestion": str(tcp_settings(client)),
                  "parts_s": max(c[2] for c in parts) - min(c[1] for c in parts),
                  "complete_s": complete[0][2] - complete[0][1]}))
"""


FRESH_BUCKET = """
import sys, boto3, requests
endpoint, key_id, secret = sys.argv[1:4]
requests.post(endpoint + "/moto-api/reset", timeout=30)
boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
             region_name="us-east-1").create_bucket(Bucket="venue-videos")
"""


def _fresh_bucket(net: NetPair, endpoint: str) -> None:
    """moto emptied and the bucket made, from inside the cloud namespace (the host cannot reach it)."""
    net.run([sys.executable, "-c", FRESH_BUCKET, endpoint, S3_KEY_ID, S3_SECRET], ns="cloud")


def _make_file(path: Path, mib: int) -> None:
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1024 * 1024))


def _rclone_env(endpoint: str) -> dict[str, str]:
    # An AWS_CA_BUNDLE in the environment makes rclone's S3 backend fail to start over plain
    # http ("LoadCustomCABundleError"); the store here has no TLS.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    return {
        **env,
        "RCLONE_CONFIG_X_TYPE": "s3",
        "RCLONE_CONFIG_X_PROVIDER": "Other",
        "RCLONE_CONFIG_X_ENDPOINT": endpoint,
        "RCLONE_CONFIG_X_ACCESS_KEY_ID": S3_KEY_ID,
        "RCLONE_CONFIG_X_SECRET_ACCESS_KEY": S3_SECRET,
        "RCLONE_CONFIG_X_REGION": "us-east-1",
    }


def _rclone_copy(net: NetPair, rclone: str, src: Path, key: str, endpoint: str) -> float:
    """Seconds rclone takes to copy `src` to a fresh bucket, run in the device namespace."""
    _fresh_bucket(net, endpoint)
    t = time.monotonic()
    net.run([rclone, "copyto", src, f"X:{BUCKET}/{key}"], timeout=3600, env=_rclone_env(endpoint))
    return time.monotonic() - t


def upload_figures(workdir: Path, mib: int) -> dict[str, float]:
    src = workdir / "payload.bin"
    _make_file(src, mib)
    size = src.stat().st_size
    link_bytes_s = RATE_MBIT * 1e6 / 8
    ours_only = os.environ.get("VENUECAM_NET_BENCH_OURS_ONLY") == "1"
    rclone = None if ours_only else shutil.which("rclone")
    rclone_cubic = os.environ.get("VENUECAM_NET_BENCH_RCLONE_CUBIC") == "1"
    out: dict[str, float] = {}
    with NetPair() as net:
        s3 = net.start_moto()
        shipped = net.set_congestion(DEVICE_CONGESTION, ns="device")
        device_cc = net.congestion("device")
        print(f"   device namespace: default congestion control {device_cc}"
              f"{'' if shipped else f' ({DEVICE_CONGESTION} refused by the kernel)'}", flush=True)  # fmt: skip
        for loss in (0, 1):
            _fresh_bucket(net, s3.endpoint)
            net.shape(rate_mbit=RATE_MBIT, delay_ms=DELAY_MS, loss_pct=loss)
            r = net.run([sys.executable, "-c", OURS, s3.endpoint, src, f"ours-{loss}", S3_KEY_ID, S3_SECRET],
                        timeout=3600)  # fmt: skip
            res = json.loads(r.stdout.strip().splitlines()[-1])
            out[f"upload_goodput_frac_{loss}loss"] = size / (res["elapsed"] * link_bytes_s)
            # The breakdown: the parts alone (first byte of part 1 to the last part's answer),
            # and the store's CompleteMultipartUpload, which moto spends seconds on (it copies
            # the whole object) while R2 only links the parts.
            out[f"upload_parts_frac_{loss}loss"] = size / (res["parts_s"] * link_bytes_s)
            out[f"store_complete_s_{loss}loss"] = res["complete_s"]
            print(
                f"   ours  loss {loss}%: {res['elapsed']:.1f} s ({res['congestion']}); parts "
                f"{res['parts_s']:.1f} s, store's complete {res['complete_s']:.1f} s",
                flush=True,
            )
            if rclone:
                elapsed = _rclone_copy(net, rclone, src, f"rclone-{loss}", s3.endpoint)
                out[f"rclone_goodput_frac_{loss}loss"] = size / (elapsed * link_bytes_s)
                print(f"   rclone loss {loss}%: {elapsed:.1f} s ({device_cc}, namespace default)", flush=True)
            if rclone and loss == 1 and rclone_cubic:
                # A namespace may not make cubic its default (not in tcp_allowed_congestion_control,
                # so set_congestion says False): the route pin, which a program cannot override per
                # socket, is what counts.
                if "cubic" in congestion_controls()["available"]:
                    net.set_congestion("cubic", ns="device", route=True)
                    elapsed = _rclone_copy(net, rclone, src, "rclone-cubic-1", s3.endpoint)
                    out["rclone_cubic_goodput_frac_1loss"] = size / (elapsed * link_bytes_s)
                    print(f"   rclone loss 1%: {elapsed:.1f} s (cubic pinned on the route)", flush=True)
                    net.unpin_congestion("device")
                else:
                    print("   rclone under cubic skipped: the kernel offers no cubic", flush=True)
            net.unshape()
    if not rclone and not ours_only:
        print("   rclone not installed (apt-get install rclone): its figures skipped", flush=True)
    return out


def run(workdir: Path) -> dict[str, float]:
    why = missing_requirement()
    if why:
        raise RuntimeError(f"net_bench: {why}")
    ours_only = os.environ.get("VENUECAM_NET_BENCH_OURS_ONLY") == "1"
    figures = {} if ours_only else watchdog_figures(workdir / "watchdog")
    if os.environ.get("VENUECAM_NET_BENCH_SKIP_UPLOAD") != "1":
        mib = int(os.environ.get("VENUECAM_NET_BENCH_MB", "256"))
        figures.update(upload_figures(workdir, mib))
    return figures


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="venuecam-net-bench-") as d:
        print(json.dumps(run(Path(d)), indent=2))
