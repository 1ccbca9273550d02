"""`venuecam demo`: the whole appliance on this machine, on its embedded defaults.

Starts a local S3-compatible store (moto server) and the booking platform simulator (a
3-minute booking every 4 minutes on two fields), writes a demo venuecam.toml with two
test-pattern cameras, and runs supervisord with every program, as on the box. Prints each
notification the platform receives. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

DEMO_TOKEN = "demo-platform-token"
DEMO_KEY_ID = "demo-access-key"
DEMO_SECRET = "demo-secret-access-key"
BUCKET = "venue-videos"
TIMEZONE = "Asia/Jakarta"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", default="demo-data", help="where the demo keeps its data, logs and config")
    p.add_argument("--every", default="4m", help="a booking starts this often (default 4m)")
    p.add_argument("--length", default="3m", help="each booking lasts this long (default 3m)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, what: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"demo: {what} exited at start (code {proc.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"demo: {what} did not start listening on 127.0.0.1:{port}")


def demo_config(root: Path, s3_port: int, api_port: int) -> str:
    """The demo's venuecam.toml: everything local, probes aimed at the local services only."""
    data = root / "data"
    return f"""# Written by `venuecam demo`. Everything here is local to this machine.
[device]
device_id = "demo-box"
venue_id = "42"
timezone = "{TIMEZONE}"
data_dir = "{data}"
run_dir = "{root / "run"}"
log_dir = "{root / "logs"}"
demo = true

[booking_api]
base_url = "http://127.0.0.1:{api_port}"
api_token = "{DEMO_TOKEN}"
sync_interval_s = 60

[storage]
endpoint_url = "http://127.0.0.1:{s3_port}"
bucket = "{BUCKET}"
access_key_id = "{DEMO_KEY_ID}"
secret_access_key = "{DEMO_SECRET}"
region = "us-east-1"

[[cameras]]
name = "CAMERA_A"
field_id = 1
source = "testsrc"
width = 640
height = 360
fps = 15
bitrate_kbps = 800

[[cameras]]
name = "CAMERA_B"
field_id = 2
source = "testsrc"
width = 640
height = 360
fps = 15
bitrate_kbps = 800

[clips]
scan_interval_s = 60
grace_s = 15

[connectivity]
# The demo has no internet: probe only the local store and platform.
tcp_targets = []
dns_names = []

[leds]
pin_factory = "mock"
"""


def _notifications(api_port: int) -> list[dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/_sim/notifications", timeout=3) as r:
            body = json.load(r)
    except OSError:
        return []
    items = body.get("notifications", body) if isinstance(body, dict) else body
    return items if isinstance(items, list) else []


def run(args: argparse.Namespace) -> int:
    if not shutil.which("ffmpeg"):
        print(
            "demo: ffmpeg is not installed (apt-get install ffmpeg, or run `make run` as root)",
            file=sys.stderr,
        )
        return 1
    root = Path(args.dir).resolve()
    for sub in ("data", "run", "logs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    s3_port, api_port = _free_port(), _free_port()
    procs: list[subprocess.Popen[bytes]] = []
    cloud_log = open(root / "logs" / "demo-cloud.log", "ab")  # noqa: SIM115 - lives as long as the demo

    def start(argv: list[str], what: str, port: int | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, stdout=cloud_log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(proc)
        if port:
            _wait_port(port, what, proc)
        return proc

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        moto = shutil.which("moto_server", path=str(bindir)) or "moto_server"
        start([moto, "-H", "127.0.0.1", "-p", str(s3_port)], "the S3 server (moto)", s3_port)
        _create_bucket(s3_port)
        start(
            [sys.executable, "-m", "venuecam", "simulator", "--host", "127.0.0.1", "--port", str(api_port),
             "--token", DEMO_TOKEN, "--venue-id", "42", "--timezone", TIMEZONE,
             "--schedule", f"every={args.every},length={args.length},fields=1,2",
             "--state-file", str(root / "data" / "simulator.json")],
            "the booking platform simulator", api_port,
        )  # fmt: skip
        cfg_path = root / "venuecam.toml"
        cfg_path.write_text(demo_config(root, s3_port, api_port))
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "VENUECAM_CONFIG": str(cfg_path)}
        sup = subprocess.Popen(
            [sys.executable, "-m", "venuecam", "--config", str(cfg_path), "supervise"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        print(_banner(root, cfg_path, s3_port, api_port, args), flush=True)
        seen: set[str] = set()
        while not stopping:
            if sup.poll() is not None:
                print(
                    f"demo: supervisord exited (code {sup.returncode}); see {root / 'logs'}", file=sys.stderr
                )
                break
            for n in _notifications(api_port):
                uid = str(n.get("unique_id", "?"))
                if uid not in seen:
                    seen.add(uid)
                    p = n.get("payload") if isinstance(n.get("payload"), dict) else n
                    url = str(p.get("mp4_url", "")).split("?", 1)[0]
                    print(
                        f"🔔 platform notified: {uid} ({float(p.get('duration_seconds') or 0):.0f} s, "
                        f"{int(p.get('size_bytes') or 0) / 1e6:.1f} MB) {url}",
                        flush=True,
                    )
            time.sleep(2)
        if sup.poll() is None:
            print("\ndemo: stopping the appliance ...", flush=True)
            sup.send_signal(signal.SIGTERM)
            try:
                sup.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(sup.pid, signal.SIGKILL)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        cloud_log.close()
    print("demo: stopped.")
    return 0


def _create_bucket(port: int) -> None:
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=DEMO_KEY_ID,
        aws_secret_access_key=DEMO_SECRET, region_name="us-east-1",
    )  # fmt: skip
    s3.create_bucket(Bucket=BUCKET)


def _banner(root: Path, cfg_path: Path, s3_port: int, api_port: int, args: argparse.Namespace) -> str:
    vc = f"{Path(sys.executable).parent / 'venuecam'} --config {cfg_path}"
    return f"""
venuecam demo is running (Ctrl-C stops everything).
  cameras      CAMERA_A (field 1), CAMERA_B (field 2): test patterns
  platform     http://127.0.0.1:{api_port}  (simulator: a {args.length} booking every {args.every} on each field)
  store        http://127.0.0.1:{s3_port}  (moto S3 server, bucket {BUCKET})
  data, logs   {root / "data"}, {root / "logs"}

The first booking ends about {args.length} from now; its clips are cut, uploaded and the
platform notified within a minute after that. Watch it happen:
  {vc} status
  tail -f {root / "logs"}/worker.log
"""
