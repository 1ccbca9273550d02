#!/usr/bin/env bash
# mmdebstrap customize hook of the Debian base ($1 = the new root): the one initramfs build
# and the Pi boot partition it feeds (kernel, initrd, DTBs, GPU firmware, config.txt,
# cmdline.txt), written by raspi-firmware's own hook from image/files/ so a kernel update
# on the box rewrites them the same way.
set -euo pipefail
root="$1"
files="$(cd "$(dirname "$0")" && pwd)/files/base"
rm "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
# MODULES=most: every storage, bus and file-system driver, so the root is found on each
# model's SD host (bcm2835 sdhost on Pi 3 / Zero 2 W, sdhci-iproc with its regulators on
# Pi 4 / 400 / CM4) and on a USB disk (dwc2 or xhci behind PCIe), not only where we looked.
printf 'MODULES=most\nCOMPRESS=zstd\n' >"$root/etc/initramfs-tools/conf.d/venuecam"
install -m 0644 "$files/raspi-firmware.default" "$root/etc/default/raspi-firmware"
install -m 0644 "$files/raspi-firmware-custom" "$root/etc/default/raspi-firmware-custom"
install -m 0644 "$files/raspi-extra-cmdline" "$root/etc/default/raspi-extra-cmdline"
version=$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
mkdir -p "$root/boot/firmware"
chroot "$root" update-initramfs -c -k "$version"
# raspi-firmware's postinst copied the GPU firmware already; its kernel hook writes the rest.
DEB_MAINT_PARAMS=configure chroot "$root" /etc/kernel/postinst.d/z50-raspi-firmware "$version"
# Every box makes its own ssh host keys on first boot.
rm -f "$root"/etc/ssh/ssh_host_*
