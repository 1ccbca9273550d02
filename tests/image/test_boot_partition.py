"""The card's FAT partition read the way the Raspberry Pi firmware reads it, per model.

For every board the Imager JSON claims (its `devices`): the config.txt sections that apply
to that board, the kernel, initramfs and device tree they name are on the partition, and so
is the GPU firmware that board's boot ROM or EEPROM loads; cmdline.txt's root is root slot A
of the partition table, with no cma= (which stops a Pi 4); and the initramfs holds the
drivers that find that root: the board's SD host (and its regulators) and, for a USB boot,
the USB host and mass storage drivers.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import fatconfig
import qemu_pi

pytestmark = [pytest.mark.slow, pytest.mark.root]

# What must be in the initramfs for the root to be found on each board (module file names).
SD_DRIVERS = {
    "3B": ("bcm2835.ko",),  # the SD host (sdhost) of the BCM2837
    "3B+": ("bcm2835.ko",),
    "3A+": ("bcm2835.ko",),
    "Zero2W": ("bcm2835.ko",),
    "4B": ("sdhci-iproc.ko", "fixed.ko", "gpio-regulator.ko"),  # emmc2 and its supplies
    "400": ("sdhci-iproc.ko", "fixed.ko", "gpio-regulator.ko"),
    "CM4": ("sdhci-iproc.ko", "fixed.ko", "gpio-regulator.ko"),
}
USB_DRIVERS = {
    "pi3": ("dwc2.ko", "usb-storage.ko", "uas.ko", "sd_mod.ko"),
    "pi4": ("xhci-pci.ko", "reset-raspberrypi.ko", "usb-storage.ko", "uas.ko", "sd_mod.ko"),
}


@pytest.fixture(scope="module")
def card(image: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    tmp = tmp_path_factory.mktemp("fat")
    offset = qemu_pi.fat_offset(image)
    files = fatconfig.list_fat(image, offset)
    entry = json.loads(image.with_suffix(".json").read_text())["os_list"][0]
    config = qemu_pi.read_fat(image, "config.txt").decode()
    settings = fatconfig.effective(config, "3B")
    initrd = tmp / "initrd"
    initrd.write_bytes(qemu_pi.read_fat(image, settings["initramfs"]))
    modules = {
        Path(p).name.removesuffix(".xz").removesuffix(".zst") for p in initramfs_names(initrd.read_bytes())
    }
    return {"files": files, "entry": entry, "config": config, "modules": modules, "image": image}


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def initramfs_names(data: bytes) -> list[str]:
    """Every path in an initramfs: uncompressed newc cpio archives (the early one initramfs-tools
    puts first), then the compressed main archive, as the kernel unpacks them in turn."""
    names: list[str] = []
    pos = 0
    while pos < len(data):
        if data[pos : pos + 4] == ZSTD_MAGIC:
            rest = subprocess.run(["zstd", "-dc"], input=data[pos:], capture_output=True, check=True).stdout
            return names + initramfs_names(rest)
        if data[pos : pos + 6] != b"070701":
            pos += 1  # zero padding between archives
            continue
        namesize, filesize = int(data[pos + 94 : pos + 102], 16), int(data[pos + 54 : pos + 62], 16)
        name = data[pos + 110 : pos + 110 + namesize - 1].decode(errors="replace")
        pos += (110 + namesize + 3) & ~3
        pos += (filesize + 3) & ~3
        if name != "TRAILER!!!":
            names.append(name)
    return names


def boards(entry: dict[str, object]) -> list[str]:
    devices = entry["devices"]
    assert isinstance(devices, list) and devices
    return [board for tag in devices for board in fatconfig.IMAGER_DEVICES[tag]]


def test_every_claimed_board_finds_what_its_config_names(card: dict[str, object]) -> None:
    files, config = card["files"], card["config"]
    assert isinstance(files, set) and isinstance(config, str)
    checked = []
    for board in boards(card["entry"]):  # type: ignore[arg-type]
        s = fatconfig.effective(config, board)
        assert s.get("arm_64bit") == "1", f"{board}: not a 64-bit boot"
        wanted = [
            s["kernel"],
            s["initramfs"],
            fatconfig.device_tree(board, s),
            *fatconfig.gpu_firmware(board, s),
        ]
        missing = [f for f in wanted if f.lower() not in files]
        assert not missing, f"{board}: config.txt names or needs {missing}, not on the boot partition"
        checked.append(f"{board}: {s['kernel']} {s['initramfs']} {fatconfig.device_tree(board, s)}")
    print("\n" + "\n".join(checked))


def test_model_sections_apply_where_they_should(card: dict[str, object]) -> None:
    config = card["config"]
    assert isinstance(config, str)
    assert re.search(r"^\[pi4\]$", config, re.M) and re.search(r"^\[pi3\]$", config, re.M)
    assert fatconfig.effective(config, "4B").get("arm_boost") == "1"
    assert "arm_boost" not in fatconfig.effective(config, "3B")
    assert fatconfig.effective(config, "3B").get("core_freq") == "250"
    assert fatconfig.effective(config, "Zero2W").get("core_freq") == "250"
    assert "core_freq" not in fatconfig.effective(config, "4B")
    # After [all] everything applies everywhere again.
    assert all(fatconfig.effective(config, b).get("disable_splash") == "1" for b in fatconfig.BOARDS)


def test_cmdline_root_is_slot_a_of_the_table_and_has_no_cma(card: dict[str, object]) -> None:
    image = card["image"]
    assert isinstance(image, Path)
    cmdline = qemu_pi.read_fat(image, "cmdline.txt").decode()
    assert "\n" not in cmdline.strip(), "cmdline.txt must be one line"
    root = re.search(r"\broot=PARTUUID=([0-9a-f]{8})-(\d\d)\b", cmdline)
    assert root, cmdline
    table = json.loads(subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, check=True).stdout)
    assert table["partitiontable"]["id"] == "0x" + root.group(1)
    assert int(root.group(2)) == 2 and table["partitiontable"]["partitions"][1]["type"] == "83"
    assert "cma=" not in cmdline
    assert "rootwait" in cmdline


def test_initramfs_has_the_drivers_that_find_the_root(card: dict[str, object]) -> None:
    modules = card["modules"]
    assert isinstance(modules, set)
    for board in boards(card["entry"]):  # type: ignore[arg-type]
        missing = [m for m in SD_DRIVERS[board] if m not in modules]
        assert not missing, f"{board}: the initramfs lacks {missing}: the SD card's root is not found"
    for family, drivers in USB_DRIVERS.items():
        missing = [m for m in drivers if m not in modules]
        assert not missing, f"{family}: the initramfs lacks {missing}: no root on a USB disk"
