#!/usr/bin/env bash
# Installs the host tools one appliance step needs, on a fresh Debian 12 machine
# (root or sudo). Idempotent and quiet when everything is already there, so every
# make target calls it instead of trusting a stamp file.
#
#   image/host-setup.sh cross|verify|image|test ...
set -euo pipefail

SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

pkgs=()
binfmt=0
for group in "$@"; do
	case "$group" in
	# Debian's cross gcc links the binaries and compiles the bundled C (SQLite,
	# mozjpeg); qemu-user runs the aarch64 binary for the smoke test.
	cross) pkgs+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf
		libc6-dev-armhf-cross qemu-user-static) ;;
	verify) pkgs+=(systemd) ;;
	# mmdebstrap runs the arm64 maintainer scripts through qemu-user + binfmt;
	# the image is assembled without mounting (mtools for FAT, mke2fs -d for ext4).
	image) pkgs+=(mmdebstrap qemu-user-static binfmt-support arch-test dosfstools mtools
		fdisk e2fsprogs zstd xz-utils ca-certificates)
		binfmt=1 ;;
	# ipxe-qemu carries the virtio-net option ROM that qemu loads even with
	# --no-install-recommends; ffmpeg makes the test photos.
	test) pkgs+=(qemu-system-arm ipxe-qemu mtools e2fsprogs fdisk curl ffmpeg python3 zstd) ;;
	*) echo "host-setup: unknown group '$group'" >&2; exit 2 ;;
	esac
done

missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "host-setup: installing ${missing[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
fi

if [ "$binfmt" = 1 ]; then
	# A fresh machine has binfmt_misc unmounted, and qemu-user-static's postinst
	# then leaves its handlers disabled: mount it and enable the two we use.
	# The handlers carry the F flag, so they work inside chroots too.
	mountpoint -q /proc/sys/fs/binfmt_misc ||
		$SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
	for arch in aarch64 arm; do
		[ -e "/proc/sys/fs/binfmt_misc/qemu-$arch" ] || $SUDO update-binfmts --enable "qemu-$arch"
		grep -qx enabled "/proc/sys/fs/binfmt_misc/qemu-$arch" ||
			echo 1 | $SUDO tee "/proc/sys/fs/binfmt_misc/qemu-$arch" >/dev/null
	done
fi
