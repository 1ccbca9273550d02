"""Fault tests with the device in its own network namespace, joined by a veth pair to a
"cloud" namespace holding the S3 server (behind tests/faultproxy.py) and the platform
simulator. The link is cut with `ip link`, or blackholed (link up, packets dropped), or
DNS fails while TCP works.

Each test ends with the same proof as tests/test_resilience_store.py: every booking's
objects in the bucket (bytes match SHA-256), exactly one delivered notification per
unique_id, every ledger row completed, both databases passing `PRAGMA integrity_check`.
Offline failures never count, so a cut longer than the whole backoff table (the config's
schedules are [1, 2, 3] s here) still ends in delivery.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import S3_KEY_ID, S3_SECRET
from faultproxy import FaultProxy
from netns import NetPair
from resilience_rig import MIB, ClipFiles, Stack, assert_delivered, assert_ledger_done, wait_until
from venuecam.storage.client import NOTSENT_LOWAT_BYTES

pytestmark = [pytest.mark.root]
PART = 5 * MIB


class Cloud:
    """The cloud namespace's services, seen from the test (which lives in neither namespace)."""

    def __init__(self, net: NetPair, tmp: Path) -> None:
        self.net = net
        self.moto = net.start_moto()
        port = int(self.moto.endpoint.rsplit(":", 1)[1])
        self.proxy = FaultProxy.start((net.cloud_addr, 0), (net.cloud_addr, port), tmp / "proxy.sock",
                                      prefix=["ip", "netns", "exec", net.cloud])  # fmt: skip
        net.procs.append(self.proxy.proc)
        self.sim = net.start_simulator(log_path=tmp / "simulator.log")
        self.py(f"""
            import boto3
            boto3.client("s3", endpoint_url={self.moto.endpoint!r}, aws_access_key_id={S3_KEY_ID!r},
                         aws_secret_access_key={S3_SECRET!r}, region_name="us-east-1").create_bucket(Bucket="venue-videos")
            print("{{}}")
        """)  # fmt: skip

    def py(self, code: str, timeout: float = 120) -> Any:
        out = self.net.run([sys.executable, "-c", textwrap.dedent(code)], ns="cloud", timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])

    def summary(self) -> dict[str, Any]:
        return dict(self.py(f"""
            import urllib.request
            print(urllib.request.urlopen({self.sim.url + "/_sim/notifications"!r}, timeout=10).read().decode())
        """))  # fmt: skip

    def set_fault(self, endpoint: str, **spec: Any) -> None:
        body = json.dumps({endpoint: spec})
        self.py(f"""
            import urllib.request
            req = urllib.request.Request({self.sim.url + "/_sim/faults"!r}, data={body!r}.encode(),
                                         headers={{"Content-Type": "application/json"}})
            print(urllib.request.urlopen(req, timeout=10).read().decode())
        """)  # fmt: skip

    def objects(self) -> dict[str, str]:
        return dict(self.py(f"""
            import sys, json
            sys.path.insert(0, {str(Path(__file__).parent)!r})
            import boto3
            from resilience_rig import bucket_objects
            c = boto3.client("s3", endpoint_url={self.moto.endpoint!r}, aws_access_key_id={S3_KEY_ID!r},
                             aws_secret_access_key={S3_SECRET!r}, region_name="us-east-1")
            print(json.dumps(bucket_objects(c)))
        """))  # fmt: skip


@pytest.fixture(autouse=True)
def _moto_path_style(monkeypatch: pytest.MonkeyPatch) -> None:
    # moto reads a bucket from the first label of a host name it does not know
    # (s3.venuecam.test -> bucket "s3"); our client always uses path style.
    monkeypatch.setenv("S3_IGNORE_SUBDOMAIN_BUCKETNAME", "true")


@pytest.fixture
def cloud(netpair: NetPair, tmp_path: Path) -> Iterator[Cloud]:
    c = Cloud(netpair, tmp_path)
    yield c
    c.proxy.stop()
    # The simulator is not a process-group leader, so NetPair.teardown's killpg misses it.
    c.sim.stop()


@pytest.fixture
def stack(tmp_path: Path, netpair: NetPair, cloud: Cloud) -> Iterator[Stack]:
    s = Stack(tmp_path, cloud.proxy.endpoint, cloud.sim.url, prefix=["ip", "netns", "exec", netpair.device])
    yield s
    s.stop()
    s.close_db()


def connectivity(stack: Stack) -> str:
    row = [r for r in stack_state(stack) if r[0] == "connectivity"]
    return json.loads(row[0][1])["status"] if row else "UNKNOWN"


