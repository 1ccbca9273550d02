"""A two-namespace test network: a "device" and a "cloud" joined by one veth pair.

    with NetPair() as net:                       # or the `netpair` fixture
        s3 = net.start_moto()                    # moto in the cloud ns, on net.cloud_addr
        net.popen([sys.executable, "-m", "venuecam", "watchdog"], ns="device")
        net.link_down(); net.link_up()           # cable out / back (routes go with it)
        net.blackhole(True)                      # link up, every packet at the cloud dropped
        net.shape(rate_mbit=20, delay_ms=40, loss_pct=1)

Addresses are a private /30 (10.213.X.1 device, 10.213.X.2 cloud) that exists only between
the two namespaces; the device's default route points at the cloud, which forwards nothing,
so no test packet leaves them. Needs root; `netpair` skips with the reason otherwise.

This kernel has no sch_netem (PITFALLS §"Shaping links in tests"), so `shape()` builds the
effect from what exists: `tbf` for the rate, an iptables `statistic` DROP on the receiving
side for loss, and for delay a userspace NFQUEUE stage (this file, run as a script in the
cloud namespace) that holds each packet for the wanted time before accepting it, in order.

Run as a script: `python tests/netns.py delay --queue N --ms 40` (the delay stage).
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
TOOLS = ("ip", "iptables", "tc", "ethtool")


def missing_requirement() -> str | None:
    """Why a NetPair cannot be built here, or None."""
    if os.geteuid() != 0:
        return "network namespace tests need root"
    for tool in TOOLS:
        if not shutil.which(tool):
            return f"network namespace tests need {tool!r} on PATH"
    return None


def congestion_controls() -> dict[str, list[str]]:
    """What the kernel offers (`available`) and lets non-root/other namespaces pick (`allowed`)."""
    base = Path("/proc/sys/net/ipv4")
    out: dict[str, list[str]] = {}
    for name in ("available", "allowed"):
        try:
            out[name] = (base / f"tcp_{name}_congestion_control").read_text().split()
        except OSError:
            out[name] = []
    return out


def _signal(p: subprocess.Popen[Any], sig: int) -> None:
    """Signal a process's whole group if it leads one (popen), else the process alone."""
    if p.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(p.pid) == p.pid:
            os.killpg(p.pid, sig)
        else:
            p.send_signal(sig)


