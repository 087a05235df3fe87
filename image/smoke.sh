#!/usr/bin/env bash
# Smoke test of a cross-built isync under qemu-user, on loopback only:
# --version, check-config, user add, then a real `serve` answering login.icc and
# files.icc, and a clean stop on SIGTERM.
#
#   image/smoke.sh BINARY [QEMU_LD_PREFIX]   (default prefix: Debian's aarch64 cross libc)
# SMOKE_REQUIRE_ALL=1 (default) fails when the binary lacks a command a step needs.
set -euo pipefail
bin=$(readlink -f "$1")
prefix=${2:-/usr/aarch64-linux-gnu}
qemu=qemu-aarch64-static
case "$prefix" in *arm-linux-gnueabihf*) qemu=qemu-arm-static ;; esac
require=${SMOKE_REQUIRE_ALL:-1}
run() { "$qemu" -L "$prefix" "$bin" "$@"; }
skipped=()
skip() {
	if [ "$require" = 1 ]; then echo "smoke: FAIL: $1"; exit 1; fi
	echo "smoke: SKIP: $1"; skipped+=("$1")
}

work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/data" "$work/photos"
ffmpeg -loglevel error -f lavfi -i testsrc=size=320x240:rate=1 -frames:v 1 "$work/photos/a.jpg" 2>/dev/null ||
	printf '' >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/isync.toml" <<TOML
listen = "127.0.0.1:$port"
data_dir = "$work/data"

[[library]]
path = "$work/photos"
users = ["smoke"]
TOML

version=$(run --version)
echo "smoke: --version: $version"
[[ "$version" == isync* ]] || { echo "smoke: FAIL: --version printed '$version'"; exit 1; }
file "$bin" 2>/dev/null | sed 's/^/smoke: /' || true

if run check-config --help >/dev/null 2>&1; then
	run --config "$work/isync.toml" check-config >/dev/null
	echo "smoke: check-config: ok"
	printf 'listen = "nonsense"\n' >"$work/bad.toml"
	if run --config "$work/bad.toml" check-config >/dev/null 2>&1; then
		echo "smoke: FAIL: check-config accepted listen = \"nonsense\""; exit 1
	fi
	echo "smoke: check-config rejects a bad file: ok"
else
	skip "binary has no check-config"
fi

if ! run user --help >/dev/null 2>&1 || ! run serve --help >/dev/null 2>&1; then
	skip "binary has no user add / serve: login.icc not tested"
	exit 0
fi
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$password" | run --config "$work/isync.toml" user add smoke --password-stdin
echo "smoke: user add: ok"

# Not through run(): $! must be qemu itself, which gets the SIGTERM below.
"$qemu" -L "$prefix" "$bin" --config "$work/isync.toml" serve >"$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do
	curl -s -o /dev/null "http://127.0.0.1:$port/" && break
	kill -0 "$server" 2>/dev/null || { cat "$work/serve.log"; echo "smoke: FAIL: serve exited"; exit 1; }
	sleep 0.5
done
login=$(curl -s -c "$work/cookies" --data-urlencode userName=smoke --data-urlencode "password=$password" \
	"http://127.0.0.1:$port/login.icc")
echo "smoke: login.icc: ${login:0:120}"
[[ "$login" == *'"code":0'* ]] || { cat "$work/serve.log"; echo "smoke: FAIL: login"; exit 1; }
files=$(curl -s -b "$work/cookies" "http://127.0.0.1:$port/files.icc?pageIndex=0")
echo "smoke: files.icc: ${files:0:120}"
[[ "$files" == *'"code":0'* ]] || { echo "smoke: FAIL: files.icc"; exit 1; }
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["data"]["list"][0]["id"])' "$files")
code=$(curl -s -b "$work/cookies" -o "$work/thumb" -w '%{http_code}' "http://127.0.0.1:$port/thumbnail.icc?id=$id&level=0")
magic=$(head -c 3 "$work/thumb" | od -An -tx1 | tr -d ' ')
if [ "$code" = 404 ] && [ "$magic" != ffd8ff ]; then
	skip "binary has no thumbnail.icc (404)"
else
	[ "$magic" = ffd8ff ] || [ "$magic" = 89504e ] ||
		{ echo "smoke: FAIL: thumbnail.icc: HTTP $code, not an image ($magic)"; exit 1; }
	echo "smoke: thumbnail.icc: $(stat -c %s "$work/thumb") B image"
fi

kill -TERM "$server"
for _ in $(seq 1 40); do kill -0 "$server" 2>/dev/null || break; sleep 0.25; done
if kill -0 "$server" 2>/dev/null; then echo "smoke: FAIL: serve ignored SIGTERM for 10 s"; exit 1; fi
rc=0; wait "$server" || rc=$?
server=""
[ "$rc" = 0 ] || { tail -n 20 "$work/serve.log"; echo "smoke: FAIL: serve exited $rc after SIGTERM"; exit 1; }
echo "smoke: SIGTERM: clean exit"

if run backup --help >/dev/null 2>&1; then
	run --config "$work/isync.toml" backup --to "$work/backup" >/dev/null
	ls "$work/backup" | grep -q . || { echo "smoke: FAIL: backup wrote nothing"; exit 1; }
	echo "smoke: backup: $(ls "$work/backup")"
else
	skip "binary has no backup"
fi
echo "smoke: passed${skipped:+ (skipped: ${skipped[*]})}"
