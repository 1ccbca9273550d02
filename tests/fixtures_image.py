"""The built image and the emulated Raspberry Pis that boot it, shared by every test that asks.

- `image`: `image/build.sh` once per session (the base comes from the machine's cache when
  it is warm), with the Raspberry Pi OS base asked for and refused (a closed port), so the
  fall-back to the Debian base is part of what is tested. It starts in the background as
  soon as the tests are collected and the tests that need it run last (see ImageBuild).
- `pi3_box`, `pi4_box`: one emulated Pi of each kind per session, booted once and shared by
  every test (and test module) that asks for it: first boot from a venuecam.toml on the
  card, the stack up, segments recorded. Booting is the slow part (minutes under emulation),
  so checks share the boot rather than each paying for one. Only the box a test asks for
  runs; the other is paused in QEMU, so two emulations never fight over the CPU.

Figures (build and boot times, sizes) go to build/image-test-figures.json.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import qemu_pi
from conftest import API_TOKEN, S3_KEY_ID, S3_SECRET, free_port, render_toml, start_moto, wait_for_port

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "build" / "image-test-figures.json"
SIM_GUEST = ("10.0.2.100", 8080)
S3_GUEST = ("10.0.2.101", 9000)
WIFI_PSK = "imagetest-wifi-psk"
HOSTNAME = "court-7"
# The marker of image tests that change a shared box (see pytest_collection_modifyitems).
CHANGES_THE_BOX = "changes_the_box"
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-aarch64-static": "qemu-user-static",
    "mcopy": "mtools",
    "mkfs.vfat": "dosfstools",
    "sfdisk": "fdisk",
    "bmaptool": "bmap-tools",
    "fdtput": "device-tree-compiler",
    "xz": "xz-utils",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}
# On a booted box: supervisord's programs (each RUNNING, else the command fails) and the
# filed segments (ffmpeg's run directories hold the ones not yet validated and indexed).
SUPERVISORCTL = "/opt/venuecam/current/bin/supervisorctl -c /run/venuecam/supervisord.conf status"
ALL_RUNNING = f'out=$({SUPERVISORCTL}) && echo "$out" && ! echo "$out" | grep -v \' RUNNING \''
SEGMENTS = (
    "find /var/lib/venuecam/segments -name .runs -prune -o -type f -name '*.ts' -size +1k -print | wc -l"
)
# Relays one guest connection (stdin/stdout, from QEMU's guestfwd) to a host loopback port.
RELAY = """
import os, select, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
inputs = [0, s]
while inputs:
    for r in select.select(inputs, [], [])[0]:
        if r == 0:
            data = os.read(0, 65536)
            if data:
                s.sendall(data)
            else:
                s.shutdown(socket.SHUT_WR)
                inputs.remove(0)
        else:
            data = s.recv(65536)
            if not data:
                sys.exit(0)
            os.write(1, data)
"""


def why_cannot_run() -> str | None:
    if os.geteuid() != 0:
        return "needs root (chroot, mounts and binfmt for the arm64 build)"
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not shutil.which(tool)})
    if missing:
        return f"missing Debian packages: apt-get install {' '.join(missing)}"
    binfmt = Path("/proc/sys/fs/binfmt_misc")
    if not (binfmt / "status").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(binfmt)], capture_output=True)
    if not (binfmt / "qemu-aarch64").exists():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not (binfmt / "qemu-aarch64").exists():
        return "no binfmt_misc handler for arm64 (qemu-user-static) on this machine"
    return None


def record(**figures: object) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    FIGURES.write_text(json.dumps({**old, **figures}, indent=2) + "\n")


# ---------------------------------------------------------------- the image


class ImageBuild:
    """`image/build.sh` running in the background, started once the session knows it needs it.

    A cold build (the Debian base under emulation) takes longer than the rest of the suite, so
    it starts as soon as collection is done, niced so the tests that run meanwhile keep the
    CPU, and the image tests are ordered last; the `image` fixture waits for it.
    """

    def __init__(self, out: Path, work: Path) -> None:
        self.out, self.work = out, work
        self.log = out / "build.log"
        self.started = time.monotonic()
        env = {
            **os.environ,
            "VENUECAM_IMAGE_OUT": str(out),
            "VENUECAM_IMAGE_WORK": str(work),
            "IMAGE_NAME": "venuecam-test",
            "VENUECAM_IMAGE_URL_BASE": "https://downloads.example.com/venuecam/0.1.0",
            # The pinned Raspberry Pi OS base, pointed at a closed loopback port (nothing leaves
            # this machine): the build must say so and fall back to the Debian base.
            "VENUECAM_IMAGE_BASE": "raspios",
            "VENUECAM_RASPIOS_URL": f"http://127.0.0.1:{free_port()}/raspios.img.xz",
            "VENUECAM_RASPIOS_SHA256": "0" * 64,
        }
        with self.log.open("w") as f:
            self.proc = subprocess.Popen(
                ["nice", "-n", "10", str(REPO / "image/build.sh")],
                stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip

    def wait(self) -> Path:
        rc = self.proc.wait()
        elapsed = time.monotonic() - self.started
        # The unpacked rootfs is a GB nobody needs now; never rmtree through a leftover bind mount.
        if str(self.work) not in Path("/proc/mounts").read_text():
            shutil.rmtree(self.work, ignore_errors=True)
        text = self.log.read_text()
        assert rc == 0, f"image/build.sh failed:\n{text[-4000:]}"
        assert "cannot fetch the Raspberry Pi OS image" in text and "falling back to the Debian base" in text
        cold = "building Debian" in text
        img = self.out / "venuecam-test.img"
        xz = self.out / "venuecam-test.img.xz"
        record(**{
            f"build_s_{'cold' if cold else 'cached_base'}": round(elapsed),
            "image_raw_mib": round(img.stat().st_size / 2**20),
            "image_raw_allocated_mib": round(img.stat().st_blocks * 512 / 2**20),
            "image_xz_mib": round(xz.stat().st_size / 2**20, 1),
        })  # fmt: skip
        return img

    def cancel(self) -> None:
        """Stop a build nobody will use (the session ended first); its trap unmounts the chroot."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def finished(self) -> None:
        """Until the build has exited, whatever its outcome (the `image` fixture judges it)."""
        self.proc.wait()


