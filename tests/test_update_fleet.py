"""The fleet playbook against five boxes, each in its own network namespace with its own sshd,
release layout and running stack (supervisord, test-pattern capture), on one network with a
"cloud" namespace (moto and the platform simulator) from which Ansible runs. One box is given
a release that fails its health gate: it rolls back, its wave fails, the rollout stops before
the next wave, and the report says why."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import free_port
from fixtures_platform import start_simulator
from netns import missing_requirement
from update_rig import APP, Box, Releases

pytestmark = [pytest.mark.slow, pytest.mark.root]
VENV_BIN = Path(sys.executable).parent
N_BOXES = 5


def ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


class Fleet:
    """A bridge in a cloud namespace, and one namespace per box joined to it by a veth."""

    def __init__(self, tmp: Path) -> None:
        self.tag = f"{os.getpid() % 1000}{random.randrange(1000):03d}"
        self.cloud = f"vfc{self.tag}"
        self.net = f"10.214.{random.randrange(256)}"
        self.cloud_addr = f"{self.net}.1"
        self.boxes: list[str] = []
        self.procs: list[subprocess.Popen[Any]] = []
        self.tmp = tmp

    def setup(self) -> Fleet:
        ip("netns", "add", self.cloud)
        ip("-n", self.cloud, "link", "add", "br0", "type", "bridge")
        ip("-n", self.cloud, "addr", "add", f"{self.cloud_addr}/24", "dev", "br0")
        ip("-n", self.cloud, "link", "set", "br0", "up")
        ip("-n", self.cloud, "link", "set", "lo", "up")
        for i in range(N_BOXES):
            ns = f"vfb{self.tag}{i}"
            ip("netns", "add", ns)
            ip("link", "add", f"vb{self.tag}{i}", "type", "veth", "peer", "name", f"vp{self.tag}{i}")
            ip("link", "set", f"vb{self.tag}{i}", "netns", ns)
            ip("link", "set", f"vp{self.tag}{i}", "netns", self.cloud)
            ip("-n", self.cloud, "link", "set", f"vp{self.tag}{i}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", f"vb{self.tag}{i}")
            ip("-n", ns, "link", "set", f"vb{self.tag}{i}", "up")
            ip("-n", ns, "link", "set", "lo", "up")
            self.boxes.append(ns)
        return self

    def addr(self, i: int) -> str:
        return f"{self.net}.{10 + i}"

    def argv(self, ns: str, cmd: list[str]) -> list[str]:
        return ["ip", "netns", "exec", ns, *cmd]

    def popen(self, ns: str, cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        p = subprocess.Popen(self.argv(ns, cmd), start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def teardown(self) -> None:
        for ns in [*self.boxes, self.cloud]:
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), 9)
        for p in self.procs:
            with contextlib.suppress(Exception):
                p.wait(5)
        for ns in [*self.boxes, self.cloud]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    why = missing_requirement()
    if why:
        pytest.skip(why)
    if not shutil.which("sshd", path="/usr/sbin:/usr/bin"):
        pytest.skip("needs sshd")
    f = Fleet(tmp_path).setup()
    try:
        yield f
    finally:
        f.teardown()


def start_sshd(fleet: Fleet, i: int, root: Path, client_pub: str) -> None:
    root.mkdir(parents=True, exist_ok=True)
    key = root / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (root / "authorized_keys").write_text(client_pub)
    conf = root / "sshd_config"
    conf.write_text(f"ListenAddress {fleet.addr(i)}\nPort 22\nHostKey {key}\nPidFile {root}/sshd.pid\n"
                    f"AuthorizedKeysFile {root}/authorized_keys\nPermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nStrictModes no\nUsePAM no\n"
                    "Subsystem sftp internal-sftp\n")  # fmt: skip
    Path("/run/sshd").mkdir(exist_ok=True)
    fleet.popen(fleet.boxes[i], ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)],
                stdout=subprocess.DEVNULL, stderr=open(root / "sshd.log", "wb"))  # noqa: SIM115  # fmt: skip


def test_rollout_in_waves_stops_at_the_wave_whose_box_rolls_back(
    fleet: Fleet, tmp_path: Path, releases: Releases, base_bundle: Path
) -> None:
    good = releases.build("0.2.0", "migrate")
    bad = releases.build("0.3.0", "migrate", "crash")
    # The cloud: moto and the simulator on the bridge.
    port = free_port()
    moto = fleet.popen(fleet.cloud, [str(VENV_BIN / "moto_server"), "-H", fleet.cloud_addr, "-p", str(port)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    s3_endpoint = f"http://{fleet.cloud_addr}:{port}"
    sim = start_simulator(host=fleet.cloud_addr, prefix=["ip", "netns", "exec", fleet.cloud])
    fleet.procs.append(sim.proc)
    code = ("import boto3,sys,time\n"
            f"c=boto3.client('s3',endpoint_url='{s3_endpoint}',aws_access_key_id='testing-key-id',"
            "aws_secret_access_key='testing-secret-key-0123456789',region_name='us-east-1')\n"
            "for _ in range(100):\n try: c.create_bucket(Bucket='venue-videos'); break\n except Exception: time.sleep(0.2)\n"
            "for p in sys.argv[1:]: c.upload_file(p,'venue-videos','releases/'+p.rsplit('/',1)[1].replace('.bundle','')+('-bad' if '-crash' in p else '')+'.bundle')\n")  # fmt: skip
    subprocess.run(
        fleet.argv(fleet.cloud, [sys.executable, "-c", code, str(good), str(bad)]), check=True, timeout=120
    )
    assert moto.poll() is None

    client_key = tmp_path / "operator-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key)], check=True)
    pub = client_key.with_name("operator-key.pub").read_text()
    boxes = [Box(tmp_path / f"box{i}", releases, s3_endpoint, sim.url, device={"device_id": f"box{i}"})
             for i in range(N_BOXES)]  # fmt: skip
    for i, b in enumerate(boxes):
        b.install(base_bundle)
        start_sshd(fleet, i, tmp_path / f"box{i}" / "ssh", pub)
        fleet.popen(fleet.boxes[i], [b.exe(), "--config", str(b.config_path), "supervise"],
                    stdout=open(b.root / "supervise.out", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115  # fmt: skip
    checks = [subprocess.Popen(fleet.argv(fleet.boxes[i], [b.exe(), "--config", str(b.config_path), "update", "--check"]),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for i, b in enumerate(boxes)]  # fmt: skip
    for i, c in enumerate(checks):  # all five at once: each waits out its own stable window
        out, _ = c.communicate(timeout=200)
        assert c.returncode == 0, f"box{i} not healthy before the rollout: {out}"

    inventory = tmp_path / "inventory.ini"
    lines = ["[venuecam]"]
    for i, b in enumerate(boxes):
        url = (
            "s3://venue-videos/releases/venuecam-0.3.0-bad.bundle"
            if i == 2
            else "s3://venue-videos/releases/venuecam-0.2.0.bundle"
        )
        lines.append(
            f"box{i} ansible_host={fleet.addr(i)} venuecam_bin={b.exe()} venuecam_config={b.config_path} bundle_url={url}"
        )
    lines += ["[venuecam:vars]", "ansible_user=root", "ansible_python_interpreter=/usr/bin/python3"]
    inventory.write_text("\n".join(lines) + "\n")
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_PRIVATE_KEY_FILE": str(client_key),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-local"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_CONFIG": str(APP.parent / "provisioning" / "ansible" / "ansible.cfg"),
           "ANSIBLE_SSH_ARGS": "-o ControlMaster=no -o UserKnownHostsFile=/dev/null"}  # fmt: skip
    play = APP.parent / "provisioning" / "ansible" / "update.yml"
    r = subprocess.run(fleet.argv(fleet.cloud, [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(play),
                                                "-e", '{"waves": [1, 2, 2], "max_fail_percent": 0, "update_poll_s": 1}']),
                       capture_output=True, text=True, timeout=900, env=env)  # fmt: skip
    out = r.stdout + r.stderr
    (tmp_path / "ansible.out").write_text(out)
    print(out[-4000:])
    assert r.returncode != 0, "the rollout must fail"
    reports = dict(re.findall(r"REPORT (box\d): (.*?)\"", out))
    assert set(reports) == {"box0", "box1", "box2"}, reports  # boxes 3 and 4: never reached
    assert "release 0.2.0" in reports["box0"] and "last update committed" in reports["box0"]
    assert "release 0.2.0" in reports["box1"]
    assert (
        "release 0.1.0" in reports["box2"]
        and "rolled back to 0.1.0: 0.3.0 failed its health gate" in reports["box2"]
    )
    assert "program watchdog:watchdog" in reports["box2"]
    for i, want in enumerate(["0.2.0", "0.2.0", "0.1.0", "0.1.0", "0.1.0"]):
        assert boxes[i].link("current") == want, (i, boxes[i].link("current"))
    assert boxes[3].state() == {} and boxes[4].state() == {}  # the rollout stopped before them
