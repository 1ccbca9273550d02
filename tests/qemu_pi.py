"""An emulated Raspberry Pi booting the built image the way the Pi's firmware would.

QEMU's `raspi3b` / `raspi4b` machines emulate the SoC (SD host, GPIO, UARTs, DWC2 USB on
the Pi 3) but not the GPU firmware, so the harness does the firmware's part from the card
itself: it parses config.txt (fatconfig), takes the kernel, initramfs and device tree the
model's sections name from the FAT partition, and cmdline.txt as written. The card is a
copy of the image grown to a power-of-two size (QEMU's SD model wants one) on `-drive if=sd`.
No virtio anywhere.

The channels: the serial console on both machines, and on the Pi 3 ssh too. The test adds
`systemd.debug_shell=<console>` (a root shell on that UART, in place of its login prompt) to
the command line. QEMU has neither the Pi 4's Ethernet (GENET) nor its PCIe/xHCI USB; on the
Pi 3, QEMU's USB network device (`usb-net` on the emulated DWC2 host) is eth0 (cdc_ether),
given DHCP by the test (see fixtures_image._wired_dhcp for why it must ask), with QEMU's
user network forwarding ssh in and the simulator and S3 server out. The one other addition keeps the watchdog driver out (QEMU's watchdog resets at once).
Under raspi4b the card is on EMMC2 (as on a real Pi 4), the console on the PL011, and the
device tree handed to QEMU is the card's adapted to what QEMU emulates (`qemu_ready_dtb`).

`PiBox.run()` is the one way tests talk to a box (ssh where there is a network, else the
serial shell); a booted box is meant to be shared by many checks (see conftest.py).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import fatconfig

MACHINES = {
    # machine: (the model the firmware would see, QEMU's memory for it)
    "raspi3b": ("pi3", "1G"),
    "raspi4b": ("pi4", "2G"),
}
# Test-only additions to cmdline.txt: the serial shell and a quiet console for it, and no
# hardware watchdog driver: QEMU's model of the Pi's watchdog resets the machine the moment
# the driver arms it (it has no countdown), so systemd's RuntimeWatchdogSec would reboot it.
SERIAL_EXTRAS = (
    "systemd.show_status=false systemd.debug_shell={tty} systemd.mask=serial-getty@{tty}.service"
    " modprobe.blacklist=bcm2835_wdt"
)


# Where the card goes under raspi4b: on EMMC2, the host a real Pi 4's SD slot is wired to
# (mmc@7e340000, sdhci-iproc as "brcm,bcm2711-emmc2"). `-drive if=sd` would put it on the
# GPIO-routed bus (the Arasan SDHCI, which a Pi 4 uses for its Wi-Fi), so the card is a
# `sd-card` device on EMMC2's own bus: the first `generic-sdhci` in QEMU's tree is EMMC2
# (the test checks which host the kernel found it on).
PI4_CARD_DEVICE = "sd-card,drive=card,bus=/generic-sdhci/sd-bus"
PI4_EMMC2 = "/emmc2bus/mmc@7e340000"
PI4_ARASAN = "/soc/mmc@7e300000"
# The emulated Pi 4's console: the PL011 (ttyAMA0), added to the card's command line. The
# card names the mini UART (ttyS1), and under QEMU's raspi4b the mini UART's interrupt,
# once a tty opens it (systemd's getty generator does, early), fires without end: CPU 0
# never leaves it, and everything routed to CPU 0 (EMMC2's interrupt first) starves:
# "mmc0: Timeout waiting for hardware interrupt", then soft lockups. On raspi3b, whose
# interrupts go through the BCM2835 controller rather than the GIC, the same UART is fine.
PI4_CONSOLE = "console=ttyAMA0,115200"
PI4_MINI_UART = "/soc/serial@7e215040"
PI4_BLUETOOTH = "/soc/serial@7e201000/bluetooth"  # a real Pi 4's PL011 is wired to its radio


def qemu_ready_dtb(dtb: Path, machine: str) -> list[str]:
    """Adapt this copy of the card's device tree to what QEMU's machine emulates; what changed.

    QEMU's raspi4b leaves the Pi 4's HDMI block unmapped (the nodes at 0x7ef0xxxx: its clock,
    its L2 interrupt controller, both HDMI ports and their DDC I2C buses) and their drivers
    take a synchronous external abort at probe: a panic before the console comes up. So they
    are disabled, as QEMU itself disables PCIe, GENET, RNG and thermal. EMMC2's supplies are
    regulators switched through the firmware's GPIO expander, a mailbox call QEMU does not
    answer (the host would wait for them forever), so they go; the Arasan host (Wi-Fi on a
    real Pi 4, nothing behind it in QEMU, and sharing EMMC2's interrupt) is disabled, and so
    are the mini UART and the Bluetooth node on the PL011 (see PI4_CONSOLE). The card's own
    DTB is untouched: on a real Pi all of it exists.
    """
    if machine != "raspi4b":
        return []
    nodes = subprocess.run(["fdtget", "-l", str(dtb), "/soc"], capture_output=True, text=True, check=True)
    changed = [f"{n} disabled" for n in nodes.stdout.split() if n.split("@")[-1].startswith("7ef")]
    for node in changed:
        fdtput(dtb, "-ts", f"/soc/{node.split()[0]}", "status", "disabled")
    for prop in ("vqmmc-supply", "vmmc-supply"):
        fdtput(dtb, "-d", PI4_EMMC2, prop)
        changed.append(f"{PI4_EMMC2}:{prop} deleted")
    # The console moves to the PL011 (PI4_CONSOLE says why): the mini UART and the Bluetooth
    # radio that would take the PL011 over (hci_uart) are disabled.
    for node in (PI4_ARASAN, PI4_MINI_UART, PI4_BLUETOOTH):
        fdtput(dtb, "-ts", node, "status", "disabled")
        changed.append(f"{node} disabled")
    return changed


def fdtput(dtb: Path, option: str, node: str, prop: str, *value: str) -> None:
    """`fdtput OPTION DTB NODE PROP [VALUE]`: -t s to set a string, -d to delete a property."""
    opts = ["-t", "s"] if option == "-ts" else [option]
    subprocess.run(["fdtput", *opts, str(dtb), node, prop, *value], check=True)


def qemu_version() -> tuple[int, int]:
    out = subprocess.run(["qemu-system-aarch64", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"version (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def has_machine(machine: str) -> bool:
    if not shutil.which("qemu-system-aarch64"):
        return False
    out = subprocess.run(["qemu-system-aarch64", "-M", "help"], capture_output=True, text=True).stdout
    return any(line.split()[:1] == [machine] for line in out.splitlines())


def mtools(disk: Path, *args: str, offset: int) -> str:
    cmd = [args[0], "-i", f"{disk}@@{offset}", *args[1:]]
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout


def partitions(disk: Path) -> list[dict[str, object]]:
    table = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, check=True).stdout)
    return list(table["partitiontable"]["partitions"])


def fat_offset(disk: Path) -> int:
    return int(partitions(disk)[0]["start"]) * 512  # type: ignore[call-overload]


def read_fat(disk: Path, name: str) -> bytes:
    """One file of the card's FAT partition, read without mounting it."""
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(
        ["mtype", "-i", f"{disk}@@{fat_offset(disk)}", f"::/{name}"], capture_output=True, check=True, env=env
    ).stdout


def write_fat(disk: Path, local: Path, name: str) -> None:
    mtools(disk, "mcopy", "-o", str(local), f"::/{name}", offset=fat_offset(disk))


@dataclass
class BootFiles:
    kernel: Path
    initrd: Path
    dtb: Path
    cmdline: str
    names: tuple[str, str, str]  # as config.txt names them, for the report


def boot_files(disk: Path, model: str, work: Path) -> BootFiles:
    """What the Pi firmware would load for `model`, taken from the card's FAT partition."""
    cfg = fatconfig.effective(read_fat(disk, "config.txt").decode(), model)
    kernel, initrd = cfg["kernel"], cfg["initramfs"]
    dtb = fatconfig.device_tree(model, cfg)
    out = BootFiles(work / "kernel", work / "initrd", work / "board.dtb", "", (kernel, initrd, dtb))
    for name, dest in ((kernel, out.kernel), (initrd, out.initrd), (dtb, out.dtb)):
        dest.write_bytes(read_fat(disk, name))
    out.cmdline = read_fat(disk, cfg.get("cmdline", "cmdline.txt")).decode().strip()
    return out


# The debug shell's prompt ("root@venuecam:/# "): nothing is typed before it has appeared.
PROMPT = re.compile(r"root@[\w.-]+:\S*# ")


class SerialShell:
    """The debug shell on a UART, behind a Unix socket QEMU serves; everything read is kept."""

    def __init__(self, path: Path, log: Path) -> None:
        self.path, self.log = path, log
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._seq = 0
        self._prompted = False

    def connect(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(str(self.path))
                break
            except OSError:
                s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self._sock = s
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        assert self._sock is not None
        with self.log.open("ab") as log:
            while True:
                try:
                    data = self._sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                log.write(data)
                log.flush()
                with self._lock:
                    self._buf += data

    def text(self) -> str:
        with self._lock:
            return self._buf.decode(errors="replace")

    def run(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """(exit status, output) of a shell command on the serial shell."""
        assert self._sock is not None, "serial shell not connected"
        self._wait_for_prompt(time.monotonic() + timeout)
        self._seq += 1
        tag = f"__VC{self._seq}_{os.getpid()}__"
        b64 = base64.b64encode(command.encode()).decode()
        line = (
            f"echo {b64} | base64 -d > /run/vc-cmd; sh /run/vc-cmd > /run/vc-out 2>&1; "
            f'echo "{tag} $? $(base64 -w0 < /run/vc-out) {tag}"\n'
        )
        with self._lock:
            start = len(self._buf)
        self._sock.sendall(line.encode())
        pattern = re.compile(rf"{tag} (\d+) ([A-Za-z0-9+/=]*) {tag}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                m = pattern.search(self._buf[start:].decode(errors="replace"))
            if m:
                return int(m.group(1)), base64.b64decode(m.group(2)).decode(errors="replace")
            time.sleep(0.2)
        raise TimeoutError(f"no answer on the serial shell within {timeout}s to: {command}")

    def _wait_for_prompt(self, deadline: float) -> None:
        # QEMU's PL011 model (the emulated Pi 4's console) fed before Linux has set the UART
        # up takes no input ever after; the mini UART does not mind, but neither is harmed.
        while not self._prompted:
            self._prompted = PROMPT.search(self.text()) is not None
            if not self._prompted:
                if time.monotonic() > deadline:
                    raise TimeoutError("no shell prompt on the serial console yet")
                time.sleep(0.5)

    def close(self) -> None:
        if self._sock:
            # shutdown() first: close() alone leaves the reader thread's recv() holding the
            # socket open, and QEMU would not take the next client.
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()


class PiBox:
    """One emulated Pi on a copy of the image; `run()` a command on it."""

    def __init__(self, machine: str, disk: Path, work: Path, key: Path, guestfwd: list[str]) -> None:
        self.machine = machine
        self.model, self.memory = MACHINES[machine]
        self.disk, self.work, self.key, self.guestfwd = disk, work, key, guestfwd
        # ssh once the test has the box on QEMU's usb-net (see fixtures_image._wired_dhcp).
        self.network = False
        self.ssh_port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.files: BootFiles | None = None
        self.console_tty = ""
        self.serial: SerialShell | None = None
        self.monitor_path = work / "monitor.sock"
        self.timings: dict[str, float] = {}

    # ---------------------------------------------------------------- starting

    def start(self) -> None:
        from conftest import free_port

        self.files = boot_files(self.disk, self.model, self.work)
        self.dtb_changes = qemu_ready_dtb(self.files.dtb, self.machine)
        base = self.files.cmdline + (f" {PI4_CONSOLE}" if self.machine == "raspi4b" else "")
        consoles = re.findall(r"console=(tty[A-Z]+\d+)", base)
        self.console_tty = consoles[-1] if consoles else "ttyS1"  # the last one is /dev/console
        cmdline = base + " " + SERIAL_EXTRAS.format(tty=self.console_tty)
        serial_sock = self.work / "serial.sock"
        # serial_hd(0) is the PL011 (ttyAMA0), serial_hd(1) the mini UART (ttyS1 here).
        uart0, uart1 = "null", f"unix:{serial_sock},server=on,wait=off"
        if self.console_tty.startswith("ttyAMA"):
            uart0, uart1 = uart1, "null"
        argv = [
            "qemu-system-aarch64", "-M", self.machine, "-m", self.memory,
            "-kernel", str(self.files.kernel), "-initrd", str(self.files.initrd),
            "-dtb", str(self.files.dtb), "-append", cmdline,
            *self._card_args(),
            "-display", "none", "-monitor", f"unix:{self.monitor_path},server=on,wait=off",
            "-serial", uart0, "-serial", uart1, "-no-reboot",
        ]  # fmt: skip
        if self.machine == "raspi3b":
            self.ssh_port = free_port()
            netdev = ",".join(
                ["user,id=n0,restrict=on", f"hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22", *self.guestfwd]
            )
            argv += ["-netdev", netdev, "-device", "usb-net,netdev=n0"]
        self.argv = argv
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=(self.work / "qemu.err").open("wb")
        )
        self.serial = SerialShell(serial_sock, self.work / "serial.log")
        self.serial.connect()

    def _card_args(self) -> list[str]:
        if self.machine == "raspi4b":
            return ["-drive", f"if=none,id=card,format=raw,file={self.disk}", "-device", PI4_CARD_DEVICE]
        return ["-drive", f"if=sd,format=raw,file={self.disk}"]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def console(self, tail: int = 4000) -> str:
        text = self.serial.text()[-tail:] if self.serial else ""
        err = (self.work / "qemu.err").read_text(errors="replace")[-2000:]
        return text + (f"\nqemu: {err}" if err.strip() else "")

    # ---------------------------------------------------------------- talking to it

    def ssh(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        argv = [
            "ssh", "-i", str(self.key), "-p", str(self.ssh_port), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR", "root@127.0.0.1", command,
        ]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)

    def run(self, command: str, timeout: float = 180, via: str = "") -> tuple[int, str]:
        """(status, stdout+stderr) of a shell command on the box: ssh if it has a network."""
        assert self.alive(), f"QEMU exited:\n{self.console()}"
        if (via or ("ssh" if self.network and self.ssh_port else "serial")) == "ssh":
            proc = self.ssh(command, timeout)
            return proc.returncode, proc.stdout + proc.stderr
        assert self.serial
        return self.serial.run(command, timeout)

    def out(self, command: str, timeout: float = 180) -> str:
        status, text = self.run(command, timeout)
        assert status == 0, f"`{command}` exited {status} on the {self.machine} box: {text[-2000:]}"
        return text

    def wait_until(self, what: str, command: str, timeout: float, via: str = "") -> str:
        """Run `command` until it exits 0; its output. Fails with the console's tail."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            assert self.alive(), f"QEMU exited while waiting for {what}:\n{self.console()}"
            try:
                status, text = self.run(command, timeout=120, via=via)
                if status == 0:
                    return text
                last = text
            except (subprocess.TimeoutExpired, TimeoutError) as e:
                last = str(e)
            time.sleep(3)
        raise AssertionError(f"{self.machine}: timed out after {timeout:.0f}s waiting for {what}; "
                             f"last: {last[-1500:]}\n{self.console()}")  # fmt: skip

    def mark(self, name: str) -> float:
        """Seconds since QEMU started, recorded under `name` for the figures."""
        self.timings[name] = round(time.monotonic() - self.started, 1)
        return self.timings[name]

    def monitor(self, command: str) -> str:
        """One command on QEMU's human monitor (e.g. `set_link n0 off`)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(self.monitor_path))
            s.settimeout(5)
            s.sendall(command.encode() + b"\n")
            time.sleep(0.5)
            try:
                return s.recv(65536).decode(errors="replace")
            except TimeoutError:
                return ""

    def stop(self) -> None:
        if self.serial:
            self.serial.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)


def grow_card(image: Path, disk: Path) -> int:
    """A sparse copy of the image, grown to the next power of two (QEMU's SD card sizes)."""
    subprocess.run(["cp", "--sparse=always", str(image), str(disk)], check=True)
    size = 1 << (image.stat().st_size - 1).bit_length()
    os.truncate(disk, size)
    return size
