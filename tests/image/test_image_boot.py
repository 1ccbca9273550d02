"""The SD-card image, built and booted for real under qemu-system-aarch64.

`image/build.sh` builds the Debian-based image (the base is cached in build/image-cache/,
so a re-run only customizes and assembles). The test copies it, puts a venuecam.toml on
its FAT partition, boots it on QEMU's virt machine with the kernel and initrd taken from
the image, and checks over ssh what first boot and the appliance did; then it boots the
same disk again and checks the data is still there.

Networking: QEMU user mode with restrict=on, so the guest reaches nothing but the two
services forwarded to it (the platform simulator and the S3 server, both on this host's
loopback) and sshd is reachable from here through a host port forward.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import API_TOKEN, S3_KEY_ID, S3_SECRET, free_port, render_toml, start_moto, wait_for_port

REPO = Path(__file__).resolve().parents[2]
FIGURES = REPO / "build" / "image-test-figures.json"
SIM_GUEST = ("10.0.2.100", 8080)
S3_GUEST = ("10.0.2.101", 9000)
WIFI_PSK = "imagetest-wifi-psk"
HOSTNAME = "court-7"
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-aarch64-static": "qemu-user-static",
    "mcopy": "mtools",
    "mkfs.vfat": "dosfstools",
    "sfdisk": "fdisk",
    "bmaptool": "bmap-tools",
    "xz": "xz-utils",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}

pytestmark = [pytest.mark.slow, pytest.mark.root]

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


def record(**figures: float | str) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    old = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    FIGURES.write_text(json.dumps({**old, **figures}, indent=2) + "\n")


# ---------------------------------------------------------------- the image


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = why_cannot_run()
    if reason:
        pytest.skip(reason)
    prebuilt = os.environ.get("VENUECAM_IMAGE_PREBUILT")  # iterate on the boot without a rebuild
    if prebuilt:
        return Path(prebuilt)
    out = tmp_path_factory.mktemp("image-out")
    work = tmp_path_factory.mktemp("image-work")
    log = out / "build.log"
    env = {
        **os.environ,
        "VENUECAM_IMAGE_OUT": str(out),
        "VENUECAM_IMAGE_WORK": str(work),
        "IMAGE_NAME": "venuecam-test",
        # The pinned Raspberry Pi OS base, pointed at a closed loopback port (nothing leaves
        # this machine): the build must say so and fall back to the Debian base.
        "VENUECAM_IMAGE_BASE": "raspios",
        "VENUECAM_RASPIOS_URL": f"http://127.0.0.1:{free_port()}/raspios.img.xz",
        "VENUECAM_RASPIOS_SHA256": "0" * 64,
    }
    t0 = time.monotonic()
    with log.open("w") as f:
        proc = subprocess.run([str(REPO / "image/build.sh")], stdout=f, stderr=subprocess.STDOUT, env=env)
    # The unpacked rootfs is a GB nobody needs now; never rmtree through a leftover bind mount.
    if str(work) not in Path("/proc/mounts").read_text():
        shutil.rmtree(work, ignore_errors=True)
    text = log.read_text()
    assert proc.returncode == 0, f"image/build.sh failed:\n{text[-4000:]}"
    assert "cannot fetch the Raspberry Pi OS image" in text and "falling back to the Debian base" in text
    cold = "building Debian" in text
    record(**{f"build_s_{'cold' if cold else 'cached_base'}": round(time.monotonic() - t0)})
    return out / "venuecam-test.img"


def test_build_publishes_xz_checksum_bmap_and_imager_json(image: Path) -> None:
    d, name = image.parent, image.stem
    xz = d / f"{name}.img.xz"
    line = (d / f"{name}.img.xz.sha256").read_text().split()
    assert line[1] == xz.name
    digest = subprocess.run(
        ["sha256sum", str(xz)], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    assert line[0] == digest
    assert "<bmap" in (d / f"{name}.bmap").read_text()
    entry = json.loads((d / f"{name}.json").read_text())["os_list"][0]
    assert entry["image_download_sha256"] == digest
    assert entry["extract_size"] == image.stat().st_size
    # The three partitions: FAT boot, root, and the small data partition that grows later.
    table = json.loads(subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, check=True).stdout)
    types = [p["type"] for p in table["partitiontable"]["partitions"]]
    assert types == ["c", "83", "83"]
    record(
        compressed_mb=round(xz.stat().st_size / 2**20),
        image_mb=round(image.stat().st_size / 2**20),
    )


# ---------------------------------------------------------------- booting it


class Box:
    """One QEMU guest on a disk image; ssh into it as root with the test's key."""

    def __init__(
        self, disk: Path, boot_files: dict[str, Path], key: Path, work: Path, fwd: list[str]
    ) -> None:
        self.disk, self.boot_files, self.key, self.work, self.fwd = disk, boot_files, key, work, fwd
        self.ssh_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.boots = 0

    def start(self) -> None:
        self.boots += 1
        netdev = ",".join(["user,id=n0,restrict=on", f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22", *self.fwd])
        argv = [
            "qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "2048",
            "-kernel", str(self.boot_files["kernel"]), "-initrd", str(self.boot_files["initrd"]),
            "-append", self.boot_files["cmdline"].read_text().strip(),
            "-drive", f"if=none,id=d0,format=raw,file={self.disk}", "-device", "virtio-blk-pci,drive=d0",
            "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,romfile=",
            "-display", "none", "-monitor", "none", "-serial", f"file:{self.work / f'console-{self.boots}.log'}",
            "-no-reboot",
        ]  # fmt: skip
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def ssh(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [
            "ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "root@127.0.0.1", command,
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def console(self) -> str:
        """The tail of the serial console, and QEMU's own complaint if it exited."""
        path = self.work / f"console-{self.boots}.log"
        text = path.read_text(errors="replace")[-3000:] if path.exists() else ""
        if self.proc and self.proc.poll() is not None and self.proc.stderr:
            text += "\nqemu: " + self.proc.stderr.read().decode(errors="replace")[-2000:]
        return text

    def wait_until(self, what: str, command: str, timeout: float) -> str:
        """Run command over ssh until it exits 0; its stdout. Fails with the console's tail."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.proc and self.proc.poll() is None, (
                f"QEMU exited while waiting for {what}:\n{self.console()}"
            )
            try:
                proc = self.ssh(command, timeout=60)
                if proc.returncode == 0:
                    return proc.stdout
                last = proc.stdout + proc.stderr
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            time.sleep(3)
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; last: {last[-1500:]}\n{self.console()}"
        )

    def poweroff(self) -> None:
        self.ssh("systemctl poweroff", timeout=30)
        assert self.proc
        try:
            self.proc.wait(300)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the box did not power off:\n{self.console()}") from None

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def fat_offset(disk: Path) -> int:
    table = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, check=True).stdout)
    return int(table["partitiontable"]["partitions"][0]["start"]) * 512


def mtools(disk: Path, *args: str) -> str:
    fat = f"{disk}@@{fat_offset(disk)}"
    cmd = [args[0], "-i", fat, *args[1:]]
    return subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    ).stdout


def boot_files(disk: Path, work: Path) -> dict[str, Path]:
    """Kernel, initrd and the root= of cmdline.txt, all taken from the image's FAT partition."""
    names = mtools(disk, "mdir", "-b", "::/").split()
    kernel = next(n for n in names if Path(n).name.startswith("vmlinuz-"))
    initrd = next(n for n in names if Path(n).name.startswith("initrd.img-"))
    out = {"kernel": work / "vmlinuz", "initrd": work / "initrd.img", "cmdline": work / "cmdline"}
    mtools(disk, "mcopy", "-n", kernel, str(out["kernel"]))
    mtools(disk, "mcopy", "-n", initrd, str(out["initrd"]))
    cmdline = mtools(disk, "mtype", "::/cmdline.txt").split()
    root = next(arg for arg in cmdline if arg.startswith("root="))
    # QEMU's virt machine has a PL011 UART; everything else as the box boots it.
    out["cmdline"].write_text(f"{root} rootwait fsck.repair=yes console=ttyAMA0 quiet\n")
    return out


def box_toml(pubkey: str) -> str:
    sim = f"http://{SIM_GUEST[0]}:{SIM_GUEST[1]}"
    sections = {
        "device": {"device_id": "imagetest-box", "venue_id": "42", "timezone": "Asia/Jakarta"},
        "booking_api": {"base_url": sim, "api_token": API_TOKEN, "sync_interval_s": 60, "timeout_s": 10.0},
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
                "width": 320,
                "height": 240,
                "fps": 5,
                "bitrate_kbps": 200,
            },
        ],  # fmt: skip
        "connectivity": {"tcp_targets": [f"{SIM_GUEST[0]}:{SIM_GUEST[1]}"], "dns_names": []},
        "leds": {"enabled": False},  # the virt machine has no GPIO
        "provision": {
            "hostname": HOSTNAME,
            "ssh_authorized_keys": [pubkey],
            "wifi_ssid": "Venue WiFi",
            "wifi_psk": WIFI_PSK,
            "wifi_country": "ID",
        },
    }
    return render_toml(sections)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[str]]:
    """The simulator and the S3 server on this host's loopback, forwarded into the guest."""
    procs: list[subprocess.Popen[bytes]] = []
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
        relay = tmp_path / "relay.py"
        relay.write_text(RELAY)
        s3_port = int(s3.endpoint.rsplit(":", 1)[1])
        yield [
            f"guestfwd=tcp:{SIM_GUEST[0]}:{SIM_GUEST[1]}-cmd:{sys.executable} {relay} {sim_port}",
            f"guestfwd=tcp:{S3_GUEST[0]}:{S3_GUEST[1]}-cmd:{sys.executable} {relay} {s3_port}",
        ]
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)


