#!/usr/bin/env bash
# Install Debian packages once: skipped when a stamp for this exact list exists, or when
# every package is already installed. Needs root; otherwise says what to install.
#   host-deps.sh BUILD_DIR PKG...              from the host's own suites
#   host-deps.sh --backports BUILD_DIR PKG...  from bookworm-backports on a Debian 12 host (the
#                                              source is added if missing); elsewhere as above
set -euo pipefail
backports=0
if [ "${1:-}" = --backports ]; then backports=1; shift; fi
build=$1; shift
pkgs=("$@")
stamp="$build/.apt-$backports-$(printf '%s\n' "${pkgs[@]}" | sort | md5sum | cut -c1-12)"
[ -f "$stamp" ] && exit 0

codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null || true)
target=()
if [ "$backports" = 1 ] && [ "$codename" = bookworm ]; then
  target=(-t bookworm-backports)
fi
lock=(-o DPkg::Lock::Timeout=900)

if [ ${#target[@]} -gt 0 ] && [ "$(id -u)" -eq 0 ] \
  && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "adding bookworm-backports to apt's sources (QEMU >= 9 for the emulated Pi 4)"
  cat >/etc/apt/sources.list.d/venuecam-backports.sources <<'SOURCES'
# venuecam (provisioning/host-deps.sh): QEMU >= 9 for the emulated Raspberry Pi 4 (raspi4b).
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  apt-get "${lock[@]}" update -qq
fi

# Missing: not installed, or (backports) older than what backports has.
missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  elif [ ${#target[@]} -gt 0 ]; then
    have=$(dpkg-query -W -f='${Version}' "$p")
    # apt-cache policy: a version line, then the lines of the sources that have it.
    want=$(apt-cache policy "$p" | awk '/:\/\/|dpkg\/status/ {if (/bookworm-backports/) {print v; exit}; next}
                                         NF >= 2 {v = ($1 == "***") ? $2 : $1}')
    if [ -n "$want" ] && dpkg --compare-versions "$have" lt "$want"; then
      missing+=("$p")
    fi
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "venuecam needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${target[*]} ${missing[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]} ${target[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt run (a second checkout's make) instead of failing on its lock.
  apt-get "${lock[@]}" update -qq
  apt-get "${lock[@]}" install -y -qq --no-install-recommends "${target[@]}" "${missing[@]}" >/dev/null
fi
touch "$stamp"
