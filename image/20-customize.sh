#!/usr/bin/env bash
# Step 20: turn a base rootfs tarball (Debian or Raspberry Pi OS: same code) into the
# venuecam root in $WORK_DIR/rootfs: runtime packages, the venuecam user, the app release,
# the rootfs/ overlay, provisioning, systemd units, ssh keys-only, journald for an SD card.
# Usage: 20-customize.sh BASE_TAR WHEEL_DIR
set -euo pipefail
# shellcheck source=image/lib.sh
. "$(dirname "$0")/lib.sh"

base_tar="$1"
wheels="$2"
root="$WORK_DIR/rootfs"
ensure_binfmt

if [[ -d "$root" ]]; then
  chroot_umount "$root"
  # Never delete through a bind mount of the host's /dev.
  if grep -q " $root/" /proc/mounts; then die "$root still has mounts; unmount them first"; fi
  rm -rf "$root"
fi
mkdir -p "$root"
log "unpacking $(basename "$base_tar")"
tar -C "$root" --numeric-owner -xpf "$base_tar"
chroot_mount "$root"
trap 'chroot_umount "$root"' EXIT

# Runtime packages: already in the Debian base, installed from the network on another base
# (with the Pi camera stack on Raspberry Pi OS, whose archive has it).
wanted=("${RUNTIME_PACKAGES[@]}")
[[ -e "$root/etc/rpi-issue" ]] && wanted+=("${RASPIOS_EXTRA_PACKAGES[@]}")
missing=()
for pkg in "${wanted[@]}"; do
  [[ -e "$root/var/lib/dpkg/info/$pkg.list" || -e "$root/var/lib/dpkg/info/$pkg:arm64.list" ]] \
    || missing+=("$pkg")
