#!/usr/bin/env bash
# Helpers shared by the image steps: paths, progress lines, cache keys, chroot mounts.
# Sourced, never executed. Each step stays small and strict (set -euo pipefail in the step).
# shellcheck disable=SC2034  # paths here are used by the steps that source this file

IMAGE_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$IMAGE_DIR/.." && pwd)"
BUILD_DIR="${VENUECAM_BUILD_DIR:-$REPO_DIR/build}"
# The base and initramfs cache lives outside the checkout, so a fresh clone (CI) on the same
# machine starts warm; keyed by every input, so a stale entry is never used.
CACHE_DIR="${VENUECAM_IMAGE_CACHE:-/var/cache/venuecam/image}"
OUT_DIR="${VENUECAM_IMAGE_OUT:-$BUILD_DIR/image}"
WORK_DIR="${VENUECAM_IMAGE_WORK:-$BUILD_DIR/image-work}"

# shellcheck source=image/config.sh
. "$IMAGE_DIR/config.sh"

log() { printf '[image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }

# Run a step with a progress line and its duration: step NAME COMMAND...
step() {
  local name="$1"; shift
  local t0=$SECONDS
  log "==> $name"
  "$@"
  log "<== $name done in $((SECONDS - t0)) s"
}

# A short hash of files and strings: the cache key of whatever they produce.
cache_key() {
  local item
  for item in "$@"; do
    if [[ -f "$item" ]]; then sha256sum <"$item"; else printf '%s\n' "$item"; fi
  done | sha256sum | cut -c1-16
}

# The Debian mirror apt uses on this machine (the first Debian URI), so mmdebstrap fetches
# from the same place.
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(grep -hoE '(URIs:[[:space:]]*|^deb[[:space:]]+)https?://[^[:space:]]*/debian/?([[:space:]]|$)' \
        /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | grep -oE 'https?://[^[:space:]]*' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# Foreign binaries run through qemu-user-static: binfmt_misc must be mounted and registered.
ensure_binfmt() {
  [[ -e /proc/sys/fs/binfmt_misc/status ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
    || die "cannot mount binfmt_misc (needs root): arm64 binaries cannot run here"
  if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    if command -v update-binfmts >/dev/null; then update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true; fi
  fi
  [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] \
    || die "no qemu-aarch64 binfmt handler: apt-get install qemu-user-static binfmt-support"
}

# Mount what a chroot needs; undo with chroot_umount (the caller traps it).
chroot_mount() {
  local root="$1"
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --bind /dev "$root/dev"
  mount --bind /dev/pts "$root/dev/pts"
  mount -t tmpfs tmpfs "$root/tmp"
  mount -t tmpfs tmpfs "$root/run"
}

chroot_umount() {
  local root="$1" m
  for m in run tmp dev/pts dev sys proc; do
    mountpoint -q "$root/$m" && umount -l "$root/$m"
  done
  return 0
}

in_chroot() {
  local root="$1"; shift
  LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive chroot "$root" "$@"
}
