#!/usr/bin/env bash
# `make image`: build the venuecam arm64 SD-card image into build/image/.
#   VENUECAM_IMAGE_BASE=debian (default) | raspios   which base to customize; raspios falls
#                                                    back to debian when it cannot be fetched
#   VENUECAM_IMAGE_PUBLISH=0                          stop at the raw .img (tests, quick runs)
#   IMAGE_NAME=venuecam-arm64                         output file names
# The base is cached in /var/cache/venuecam/image/ (VENUECAM_IMAGE_CACHE), keyed by what
# makes it, so a re-run (or a fresh clone on this machine) starts from
# there; each step prints its progress and duration. Needs root (chroot, mounts).
set -euo pipefail
# shellcheck source=image/lib.sh
. "$(dirname "$0")/lib.sh"

[[ $(id -u) -eq 0 ]] || die "needs root (chroot and mounts): sudo make image"
t_start=$SECONDS
mkdir -p "$OUT_DIR" "$WORK_DIR" "$CACHE_DIR"
img="$OUT_DIR/$IMAGE_NAME.img"

choose_base() {
  local base rc=0
  if [[ "${VENUECAM_IMAGE_BASE:-debian}" == raspios ]]; then
    base=$("$IMAGE_DIR/11-base-raspios.sh") || rc=$?
    if ((rc == 0)); then echo "$base"; return; fi
    ((rc == 3)) || die "the Raspberry Pi OS base failed (exit $rc)"
    log "falling back to the Debian base (built here with mmdebstrap)"
  fi
  "$IMAGE_DIR/10-base-debian.sh"
}

log "building $img"
base_tar=""
run_base() {
  base_tar=$(choose_base)
  # Debian's kernel stops at the Pi 4 (see DEVICES_* in config.sh); Raspberry Pi OS has the
  # Pi 5, and a larger root (its Lite image's is ~2 GB), so its slots are larger too.
  case "$base_tar" in
    *raspios*) VENUECAM_IMAGE_DEVICES="$DEVICES_RASPIOS"; ROOT_SLOT_MB_OVERRIDE=4096 ;;
    *) VENUECAM_IMAGE_DEVICES="$DEVICES_DEBIAN"; ROOT_SLOT_MB_OVERRIDE=$ROOT_SLOT_MB ;;
  esac
  export VENUECAM_IMAGE_DEVICES ROOT_SLOT_MB_OVERRIDE
}
step "1/5 base rootfs" run_base
wheels=""
run_wheels() {
  wheels=$("$IMAGE_DIR/15-wheels.sh")
  VENUECAM_VERSION=$(find "$wheels" -name 'venuecam-*.whl' -printf '%f\n' | cut -d- -f2)
  export VENUECAM_VERSION
}
step "2/5 app and runtime wheels" run_wheels
step "3/5 customize in a chroot" "$IMAGE_DIR/20-customize.sh" "$base_tar" "$wheels"
step "4/5 assemble partitions" "$IMAGE_DIR/30-assemble.sh" "$img"
if [[ "${VENUECAM_IMAGE_PUBLISH:-1}" != 0 ]]; then
  step "5/5 compress, checksum, bmap, Imager JSON" "$IMAGE_DIR/40-publish.sh" "$img"
else
  rm -f "${img%.img}".{img.xz,img.xz.sha256,bmap,json}  # no stale files beside a new .img
  log "5/5 publish skipped (VENUECAM_IMAGE_PUBLISH=0)"
fi
log "image ready in $((SECONDS - t_start)) s: $img"
