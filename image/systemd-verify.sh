#!/usr/bin/env bash
# `systemd-analyze verify` of every unit in systemd/, plus the security exposure
# score of isync.service (written to build/systemd-security.txt).
# The units name /usr/local/bin/isync, which the build host need not have: a
# private mount namespace puts a stand-in there, leaving the host untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
units=$(cd systemd && ls -- *.service *.timer *.mount *.automount)
unit_dir=$(mktemp -d)
trap 'rm -rf "$unit_dir"' EXIT
cp systemd/*.service systemd/*.timer systemd/*.mount systemd/*.automount "$unit_dir/"

# verify prints its findings and exits non-zero on errors; warnings print only,
# so fail on any output too.
out=$(unshare --mount sh -ec '
	mount -t tmpfs tmpfs /usr/local/bin
	printf "#!/bin/sh\n" > /usr/local/bin/isync; chmod +x /usr/local/bin/isync
	cd "$1"; shift
	SYSTEMD_LOG_LEVEL=notice systemd-analyze verify "$@" 2>&1' sh "$unit_dir" $units) || {
	echo "$out"; echo "systemd-verify: FAILED"; exit 1; }
if [ -n "$out" ]; then echo "$out"; echo "systemd-verify: warnings above"; exit 1; fi
echo "systemd-verify: $(echo $units | wc -w) units clean"

# The exposure score (0 = locked down, 10 = unprotected). Fail above 2.5, so a
# change that loosens the sandbox is noticed.
systemd-analyze security --offline=true --threshold=25 "$unit_dir/isync.service" \
	> build/systemd-security.txt || {
	cat build/systemd-security.txt; echo "systemd-verify: isync.service exposure above 2.5"; exit 1; }
tail -n1 build/systemd-security.txt
