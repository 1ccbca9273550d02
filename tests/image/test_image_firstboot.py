"""First boot (provisioning/firstboot.py) against a directory tree: fast, no QEMU.

The same script runs on the box at every boot; here `--root DIR --no-system` points it at
a fake root with a boot partition directory, so every file it writes can be inspected.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import API_TOKEN, S3_SECRET, base_sections, render_toml
from venuecam import config
from venuecam.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
FIRSTBOOT = REPO / "provisioning" / "firstboot.py"
WIFI_PSK = "wifi-secret-psk-123"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBvZ2yXc3S0qfZpC9dN6ZsB6m5cWZbqmXb0qYkVQmE3P test@host"


def provision_section(**over: object) -> dict[str, object]:
    return {
        "hostname": "court-7",
        "ssh_authorized_keys": [SSH_KEY],
        "wifi_ssid": "Venue WiFi",
        "wifi_psk": WIFI_PSK,
        "wifi_country": "ID",
        **over,
    }


def box_toml(tmp: Path, **over: object) -> str:
    sections = base_sections(tmp, provision=provision_section(), **over)  # type: ignore[arg-type]
    return render_toml(sections)


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A fake root: /etc with passwd (the venuecam user), hosts, hostname; an empty boot dir."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "boot/firmware").mkdir(parents=True)
    (root / "run").mkdir()
    (root / "etc/passwd").write_text(
        "root:x:0:0::/root:/bin/sh\nvenuecam:x:990:990::/var/lib/venuecam:/bin/false\n"
    )
    (root / "etc/hostname").write_text("venuecam\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tvenuecam\n")
    return root


def run_firstboot(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(FIRSTBOOT), "--root", str(root), "--no-system"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file and symlink under root with its content (or target) and mode."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes() + oct(p.stat().st_mode).encode()
    return out


def test_first_boot_installs_config_applies_it_and_removes_secrets_from_boot(
    box: Path, tmp_path: Path
) -> None:
    (box / "boot/firmware/venuecam.toml").write_text(box_toml(tmp_path))
    proc = run_firstboot(box)
    assert proc.returncode == 0, proc.stderr

    installed = box / "etc/venuecam/venuecam.toml"
    assert stat.S_IMODE(installed.stat().st_mode) == 0o600
    if os.geteuid() == 0:
        assert (installed.stat().st_uid, installed.stat().st_gid) == (990, 990)
    assert config.load(installed).provision.hostname == "court-7"

    assert (box / "etc/hostname").read_text() == "court-7\n"
    assert "127.0.1.1\tcourt-7" in (box / "etc/hosts").read_text()
    assert "venuecam" not in (box / "etc/hosts").read_text().split("127.0.1.1")[1]
    assert os.readlink(box / "etc/localtime") == "/usr/share/zoneinfo/Asia/Jakarta"
    assert (box / "etc/timezone").read_text() == "Asia/Jakarta\n"
    keys = box / "root/.ssh/authorized_keys"
    assert SSH_KEY in keys.read_text()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    wifi = box / "etc/NetworkManager/system-connections/venuecam-wifi.nmconnection"
    assert "ssid=Venue WiFi" in wifi.read_text() and f"psk={WIFI_PSK}" in wifi.read_text()
    assert stat.S_IMODE(wifi.stat().st_mode) == 0o600
    assert "ieee80211_regdom=ID" in (box / "etc/modprobe.d/venuecam-wifi.conf").read_text()

    # The FAT partition keeps no secret: the file is gone, the masked copy has none.
    assert not (box / "boot/firmware/venuecam.toml").exists()
    applied = (box / "boot/firmware/venuecam.toml.applied").read_text()
    assert "court-7" in applied
    for secret in (API_TOKEN, S3_SECRET, WIFI_PSK):
        assert secret not in applied
        assert secret not in proc.stderr
    assert not (box / "run/venuecam-provision.error").exists()


def test_rerun_is_safe_and_changes_nothing(box: Path, tmp_path: Path) -> None:
    (box / "boot/firmware/venuecam.toml").write_text(box_toml(tmp_path))
    assert run_firstboot(box).returncode == 0
    before = snapshot(box)
    again = run_firstboot(box)
    assert again.returncode == 0, again.stderr
    assert snapshot(box) == before


def test_bad_file_changes_nothing_and_says_what_is_wrong(box: Path, tmp_path: Path) -> None:
    # A box provisioned earlier gets a broken file: it keeps everything it had.
    (box / "boot/firmware/venuecam.toml").write_text(box_toml(tmp_path))
    assert run_firstboot(box).returncode == 0
    bad = box_toml(tmp_path, device={"timezone": "Mars/Olympus"})
    (box / "boot/firmware/venuecam.toml").write_text(bad)
    before = snapshot(box)

    proc = run_firstboot(box)

    assert proc.returncode == 1
    assert "device.timezone" in proc.stderr and "Mars/Olympus" in proc.stderr
    for secret in (API_TOKEN, S3_SECRET, WIFI_PSK):
        assert secret not in proc.stderr
    error_state = box / "run/venuecam-provision.error"
    assert "device.timezone" in error_state.read_text()
    after = snapshot(box)
    del after["run/venuecam-provision.error"]
    assert after == before  # the bad file itself stays on the boot partition to be fixed


def test_bad_provision_section_is_rejected_before_anything_changes(box: Path, tmp_path: Path) -> None:
    sections = base_sections(tmp_path, provision=provision_section(hostname="not a hostname!"))
    (box / "boot/firmware/venuecam.toml").write_text(render_toml(sections))
    before = snapshot(box)
    proc = run_firstboot(box)
    assert proc.returncode == 1
    assert "provision.hostname" in proc.stderr
    after = snapshot(box)
    del after["run/venuecam-provision.error"]
    assert after == before


def test_no_config_anywhere_is_a_clear_error(box: Path) -> None:
    proc = run_firstboot(box)
    assert proc.returncode == 1
    assert "no venuecam.toml on the boot partition" in proc.stderr
    assert (box / "run/venuecam-provision.error").exists()


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"hostname": "-bad"}, "provision.hostname"),
        ({"ssh_authorized_keys": ["not a key"]}, "provision.ssh_authorized_keys[0]"),
        ({"wifi_ssid": "", "wifi_psk": "abcdefgh12"}, "provision.wifi_psk"),
        ({"wifi_psk": "short"}, "provision.wifi_psk"),
        ({"wifi_country": "indonesia"}, "provision.wifi_country"),
    ],
)
def test_provision_section_validation(tmp_path: Path, over: dict[str, object], key: str) -> None:
    path = tmp_path / "venuecam.toml"
    path.write_text(render_toml(base_sections(tmp_path, provision=provision_section(**over))))
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        config.load(path)


def test_example_config_is_valid() -> None:
    cfg = config.load(REPO / "provisioning" / "venuecam.example.toml")
    assert cfg.device.device_id


# ---------------------------------------------------------------- files as people save them


def test_windows_notepad_file_with_bom_and_crlf_is_accepted(box: Path, tmp_path: Path) -> None:
    text = box_toml(tmp_path).replace("\n", "\r\n")
    (box / "boot/firmware/venuecam.toml").write_bytes(b"\xef\xbb\xbf" + text.encode())
    proc = run_firstboot(box)
    assert proc.returncode == 0, proc.stderr
    installed = (box / "etc/venuecam/venuecam.toml").read_bytes()
    assert not installed.startswith(b"\xef\xbb\xbf") and b"\r" not in installed
    assert config.load(box / "etc/venuecam/venuecam.toml").provision.hostname == "court-7"


def test_venuecam_toml_txt_is_found_and_said_so(box: Path, tmp_path: Path) -> None:
    (box / "boot/firmware/venuecam.toml.txt").write_text(box_toml(tmp_path))
    proc = run_firstboot(box)
    assert proc.returncode == 0, proc.stderr
    assert "found " in proc.stderr and "venuecam.toml.txt" in proc.stderr and "using it" in proc.stderr
    assert (box / "etc/hostname").read_text() == "court-7\n"
    assert not (box / "boot/firmware/venuecam.toml.txt").exists()
    assert (box / "boot/firmware/venuecam.toml.applied").exists()


def test_wifi_without_country_is_rejected_and_changes_nothing(box: Path, tmp_path: Path) -> None:
    sections = base_sections(tmp_path, provision=provision_section(wifi_country=""))
    (box / "boot/firmware/venuecam.toml").write_text(render_toml(sections))
    before = snapshot(box)
    proc = run_firstboot(box)
    assert proc.returncode == 1
    assert "provision.wifi_country: required" in proc.stderr
    after = snapshot(box)
    del after["run/venuecam-provision.error"]
    assert after == before


@pytest.mark.root
def test_no_byte_of_the_secrets_is_left_on_the_fat_partition(box: Path, tmp_path: Path) -> None:
    """A real FAT32 file system (as on the card), mounted; the file copied on as a person
    would; after first boot not one secret's bytes are anywhere in the partition's image."""
    if os.geteuid() != 0:
        pytest.skip("needs root (mount)")
    if "vfat" not in Path("/proc/filesystems").read_text():
        # This machine's kernel has no FAT driver; the emulated Pi boot makes the same check
        # on the card (tests/image/test_pi_boot.py).
        pytest.skip("this kernel has no vfat file system")
    fat = tmp_path / "boot.vfat"
    subprocess.run(["mkfs.vfat", "-F", "32", "-n", "BOOTFS", "-C", str(fat), str(64 * 1024)], check=True,
                   capture_output=True)  # fmt: skip
    source = tmp_path / "venuecam.toml"
    source.write_text(box_toml(tmp_path))
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mcopy", "-i", str(fat), str(source), "::/venuecam.toml"], check=True, env=env)
    raw = fat.read_bytes()
    for secret in (API_TOKEN, S3_SECRET, WIFI_PSK):
        assert secret.encode() in raw  # the test can see them before
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    size = fat.stat().st_size
    subprocess.run(["mount", "-o", f"loop,offset=0,sizelimit={size}", str(fat), str(mnt)], check=True)
    try:
        proc = subprocess.run(
            [sys.executable, str(FIRSTBOOT), "--root", str(box), "--boot-dir", str(mnt), "--no-system"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert sorted(p.name for p in mnt.iterdir()) == ["venuecam.toml.applied"]
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    raw = fat.read_bytes()
    for secret in (API_TOKEN, S3_SECRET, WIFI_PSK):
        assert secret.encode() not in raw, f"{secret[:4]}... is still in the FAT partition"
    # The rest of what was applied is still readable where it belongs.
    assert "court-7" in (box / "etc/hostname").read_text()
