"""What `make image` publishes, checked as a person flashing a card would use it.

- the .img.xz, its .sha256 and the Imager JSON agree, and the JSON is what Raspberry Pi
  Imager accepts (imager-os-list.schema.json: required fields, absolute URLs, an icon,
  init_format "none": the box is set up by venuecam.toml, not by Imager's settings);
- `bmaptool copy` of the published .img.xz + .bmap onto a file gives the raw image's bytes;
- the partition table: boot, root A, root B (same size, for whole-system updates), data.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import jsonschema
import pytest

from conftest import free_port

REPO = Path(__file__).resolve().parents[2]
SCHEMA = Path(__file__).with_name("imager-os-list.schema.json")

pytestmark = [pytest.mark.slow, pytest.mark.root]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def test_imager_json_matches_the_files_and_imagers_schema(image: Path) -> None:
    d, name = image.parent, image.stem
    xz = d / f"{name}.img.xz"
    line = (d / f"{name}.img.xz.sha256").read_text().split()
    assert line == [sha256(xz), xz.name]
    doc = json.loads((d / f"{name}.json").read_text())
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    entry = doc["os_list"][0]
    assert entry["image_download_sha256"] == line[0]
    assert entry["image_download_size"] == xz.stat().st_size
    assert entry["extract_size"] == image.stat().st_size
    assert entry["extract_sha256"] == sha256(image)
    assert entry["url"] == f"https://downloads.example.com/venuecam/0.1.0/{xz.name}"
    assert entry["init_format"] == "none"
    # The Debian base claims what its kernel boots: Pi 3 family, Zero 2 W, Pi 4 family; no Pi 5.
    assert sorted(entry["devices"]) == ["pi3-64bit", "pi4-64bit"]
    icon = d / entry["icon"].rsplit("/", 1)[1]
    assert icon.read_text().lstrip().startswith("<svg")


def test_bmaptool_copy_gives_the_raw_image(image: Path, tmp_path: Path) -> None:
    d, name = image.parent, image.stem
    out = tmp_path / "card.img"
    proc = subprocess.run(
        ["bmaptool", "copy", "--bmap", str(d / f"{name}.bmap"), str(d / f"{name}.img.xz"), str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size == image.stat().st_size
    assert sha256(out) == sha256(image)
    # bmap skips the holes: what it wrote is far less than the image.
    assert out.stat().st_blocks * 512 < image.stat().st_size / 2


def test_partition_table_has_two_root_slots(image: Path) -> None:
    table = json.loads(subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, check=True).stdout)
    parts = table["partitiontable"]["partitions"]
    assert [p["type"] for p in parts] == ["c", "83", "83", "83"]
    assert parts[1]["size"] == parts[2]["size"] >= 2048 * 2048  # root A == root B, at least 2 GiB
    assert table["partitiontable"]["id"] == "0x7e5ca3a0"
    labels = []
    for p in parts[1:]:
        blkid = subprocess.run(
            ["blkid", "-p", "-O", str(p["start"] * 512), "-s", "LABEL", "-o", "value", str(image)],
            capture_output=True, text=True,
        )  # fmt: skip
        labels.append(blkid.stdout.strip())
    assert labels == ["rootfs-a", "rootfs-b", "venuecam-data"]


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


def test_the_raspios_pin_is_a_trixie_release() -> None:
    config = (REPO / "image/config.sh").read_text()
    url = next(line.split('"')[1] for line in config.splitlines() if line.startswith("RASPIOS_URL="))
    sha = next(line.split('"')[1] for line in config.splitlines() if line.startswith("RASPIOS_SHA256="))
    assert url.startswith("https://downloads.raspberrypi.com/raspios_lite_arm64/images/")
    assert "-raspios-trixie-arm64-lite.img.xz" in url
    assert len(sha) == 64 and int(sha, 16) >= 0
