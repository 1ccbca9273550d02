"""config.txt read the way the Raspberry Pi firmware reads it, for one model at a time.

What the firmware does that matters here: `key=value` settings, `#` comments, the
`initramfs FILE [followkernel]` line, and conditional sections: a `[filter]` line starts a
section that applies only where the filter matches the board; filters stacked with no
setting between them must all match; `[all]` ends the conditions. Later settings win. The
defaults it falls back to (kernel image, device tree by board, GPU firmware by board) are
the ones that apply to a 64-bit boot of the models we claim.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Board:
    name: str
    filters: frozenset[str]  # the [section] filters that match this board
    upstream_dtb: str  # device tree under upstream_kernel=1 (mainline names)
    downstream_dtb: str  # device tree of the Raspberry Pi kernel
    gpu_firmware: tuple[str, ...]  # what the firmware must find on the FAT partition


BOARDS = {
    "3B": Board("3B", frozenset({"pi3"}), "bcm2837-rpi-3-b.dtb", "bcm2710-rpi-3-b.dtb",
                ("bootcode.bin", "start.elf", "fixup.dat")),
    "3B+": Board("3B+", frozenset({"pi3", "pi3+"}), "bcm2837-rpi-3-b-plus.dtb", "bcm2710-rpi-3-b-plus.dtb",
                 ("bootcode.bin", "start.elf", "fixup.dat")),
    "3A+": Board("3A+", frozenset({"pi3", "pi3+"}), "bcm2837-rpi-3-a-plus.dtb", "bcm2710-rpi-3-a-plus.dtb",
                 ("bootcode.bin", "start.elf", "fixup.dat")),
    "Zero2W": Board("Zero2W", frozenset({"pi0", "pi02"}), "bcm2837-rpi-zero-2-w.dtb",
                    "bcm2710-rpi-zero-2-w.dtb", ("bootcode.bin", "start.elf", "fixup.dat")),
    "4B": Board("4B", frozenset({"pi4"}), "bcm2711-rpi-4-b.dtb", "bcm2711-rpi-4-b.dtb",
                ("start4.elf", "fixup4.dat")),
    "400": Board("400", frozenset({"pi4", "pi400"}), "bcm2711-rpi-400.dtb", "bcm2711-rpi-400.dtb",
                 ("start4.elf", "fixup4.dat")),
    "CM4": Board("CM4", frozenset({"pi4", "cm4"}), "bcm2711-rpi-cm4-io.dtb", "bcm2711-rpi-cm4.dtb",
                 ("start4.elf", "fixup4.dat")),
    "5": Board("5", frozenset({"pi5"}), "bcm2712-rpi-5-b.dtb", "bcm2712-rpi-5-b.dtb", ()),
}  # fmt: skip
# Raspberry Pi Imager's device tags: which boards each one stands for.
IMAGER_DEVICES = {
    "pi3-64bit": ("3B", "3B+", "3A+", "Zero2W"),
    "pi4-64bit": ("4B", "400", "CM4"),
    "pi5-64bit": ("5",),
}
# The emulated machines, as the firmware would see them.
MODEL_OF = {"pi3": "3B", "pi4": "4B"}


def _board(model: str) -> Board:
    return BOARDS[MODEL_OF.get(model, model)]


def effective(text: str, model: str) -> dict[str, str]:
    """The settings that apply on `model` (a BOARDS key, or "pi3"/"pi4")."""
    board = _board(model)
    settings: dict[str, str] = {}
    active, stacking = True, False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].strip().lower()
            match = name == "all" or name in board.filters
            if name == "all":
                active = True
            elif name == "none":
                active = False
            else:
                active = (active and match) if stacking else match
            stacking = name != "all"
            continue
        stacking = False
        if not active:
            continue
        if line.startswith("initramfs "):
            settings["initramfs"] = line.split()[1]
        elif "=" in line:
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    settings.setdefault("kernel", "kernel8.img" if settings.get("arm_64bit") == "1" else "kernel7.img")
    return settings


def device_tree(model: str, settings: dict[str, str]) -> str:
    """The device tree the firmware loads on `model`: device_tree=, else by board name
    (mainline names under upstream_kernel=1, the Raspberry Pi kernel's otherwise)."""
    board = _board(model)
    if settings.get("device_tree"):
        return settings["device_tree"]
    return board.upstream_dtb if settings.get("upstream_kernel") == "1" else board.downstream_dtb


def gpu_firmware(model: str, settings: dict[str, str]) -> tuple[str, ...]:
    board = _board(model)
    files = list(board.gpu_firmware)
    if "start_file" in settings:
        files = [f for f in files if not f.startswith("start")] + [settings["start_file"]]
    if "fixup_file" in settings:
        files = [f for f in files if not f.startswith("fixup")] + [settings["fixup_file"]]
    return tuple(files)


def list_fat(disk: Path, offset: int) -> set[str]:
    """Every file name at the top of the FAT partition (lower case: FAT is case-blind)."""
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    out = subprocess.run(
        ["mdir", "-b", "-i", f"{disk}@@{offset}", "::/"], capture_output=True, text=True, check=True, env=env
    ).stdout
    return {line.rsplit("/", 1)[-1].lower() for line in out.split() if line.strip()}
