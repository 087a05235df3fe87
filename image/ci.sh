#!/usr/bin/env bash
# The appliance part of CI (`make ci-appliance`): host tools, systemd unit checks,
# both cross builds, the qemu-user smoke test, the SD-card image booted under
# qemu, and the Raspberry Pi OS customisation on its stand-in. Prints how long
# each step took and ends with "appliance: N passed, N failed".
#
# The base rootfs spends most of its time in one dpkg process under qemu-user,
# so it is built in the background while cargo uses the other core.
# IMAGE_TEST_RASPI3B=1 also boots the image on qemu's Raspberry Pi 3 model.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
make=(make --no-print-directory)
passed=0 failed=0
report=()

step() {
	local name=$1 start rc
	shift
	start=$(date +%s)
	echo "=== appliance: $name"
	"$@"
	rc=$?
	report+=("$(printf '%-22s %4d s  %s' "$name" $(($(date +%s) - start)) "$([ $rc = 0 ] && echo ok || echo FAILED)")")
	if [ $rc = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
	return $rc
}

# A step that reaches the network (Debian mirrors) or boots an emulated
# machine gets a second attempt; only the last attempt counts.
retry() {
	local name=$1
	shift
	step "$name" "$@" && return 0
	echo "=== appliance: $name failed; trying once more"
	unset 'report[-1]'
	failed=$((failed - 1))
	step "$name (2nd try)" "$@"
}

finish() {
	echo "=== appliance: summary"
	printf '  %s\n' "${report[@]}"
	echo "appliance: $passed passed, $failed failed"
	[ "$failed" = 0 ]
	exit
}

t0=$(date +%s)
retry "host tools" image/host-setup.sh cross verify image test || finish
rootfs_start=$(date +%s)
image/build-rootfs.sh >build/rootfs.log 2>&1 &
rootfs_pid=$!

step "systemd-verify" "${make[@]}" systemd-verify
step "aarch64 build" "${make[@]}" aarch64 && step "aarch64 smoke (qemu-user)" "${make[@]}" smoke-aarch64
step "armv7 build" "${make[@]}" armv7 && step "armv7 smoke (qemu-user)" "${make[@]}" smoke-armv7

echo "=== appliance: waiting for the base rootfs (log: build/rootfs.log)"
rootfs_ok=0
if wait "$rootfs_pid"; then
	report+=("$(printf '%-22s %4d s  %s' "base rootfs (bg)" $(($(date +%s) - rootfs_start)) ok)")
	passed=$((passed + 1))
	rootfs_ok=1
else
	tail -n 40 build/rootfs.log
	echo "=== appliance: base rootfs failed in the background; trying once more"
	step "base rootfs (2nd try)" image/build-rootfs.sh && rootfs_ok=1
fi
if [ "$rootfs_ok" = 1 ]; then
	retry "image + image-test" "${make[@]}" image-test
	[ "${IMAGE_TEST_RASPI3B:-0}" = 1 ] && retry "image-test-raspi3b" "${make[@]}" image-test-raspi3b
fi
step "image-rpios-test" "${make[@]}" image-rpios-test
report+=("$(printf '%-22s %4d s' total $(($(date +%s) - t0)))")
finish