done
if ((${#missing[@]})); then
  log "installing runtime packages: ${missing[*]}"
  rm -f "$root/etc/resolv.conf"
  cp -L /etc/resolv.conf "$root/etc/resolv.conf"
  in_chroot "$root" apt-get update -q
  in_chroot "$root" apt-get install -y -q --no-install-recommends "${missing[@]}"
  in_chroot "$root" apt-get clean
fi
py=$(in_chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ "$py" == "$IMAGE_PYTHON" ]] || die "the base has Python $py, the wheels are for $IMAGE_PYTHON (image/config.sh)"

log "venuecam system user and group"
getent_in() { in_chroot "$root" getent "$@" >/dev/null; }
getent_in group venuecam || in_chroot "$root" groupadd --system venuecam
if ! getent_in passwd venuecam; then
  in_chroot "$root" useradd --system --gid venuecam --home-dir /var/lib/venuecam --no-create-home \
    --shell /usr/sbin/nologin --comment "venuecam appliance" venuecam
fi
# Camera and GPIO access; the gpio group exists on Raspberry Pi OS, ours comes from udev rules.
getent_in group gpio || in_chroot "$root" groupadd --system gpio
in_chroot "$root" usermod -a -G video,gpio venuecam

log "installing the app as a release"
app_wheel=$(find "$wheels" -name 'venuecam-*.whl' | head -n1)
version=$(basename "$app_wheel" | cut -d- -f2)
release="/opt/venuecam/releases/$version"
mkdir -p "$root/tmp/wheels"
cp "$wheels"/*.whl "$root/tmp/wheels/"
rm -rf "${root:?}$release"
# The release's virtualenv with every dependency is the slow part under emulation (venv's
# ensurepip, pip, byte-compiling boto): cached, keyed by the base, the dependency wheels and
# the release path. Only the app's own wheel is installed on top each time.
deps=$(find "$wheels" -name '*.whl' ! -name 'venuecam-*' -printf '%f\n' | sort)
venv_key=$(cache_key "$(basename "$base_tar")" "$deps" "$release" "$IMAGE_PYTHON" "$IMAGE_DIR/20-customize.sh")
venv_tar="$CACHE_DIR/venv-$venv_key.tar"
if [[ -f "$venv_tar" ]]; then
  log "cached release virtualenv with its dependencies: $(basename "$venv_tar")"
  tar -C "$root" --numeric-owner -xpf "$venv_tar"
else
  # System site packages: on Raspberry Pi OS this is how python3-picamera2/libcamera are seen,
  # and on both bases python3-libgpiod (the LEDs' pin factory).
  in_chroot "$root" python3 -m venv --system-site-packages "$release"
  mapfile -t dep_paths <<<"$deps"
  dep_paths=("${dep_paths[@]/#//tmp/wheels/}")
  in_chroot "$root" "$release/bin/python" -m pip install --quiet --no-index --no-deps \
    --disable-pip-version-check --no-warn-script-location "${dep_paths[@]}"
  tar -C "$root" --numeric-owner -cf "$venv_tar.tmp" "./${release#/}"
  mv "$venv_tar.tmp" "$venv_tar"
fi
in_chroot "$root" "$release/bin/python" -m pip install --quiet --no-index --no-deps --force-reinstall \
  --disable-pip-version-check --no-warn-script-location "/tmp/wheels/$(basename "$app_wheel")"
# Every dependency the app declares is there (nothing was fetched: --no-index).
in_chroot "$root" "$release/bin/python" -m pip check >/dev/null || die "the release's dependencies are incomplete"
# Complete to the updater (the marker an update writes last): a failed health gate, a power cut
# mid-update and `venuecam update --rollback` can go back to the release the image ships.
in_chroot "$root" "$release/bin/python" -m venuecam.update.build shipped --install-dir /opt/venuecam --wheels /tmp/wheels >/dev/null
ln -sfn "releases/$version" "$root/opt/venuecam/current"
# The release the image ships has passed its gate: the boot check (venuecam-update-boot.service,
# ConditionPathExists=/opt/venuecam/committed) runs from it and a rollback goes back to it.
ln -sfn "releases/$version" "$root/opt/venuecam/committed"
in_chroot "$root" /opt/venuecam/current/bin/venuecam --version
# `venuecam status` over ssh: the command is on root's PATH.
ln -sfn /opt/venuecam/current/bin/venuecam "$root/usr/local/bin/venuecam"

log "rootfs overlay, provisioning and units"
cp -a --no-preserve=ownership "$REPO_DIR/rootfs/." "$root/"
install -d -m 0755 "$root/usr/lib/venuecam"
install -m 0755 "$REPO_DIR/provisioning/firstboot.py" "$root/usr/lib/venuecam/firstboot.py"
install -m 0755 "$REPO_DIR/provisioning/fault-led.py" "$root/usr/lib/venuecam/fault-led.py"
install -m 0644 "$REPO_DIR/provisioning/venuecam.example.toml" "$root/usr/lib/venuecam/venuecam.example.toml"
# The installer's hardware check (README "Checking a box"): `venuecam-hw-check` over ssh.
install -d -m 0755 "$root/usr/lib/venuecam/hw-check"
install -m 0644 "$REPO_DIR"/tests/hardware/*.py "$root/usr/lib/venuecam/hw-check/"
install -m 0755 "$REPO_DIR/provisioning/venuecam-hw-check" "$root/usr/local/bin/venuecam-hw-check"
install -m 0644 "$REPO_DIR"/systemd/*.service "$REPO_DIR"/systemd/*.timer "$root/etc/systemd/system/"
install -d -m 0750 -g "$(in_chroot "$root" getent group venuecam | cut -d: -f3)" "$root/etc/venuecam"
install -d -m 0750 "$root/var/lib/venuecam"
units=()
for unit in "$REPO_DIR"/systemd/*.service "$REPO_DIR"/systemd/*.timer; do
  grep -q '^\[Install\]' "$unit" && units+=("$(basename "$unit")")
done
# fake-hwclock: the last known time saved hourly and at shutdown, loaded at boot (no RTC).
in_chroot "$root" systemctl enable "${units[@]}" ssh.service NetworkManager.service \
  systemd-timesyncd.service avahi-daemon.service fake-hwclock-load.service fake-hwclock-save.timer
# Nothing on the box should wake up to fetch package lists or scrub in the background.
# One at a time: systemctl refuses the whole list when one of them is not installed.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service man-db.timer; do
  if [[ -e "$root/usr/lib/systemd/system/$unit" ]]; then in_chroot "$root" systemctl mask "$unit" >/dev/null; fi
done
in_chroot "$root" systemctl set-default multi-user.target
# Raspberry Pi OS only: its user wizard, cloud-init and root resize would fight our first boot
# and our partition layout (venuecam.toml provisions the box; the data partition grows).
if [[ -e "$root/etc/rpi-issue" ]]; then
  for unit in userconfig.service cloud-init.target cloud-init-main.service cloud-init-local.service \
    cloud-init-network.service cloud-config.service cloud-final.service rpi-resize.service \
    rpi-resize-swap-file.service; do
    in_chroot "$root" systemctl mask "$unit" >/dev/null 2>&1 || true
  done
fi

log "cleaning up"
in_chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
echo "$version" >"$root/opt/venuecam/current/VERSION"
