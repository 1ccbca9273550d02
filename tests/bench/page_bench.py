"""The installer's page: statusd's CPU while it is open with both cameras in aiming mode.

The whole stack runs under supervisord (`venuecam supervise`) with two 1280x720 test-pattern
cameras; a real headless Chromium keeps the page open (`/?aim=CAMERA_A,CAMERA_B`: each
picture fetched every 2 s, the page itself every 20 s) through a loopback forward to the
status socket, as `ssh -L` gives the installer. Segments are 2 s long, so nearly every
picture asked for is a new one (the worst case; with the default 10 s segments most are
served from the cache). Figures, as percent of one core over MEASURE_S:

- `page_statusd_cpu_pct`: statusd itself (requests, page rendering, the timeline queries);
- `page_snapshot_ffmpeg_cpu_pct`: the ffmpeg runs that decode the pictures (statusd's children);
- `idle_statusd_cpu_pct`: statusd over the same time with nobody looking.

Run alone: .venv/bin/python tests/bench/run.py --only page_bench
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: helpers

MEASURE_S = 40.0
TICK = os.sysconf("SC_CLK_TCK")


def _config(workdir: Path, run_dir: Path) -> Path:
    cams = "".join(
        f"""
[[cameras]]
name = "{name}"
field_id = {field}
source = "testsrc:{colour}"
segment_seconds = 2
width = 1280
height = 720
fps = 10
bitrate_kbps = 2000
"""
        for name, field, colour in (("CAMERA_A", 1, "red"), ("CAMERA_B", 2, "blue"))
    )
    path = workdir / "venuecam.toml"
    path.write_text(f"""[device]
device_id = "bench-box"
venue_id = "1"
timezone = "Asia/Jakarta"
data_dir = "{workdir}/data"
run_dir = "{run_dir}"
log_dir = "{workdir}/logs"
demo = true

[booking_api]
base_url = "http://127.0.0.1:9"
api_token = "bench-token-123456"

[storage]
endpoint_url = "http://127.0.0.1:9"
bucket = "b"
access_key_id = "bench-key"
secret_access_key = "bench-secret"

[connectivity]
tcp_targets = []
dns_names = []
probe_service_hosts = false
{cams}
[leds]
pin_factory = "mock"
""")
    return path


def _cpu(pid: int) -> tuple[float, float]:
    """(own, waited-for children's) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (cutime + cstime) / TICK


def _statusd_pid(run_dir: Path) -> int:
    ctl = Path(sys.executable).parent / "supervisorctl"
    out = subprocess.run([str(ctl), "-c", str(run_dir / "supervisord.conf"), "pid", "statusd"],
                         capture_output=True, text=True, timeout=10)  # fmt: skip
    return int(out.stdout.strip())


def _wait(what: str, fn: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fn():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


def run(workdir: Path) -> dict[str, float]:
    import chromium
    from sockforward import Forward
    from venuecam.statusd.client import StatusClient

    run_dir = Path(tempfile.mkdtemp(prefix="vc-pb-", dir="/tmp"))
    cfg_path = _config(workdir, run_dir)
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock"}
    stack = subprocess.Popen([sys.executable, "-m", "venuecam", "--config", str(cfg_path), "supervise"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True, env=env)  # fmt: skip
    browser = None
    try:
        client = StatusClient(run_dir / "status.sock", timeout=10)
        for cam in ("CAMERA_A", "CAMERA_B"):
            _wait(f"{cam}'s first picture",
                  lambda c=cam: client.request_raw("GET", f"/api/cameras/{c}/snapshot.jpg")[0] == 200, 60)  # fmt: skip
        pid = _statusd_pid(run_dir)
        time.sleep(2.0)
        own0, kids0 = _cpu(pid)
        time.sleep(MEASURE_S)
        own1, kids1 = _cpu(pid)
        idle = (own1 - own0) / MEASURE_S * 100
        with (
            Forward(run_dir / "status.sock") as fwd,
            tempfile.TemporaryDirectory(prefix="vc-chromium-") as profile,
        ):
            browser = chromium.open_page(f"{fwd.url}/?aim=CAMERA_A,CAMERA_B", profile)
            time.sleep(5.0)  # the page loaded, both cameras aiming
            own0, kids0 = _cpu(pid)
            t0 = time.monotonic()
            time.sleep(MEASURE_S)
            own1, kids1 = _cpu(pid)
            elapsed = time.monotonic() - t0
            os.killpg(browser.pid, signal.SIGTERM)
            browser.wait(20)
            browser = None
    finally:
        if browser is not None:
            os.killpg(browser.pid, signal.SIGKILL)
        stack.send_signal(signal.SIGTERM)
        try:
            stack.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(stack.pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "page_statusd_cpu_pct": round((own1 - own0) / elapsed * 100, 2),
        "page_snapshot_ffmpeg_cpu_pct": round((kids1 - kids0) / elapsed * 100, 2),
        "idle_statusd_cpu_pct": round(idle, 2),
    }


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="vc-bench-") as d:
        print(run(Path(d)))