_build: ImageBuild | None = None


@pytest.fixture
def no_background_build() -> Iterator[None]:
    """The test runs once the background image build is over: it measures time on this machine.

    The build (packages installed under arm64 emulation, gigabytes written) shares the two
    cores and the disk with the tests that run meanwhile; a test of how closely ffmpeg's cuts
    follow the clock measures scheduling jitter, and a box at the venue has no image build
    beside it. Holding the build still (SIGSTOP) for such a test was not enough: the disk
    went on writing back what the build had written, and in CI a capture stalled for two
    seconds under a stopped build. So these tests are ordered after every other test but the
    image's own (see pytest_collection_modifyitems), when a build, even a cold one, is done;
    if it is not, they wait for it."""
    if _build is not None:
        _build.finished()
    yield


def _after_the_build(item: pytest.Item) -> bool:
    return "no_background_build" in getattr(item, "fixturenames", ())


def _needs_image(item: pytest.Item) -> bool:
    return "image" in getattr(item, "fixturenames", ()) or item.nodeid.startswith(
        "tests/image/test_pi_boot.py"
    )


# The emulated Pis, in the order their boots serve the tests, with each one's fixture.
MACHINES = {"raspi3b": "pi3_box", "raspi4b": "pi4_box"}


def _machine_of(item: pytest.Item) -> int:
    """0: no emulated Pi; then 1 + the position in MACHINES of the Pi the test uses."""
    callspec = getattr(item, "callspec", None)
    param = callspec.params.get("box") if callspec is not None else None
    names = getattr(item, "fixturenames", ())
    for i, (machine, fixture) in enumerate(MACHINES.items()):
        if param == machine or fixture in names:
            return 1 + i
    return 0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{CHANGES_THE_BOX}: changes what a shared emulated box runs (its release): after every other image test",
    )


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: only what will run counts
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    global _build
    later = [item for item in items if _needs_image(item)]
    if not later:
        return
    # The boots are shared, one machine after the other: every check of the Pi 3, then every
    # check of the Pi 4, so neither is paused and resumed between its checks (a resumed box's
    # clock is minutes behind and is stepped, which its capture sees; the Pi 4's recording check
    # failed once that way). On each, a test that changes the box (an update) comes after all
    # the others. A stable sort: each group keeps its order.
    later.sort(key=lambda item: (_machine_of(item), item.get_closest_marker(CHANGES_THE_BOX) is not None))
    rest = [item for item in items if not _needs_image(item)]
    # The timing tests between the rest and the image tests: the build is over by then.
    rest.sort(key=_after_the_build)
    items[:] = rest + later
    if os.environ.get("VENUECAM_IMAGE_PREBUILT") or why_cannot_run() or config.option.collectonly:
        return
    factory = config._tmp_path_factory  # type: ignore[attr-defined]
    _build = ImageBuild(factory.mktemp("image-out"), factory.mktemp("image-work"))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _build is not None:
        _build.cancel()


