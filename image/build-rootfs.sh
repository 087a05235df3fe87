#!/usr/bin/env bash
# Builds the arm64 base root file system of the SD-card image from Debian packages
# with mmdebstrap (root mode; arm64 maintainer scripts run under qemu-user via
# binfmt), as a tarball cached under build/cache keyed on everything that shapes it.
# Prints the tarball's path. No isync files: image/make-image.sh adds those.
#
#   image/build-rootfs.sh        -> build/cache/base-<key>.tar.zst
# INITRAMFS_MODULES=list|most (default list) picks the initramfs driver set.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=$root/build/cache
modules=${INITRAMFS_MODULES:-list}
mkdir -p "$cache/debs"

key=$(cat "$here/packages.txt" "$here/initramfs-modules" "$here/build-rootfs.sh" |
	{ cat; echo "$modules"; } | sha256sum | cut -c1-16)
out=$cache/base-$key.tar.zst
if [ -s "$out" ]; then
	echo "build-rootfs: cached $out" >&2
	echo "$out"; exit 0
fi

"$here/host-setup.sh" image >&2

suite=$(awk '$1 == "SUITE" {print $2}' "$here/packages.txt")
mapfile -t mirrors < <(awk '$1 == "MIRROR" {$1 = ""; sub(/^ /, "deb "); print}' "$here/packages.txt")
include=$(grep -Ev '^(#|SUITE |MIRROR |$)' "$here/packages.txt" | paste -sd, -)
initramfs_list=$(grep -Ev '^(#|$)' "$here/initramfs-modules" | tr '\n' ' ')

start=$(date +%s)
# mmdebstrap picks format and compressor from the name: keep .tar.zst last.
part=$cache/base-$key.part.tar.zst
rm -f "$part"
# update-initramfs is diverted to /bin/true while packages install and run once at
# the end: under qemu-user each mkinitramfs run costs minutes.
mmdebstrap --architectures=arm64 --variant=minbase --components=main,non-free-firmware \
	--include="$include" \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--skip=download/empty --skip=essential/unlink \
	--setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
	--setup-hook="sync-in $cache/debs /var/cache/apt/archives/" \
	--essential-hook='mkdir -p "$1/boot/firmware"' \
	--essential-hook='chroot "$1" dpkg-divert --local --rename --divert /usr/sbin/update-initramfs.real --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"' \
	--customize-hook="sync-out /var/cache/apt/archives $cache/debs" \
	--customize-hook='rm -f "$1"/var/cache/apt/archives/*.deb' \
	--customize-hook='rm "$1/usr/sbin/update-initramfs" && chroot "$1" dpkg-divert --local --rename --remove /usr/sbin/update-initramfs' \
	--customize-hook="printf 'MODULES=$modules\nCOMPRESS=gzip\n' > \"\$1/etc/initramfs-tools/conf.d/isync.conf\"" \
	--customize-hook="printf '%s\n' $initramfs_list >> \"\$1/etc/initramfs-tools/modules\"" \
	--customize-hook='printf "ROOTPART=LABEL=RASPIROOT\nCONSOLES=\"ttyS1,115200 tty0\"\n" > "$1/etc/default/raspi-firmware"' \
	--customize-hook='chroot "$1" update-initramfs -c -k all' \
	--customize-hook='DEB_MAINT_PARAMS=configure chroot "$1" /etc/kernel/postinst.d/z50-raspi-firmware' \
	--customize-hook="chroot \"\$1\" dpkg-query -W -f '\${Package} \${Version}\n' > $cache/manifest-$key.txt" \
	"$suite" "$part" "${mirrors[@]}" >&2
mv "$part" "$out"
echo "build-rootfs: built in $(($(date +%s) - start)) s, $(du -h "$out" | cut -f1) -> $out" >&2
echo "$out"
