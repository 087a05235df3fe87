#!/usr/bin/env bash
# Assembles the SD-card image from the cached base rootfs and the aarch64 binary,
# without mounting anything (this machine kind has no vfat and no loop partitions):
# FAT boot partition with mkfs.vfat + mcopy, ext4 root with mke2fs -d, an MBR
# with sfdisk, and dd into place.
#
#   image/make-image.sh BASE.tar.zst BINARY OUT.img
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
base=$1 binary=$2 img=$3
work=$(dirname "$img")/work
root=$work/rootfs
mkdir -p "$work"

start=$(date +%s)
rm -rf "$root" "$work/fw"
mkdir -p "$root" "$work/fw"
tar -C "$root" --numeric-owner --xattrs --zstd -xpf "$base"

# isync itself, exactly as on any Debian system, plus the first-boot service.
"$here/../provision/install.sh" --root "$root" --binary "$binary" --appliance
cp -r --no-preserve=ownership "$here/overlay/." "$root/"

# Networking by systemd-networkd; SSH off until the owner asks (firstboot);
# no host keys or machine-id shipped: each card makes its own.
systemctl --root="$root" enable systemd-networkd.service systemd-timesyncd.service >/dev/null 2>&1
systemctl --root="$root" disable ssh.service >/dev/null 2>&1 || true
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# root stays locked (no password); log in with the owner's userconf.txt user.
sed -i 's/^root:[^:]*:/root:*:/' "$root/etc/shadow"
version=$("$here/version.sh")
cat >"$root/etc/isync-image" <<INFO
isync image $version, built $(date -u +%Y-%m-%dT%H:%MZ) from Debian $(cat "$root/etc/debian_version")
INFO
manifest=${base%.tar.zst}; manifest=$(dirname "$base")/manifest-${manifest##*base-}.txt
[ -f "$manifest" ] && install -m 0644 "$manifest" "$root/usr/local/share/doc/isync/packages.txt"

# Boot partition (FAT32, label RASPIFIRM): the firmware, kernel, initrd, DTBs,
# config.txt and cmdline.txt that raspi-firmware put under /boot/firmware.
boot_mib=256
rm -f "$work/boot.vfat" "$work/root.ext4"
mkfs.vfat -F 32 -n RASPIFIRM -C "$work/boot.vfat" $((boot_mib * 1024)) >/dev/null
mcopy -s -p -m -i "$work/boot.vfat" "$root"/boot/firmware/* ::/
mv "$root"/boot/firmware/* "$work/fw/" # the mount point stays empty in ext4

# Root partition (ext4, label RASPIROOT): the content plus 25 % and 256 MiB of
# room; first boot grows it to the card. mke2fs -d keeps owners and modes.
used_mib=$(du -sm "$root" | cut -f1)
root_mib=$(((used_mib * 5 / 4 + 256 + 63) / 64 * 64))
mkfs.ext4 -q -F -L RASPIROOT -d "$root" -E root_owner=0:0 "$work/root.ext4" "${root_mib}M"
mv "$work/fw"/* "$root/boot/firmware/"

# MBR: p1 FAT32 (LBA, bootable) at 4 MiB, p2 Linux right after it.
rm -f "$img"
truncate -s $((4 + boot_mib + root_mib))M "$img"
printf 'label: dos\nstart=%d, size=%d, type=c, bootable\nstart=%d, size=%d, type=83\n' \
	$((4 * 2048)) $((boot_mib * 2048)) $(((4 + boot_mib) * 2048)) $((root_mib * 2048)) |
	sfdisk -q "$img"
dd if="$work/boot.vfat" of="$img" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$img" bs=1M seek=$((4 + boot_mib)) conv=notrunc,sparse status=none
rm -f "$work/boot.vfat" "$work/root.ext4"
echo "make-image: $img: $(du -h --apparent-size "$img" | cut -f1) ($(du -h "$img" | cut -f1) allocated), root ${root_mib} MiB with ${used_mib} MiB used, $(($(date +%s) - start)) s"
