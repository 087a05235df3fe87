#!/usr/bin/env bash
# Tests image/rpios.sh on a stand-in for Raspberry Pi OS Lite that it builds
# itself (the official image cannot be downloaded here): an MBR image with a FAT
# "bootfs" partition (cmdline.txt, config.txt) and an ext4 "rootfs" partition with
# Debian's base users, xz-compressed like the real download. Then it checks,
# without mounting, that isync, its units (enabled), its user, its configuration
# and the first-boot service are in place, the owner's files untouched, and both
# file systems clean.
#
#   image/rpios-test.sh BINARY WORKDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
binary=$(readlink -f "$1") work=$2
rm -rf "$work"; mkdir -p "$work/root/etc/systemd/system/multi-user.target.wants" "$work/root/home/pi"
r=$work/root

# The stand-in's root: Debian's base users and groups, a Pi OS hostname, a file
# of the owner's that must survive.
sed "s/^\([^:]*\):\*:/\1:x:/" /usr/share/base-passwd/passwd.master >"$r/etc/passwd"
sed "s/^\([^:]*\):\*:/\1:x:/" /usr/share/base-passwd/group.master >"$r/etc/group"
awk -F: '{print $1 ":*:19000:0:99999:7:::"}' "$r/etc/passwd" >"$r/etc/shadow"
awk -F: '{print $1 ":*::"}' "$r/etc/group" >"$r/etc/gshadow"
echo 'shadow:x:42:' >>"$r/etc/group"; echo 'shadow:*::' >>"$r/etc/gshadow"
chmod 0640 "$r/etc/shadow" "$r/etc/gshadow"; chgrp 42 "$r/etc/shadow" "$r/etc/gshadow"
printf 'PRETTY_NAME="Raspbian-like stand-in (isync test)"\nID=debian\nVERSION_CODENAME=bookworm\n' >"$r/etc/os-release"
echo raspberrypi >"$r/etc/hostname"
echo "the owner's notes" >"$r/home/pi/notes.txt"
mkfs.ext4 -q -F -L rootfs -d "$r" "$work/rootfs.ext4" 128M

printf 'console=serial0,115200 console=tty1 root=PARTUUID=deadbeef-02 rootfstype=ext4 fsck.repair=yes rootwait\n' >"$work/cmdline.txt"
printf '[all]\narm_64bit=1\n' >"$work/config.txt"
mkfs.vfat -F 32 -n bootfs -C "$work/bootfs.vfat" $((64 * 1024)) >/dev/null 2>&1
mcopy -i "$work/bootfs.vfat" "$work/cmdline.txt" "$work/config.txt" ::/

standin=$work/raspios-standin-arm64-lite.img
truncate -s $((4 + 64 + 128))M "$standin"
printf 'label: dos\nlabel-id: 0xdeadbeef\nstart=8192, size=131072, type=c\nstart=139264, size=262144, type=83\n' | sfdisk -q "$standin"
dd if="$work/bootfs.vfat" of="$standin" bs=1M seek=4 conv=notrunc status=none
dd if="$work/rootfs.ext4" of="$standin" bs=1M seek=68 conv=notrunc status=none
xz -T0 -1 -f "$standin"

"$here/rpios.sh" "$standin.xz" "$binary" "$work/out.img"

# Checks, read back with debugfs and mtools.
fail=0
ok() { echo "rpios-test: ok   $1"; }
bad() { echo "rpios-test: FAIL $1"; fail=1; }
img=$work/out.img
root="$img?offset=$((139264 * 512))"
get() { debugfs -R "cat \"$1\"" "$root" 2>/dev/null; }
stat_of() { debugfs -R "stat \"$1\"" "$root" 2>/dev/null; }

debugfs -R "dump /usr/local/bin/isync $work/isync.out" "$root" 2>/dev/null
cmp -s "$binary" "$work/isync.out" && ok "binary installed" || bad "binary installed"
stat_of /usr/local/bin/isync | grep -q 'Mode:  0755' && ok "binary mode 0755" || bad "binary mode 0755"
get /etc/passwd | grep -q '^isync:x:[0-9]*:[0-9]*:.*:/var/lib/isync:/usr/sbin/nologin$' && ok "isync system user" || bad "isync system user"
get /etc/passwd | grep -q '^root:x:0:0:' && ok "base users kept" || bad "base users kept"
stat_of /etc/shadow | grep -q 'Group:    42' && ok "shadow keeps group shadow" || bad "shadow keeps group shadow"
get /etc/isync/isync.toml | grep -q '^path = "/media/isync"' && ok "configuration" || bad "configuration"
for link in multi-user.target.wants/isync.service multi-user.target.wants/isync-firstboot.service \
	local-fs.target.wants/media-isync.automount timers.target.wants/isync-backup.timer \
	timers.target.wants/isync-verify.timer; do
	target=$(debugfs -R "stat /etc/systemd/system/$link" "$root" 2>/dev/null | sed -n 's/^Fast link dest: "\(.*\)"/\1/p')
	[[ "$target" == /usr/local/lib/systemd/system/* ]] && ok "enabled: $link" || bad "enabled: $link ($target)"
done
get '/usr/local/lib/systemd/system/dev-disk-by\x2dlabel-ISYNC.device.d/isync.conf' | grep -q JobRunningTimeoutSec &&
	ok "device timeout drop-in" || bad "device timeout drop-in"
get /etc/systemd/journald.conf.d/isync.conf | grep -q '^SystemMaxUse=64M$' &&
	ok "journald capped on the card" || bad "journald capped on the card"
get /usr/local/lib/isync/firstboot | sed -n 1p | grep -q '^#!/bin/sh' && ok "first-boot script" || bad "first-boot script"
[ "$(get /home/pi/notes.txt)" = "the owner's notes" ] && ok "owner's files untouched" || bad "owner's files untouched"
[ "$(get /etc/hostname)" = raspberrypi ] && ok "hostname left to first boot" || bad "hostname left to first boot"
e2fsck -fn "$root" >/dev/null 2>&1 && ok "ext4 clean (e2fsck -fn)" || bad "ext4 clean (e2fsck -fn)"
mdir -i "$img@@$((8192 * 512))" -b :: | grep -q 'isync-README.txt' && ok "README on the boot partition" || bad "README on the boot partition"
mtype -i "$img@@$((8192 * 512))" ::/cmdline.txt | grep -q 'PARTUUID=deadbeef-02 rootfstype=ext4 fsck.repair=yes rootwait' && ok "cmdline.txt keeps its options" || bad "cmdline.txt keeps its options"
[ "$(mtype -i "$img@@$((8192 * 512))" ::/cmdline.txt | grep -o 'cgroup_enable=memory cgroup_memory=1' | wc -l)" = 1 ] && ok "cmdline.txt enables the memory cgroup (once)" || bad "cmdline.txt enables the memory cgroup (once)"
[ "$(mtype -i "$img@@$((8192 * 512))" ::/cmdline.txt | wc -l)" = 1 ] && ok "cmdline.txt is one line" || bad "cmdline.txt is one line"
dd if="$img" of="$work/boot.check" bs=512 skip=8192 count=131072 status=none
fsck.vfat -n "$work/boot.check" >/dev/null && ok "FAT clean (fsck.vfat -n)" || bad "FAT clean (fsck.vfat -n)"
[ "$fail" = 0 ] && echo "rpios-test: passed" || { echo "rpios-test: FAILED"; exit 1; }
