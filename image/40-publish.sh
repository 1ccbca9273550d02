#!/usr/bin/env bash
# Step 40: what gets published next to the raw image: NAME.img.xz, NAME.img.xz.sha256,
# NAME.bmap (for `bmaptool copy NAME.img.xz /dev/sdX`), NAME.json (a Raspberry Pi Imager
# repository with one entry) and its icon NAME.svg. Usage: 40-publish.sh NAME.img [URL_BASE]
# (URL_BASE or VENUECAM_IMAGE_URL_BASE: where the files will be downloaded from).
set -euo pipefail
# shellcheck source=image/lib.sh
. "$(dirname "$0")/lib.sh"

img="$1"
dir=$(cd "$(dirname "$img")" && pwd)
name=$(basename "$img" .img)
# Imager needs absolute URLs: where the files will be served from, or this directory.
url_base="${2:-${VENUECAM_IMAGE_URL_BASE:-file://$dir}}"
command -v bmaptool >/dev/null || die "bmaptool missing: apt-get install bmap-tools"
bmaptool create -o "$dir/$name.bmap" "$img"
# -T0: every core; level 1: on 2 cores level 3 took ~4 min of a cold build for ~10% less size.
xz -T0 -1 -f -k "$img"
(cd "$dir" && sha256sum "$name.img.xz" >"$name.img.xz.sha256")
install -m 0644 "$IMAGE_DIR/files/venuecam-icon.svg" "$dir/$name.svg"
python3 - "$dir/$name.img" "$url_base" "${VENUECAM_VERSION:-}" "${VENUECAM_IMAGE_DEVICES:-$DEVICES_DEBIAN}" \
  >"$dir/$name.json" <<'PY'
import datetime, hashlib, json, os, sys
img, url_base, version, devices = sys.argv[1:5]
xz = img + ".xz"
name = os.path.basename(img)[: -len(".img")]
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
base = url_base.rstrip("/") + "/"
entry = {
    "name": f"venuecam {version}".strip(),
    "description": "venuecam recording appliance (arm64). Put venuecam.toml on the boot partition.",
    "icon": base + name + ".svg",
    "url": base + os.path.basename(xz),
    "extract_size": os.path.getsize(img),
    "extract_sha256": sha(img),
    "image_download_size": os.path.getsize(xz),
    "image_download_sha256": sha(xz),
    "release_date": datetime.date.today().isoformat(),
    # The box is set up by venuecam.toml on its boot partition, not by Imager's settings
    # (whose firstrun.sh or cloud-init files nothing here would run): no customization.
    "init_format": "none",
    "architecture": "arm64",
    "devices": devices.split(","),
}
json.dump({"os_list": [entry]}, sys.stdout, indent=2)
print()
PY
log "published in $dir: $name.img.xz $name.img.xz.sha256 $name.bmap $name.json $name.svg"