@pytest.fixture(scope="session")
def image() -> Path:
    reason = why_cannot_run()
    if reason:
        pytest.skip(reason)
    prebuilt = os.environ.get("VENUECAM_IMAGE_PREBUILT")  # iterate on the boot without a rebuild
    if prebuilt:
        return Path(prebuilt)
    assert _build is not None, "the image build was not started at collection"
    return _build.wait()


# ---------------------------------------------------------------- what the box talks to


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The simulator and the S3 server on this host's loopback, forwarded into a guest."""
    procs: list[subprocess.Popen[bytes]] = []
    tmp = tmp_path_factory.mktemp("services")
    try:
        s3 = start_moto()
        procs.append(s3.proc)
        s3.client().create_bucket(Bucket="venue-videos")
        sim_port = free_port()
        sim = subprocess.Popen(
            [sys.executable, "-m", "venuecam", "simulator", "--host", "127.0.0.1", "--port", str(sim_port),
             "--token", API_TOKEN, "--venue-id", "42", "--timezone", "UTC"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(sim)
        wait_for_port("127.0.0.1", sim_port)
        relay = tmp / "relay.py"
        relay.write_text(RELAY)
        s3_port = int(s3.endpoint.rsplit(":", 1)[1])
        yield {
            "s3": s3,
            "sim_url": f"http://127.0.0.1:{sim_port}",
            "guestfwd": [
                f"guestfwd=tcp:{SIM_GUEST[0]}:{SIM_GUEST[1]}-cmd:{sys.executable} {relay} {sim_port}",
                f"guestfwd=tcp:{S3_GUEST[0]}:{S3_GUEST[1]}-cmd:{sys.executable} {relay} {s3_port}",
            ],
        }
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


def box_toml(pubkey: str, online_target: str) -> str:
    sim = f"http://{SIM_GUEST[0]}:{SIM_GUEST[1]}"
    sections = {
        "device": {"device_id": "imagetest-box", "venue_id": "42", "timezone": "Asia/Jakarta"},
        "booking_api": {"base_url": sim, "api_token": API_TOKEN, "sync_interval_s": 30, "timeout_s": 10.0},
        "clips": {"grace_s": 3, "scan_interval_s": 20},
        "storage": {
            "endpoint_url": f"http://{S3_GUEST[0]}:{S3_GUEST[1]}",
            "bucket": "venue-videos",
            "access_key_id": S3_KEY_ID,
            "secret_access_key": S3_SECRET,
            "region": "us-east-1",
            "part_size_mb": 5,
        },
        "cameras": [
            {
                "name": "CAM_A",
                "field_id": 1,
                "source": "testsrc",
                "segment_seconds": 4,
                "width": 160,
                "height": 120,
                "fps": 2,
                "bitrate_kbps": 100,
                "stall_timeout_s": 120,
            },
        ],  # fmt: skip
        "connectivity": {"tcp_targets": [online_target], "dns_names": [], "probe_service_hosts": False},
        # The real GPIO chip of the emulated SoC, through the default (gpiod) pin factory.
        "leds": {"enabled": True},
        "provision": {
            "hostname": HOSTNAME,
            "ssh_authorized_keys": [pubkey],
            "wifi_ssid": "Venue WiFi",
            "wifi_psk": WIFI_PSK,
            "wifi_country": "ID",
        },
    }
    return render_toml(sections)


# ---------------------------------------------------------------- the boxes

_boxes: dict[str, qemu_pi.PiBox] = {}


_paused: set[str] = set()


def _activate(box: qemu_pi.PiBox) -> qemu_pi.PiBox:
    """Only the box a test uses runs; others are paused (QEMU `stop`, resumed by `cont`).

    A paused guest's clocks stop with it (the generic timer counts QEMU's virtual clock), so a
    box resumed after the other's checks is minutes behind: it is set to the host's time, as
    timesyncd would step it (the box's clock watch sees the step, as it would on a Pi)."""
    for other in _boxes.values():
        if other is not box and other.alive() and other.machine not in _paused:
            other.monitor("stop")
            _paused.add(other.machine)
    if box.alive() and box.machine in _paused:
        box.monitor("cont")
        _paused.discard(box.machine)
        box.run(f"date -u -s @{int(time.time())} >/dev/null", via="serial")
    return box


def _wired_dhcp(box: qemu_pi.PiBox) -> None:
    """DHCP on the emulated Pi 3's USB network device, as the box does on its own Ethernet.

    QEMU's usb-net carries the USB IDs of Linux's Ethernet gadget (0525:a4a2), which systemd's
    hwdb (82-net-auto-link-local.hwdb) marks link-local only, as for a PC-to-gadget cable: so
    NetworkManager's default wired connection gets 169.254/16 and no lease. A Pi 3's own
    Ethernet (smsc95xx, 0424:ec00) is not in that list and gets DHCP from the default.
    """
    box.wait_until(
        "NetworkManager to take the wired connection",
        "nmcli -t -f NAME connection show | grep -qx qemu-usb-net || nmcli -w 60 connection add type ethernet"
        " con-name qemu-usb-net ifname eth0 ipv4.method auto ipv6.method disabled",
        timeout=300, via="serial",
    )  # fmt: skip
    box.wait_until(
        "a DHCP lease on eth0",
        "ip -4 -br addr show eth0 | grep -q 10.0.2. || { nmcli -w 60 connection up qemu-usb-net; false; }",
        timeout=300, via="serial",
    )  # fmt: skip


def _boot(machine: str, image: Path, tmp: Path, guestfwd: list[str], online_target: str) -> qemu_pi.PiBox:
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    disk = tmp / "sd.img"
    card = qemu_pi.grow_card(image, disk)
    toml = tmp / "venuecam.toml"
    toml.write_text(box_toml(Path(f"{key}.pub").read_text().strip(), online_target))
    qemu_pi.write_fat(disk, toml, "venuecam.toml")
    box = qemu_pi.PiBox(machine, disk, tmp, key, guestfwd)
    box.card_bytes = card  # type: ignore[attr-defined]
    box.toml = toml  # type: ignore[attr-defined]
    for other in _boxes.values():
        if other.alive() and other.machine not in _paused:
            other.monitor("stop")
            _paused.add(other.machine)
    _boxes[machine] = box
    box.start()
    try:
        box.wait_until("the serial shell", "true", timeout=900, via="serial")
        box.mark("boot_to_serial_shell_s")
        # No RTC and no NTP in here: give the box the host's time, as timesyncd would.
        box.run(f"date -u -s @{int(time.time())} >/dev/null", via="serial")
        box.wait_until("multi-user.target", "systemctl is-active multi-user.target", timeout=600)
        box.mark("boot_to_multi_user_s")
        # What timesyncd writes once it has synced (NTP is UDP, which QEMU's user network
        # does not forward in): the box trusts its clock from here (venuecam.wallclock).
        box.run("mkdir -p /run/systemd/timesync && touch /run/systemd/timesync/synchronized", via="serial")
        if machine == "raspi3b":
            _wired_dhcp(box)
            box.wait_until("ssh", "true", timeout=600, via="ssh")
            box.network = True
            box.mark("boot_to_ssh_s")
    except BaseException:
        box.stop()
        raise
    return box


def _finish(box: qemu_pi.PiBox) -> None:
    record(**{f"{box.machine}_{k}": v for k, v in box.timings.items()})
    box.stop()


@pytest.fixture(scope="session")
def _pi3_session(
    image: Path, services: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[qemu_pi.PiBox]:
    if not qemu_pi.has_machine("raspi3b"):
        pytest.skip("this QEMU has no raspi3b machine")
    guestfwd = services["guestfwd"]
    assert isinstance(guestfwd, list)
    # The watchdog probes the platform simulator through the box's own network: QEMU's
    # monitor pulls that cable (set_link) and the online LED must follow.
    target = f"{SIM_GUEST[0]}:{SIM_GUEST[1]}"
    box = _boot("raspi3b", image, tmp_path_factory.mktemp("raspi3b"), guestfwd, target)
    yield box
    _finish(box)


@pytest.fixture(scope="session")
def _pi4_session(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[qemu_pi.PiBox]:
    if os.environ.get("VENUECAM_TEST_RASPI4B") == "0":
        pytest.skip("the emulated Pi 4 boot was left out (VENUECAM_TEST_RASPI4B=0)")
    if not qemu_pi.has_machine("raspi4b"):
        pytest.skip(
            f"this QEMU ({'.'.join(map(str, qemu_pi.qemu_version()))}) has no raspi4b machine (QEMU >= 9)"
        )
    # No network on the emulated Pi 4: the watchdog's probe is the box's own sshd.
    box = _boot("raspi4b", image, tmp_path_factory.mktemp("raspi4b"), [], "127.0.0.1:22")
    yield box
    _finish(box)


@pytest.fixture
def pi3_box(_pi3_session: qemu_pi.PiBox) -> qemu_pi.PiBox:
    """The booted emulated Pi 3 (ssh over its USB network device; the serial shell too)."""
    return _activate(_pi3_session)


@pytest.fixture
def pi4_box(_pi4_session: qemu_pi.PiBox) -> qemu_pi.PiBox:
    """The booted emulated Pi 4 (serial shell only: QEMU has no network for it)."""
    return _activate(_pi4_session)
