#!/usr/bin/env bash
# Pinned inputs of the image build: sourced by the steps, never executed on its own.
# Changing anything here (or a step script) changes the cache key of the base it affects.
# shellcheck disable=SC2034  # every variable here is used by a step that sources this file

# ---- Base A: the official Raspberry Pi OS Lite (arm64, Debian 13 trixie), pinned by URL and
# SHA-256 of the .img.xz as published beside it (<url>.sha256). Re-check both when bumping.
# Its Raspberry Pi kernel (6.18) and archive bring the Pi 5, libcamera and picamera2.
RASPIOS_URL="https://downloads.raspberrypi.com/raspios_lite_arm64/images/raspios_lite_arm64-2026-09-15/2026-09-15-raspios-trixie-arm64-lite.img.xz"
RASPIOS_SHA256="cdf4f3bfac35ae947b46e4e767f935453810549779ac3290e05a6754aee627e5"
# Installed on that base only: the Pi camera stack comes from Raspberry Pi's own archive.
RASPIOS_EXTRA_PACKAGES=(python3-picamera2 python3-libcamera)

# ---- Base B: Debian 13 (trixie) arm64 built with mmdebstrap (works here and in CI).
DEBIAN_SUITE="trixie"
# raspi-firmware and the Wi-Fi firmware live in non-free-firmware.
DEBIAN_COMPONENTS="main,non-free-firmware"
# Packages that make a bootable, field-ready Pi out of Debian: kernel and GPU firmware,
# Wi-Fi firmware and the regulatory database, a clock saved across power cuts, mDNS.
DEBIAN_BOOT_PACKAGES=(
  systemd systemd-sysv systemd-timesyncd udev dbus kmod initramfs-tools zstd
  linux-image-arm64 raspi-firmware firmware-brcm80211 wireless-regdb fake-hwclock
  network-manager wpasupplicant rfkill iw iproute2 ca-certificates tzdata
  avahi-daemon libnss-mdns
)

# ---- Runtime packages: installed on either base by the customization step.
# python3-libgpiod drives the LEDs through /dev/gpiochip* (our gpiozero pin factory uses it);
# gpiod's tools (gpioinfo, gpioget) are how an installer or a test reads the lines.
# Python libraries come as wheels downloaded on the host (15-wheels.sh), not from apt.
RUNTIME_PACKAGES=(
  python3 python3-venv python3-libgpiod gpiod ffmpeg openssh-server sqlite3
  e2fsprogs dosfstools fdisk util-linux
)
# The Python the image runs (the wheels are fetched for it).
IMAGE_PYTHON="3.13"

# ---- Partitions (MiB). Boot, root slot A, root slot B (the OTA system slot: same size,
# empty until an update writes it), data (/var/lib/venuecam: small in the image, grown to
# the end of the card on first boot). The table cannot change on a box in the field, so
# the slot size leaves room for releases to grow.
BOOT_MB=256
ROOT_SLOT_MB=2048
DATA_MB=64
# Fixed MBR disk identifier, so root=PARTUUID=<id>-02 works on a Pi and under QEMU alike.
DISK_ID="0x7e5ca3a0"
PARTUUID_ROOT_A="7e5ca3a0-02"
PARTUUID_ROOT_B="7e5ca3a0-03"
PARTUUID_DATA="7e5ca3a0-04"

# ---- What the image claims in Raspberry Pi Imager's `devices` (and what the boot-partition
# test checks the firmware files for). Debian's kernel has no Pi 5 SD host (sdhci-brcmstb)
# nor its RP1 south bridge (Ethernet, USB, GPIO), so the Pi 5 is claimed on Raspberry Pi OS only.
DEVICES_DEBIAN="pi4-64bit,pi3-64bit"
DEVICES_RASPIOS="pi5-64bit,pi4-64bit,pi3-64bit"

# ---- Where things go.
IMAGE_NAME="${IMAGE_NAME:-venuecam-arm64}"
