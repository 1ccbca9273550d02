#!/usr/bin/env bash
# Step 30: the raw SD-card image from $WORK_DIR/rootfs, without mounting or loop devices.
# Layout (MBR, fixed disk id; fixed for the life of a box, so it is decided here):
#   p1 boot   FAT32  /boot/firmware: GPU firmware, kernel, initrd, DTBs, config.txt, cmdline.txt
#   p2 root A ext4   the system this image installs (root=PARTUUID=<id>-02)
#   p3 root B ext4   empty, same size: the slot a whole-system update writes next
#   p4 data   ext4   /var/lib/venuecam; small here, grown to the end of the card on first boot
# Usage: 30-assemble.sh OUTPUT.img
set -euo pipefail
# shellcheck source=image/lib.sh
. "$(dirname "$0")/lib.sh"

img="$1"
root="$WORK_DIR/rootfs"
parts="$WORK_DIR/parts"
slot_mb="${ROOT_SLOT_MB_OVERRIDE:-$ROOT_SLOT_MB}"
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

# cmdline.txt: root by PARTUUID (slot A) on either base; nothing else resizes or re-provisions.
cmdline="$parts/boot/cmdline.txt"
[[ -f "$cmdline" ]] || die "the base left no cmdline.txt on its boot partition"
sed -i -E "s#root=[^ ]+#root=PARTUUID=$PARTUUID_ROOT_A#; s# init=/usr/lib/raspberrypi-sys-mods/firstboot##; s#  +# #g" "$cmdline"
grep -q "root=PARTUUID=$PARTUUID_ROOT_A" "$cmdline" || die "cmdline.txt names no root: $(cat "$cmdline")"
[[ -f "$parts/boot/config.txt" ]] || die "the base left no config.txt on its boot partition"

mib() { echo $(( ($1 + 1048575) / 1048576 )); }
root_used_mb=$(mib "$(du -s --block-size=1 --apparent-size "$root" | cut -f1)")
# ext4 metadata and reserved blocks take ~8%; keep a quarter of the slot free for updates.
if (( root_used_mb * 108 / 100 > slot_mb * 3 / 4 )); then
  die "the root file system ($root_used_mb MiB) leaves too little room in a ${slot_mb} MiB slot"
fi
log "partitions: boot ${BOOT_MB} MiB, root A + B ${slot_mb} MiB each (A holds ${root_used_mb} MiB), data ${DATA_MB} MiB"

ext4=(mkfs.ext4 -q -F -O "^orphan_file,^metadata_csum_seed")
rm -f "$parts/boot.vfat"
mkfs.vfat -F 32 -n BOOTFS -i "${DISK_ID#0x}" -C "$parts/boot.vfat" $((BOOT_MB * 1024)) >/dev/null
(cd "$parts/boot" && mcopy -s -p -m -i "$parts/boot.vfat" ./* ::/)
"${ext4[@]}" -L rootfs-a -m 2 -d "$root" "$parts/root-a.ext4" "${slot_mb}M"
"${ext4[@]}" -L rootfs-b -m 2 "$parts/root-b.ext4" "${slot_mb}M"
"${ext4[@]}" -L venuecam-data -m 1 -d "$parts/data" "$parts/data.ext4" "${DATA_MB}M"

first=4  # MiB before the first partition (the Pi firmware and the MBR like alignment)
a=$((first + BOOT_MB)); b=$((a + slot_mb)); d=$((b + slot_mb))
total_mb=$((d + DATA_MB))
rm -f "$img"
truncate -s "${total_mb}M" "$img"
sfdisk --quiet "$img" <<TABLE
label: dos
label-id: $DISK_ID
unit: sectors
start=$((first * 2048)), size=$((BOOT_MB * 2048)), type=c, bootable
start=$((a * 2048)), size=$((slot_mb * 2048)), type=83
start=$((b * 2048)), size=$((slot_mb * 2048)), type=83
start=$((d * 2048)), size=$((DATA_MB * 2048)), type=83
TABLE
put() { dd if="$1" of="$img" bs=1M seek="$2" conv=notrunc,sparse status=none; }
put "$parts/boot.vfat" "$first"
put "$parts/root-a.ext4" "$a"
put "$parts/root-b.ext4" "$b"
put "$parts/data.ext4" "$d"
rm -rf "$parts"
log "raw image: $img (${total_mb} MiB)"