def stack_state(stack: Stack) -> list[tuple[str, str]]:
    import sqlite3

    con = sqlite3.connect(stack.cfg.db_path, timeout=30)
    try:
        return list(con.execute("SELECT key, value FROM state"))
    finally:
        con.close()


def part_started(cloud: Cloud, key_part: str, part: int) -> bool:
    return any(r["method"] == "PUT" and key_part in r["key"] and r["part"] == part and r["received"] > 0
               for r in cloud.proxy.stats()["records"])  # fmt: skip


def never_failed(stack: Stack) -> None:
    bad = [(r["unique_key"], r["attempts"], r["error_msg"]) for r in stack.tasks() if r["status"] == "failed"]
    assert not bad, bad


def finish(stack: Stack, cloud: Cloud, clips: list[ClipFiles], timeout: float = 120) -> None:
    uids = [c.unique_id for c in clips]
    wait_until(
        "every clip notified", lambda: all(cloud.summary()["counts"].get(u) for u in uids), timeout, 1.0
    )
    wait_until(
        "every ledger row completed",
        lambda: all((r := stack.task(k, u)) is not None and r["status"] == "completed"
                    for u in uids for k in ("upload_r2", "notify_ayo_api")),
        30,
    )  # fmt: skip
    time.sleep(1.5)
    assert_delivered(clips, cloud.objects(), cloud.summary())
    assert_ledger_done(stack, uids)
    stack.stop()
    assert stack.integrity() == {"venuecam.db": "ok", "huey.db": "ok"}


def test_link_cut_before_upload_longer_than_backoff_table(
    stack: Stack, netpair: NetPair, cloud: Cloud
) -> None:
    clips = [stack.make_clip("BK-CUTPRE-1", 2 * PART)]
    netpair.link_down()
    stack.start()
    wait_until("the watchdog says OFFLINE", lambda: connectivity(stack) == "OFFLINE", 30)
    stack.dispatch()  # a human pressing "process now": still held while offline
    time.sleep(8)  # longer than 1 + 2 + 3 s
    never_failed(stack)
    assert cloud.proxy.stats()["put_bytes"] == 0
    netpair.link_up()
    finish(stack, cloud, clips)


def test_link_cut_mid_multipart(stack: Stack, netpair: NetPair, cloud: Cloud) -> None:
    clip = stack.make_clip("BK-CUTMID-1", 8 * PART)
    netpair.shape(rate_mbit=40)
    stack.start()
    wait_until("part 3 on its way", lambda: part_started(cloud, clip.unique_id, 3), 60, 0.2)
    netpair.link_down()
    wait_until("the watchdog says OFFLINE", lambda: connectivity(stack) == "OFFLINE", 30)
    time.sleep(8)
    never_failed(stack)
    netpair.link_up()
    finish(stack, cloud, [clip])
    # The cut can catch two parts on the wire: the one being sent and the head of the next,
    # which starts once the first has at most NOTSENT_LOWAT_BYTES left unsent (the overlap
    # that keeps the link full). Both are sent again: at most one part plus that head.
    assert cloud.proxy.stats()["resent_bytes"] <= PART + NOTSENT_LOWAT_BYTES


def test_link_cut_while_the_upload_is_still_connecting(
    tmp_path: Path, netpair: NetPair, cloud: Cloud
) -> None:
    """The link dies while the upload's connection is still in connect(), its SYN unanswered:
    when the link is back, that socket is dropped like an established one and the request
    goes again at once, rather than at TCP's next SYN retry (1, 3, 7 s after the first).

    Blackholed, so no local error ends the connect (a link taken down fails it at once: the
    attempt is released as offline and the reconnect wake sends it again). The store's port
    stays blocked until the link is seen back, so the socket is certainly still connecting
    then; the watchdog probes the platform only, so it can see the link back meanwhile."""
    sim_port = cloud.sim.url.rsplit(":", 1)[1]
    stack = Stack(tmp_path, cloud.proxy.endpoint, cloud.sim.url, prefix=["ip", "netns", "exec", netpair.device],
                  connectivity={"tcp_targets": [f"{netpair.cloud_addr}:{sim_port}"],
                                "probe_service_hosts": False})  # fmt: skip
    try:
        stack.start()
        wait_until("the watchdog says ONLINE", lambda: connectivity(stack) == "ONLINE", 30)
        port = int(cloud.proxy.endpoint.rsplit(":", 1)[1])
        netpair.block_port(port)  # the store's SYNs go unanswered: connect() waits
        clips = [stack.make_clip("BK-CONNECT-1", 2 * MIB)]
        stack.dispatch()

        def connecting() -> bool:
            out = netpair.run(["ss", "-Htn", "state", "syn-sent", f"( dport = :{port} )"]).stdout
            return bool(out.strip())

        def dropped() -> list[int]:
            pattern = r"Link is back \(generation \d+\): (\d+) stalled"
            return [int(n) for n in re.findall(pattern, stack.log("worker"))]

        wait_until("the upload's connection in connect()", connecting, 20, 0.1)
        netpair.blackhole(True)
        wait_until("the watchdog says OFFLINE", lambda: connectivity(stack) == "OFFLINE", 30)
        assert connecting()  # within the 10 s connect timeout
        netpair.blackhole(False)
        wait_until("the link seen back by the upload", dropped, 20, 0.1)
        assert dropped()[0] >= 1, stack.log("worker")[-3000:]  # the connecting socket was known
        netpair.block_port(port, on=False)
        finish(stack, cloud, clips)
        never_failed(stack)
    finally:
        stack.stop()
        stack.close_db()


