"""Network-namespace tests (root): the harness's own controls, and the watchdog program in
the device namespace probing services in the cloud namespace while the link fails."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import free_port
from netns import NetPair, congestion_controls
from venuecam import db as db_mod
from venuecam.connectivity import state
from venuecam.models import ConnectivityLog

pytestmark = pytest.mark.root

SEED_UP = "🌐 CONNECTIVITY: Status changed: OFFLINE ❌ -> ONLINE ✅"
SEED_DOWN = "🌐 CONNECTIVITY: Status changed: ONLINE ✅ -> OFFLINE ❌"

CONNECT = """
import socket, sys, time
t = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), float(sys.argv[3])).close()
    print("ok", time.monotonic() - t)
except OSError as e:
    print("fail", type(e).__name__, e)
"""

SEND = """
import socket, sys, time
n = int(sys.argv[3]); buf = b"x" * 65536
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), 10)
t = time.monotonic(); sent = 0
while sent < n:
    sent += s.send(buf[: n - sent])
s.shutdown(socket.SHUT_WR); s.recv(1)  # the sink answers once it has every byte
print(n * 8 / (time.monotonic() - t) / 1e6)
"""

SINK = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept()
while c.recv(1 << 16): pass
c.send(b"k"); c.close()
"""


def connect(net: NetPair, port: int, timeout: float = 2.0) -> str:
    return net.run([sys.executable, "-c", CONNECT, net.cloud_addr, port, timeout]).stdout.strip()


def throughput_mbit(net: NetPair, nbytes: int) -> float:
    port = free_port()
    sink = net.popen(
        [sys.executable, "-c", SINK, net.cloud_addr, port], ns="cloud", stdout=subprocess.PIPE, text=True
    )
    assert sink.stdout is not None and sink.stdout.readline().startswith("ready")
    return float(net.run([sys.executable, "-c", SEND, net.cloud_addr, port, nbytes], timeout=120).stdout)


# ---------------------------------------------------------------- the harness itself


def test_outages_link_down_and_blackhole(netpair: NetPair) -> None:
    port = free_port()
    netpair.listen(port)
    assert connect(netpair, port).startswith("ok")
    netpair.link_down()
    # No route: fails at once, not after a timeout.
    assert "unreachable" in connect(netpair, port).lower()
    netpair.link_up()
    assert connect(netpair, port).startswith("ok")
    netpair.blackhole(True)
    assert connect(netpair, port, timeout=1.0).startswith("fail TimeoutError")
    netpair.blackhole(False)
    assert connect(netpair, port).startswith("ok")


def test_nothing_is_routed_beyond_the_cloud_namespace(netpair: NetPair) -> None:
    """The device's default route ends in the cloud namespace, which forwards nothing."""
    assert netpair.run(["cat", "/proc/sys/net/ipv4/ip_forward"], ns="cloud").stdout.strip() == "0"
    out = netpair.run([sys.executable, "-c", CONNECT, "192.0.2.1", 9, 0.5]).stdout
    assert out.startswith("fail")


def test_shaping_limits_the_rate(netpair: NetPair) -> None:
    unshaped = throughput_mbit(netpair, 8 * 1024 * 1024)
    netpair.shape(rate_mbit=10)
    shaped = throughput_mbit(netpair, 2 * 1024 * 1024)
    print(f"unshaped {unshaped:.0f} Mbit/s, shaped to 10: {shaped:.2f} Mbit/s")
    assert shaped < 12 < unshaped
    assert shaped > 3  # generous: the link works, just slower


def test_loss_rule_drops_about_that_share_of_packets(netpair: NetPair) -> None:
    netpair.shape(loss_pct=20)
    port = free_port()
    recv = (
        "import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind((sys.argv[1],int(sys.argv[2])))\n"
        "s.settimeout(1.0);print('ready',flush=True);n=0\n"
        "try:\n while True: s.recv(100); n+=1\nexcept OSError: print(n)\n"
    )
    sink = netpair.popen(
        [sys.executable, "-c", recv, netpair.cloud_addr, port], ns="cloud", stdout=subprocess.PIPE, text=True
    )
    assert sink.stdout is not None and sink.stdout.readline().startswith("ready")
    send = (
        "import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
        "for i in range(2000):\n s.sendto(b'x',(sys.argv[1],int(sys.argv[2])))\n if i % 100 == 0: time.sleep(0.01)\n"
    )
    netpair.run([sys.executable, "-c", send, netpair.cloud_addr, port])
    received = int(sink.stdout.readline())
    dropped = sum(v for k, v in netpair.counters("cloud").items() if "statistic" in k)
    assert received + dropped == 2000
    assert 200 < dropped < 600  # 20% of 2000, with a wide band


def test_delay_stage_holds_packets_each_way(netpair: NetPair) -> None:
    port = free_port()
    netpair.listen(port)
    netpair.shape(delay_ms=60)
    out = connect(netpair, port)
    assert out.startswith("ok")
    # A connect needs one round trip: at least 2 x 60 ms once packets are held each way.
    assert float(out.split()[1]) >= 0.115
    netpair.unshape()
    out = connect(netpair, port)
    assert out.startswith("ok") and float(out.split()[1]) < 0.115


