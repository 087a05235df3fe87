#!/usr/bin/env bash
# Customises an official Raspberry Pi OS Lite (arm64) image with isync: the same
# binary, units, configuration and first-boot service as the isync image, without
# mounting anything. provision/install.sh installs into an empty staging tree
# (seeded with the image's own passwd/group/shadow so the isync user is added to
# them), then image/ext4put.py copies that tree into the ext4 root with debugfs;
# mtools adds a README to the FAT boot partition.
#
#   image/rpios.sh RASPIOS.img[.xz|.zst] BINARY OUT.img
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$1 binary=$2 out=$3
mkdir -p "$(dirname "$out")"
start=$(date +%s)

case "$src" in
*.xz) xz -dc -T0 "$src" >"$out.part" ;;
*.zst) zstd -dc "$src" >"$out.part" ;;
*) cp --sparse=always "$src" "$out.part" ;;
esac

# Partition 1 is the FAT boot partition ("bootfs"), 2 the ext4 root ("rootfs").
read -r boot_off root_off < <(sfdisk -J "$out.part" | python3 -c '
import json, sys
p = json.load(sys.stdin)["partitiontable"]["partitions"]
print(p[0]["start"] * 512, p[1]["start"] * 512)')
rootfs="$out.part?offset=$root_off"
debugfs -R "stat /etc/os-release" "$rootfs" >/dev/null 2>&1 ||
	{ echo "rpios: partition 2 of $src is not an ext4 root file system" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/etc"
for f in passwd group shadow gshadow; do
	"$here/ext4put.py" "$out.part" "$root_off" --get "/etc/$f" "$stage/etc/$f"
done
# Keep a configuration the image already has (a re-run, or the owner's own).
if debugfs -R "stat /etc/isync/isync.toml" "$rootfs" 2>/dev/null | grep -q '^Inode'; then
	keep_config=1
else
	keep_config=0
fi
"$here/../provision/install.sh" --root "$stage" --binary "$binary" --appliance
[ "$keep_config" = 1 ] && rm -f "$stage/etc/isync/isync.toml"
"$here/ext4put.py" "$out.part" "$root_off" "$stage"
e2fsck -fn "$rootfs" >/dev/null 2>&1 || { echo "rpios: e2fsck found problems after writing" >&2; exit 1; }

mcopy -o -i "$out.part@@$boot_off" "$here/overlay/boot/firmware/isync-README.txt" ::/isync-README.txt
# Raspberry Pi kernels leave the memory cgroup controller off unless the
# kernel command line asks for it; without it isync.service's MemoryHigh and
# MemoryMax do nothing and an out-of-memory kill may take another process.
# The one line of cmdline.txt gets the two options (once), nothing else.
cmdline=$(mtype -i "$out.part@@$boot_off" ::/cmdline.txt | tr -d '\r' | head -n1)
case " $cmdline " in
*" cgroup_enable=memory "*) ;;
*)
	printf '%s cgroup_enable=memory cgroup_memory=1\n' "$cmdline" >"$stage/cmdline.txt"
	mcopy -o -i "$out.part@@$boot_off" "$stage/cmdline.txt" ::/cmdline.txt
	;;
esac
mv "$out.part" "$out"
echo "rpios: $out ready ($(($(date +%s) - start)) s): flash it like the original image"