class NetPair:
    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag or f"{os.getpid() % 10000}{random.randrange(10000):04d}"
        self.device = f"vcd{self.tag}"  # namespace names
        self.cloud = f"vcc{self.tag}"
        self.dev_if = f"vd{self.tag}"  # interface names (<= 15 chars)
        self.cloud_if = f"vc{self.tag}"
        octet = random.randrange(256)
        self.device_addr = f"10.213.{octet}.1"
        self.cloud_addr = f"10.213.{octet}.2"
        self.procs: list[subprocess.Popen[Any]] = []
        self._rules: list[tuple[str, list[str]]] = []  # (ns, iptables rule spec) to delete
        self._blackholed = False
        self._delay_proc: subprocess.Popen[Any] | None = None
        self._shaped = False

    def ns(self, which: str) -> str:
        if which in ("device", self.device):
            return self.device
        if which in ("cloud", self.cloud):
            return self.cloud
        raise ValueError(f"namespace must be 'device' or 'cloud', got {which!r}")

    # ------------------------------------------------------------ life cycle

    def setup(self) -> NetPair:
        try:
            self._ip("netns", "add", self.device)
            self._ip("netns", "add", self.cloud)
            self._ip("link", "add", self.dev_if, "type", "veth", "peer", "name", self.cloud_if)
            self._ip("link", "set", self.dev_if, "netns", self.device)
            self._ip("link", "set", self.cloud_if, "netns", self.cloud)
            for ns, ifname, addr in (
                (self.device, self.dev_if, self.device_addr),
                (self.cloud, self.cloud_if, self.cloud_addr),
            ):
                self._ip("-n", ns, "addr", "add", f"{addr}/30", "dev", ifname)
                self._ip("-n", ns, "link", "set", "lo", "up")
                self._ip("-n", ns, "link", "set", ifname, "up")
                # Offloads off: byte counts and shaping then see wire-size packets.
                self.run(["ethtool", "-K", ifname, "tso", "off", "gso", "off", "gro", "off"], ns=ns)
            self._default_route()
        except BaseException:
            self.teardown()
            raise
        return self

    def teardown(self) -> None:
        """Stop everything started here and delete both namespaces (the veth goes with them)."""
        procs = self.procs + ([self._delay_proc] if self._delay_proc else [])
        for p in procs:
            _signal(p, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                _signal(p, signal.SIGKILL)
                p.wait(5)
        self.procs.clear()
        self._delay_proc = None
        for ns in (self.device, self.cloud):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def __enter__(self) -> NetPair:
        return self.setup()

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    # ------------------------------------------------------------ running things

    def argv(self, cmd: Sequence[str], ns: str = "device") -> list[str]:
        return ["ip", "netns", "exec", self.ns(ns), *map(str, cmd)]

    def run(
        self, cmd: Sequence[str], ns: str = "device", check: bool = True, timeout: float = 60, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(cmd, ns), capture_output=True, text=True, timeout=timeout, **kw)
        if check and r.returncode != 0:
            raise RuntimeError(
                f"{' '.join(map(str, cmd))} in {ns} failed ({r.returncode}): {r.stderr.strip()}"
            )
        return r

    def popen(self, cmd: Sequence[str], ns: str = "device", **kw: Any) -> subprocess.Popen[Any]:
        """Start a process in a namespace, in its own process group; teardown ends it."""
        p = subprocess.Popen(self.argv(cmd, ns), start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def _ip(self, *args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)} failed: {r.stderr.strip()}")

    def _iptables(self, ns: str, action: str, spec: list[str]) -> None:
        self.run(["iptables", "-w", action, *spec], ns=ns)

    def _add_rule(self, ns: str, spec: list[str]) -> None:
        chain, rest = spec[0], spec[1:]
        self._iptables(ns, "-I", [chain, "1", *rest])
        self._rules.append((ns, spec))

    def _del_rule(self, ns: str, spec: list[str]) -> None:
        self._iptables(ns, "-D", spec)
        self._rules.remove((ns, spec))

    def _default_route(self) -> None:
        # The device's default route leads to the cloud namespace, which does not forward:
        # a probe of any other address ends there.
        self._ip("-n", self.device, "route", "replace", "default", "via", self.cloud_addr, "dev", self.dev_if)

    # ------------------------------------------------------------ faults

    def link_down(self) -> None:
        """The cable is out: the device's link goes down and its routes with it."""
        self._ip("-n", self.device, "link", "set", self.dev_if, "down")

    def link_up(self) -> None:
        """The cable is back; the default route returns as DHCP would bring it back."""
        self._ip("-n", self.device, "link", "set", self.dev_if, "up")
        self._default_route()

    def blackhole(self, on: bool) -> None:
        """Link up, every packet reaching or leaving the cloud side dropped (a dead upstream)."""
        rules = [["INPUT", "-i", self.cloud_if, "-j", "DROP"], ["OUTPUT", "-o", self.cloud_if, "-j", "DROP"]]
        if on and not self._blackholed:
            for spec in rules:
                self._add_rule(self.cloud, spec)
        elif not on and self._blackholed:
            for spec in rules:
                self._del_rule(self.cloud, spec)
        self._blackholed = on

    def block_port(self, port: int, on: bool = True) -> None:
        """Drop TCP to one cloud port only (one service unreachable, the rest fine)."""
        spec = ["INPUT", "-i", self.cloud_if, "-p", "tcp", "--dport", str(port), "-j", "DROP"]
        (self._add_rule if on else self._del_rule)(self.cloud, spec)

    # ------------------------------------------------------------ shaping

    def shape(self, rate_mbit: float | None = None, delay_ms: float = 0, loss_pct: float = 0) -> None:
        """Rate (tbf, both directions), one-way delay (NFQUEUE stage, each direction), and
        random loss of packets arriving at the cloud (the upload direction)."""
        self.unshape()
        if rate_mbit:
            rate_bps = rate_mbit * 1e6
            # Queue about one bandwidth-delay product (+20 ms), as a real uplink buffer would.
            limit = max(int(rate_bps / 8 * (2 * delay_ms + 20) / 1000), 32 * 1024)
            burst = max(int(rate_bps / 8 / 250), 4 * 1514)
            for ns, ifname in ((self.device, self.dev_if), (self.cloud, self.cloud_if)):
                self.run(
                    ["tc", "qdisc", "replace", "dev", ifname, "root", "tbf", "rate", f"{rate_mbit}mbit",
                     "burst", str(burst), "limit", str(limit)],
                    ns=ns,
                )  # fmt: skip
        if loss_pct:
            p = f"{loss_pct / 100:.6f}"
            self._add_rule(
                self.cloud,
                [
                    "INPUT",
                    "-i",
                    self.cloud_if,
                    "-m",
                    "statistic",
                    "--mode",
                    "random",
                    "--probability",
                    p,
                    "-j",
                    "DROP",
                ],
            )
        if delay_ms:
            queue = 7
            self._delay_proc = subprocess.Popen(
                self.argv([sys.executable, str(Path(__file__).resolve()), "delay", "--queue", str(queue), "--ms", str(delay_ms)], "cloud"),
                start_new_session=True,
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            ready = self._delay_proc.stdout.readline() if self._delay_proc.stdout else ""
            if not ready.startswith("ready"):
                raise RuntimeError(f"delay stage did not start: {ready!r}")
            # Appended after the loss rule: a lost packet is not delayed first.
            for chain, flag, ifname in (("INPUT", "-i", self.cloud_if), ("OUTPUT", "-o", self.cloud_if)):
                spec = [chain, flag, ifname, "-j", "NFQUEUE", "--queue-num", str(queue)]
                self._iptables(self.cloud, "-A", spec)
                self._rules.append((self.cloud, spec))
        self._shaped = True

    def unshape(self) -> None:
        for ns, spec in list(self._rules):
            if "NFQUEUE" in spec or "statistic" in spec:
                self._del_rule(ns, spec)
        if self._delay_proc is not None:
            _signal(self._delay_proc, signal.SIGTERM)
            self._delay_proc.wait(5)
            self._delay_proc = None
        if self._shaped:
            for ns, ifname in ((self.device, self.dev_if), (self.cloud, self.cloud_if)):
                self.run(["tc", "qdisc", "del", "dev", ifname, "root"], ns=ns, check=False)
        self._shaped = False

    def counters(self, ns: str = "cloud") -> dict[str, int]:
        """Packets each iptables rule in `ns` matched, keyed by the rule's text."""
        out = self.run(["iptables", "-w", "-L", "-v", "-n", "-x"], ns=ns).stdout
        counts: dict[str, int] = {}
        for line in out.splitlines():
            cols = line.split()
            if cols and cols[0].isdigit():
                counts[" ".join(cols[2:])] = counts.get(" ".join(cols[2:]), 0) + int(cols[0])
        return counts

    # ------------------------------------------------------------ congestion control

    def set_congestion(self, algo: str, ns: str = "device", route: bool = False) -> bool:
        """Make `algo` the namespace's default TCP congestion control (what a program gets when
        it does not choose). `route=True` also pins it on the pair's route (`congctl`), which
        overrides a program's own per-socket choice (TCP_CONGESTION): use it only for that."""
        if algo not in congestion_controls()["available"] and shutil.which("modprobe"):
            subprocess.run(["modprobe", f"tcp_{algo}"], capture_output=True)
        if algo not in congestion_controls()["available"]:
            return False
        r = self.run(["sysctl", "-w", f"net.ipv4.tcp_congestion_control={algo}"], ns=ns, check=False)
        ok = r.returncode == 0
        if route:
            name, ifname, peer = (
                (self.device, self.dev_if, self.cloud_addr)
                if self.ns(ns) == self.device
                else (self.cloud, self.cloud_if, self.device_addr)
            )
            subnet = peer.rsplit(".", 1)[0] + ".0/30"
            cmd = ["ip", "-n", name, "route", "replace", subnet, "dev", ifname, "congctl", algo]
            ok = subprocess.run(cmd, capture_output=True).returncode == 0 and ok
        return ok

    def unpin_congestion(self, ns: str = "device") -> None:
        """Drop a route `congctl` pin set by set_congestion(route=True)."""
        name, ifname, peer = (
            (self.device, self.dev_if, self.cloud_addr)
            if self.ns(ns) == self.device
            else (self.cloud, self.cloud_if, self.device_addr)
        )
        subnet = peer.rsplit(".", 1)[0] + ".0/30"
        self._ip("-n", name, "route", "replace", subnet, "dev", ifname)

    def congestion(self, ns: str = "device") -> str:
        return self.run(["cat", "/proc/sys/net/ipv4/tcp_congestion_control"], ns=ns).stdout.strip()

    # ------------------------------------------------------------ services in the cloud

    def start_moto(self, port: int | None = None) -> Any:
        """A moto S3 server in the cloud namespace on cloud_addr; `.endpoint`, `.client()`."""
        from conftest import S3Server, free_port

        port = port or free_port()
        exe = shutil.which("moto_server", path=str(VENV_BIN)) or "moto_server"
        proc = self.popen(
            [exe, "-H", self.cloud_addr, "-p", str(port)],
            ns="cloud",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_for_port(self.cloud_addr, port, ns="cloud")
        return S3Server(proc, f"http://{self.cloud_addr}:{port}")

    def start_simulator(self, port: int | None = None, **kw: Any) -> Any:
        """The booking platform simulator in the cloud namespace (fixtures_platform)."""
        from fixtures_platform import start_simulator

        sim = start_simulator(
            host=self.cloud_addr, port=port, prefix=["ip", "netns", "exec", self.cloud], **kw
        )
        self.procs.append(sim.proc)
        return sim

    def listen(self, port: int, ns: str = "cloud") -> subprocess.Popen[Any]:
        """A bare TCP listener (accepts and holds connections) in a namespace."""
        code = (
            "import socket,sys,time\n"
            f"s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('0.0.0.0',{port}));s.listen(64)\n"
            "print('ready',flush=True)\nc=[]\nwhile True: c.append(s.accept()[0])\n"
        )
        p = self.popen([sys.executable, "-c", code], ns=ns, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline().startswith("ready")
        return p

    def wait_for_port(self, host: str, port: int, ns: str = "cloud", timeout: float = 20) -> None:
        code = (
            "import socket,sys,time\n"
            f"d=time.monotonic()+{timeout}\n"
            "while time.monotonic()<d:\n"
            f" try: socket.create_connection(({host!r},{port}),0.5).close(); sys.exit(0)\n"
            " except OSError: time.sleep(0.1)\n"
            "sys.exit(1)\n"
        )
        if self.run([sys.executable, "-c", code], ns=ns, check=False, timeout=timeout + 5).returncode:
            raise TimeoutError(f"nothing listening on {host}:{port} in {ns} after {timeout}s")


# ---------------------------------------------------------------- the pytest fixture


def _fixture() -> Any:
    import pytest

    @pytest.fixture
    def netpair() -> Iterator[NetPair]:
        """A fresh device/cloud namespace pair, removed after the test even when it fails."""
        why = missing_requirement()
        if why:
            pytest.skip(why)
        with NetPair() as net:
            yield net

    return netpair


if "pytest" in sys.modules:
    netpair = _fixture()


# ---------------------------------------------------------------- the NFQUEUE delay stage
# Netlink (nfnetlink_queue) spoken with the stdlib: bind a queue, get packet ids (metadata
# only, no payload copy), accept them `ms` later. Packets leave in arrival order because
# every packet waits the same time, so one batch verdict releases all that are due.

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 2, 3
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQA_PACKET_HDR, NFQA_VERDICT_HDR = 1, 2
NFQNL_CFG_CMD_BIND, NFQNL_COPY_META = 1, 1
NF_ACCEPT = 1
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
SOL_NETLINK, NETLINK_NO_ENOBUFS = 270, 5


def _attr(kind: int, payload: bytes) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def _nfmsg(msg: int, queue: int, attrs: bytes, flags: int = NLM_F_REQUEST) -> bytes:
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attrs
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, 0, 0) + body


def _packet_ids(data: bytes) -> Iterator[int]:
    off = 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            return
        if kind == NLMSG_ERROR:
            (err,) = struct.unpack_from("=i", data, off + 16)
            if err:
                raise OSError(-err, f"nfqueue: {os.strerror(-err)}")
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            a = off + 20  # after nlmsghdr + nfgenmsg
            while a + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFQA_PACKET_HDR:
                    yield struct.unpack_from("!I", data, a + 4)[0]
                a += (alen + 3) & ~3
        off += (length + 3) & ~3


def delay_stage(queue: int, delay_ms: float) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, 33, 64 * 1024 * 1024)  # SO_RCVBUFFORCE
    sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
    sock.bind((0, 0))
    sock.send(
        _nfmsg(
            NFQNL_MSG_CONFIG,
            queue,
            _attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0)),
            NLM_F_REQUEST | NLM_F_ACK,
        )
    )
    list(_packet_ids(sock.recv(65536)))
    params = _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META) + b"\0\0\0")
    params += _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", 100_000))
    sock.send(_nfmsg(NFQNL_MSG_CONFIG, queue, params, NLM_F_REQUEST | NLM_F_ACK))
    list(_packet_ids(sock.recv(65536)))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    held: deque[tuple[float, int]] = deque()
    delay = delay_ms / 1000
    while True:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 1.0
        if select.select([sock], [], [], timeout)[0]:
            now = time.monotonic()
            while True:
                try:
                    data = sock.recv(1 << 20, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                held.extend((now + delay, pid) for pid in _packet_ids(data))
        now = time.monotonic()
        last = None
        while held and held[0][0] <= now:
            last = held.popleft()[1]
        if last is not None:
            verdict = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last))
            sock.send(_nfmsg(NFQNL_MSG_VERDICT_BATCH, queue, verdict))


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="netns.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("delay", help="hold every packet of an NFQUEUE for --ms, then accept it")
    d.add_argument("--queue", type=int, required=True)
    d.add_argument("--ms", type=float, required=True)
    args = ap.parse_args(argv)
    delay_stage(args.queue, args.ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
