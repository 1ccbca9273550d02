#!/usr/bin/env bash
# Step 40: what gets published next to the raw image: NAME.img.xz, NAME.img.xz.sha256,
# NAME.bmap (for `bmaptool copy NAME.img.xz /dev/sdX`) and NAME.json, a Raspberry Pi Imager
# repository with one entry. Usage: 40-publish.sh NAME.img [DOWNLOAD_URL_BASE]
set -euo pipefail
# shellcheck source=image/lib.sh
. "$(dirname "$0")/lib.sh"

img="$1"
url_base="${2:-${VENUECAM_IMAGE_URL_BASE:-}}"
dir=$(dirname "$img")
name=$(basename "$img" .img)
command -v bmaptool >/dev/null || die "bmaptool missing: apt-get install bmap-tools"
bmaptool create -o "$dir/$name.bmap" "$img"
# -T0: every core; level 1: on 2 cores level 3 took ~4 min of a cold build for ~10% less size.
xz -T0 -1 -f -k "$img"
(cd "$dir" && sha256sum "$name.img.xz" >"$name.img.xz.sha256")
python3 - "$img" "$name" "$url_base" "${VENUECAM_VERSION:-}" >"$dir/$name.json" <<'PY'
import datetime, hashlib, json, os, sys
img, name, url_base, version = sys.argv[1:5]
xz = img + ".xz"
def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
entry = {
    "name": f"venuecam {version}".strip(),
    "description": "venuecam recording appliance (arm64). Put venuecam.toml on the boot partition.",
    "url": (url_base.rstrip("/") + "/" if url_base else "") + os.path.basename(xz),
    "extract_size": os.path.getsize(img),
    "extract_sha256": sha(img),
    "image_download_size": os.path.getsize(xz),
    "image_download_sha256": sha(xz),
    "release_date": datetime.date.today().isoformat(),
    "devices": os.environ.get("VENUECAM_IMAGE_DEVICES", "pi4-64bit,pi3-64bit").split(","),
}
json.dump({"os_list": [entry]}, sys.stdout, indent=2)
print()
PY
log "published in $dir: $name.img.xz $name.img.xz.sha256 $name.bmap $name.json"
