#!/usr/bin/env bash
# Step 30: the raw SD-card image from $WORK_DIR/rootfs, without mounting or loop devices:
# boot (FAT32, mtools), root (ext4 -d), data (ext4 -d, /var/lib/venuecam, grows on first
# boot), an MBR with a fixed disk id (sfdisk), partitions copied in at their offsets.
# Usage: 30-assemble.sh OUTPUT.img
set -euo pipefail
# shellcheck source=image/lib.sh
. "$(dirname "$0")/lib.sh"

img="$1"
root="$WORK_DIR/rootfs"
parts="$WORK_DIR/parts"
[[ -d "$root/etc" ]] || die "no customized rootfs in $root: run 20-customize.sh first"
mountpoint -q "$root/proc" && die "$root still has mounts: the customize step did not clean up"
rm -rf "$parts"
mkdir -p "$parts/boot" "$parts/data"

# Boot files and the data skeleton leave the root tree; it keeps the empty mount points.
cp -a "$root/boot/firmware/." "$parts/boot/"
find "$root/boot/firmware" -mindepth 1 -delete
cp -a "$root/var/lib/venuecam/." "$parts/data/"
find "$root/var/lib/venuecam" -mindepth 1 -delete
venuecam_ids=$(awk -F: '$1 == "venuecam" {print $3 ":" $4}' "$root/etc/passwd")
chown "$venuecam_ids" "$parts/data"
chmod 0750 "$parts/data"

# cmdline.txt: root by PARTUUID (either base), serial console, no resize of root by others.
cmdline="$parts/boot/cmdline.txt"
if [[ -f "$cmdline" ]]; then
  sed -i -E "s#root=[^ ]+#root=PARTUUID=$PARTUUID_ROOT#; s# init=/usr/lib/raspberrypi-sys-mods/firstboot##" "$cmdline"
else
  echo "console=serial0,115200 console=tty1 root=PARTUUID=$PARTUUID_ROOT rootfstype=ext4 fsck.repair=yes rootwait" >"$cmdline"
fi

mib() { echo $(( ($1 + 1048575) / 1048576 )); }
root_used=$(du -s --block-size=1 --apparent-size "$root" | cut -f1)
root_mb=$(( $(mib "$root_used") * 115 / 100 + ROOT_EXTRA_MB ))
log "partitions: boot ${BOOT_MB} MiB, root ${root_mb} MiB ($(mib "$root_used") MiB of files), data ${DATA_MB} MiB"

rm -f "$parts/boot.vfat"
mkfs.vfat -F 32 -n BOOTFS -i "${DISK_ID#0x}" -C "$parts/boot.vfat" $((BOOT_MB * 1024)) >/dev/null
(cd "$parts/boot" && mcopy -s -p -m -i "$parts/boot.vfat" ./* ::/)
mkfs.ext4 -q -F -L rootfs -O ^orphan_file,^metadata_csum_seed -m 2 -d "$root" "$parts/root.ext4" "${root_mb}M"
mkfs.ext4 -q -F -L venuecam-data -O ^orphan_file,^metadata_csum_seed -m 1 -d "$parts/data" "$parts/data.ext4" "${DATA_MB}M"

first=4  # MiB before the first partition (the Pi firmware and the MBR like alignment)
total_mb=$((first + BOOT_MB + root_mb + DATA_MB))
rm -f "$img"
truncate -s "${total_mb}M" "$img"
sfdisk --quiet "$img" <<TABLE
label: dos
label-id: $DISK_ID
unit: sectors
start=$((first * 2048)), size=$((BOOT_MB * 2048)), type=c, bootable
start=$(((first + BOOT_MB) * 2048)), size=$((root_mb * 2048)), type=83
start=$(((first + BOOT_MB + root_mb) * 2048)), size=$((DATA_MB * 2048)), type=83
TABLE
dd if="$parts/boot.vfat" of="$img" bs=1M seek="$first" conv=notrunc,sparse status=none
dd if="$parts/root.ext4" of="$img" bs=1M seek=$((first + BOOT_MB)) conv=notrunc,sparse status=none
dd if="$parts/data.ext4" of="$img" bs=1M seek=$((first + BOOT_MB + root_mb)) conv=notrunc,sparse status=none
rm -rf "$parts"
log "raw image: $img (${total_mb} MiB)"
