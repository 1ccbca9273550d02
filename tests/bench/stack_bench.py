"""Resident memory of the whole stack at idle (`rss_stack_mb`, ffmpeg aside).

Runs the demo's appliance (two test-pattern cameras, every program under supervisord, the
simulator and a moto S3 server beside it), lets it settle, and adds up VmRSS of each
supervisord program's own process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import xmlrpc.client
from pathlib import Path

from venuecam import demo

SETTLE_S = 45


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _wait(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing on port {port}")


def run(workdir: Path) -> dict[str, float]:
    from supervisor.xmlrpc import SupervisorTransport

    bindir = Path(sys.executable).parent
    s3_port, api_port = _port(), _port()
    procs = [
        subprocess.Popen([str(bindir / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "venuecam", "simulator", "--host", "127.0.0.1", "--port",
                          str(api_port), "--token", demo.DEMO_TOKEN, "--venue-id", "42", "--timezone",
                          demo.TIMEZONE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]  # fmt: skip
    sup = None
    try:
        _wait(s3_port)
        _wait(api_port)
        demo._create_bucket(s3_port)
        for sub in ("data", "run", "logs"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        cfg_path = workdir / "venuecam.toml"
        cfg_path.write_text(demo.demo_config(workdir, s3_port, api_port))
        sup = subprocess.Popen(
            [sys.executable, "-m", "venuecam", "--config", str(cfg_path), "supervise"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "GPIOZERO_PIN_FACTORY": "mock"},
        )  # fmt: skip
        time.sleep(SETTLE_S)
        sock = workdir / "run" / "supervisor.sock"
        proxy = xmlrpc.client.ServerProxy(
            "http://x", transport=SupervisorTransport(None, None, f"unix://{sock}")
        )
        infos = proxy.supervisor.getAllProcessInfo()
        figures: dict[str, float] = {}
        total = 0.0
        for info in infos:
            if info["statename"] != "RUNNING":
                raise RuntimeError(f"{info['name']} is {info['statename']}")
            mb = rss_mb(info["pid"])
            total += mb
            figures[f"stack_rss_{info['name'].lower()}_mb"] = round(mb, 1)
        figures["stack_rss_supervisord_mb"] = round(rss_mb(sup.pid), 1)
        figures["rss_stack_mb"] = round(total + figures["stack_rss_supervisord_mb"], 1)
        return figures
    finally:
        if sup is not None and sup.poll() is None:
            sup.send_signal(signal.SIGTERM)
            try:
                sup.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(sup.pid, signal.SIGKILL)
        for p in procs:
            p.terminate()
            p.wait(10)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(run(Path(d)))