def test_congestion_control_can_be_chosen_per_namespace(netpair: NetPair) -> None:
    cc = congestion_controls()
    assert "reno" in cc["available"] or "cubic" in cc["available"]
    if "bbr" not in cc["available"]:
        pytest.skip("this kernel has no tcp_bbr")
    assert netpair.set_congestion("reno") and netpair.congestion() == "reno"
    assert netpair.set_congestion("bbr", route=True) and netpair.congestion() == "bbr"
    routes = subprocess.run(["ip", "-n", netpair.device, "route"], capture_output=True, text=True).stdout
    assert "congctl bbr" in routes
    assert not netpair.set_congestion("no-such-algorithm")


# ---------------------------------------------------------------- the watchdog program


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached within {timeout}s: {what}")


def status_is(expected: str) -> Callable[[], bool]:
    return lambda: state.read_state().status == expected


@pytest.fixture
def watchdog_setup(netpair: NetPair, make_config, tmp_path: Path):  # type: ignore[no-untyped-def]
    http_port, tcp_port = free_port(), free_port()
    netpair.popen(
        [sys.executable, "-m", "http.server", "--bind", netpair.cloud_addr, http_port],
        ns="cloud", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    netpair.wait_for_port(netpair.cloud_addr, http_port)
    netpair.listen(tcp_port)
    url = f"http://{netpair.cloud_addr}:{http_port}"
    cfg = make_config(
        storage={"endpoint_url": url},
        booking_api={"base_url": url + "/api"},
        connectivity={"tcp_targets": [f"{netpair.cloud_addr}:{tcp_port}"], "dns_names": [],
                      "interval_s": 0.5, "timeout_s": 1.0, "fail_threshold": 2, "ok_threshold": 1},
    )  # fmt: skip
    database = db_mod.open_db(cfg.db_path)
    log_path = tmp_path / "watchdog.log"
    with open(log_path, "wb") as log:
        proc = netpair.popen(
            [sys.executable, "-m", "venuecam", "--config", cfg.source_path, "watchdog"],
            ns="device",
            stderr=log,
        )
    yield netpair, cfg, proc, log_path, tcp_port
    database.close()


def test_watchdog_follows_link_loss_and_blackhole(watchdog_setup) -> None:  # type: ignore[no-untyped-def]
    net, cfg, proc, log_path, _ = watchdog_setup
    wait_until("ONLINE at start", status_is("ONLINE"))

    net.link_down()
    wait_until("OFFLINE after link down", status_is("OFFLINE"))
    assert "no route" in state.read_state().detail
    assert state.peek(cfg.run_dir)[0] == "OFFLINE"
    net.link_up()
    wait_until("ONLINE after link up", status_is("ONLINE"))

    net.blackhole(True)  # link up, packets vanish: only timeouts tell
    wait_until("OFFLINE under blackhole", status_is("OFFLINE"))
    assert "timed out" in state.read_state().detail
    net.blackhole(False)
    wait_until("ONLINE after blackhole", status_is("ONLINE"))

    proc.send_signal(signal.SIGTERM)
    proc.wait(20)
    assert proc.returncode == 0
    final = state.read_state()
    # UNKNOWN->ON, ON->OFF, OFF->ON, ON->OFF, OFF->ON, ON->UNKNOWN at stop.
    assert final.status == "UNKNOWN" and final.generation == 6
    log = log_path.read_text()
    assert log.count(SEED_DOWN) == 2 and log.count(SEED_UP) == 2, log
    assert "Traceback" not in log, log
    statuses = [r.status for r in ConnectivityLog.select().order_by(ConnectivityLog.id)]
    assert statuses.count("OFFLINE") >= 2 and statuses[-1] in ("ONLINE", "UNKNOWN")


def test_one_unreachable_probe_target_does_not_flap(watchdog_setup) -> None:  # type: ignore[no-untyped-def]
    net, cfg, proc, log_path, tcp_port = watchdog_setup
    wait_until("ONLINE at start", status_is("ONLINE"))
    generation = state.read_state().generation
    net.block_port(tcp_port)  # the public-resolver stand-in vanishes; the service hosts answer
    time.sleep(4)  # several rounds, each with one probe timing out
    s = state.read_state()
    assert s.status == "ONLINE" and s.generation == generation
    assert SEED_DOWN not in log_path.read_text()


def test_tcp_alone_is_not_online_when_the_service_hosts_are_gone(watchdog_setup) -> None:  # type: ignore[no-untyped-def]
    """A captive portal / dead upstream: TCP to the resolver works, our hosts do not."""
    net, cfg, proc, log_path, tcp_port = watchdog_setup
    wait_until("ONLINE at start", status_is("ONLINE"))
    port = int(cfg.storage.effective_endpoint.rsplit(":", 1)[1])
    net.block_port(port)
    wait_until("OFFLINE with only the resolver answering", status_is("OFFLINE"))
    assert "storage/platform hosts do not" in state.read_state().detail