SUPERVISORCTL = "/opt/venuecam/current/bin/supervisorctl -c /run/venuecam/supervisord.conf status"
ALL_RUNNING = f'out=$({SUPERVISORCTL}) && echo "$out" && ! echo "$out" | grep -v \' RUNNING \''
SEGMENTS = "find /var/lib/venuecam/segments -type f -size +1k | wc -l"


def test_image_boots_provisions_records_and_keeps_data(
    image: Path, services: list[str], tmp_path: Path
) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    disk = tmp_path / "disk.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    subprocess.run(["truncate", "-s", "+1G", str(disk)], check=True)  # a bigger "card"
    toml = tmp_path / "venuecam.toml"
    toml.write_text(box_toml(Path(f"{key}.pub").read_text().strip()))
    mtools(disk, "mcopy", str(toml), "::/venuecam.toml")
    box = Box(disk, boot_files(disk, tmp_path), key, tmp_path, services)
    try:
        box.start()
        box.wait_until("ssh", "true", timeout=900)
        boot_to_ssh = time.monotonic() - box.started

        # First boot applied the config and took the secrets off the FAT partition.
        facts = box.ssh(
            "hostname; stat -c '%a %U' /etc/venuecam/venuecam.toml; cat /etc/timezone; "
            "ls /boot/firmware; cat /boot/firmware/venuecam.toml.applied; "
            "cat /etc/NetworkManager/system-connections/venuecam-wifi.nmconnection | grep -c psk=; "
            "systemctl is-active venuecam-firstboot.service"
        ).stdout
        lines = facts.splitlines()
        assert lines[0] == HOSTNAME
        assert lines[1] == "600 venuecam"
        assert lines[2] == "Asia/Jakarta"
        assert "venuecam.toml" not in facts.split("\n") and "venuecam.toml.applied" in facts
        for secret in (API_TOKEN, S3_SECRET, WIFI_PSK):
            assert secret not in facts
        assert lines[-1] == "active"
        boot_fat = mtools(disk, "mdir", "-b", "::/")
        assert "VENUECAM.TOML\n" not in boot_fat.upper().replace(".APPLIED", "-APPLIED")

        # The appliance: every supervisord program RUNNING, segments being recorded.
        status = box.wait_until("all programs RUNNING", ALL_RUNNING, timeout=600)
        assert "capture:CAM_A" in status and "worker" in status and "statusd" in status
        box.wait_until("a recorded segment", f'test "$({SEGMENTS})" -ge 1', timeout=600)
        boot_to_recording = time.monotonic() - box.started
        first = int(box.ssh(SEGMENTS).stdout)
        box.wait_until("more segments", f'test "$({SEGMENTS})" -gt {first}', timeout=300)

        answer = box.ssh("venuecam status", timeout=120)
        assert answer.returncode == 0 and answer.stdout.strip(), answer.stderr

        # The data partition grew to the end of the bigger card.
        data_bytes = int(box.ssh("findmnt -bno SIZE /var/lib/venuecam").stdout)
        assert data_bytes > 900 * 2**20

        # The network settings the box ships (rootfs/etc/sysctl.d/90-venuecam-net.conf).
        tcp = box.ssh("sysctl -n net.ipv4.tcp_congestion_control net.core.default_qdisc").stdout.split()
        assert tcp == ["bbr", "fq"], tcp

        security = box.ssh("systemd-analyze security --no-pager venuecam.service | tail -1").stdout.strip()
        installed_mb = box.ssh("df -m --output=used / | tail -1").stdout.strip()
        box.ssh("echo kept > /var/lib/venuecam/marker")
        before = int(box.ssh(SEGMENTS).stdout)
        box.poweroff()

        # Second boot: same data, config still installed, nothing back on the FAT partition.
        box.start()
        box.wait_until("ssh after reboot", "true", timeout=900)
        assert box.ssh("cat /var/lib/venuecam/marker").stdout.strip() == "kept"
        assert box.ssh("test -f /etc/venuecam/venuecam.toml && hostname").stdout.strip() == HOSTNAME
        box.wait_until("all programs RUNNING after reboot", ALL_RUNNING, timeout=600)
        box.wait_until("recording after reboot", f'test "$({SEGMENTS})" -gt {before}', timeout=600)
        assert box.ssh("systemctl is-active venuecam-firstboot.service").stdout.strip() == "active"
        record(
            boot_to_ssh_s=round(boot_to_ssh),
            boot_to_recording_s=round(boot_to_recording),
            installed_root_mb=installed_mb,
            systemd_analyze_security=security,
        )
        box.poweroff()
    finally:
        box.kill()


def test_raspios_base_that_cannot_be_fetched_says_so(tmp_path: Path) -> None:
    """The pinned Raspberry Pi OS step alone, pointed at a closed loopback port: exit 3."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    env = {
        **os.environ,
        "VENUECAM_RASPIOS_URL": f"http://127.0.0.1:{free_port()}/raspios.img.xz",
        "VENUECAM_RASPIOS_SHA256": "0" * 64,
        "VENUECAM_IMAGE_CACHE": str(tmp_path / "cache"),
    }
    proc = subprocess.run([str(REPO / "image/11-base-raspios.sh")], capture_output=True, text=True, env=env)
    assert proc.returncode == 3
    assert "cannot fetch the Raspberry Pi OS image from http://127.0.0.1" in proc.stderr
    assert not list((tmp_path / "cache").glob("*.tar"))