def test_link_cut_after_upload_before_notification(stack: Stack, netpair: NetPair, cloud: Cloud) -> None:
    clips = [stack.make_clip("BK-CUTPOST-1", 2 * MIB)]
    cloud.set_fault("videos", mode="timeout", count=1, delay=2)  # the notification is in flight
    stack.start()
    wait_until(
        "the upload done",
        lambda: (r := stack.task("upload_r2", clips[0].unique_id)) and r["status"] == "completed",
        60,
        0.2,
    )
    netpair.link_down()
    wait_until("the watchdog says OFFLINE", lambda: connectivity(stack) == "OFFLINE", 30)
    time.sleep(8)
    never_failed(stack)
    netpair.link_up()
    finish(stack, cloud, clips)


@pytest.mark.slow
def test_blackhole_mid_upload_longer_than_backoff_table(stack: Stack, netpair: NetPair, cloud: Cloud) -> None:
    """Link up, every packet dropped, for longer than the schedule and the connect timeout."""
    clips = [stack.make_clip("BK-HOLE-1", 6 * PART), stack.make_clip("BK-HOLE-2", MIB)]
    netpair.shape(rate_mbit=40)
    stack.start()
    wait_until("part 2 on its way", lambda: part_started(cloud, clips[0].unique_id, 2), 60, 0.2)
    netpair.blackhole(True)
    wait_until("the watchdog says OFFLINE", lambda: connectivity(stack) == "OFFLINE", 30)
    time.sleep(15)
    never_failed(stack)
    netpair.blackhole(False)
    finish(stack, cloud, clips)
    assert cloud.proxy.stats()["resent_bytes"] <= 2 * PART


def test_dns_failing_while_tcp_works(
    stack_dns: Stack, netpair: NetPair, cloud: Cloud, tmp_path: Path
) -> None:
    stack = stack_dns
    hosts = Path(f"/etc/netns/{netpair.device}/hosts")
    clips = [stack.make_clip("BK-DNS-1", 2 * PART)]
    hosts.write_text("127.0.0.1 localhost\n")  # the names are gone: DNS fails
    stack.start()
    wait_until("the watchdog says OFFLINE", lambda: connectivity(stack) == "OFFLINE", 30)
    # TCP to the store works all along.
    port = cloud.proxy.endpoint.rsplit(":", 1)[1]
    netpair.run(
        [
            sys.executable,
            "-c",
            f"import socket; socket.create_connection(({netpair.cloud_addr!r}, {port}), 3).close()",
        ]
    )
    stack.dispatch()
    time.sleep(8)
    never_failed(stack)
    hosts.write_text(f"127.0.0.1 localhost\n{netpair.cloud_addr} s3.venuecam.test platform.venuecam.test\n")
    finish(stack, cloud, clips)


@pytest.fixture
def stack_dns(tmp_path: Path, netpair: NetPair, cloud: Cloud) -> Iterator[Stack]:
    """The stack reaching both services by name; /etc/netns/<device>/ is this test's resolver."""
    etc = Path(f"/etc/netns/{netpair.device}")
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "hosts").write_text(
        f"127.0.0.1 localhost\n{netpair.cloud_addr} s3.venuecam.test platform.venuecam.test\n"
    )
    # No name server answers (nothing listens on the cloud's port 53: refused at once).
    (etc / "resolv.conf").write_text(f"nameserver {netpair.cloud_addr}\noptions timeout:1 attempts:1\n")
    s3_port = cloud.proxy.endpoint.rsplit(":", 1)[1]
    sim_port = cloud.sim.url.rsplit(":", 1)[1]
    s = Stack(tmp_path, f"http://s3.venuecam.test:{s3_port}", f"http://platform.venuecam.test:{sim_port}",
              prefix=["ip", "netns", "exec", netpair.device])  # fmt: skip
    try:
        yield s
    finally:
        s.stop()
        s.close_db()
        shutil.rmtree(etc, ignore_errors=True)
