#!/usr/bin/env bash
# Pinned inputs of the image build: sourced by the steps, never executed on its own.
# Changing anything here (or a step script) changes the cache key of the base it affects.
# shellcheck disable=SC2034  # every variable here is used by a step that sources this file

# ---- Base A: the official Raspberry Pi OS Lite (arm64), pinned by URL and SHA-256.
# Checksum as published beside the image (<url>.sha256); re-check it when bumping the date.
RASPIOS_URL="https://downloads.raspberrypi.com/raspios_lite_arm64/images/raspios_lite_arm64-2025-05-13/2025-05-13-raspios-bookworm-arm64-lite.img.xz"
RASPIOS_SHA256="62d025b9bc7ca0e1facfec74ae56ac13978b6745c58177f081d39fbb8041ed45"

# ---- Base B: Debian bookworm arm64 built with mmdebstrap (works here and in CI).
DEBIAN_SUITE="bookworm"
# raspi-firmware and the Wi-Fi firmware live in non-free-firmware.
DEBIAN_COMPONENTS="main,non-free-firmware"
# Packages that make a bootable Pi (and a QEMU virt machine) out of Debian.
DEBIAN_BOOT_PACKAGES=(
  systemd systemd-sysv systemd-timesyncd udev dbus kmod initramfs-tools
  linux-image-arm64 raspi-firmware firmware-brcm80211 fake-hwclock
  network-manager wpasupplicant rfkill iw iproute2 ca-certificates tzdata
)

# ---- Runtime packages: installed on either base by the customization step.
# Python libraries that bookworm ships too old (boto3 1.26, peewee 3.14, gpiozero 1.6)
# come as pure-Python wheels downloaded on the host instead (see 20-wheels.sh).
RUNTIME_PACKAGES=(
  python3 python3-venv ffmpeg openssh-server sqlite3
  e2fsprogs dosfstools fdisk util-linux
)

# ---- Partitions (MiB). The data partition is small in the image and grows on first boot.
BOOT_MB=256
ROOT_EXTRA_MB=384   # free space left on root above what the files need
DATA_MB=64
# Fixed MBR disk identifier, so root=PARTUUID=<id>-02 works on a Pi and under QEMU alike.
DISK_ID="0x7e5ca3a0"
PARTUUID_ROOT="7e5ca3a0-02"

# ---- Where things go.
IMAGE_NAME="${IMAGE_NAME:-venuecam-arm64}"
