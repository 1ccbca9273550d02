#!/usr/bin/env bash
# Install Debian packages once: skipped when a stamp for this exact list exists, or when
# every package is already installed. Needs root; otherwise says what to install.
set -euo pipefail
build=$1; shift
pkgs=("$@")
stamp="$build/.apt-$(printf '%s\n' "${pkgs[@]}" | sort | md5sum | cut -c1-12)"
[ -f "$stamp" ] && exit 0

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "venuecam needs these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt run (a second checkout's make) instead of failing on its lock.
  lock=(-o DPkg::Lock::Timeout=900)
  apt-get "${lock[@]}" update -qq
  apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
touch "$stamp"
