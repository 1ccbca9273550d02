#!/usr/bin/env bash
# Step 11 (Raspberry Pi OS base): the official Lite image, pinned by URL and SHA-256, turned
# into the same kind of rootfs tarball as 10-base-debian.sh (boot files under /boot/firmware).
# Exits 3 with a clear message when the image cannot be fetched (build.sh then falls back).
# Prints the tarball's path. Usage: 11-base-raspios.sh
set -euo pipefail
# shellcheck source=image/lib.sh
. "$(dirname "$0")/lib.sh"

url="${VENUECAM_RASPIOS_URL:-$RASPIOS_URL}"
sha="${VENUECAM_RASPIOS_SHA256:-$RASPIOS_SHA256}"
base="$CACHE_DIR/base-raspios-${sha:0:16}.tar"
if [[ -f "$base" ]]; then
  log "cached Raspberry Pi OS base: $base"
  echo "$base"
  exit 0
fi
mkdir -p "$CACHE_DIR"
xz_file="$CACHE_DIR/raspios-${sha:0:16}.img.xz"
if [[ ! -f "$xz_file" ]]; then
  log "fetching $url"
  if ! curl -fsSL --retry 2 --connect-timeout 10 -o "$xz_file.part" "$url"; then
    rm -f "$xz_file.part"
    log "cannot fetch the Raspberry Pi OS image from $url"
    exit 3
  fi
  got=$(sha256sum "$xz_file.part" | cut -d' ' -f1)
  if [[ "$got" != "$sha" ]]; then
    rm -f "$xz_file.part"
    die "Raspberry Pi OS image checksum mismatch: expected $sha, got $got ($url)"
  fi
  mv "$xz_file.part" "$xz_file"
fi

work="$WORK_DIR/raspios"
rm -rf "$work"
mkdir -p "$work/mnt" "$work/root"
img="$work/raspios.img"
xz -dc "$xz_file" >"$img"
cleanup() { if mountpoint -q "$work/mnt"; then umount "$work/mnt"; fi; rm -f "$img"; }
trap cleanup EXIT
# Partition offsets from the table; loop mounts need explicit offsets on these machines.
read_part() { sfdisk -d "$img" | awk -v n="$1" '/^\/.*: start=/ {i++; if (i == n) {gsub(/[=,]/, " "); print $4, $6}}'; }
read -r root_start root_size < <(read_part 2)
read -r boot_start _ < <(read_part 1)
mount -o ro,loop,offset=$((root_start * 512)),sizelimit=$((root_size * 512)) "$img" "$work/mnt"
tar -C "$work/mnt" --numeric-owner --xattrs -cf - . | tar -C "$work/root" --numeric-owner --xattrs -xpf -
umount "$work/mnt"
mkdir -p "$work/root/boot/firmware"
# The boot partition through mtools, not a mount: not every build host's kernel has vfat.
MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$img@@$((boot_start * 512))" "::/*" "$work/root/boot/firmware/"
rm -f "$work"/root/etc/ssh/ssh_host_*
tar -C "$work/root" --numeric-owner --xattrs -cf "$base.tmp" .
mv "$base.tmp" "$base"
rm -rf "$work"
echo "$base"
