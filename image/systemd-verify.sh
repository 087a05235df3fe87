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

# The appliance's journald drop-in: one [Journal] section, every key one that
# journald.conf(5) knows (this systemd's commented defaults list them all) and
# a value for each, so a typo cannot silently leave the SD card uncapped.
journald_keys=$(sed -n 's/^#\([A-Za-z]*\)=.*/\1/p' /etc/systemd/journald.conf)
[ -n "$journald_keys" ] || { echo "systemd-verify: /etc/systemd/journald.conf lists no keys"; exit 1; }
bad_keys=$(grep -v '^[[:space:]]*\(#\|$\|\[Journal\]$\)' provision/journald.conf |
	while IFS='=' read -r k v; do
		{ echo "$journald_keys" | grep -qx "$k" && [ -n "$v" ]; } || echo "$k=$v"
	done)
[ -z "$bad_keys" ] || { echo "systemd-verify: provision/journald.conf: unknown or empty: $bad_keys"; exit 1; }
echo "systemd-verify: journald drop-in: $(grep -c '^[A-Z]' provision/journald.conf) settings known to journald"

# The exposure score (0 = locked down, 10 = unprotected). Fail above 2.5, so a
# change that loosens the sandbox is noticed.
systemd-analyze security --offline=true --threshold=25 "$unit_dir/isync.service" \
	> build/systemd-security.txt || {
	cat build/systemd-security.txt; echo "systemd-verify: isync.service exposure above 2.5"; exit 1; }
tail -n1 build/systemd-security.txt
