# Appliance targets: cross builds, systemd unit checks, the SD-card image and its
# boot test. Included by the top-level Makefile; docs/appliance.md explains each.
#
#   make aarch64 armv7        release binaries for the Pi (64- and 32-bit)
#   make smoke-aarch64        the aarch64 binary under qemu-user: --version, check-config, serve+login
#   make systemd-verify       systemd-analyze verify + security score of every unit
#   make image                build/image/isync-<version>-arm64.img (+ .img.zst)
#   make image-test           boot that image under qemu-system-aarch64 and assert from outside
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

.PHONY: aarch64 armv7 smoke-aarch64 systemd-verify image image-test image-rpios \
	image-rpios-test ci-appliance

aarch64:
	image/cross-build.sh $(AARCH64_TRIPLE)
	@ls -l $(AARCH64_BIN)

armv7:
	image/cross-build.sh $(ARMV7_TRIPLE)
	@ls -l $(ARMV7_BIN)
