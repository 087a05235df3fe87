# Appliance targets: cross builds, systemd unit checks, the SD-card image and its
# boot test. Included by the top-level Makefile; docs/appliance.md explains each.
#
#   make aarch64 armv7        release binaries for the Pi (64- and 32-bit), glibc >= 2.34
#   make aarch64-glibc2.31    aarch64 for bullseye-era systems (cargo-zigbuild; not in CI)
#   make smoke-aarch64        the aarch64 binary under qemu-user: --version, check-config, serve+login
#   make systemd-verify       systemd-analyze verify + security score of every unit
#   make image                build/image/isync-<version>-arm64.img (+ .img.zst)
#   make image-test           boot that image under qemu-system-aarch64 and assert from outside
#   make image-test-raspi3b   the same on qemu's Raspberry Pi 3 model
#   make image-rpios RPIOS=…  customise a Raspberry Pi OS Lite image
#   make image-rpios-test     image-rpios on a stand-in image the test builds itself
#   make ci-appliance         everything CI runs for the appliance
# All of them install what they need (apt, rustup targets, binfmt); run as root or with sudo.

APPLIANCE_TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
ISYNC_VERSION := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' $(CURDIR)/Cargo.toml | head -n1)
AARCH64_TRIPLE := aarch64-unknown-linux-gnu
ARMV7_TRIPLE := armv7-unknown-linux-gnueabihf
AARCH64_BIN := $(APPLIANCE_TARGET_DIR)/$(AARCH64_TRIPLE)/release/isync
ARMV7_BIN := $(APPLIANCE_TARGET_DIR)/$(ARMV7_TRIPLE)/release/isync
IMAGE_DIR := $(CURDIR)/build/image
IMAGE := $(IMAGE_DIR)/isync-$(ISYNC_VERSION)-arm64.img
# list: a small initramfs (qemu virt + Pi SD/USB drivers), 7 min faster to build under
# qemu-user; most: every storage driver, the safe choice for a release on real hardware.
INITRAMFS_MODULES ?= list
export INITRAMFS_MODULES

.PHONY: aarch64 armv7 aarch64-glibc2.31 smoke-aarch64 smoke-armv7 systemd-verify image image-test image-rpios \
	image-rpios-test image-test-raspi3b ci-appliance

aarch64:
	image/cross-build.sh $(AARCH64_TRIPLE)
	@ls -l $(AARCH64_BIN)

armv7:
	image/cross-build.sh $(ARMV7_TRIPLE)
	@ls -l $(ARMV7_BIN)

# aarch64 for glibc 2.31 (Debian bullseye / Raspberry Pi OS bullseye) with
# cargo-zigbuild: zig links against that glibc's symbol versions. Not in CI.
# Output: target/zig/aarch64-unknown-linux-gnu/release/isync
aarch64-glibc2.31:
	command -v cargo-zigbuild >/dev/null || cargo install --locked cargo-zigbuild
	python3 -m ziglang version >/dev/null 2>&1 || python3 -m pip install -q ziglang
	rustup target list --installed | grep -qx $(AARCH64_TRIPLE) || rustup target add $(AARCH64_TRIPLE)
	CARGO_TARGET_DIR=$(APPLIANCE_TARGET_DIR)/zig cargo zigbuild --release --target $(AARCH64_TRIPLE).2.31
	@ls -l $(APPLIANCE_TARGET_DIR)/zig/$(AARCH64_TRIPLE)/release/isync

# The aarch64 binary under qemu-user, on loopback: --version, check-config, serve + login.
smoke-aarch64: aarch64
	image/host-setup.sh cross test
	image/smoke.sh $(AARCH64_BIN) /usr/aarch64-linux-gnu

smoke-armv7: armv7
	image/host-setup.sh cross test
	image/smoke.sh $(ARMV7_BIN) /usr/arm-linux-gnueabihf

systemd-verify:
	image/host-setup.sh verify
	image/systemd-verify.sh

# build/image/isync-<version>-arm64.img and .img.zst. The base rootfs is cached in
# build/cache (keyed on image/packages.txt and the builder), and so are the debs.
image: aarch64
	image/host-setup.sh image
	@base=$$(image/build-rootfs.sh) && image/make-image.sh "$$base" $(AARCH64_BIN) $(IMAGE)
	@start=$$(date +%s); zstd -q -f -T0 -10 $(IMAGE) -o $(IMAGE).zst; \
	  echo "image: $(IMAGE).zst $$(du -h $(IMAGE).zst | cut -f1) (zstd -10, $$(( $$(date +%s) - start )) s)"

# Boots the image under qemu-system-aarch64 -M virt with a USB library disk and
# asserts from outside (image/test-boot.py). IMAGE_TEST_REQUIRE_API=0 lets it pass
# with a binary that has no API yet.
image-test: image
	image/host-setup.sh test
	python3 image/test-boot.py $(IMAGE) --work $(CURDIR)/build/image-test --timeout 900

# The same image on the Pi 3 machine model (its device tree, SD card, dwc2 USB).
image-test-raspi3b: image
	image/host-setup.sh test
	python3 image/test-boot.py $(IMAGE) --machine raspi3b --work $(CURDIR)/build/image-test-raspi3b --timeout 900

# Customise an official Raspberry Pi OS Lite image (arm64) with the same binary,
# units and first-boot service, without mounting it:
#   make image-rpios RPIOS=~/Downloads/2024-11-19-raspios-bookworm-arm64-lite.img.xz
RPIOS ?=
RPIOS_OUT ?= $(IMAGE_DIR)/isync-$(ISYNC_VERSION)-rpios-arm64.img
image-rpios: aarch64
	@[ -n "$(RPIOS)" ] || { echo "usage: make image-rpios RPIOS=path/to/raspios-lite-arm64.img[.xz]"; exit 2; }
	image/host-setup.sh image
	image/rpios.sh "$(RPIOS)" $(AARCH64_BIN) $(RPIOS_OUT)

# image-rpios on a stand-in for the official image that the test builds itself.
image-rpios-test: aarch64
	image/host-setup.sh image
	image/rpios-test.sh $(AARCH64_BIN) $(CURDIR)/build/rpios-test

# What CI runs for the appliance, with a time per step (docs/appliance.md):
# systemd-verify, aarch64 + smoke-aarch64, armv7, image-test, image-rpios-test.
ci-appliance:
	image/ci.sh
