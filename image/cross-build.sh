#!/usr/bin/env bash
# Release build of isync for one Raspberry Pi target.
#   image/cross-build.sh aarch64-unknown-linux-gnu|armv7-unknown-linux-gnueabihf
# Uses `cross` when it is installed and its container engine answers (Cross.toml);
# otherwise builds directly with Debian's cross gcc (.cargo/config.toml), which
# image/host-setup.sh cross installs. The binary lands in
# ${CARGO_TARGET_DIR:-target}/<target>/release/isync.
set -euo pipefail
target=$1
cd "$(dirname "$0")/.."

engine_ok() {
	{ command -v docker >/dev/null && docker info >/dev/null 2>&1; } ||
		{ command -v podman >/dev/null && podman info >/dev/null 2>&1; }
}

if [ "${USE_CROSS:-auto}" != no ] && command -v cross >/dev/null && engine_ok; then
	echo "cross-build: using cross for $target"
	exec cross build --release --target "$target"
fi

image/host-setup.sh cross
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
	rustup target add "$target"
fi
exec cargo build --release --target "$target"
