#!/usr/bin/env bash
# mmdebstrap essential hook of the Debian base ($1 = the new root). Under emulation each
# mkinitramfs run costs minutes, and the kernel, raspi-firmware and initramfs-tools each
# trigger one: update-initramfs is a no-op while packages install (hooks-base-customize.sh
# restores it and runs it once).
set -euo pipefail
root="$1"
chroot "$root" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
printf '#!/bin/sh\nexit 0\n' >"$root/usr/sbin/update-initramfs"
chmod 755 "$root/usr/sbin/update-initramfs"
