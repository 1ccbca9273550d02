#!/usr/bin/env bash
# mmdebstrap customize hook of the Debian base ($1 = the new root): the one initramfs build,
# with a short module list, and the Pi boot files it feeds.
set -euo pipefail
root="$1"
files="$(cd "$(dirname "$0")" && pwd)/files"
rm "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
cat "$files/initramfs-modules" >>"$root/etc/initramfs-tools/modules"
printf 'MODULES=list\nCOMPRESS=gzip\n' >"$root/etc/initramfs-tools/conf.d/venuecam"
cp "$files/raspi-firmware.default" "$root/etc/default/raspi-firmware"
version=$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)
mkdir -p "$root/boot/firmware"
chroot "$root" update-initramfs -c -k "$version"
if [[ -x "$root/etc/kernel/postinst.d/z50-raspi-firmware" ]]; then
  chroot "$root" /etc/kernel/postinst.d/z50-raspi-firmware "$version"
fi
# Every box makes its own ssh host keys on first boot.
rm -f "$root"/etc/ssh/ssh_host_*
