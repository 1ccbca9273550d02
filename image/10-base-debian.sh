#!/usr/bin/env bash
# Step 10 (Debian base): an arm64 Debian rootfs with kernel, Pi firmware and the runtime
# packages, built with mmdebstrap into a cached tarball keyed by everything that shapes it.
# Prints the tarball's path. Usage: 10-base-debian.sh
set -euo pipefail
# shellcheck source=image/lib.sh
. "$(dirname "$0")/lib.sh"

packages=("${DEBIAN_BOOT_PACKAGES[@]}" "${RUNTIME_PACKAGES[@]}")
mirror=$(debian_mirror)
# Keyed by exactly what shapes the base: this script, its hooks and their files, the suite,
# components, mirror and packages (not the rest of config.sh: partitions, pins, ...).
key=$(cache_key "$IMAGE_DIR"/10-base-debian.sh "$IMAGE_DIR"/hooks-base-*.sh "$IMAGE_DIR"/files/base/* \
  "$DEBIAN_SUITE" "$DEBIAN_COMPONENTS" "$mirror" "${packages[*]}")
base="$CACHE_DIR/base-debian-$key.tar"
if [[ -f "$base" ]]; then
  log "cached Debian base: $base"
  echo "$base"
  exit 0
fi
command -v mmdebstrap >/dev/null || die "mmdebstrap missing: apt-get install mmdebstrap"
ensure_binfmt
mkdir -p "$CACHE_DIR"
components="${DEBIAN_COMPONENTS//,/ }"
log "building Debian $DEBIAN_SUITE arm64 base from $mirror (${#packages[@]} packages; cold: several minutes)"

tmp="$base.tmp"
rm -f "$tmp"
mmdebstrap --arch=arm64 --variant=minbase --mode=root --format=tar \
  --components="$DEBIAN_COMPONENTS" \
  --include="$(IFS=,; echo "${packages[*]}")" \
  --aptopt='Acquire::Retries "3"' \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --essential-hook="$IMAGE_DIR/hooks-base-essential.sh" \
  --customize-hook="$IMAGE_DIR/hooks-base-customize.sh" \
  "$DEBIAN_SUITE" "$tmp" \
  "deb $mirror $DEBIAN_SUITE $components" \
  "deb $mirror $DEBIAN_SUITE-updates $components" \
  "deb ${mirror%/}-security $DEBIAN_SUITE-security $components"
mv "$tmp" "$base"
log "Debian base cached: $base ($(du -h "$base" | cut -f1))"
echo "$base"
