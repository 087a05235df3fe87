#!/usr/bin/env bash
# The storage figures of docs/appliance.md ("Where every byte lives"), measured
# with a real isync binary on this machine:
#  1. database and backup size per 1,000 files: libraries of N small JPEGs in
#     dated folders (Photos/2024/2024-MM-DD/IMG_NNNN.JPG, 100 per folder),
#     scanned with `isync scan`, then `isync backup` (VACUUM INTO);
#  2. thumbnail bytes per photo, levels 0 and 1: real photos (the jpeg-decoder
#     crate's bench images, and one scaled to 12 MP) and a 1080p video made by
#     ffmpeg, served by `isync serve` and fetched with curl.
# Usage: image/storage-figures.sh [ISYNC_BINARY] [N...]   (default: target/debug/isync 1000 10000)
set -euo pipefail
bin=$(readlink -f "${1:-target/debug/isync}")
shift || true
[ $# -gt 0 ] && sizes=("$@") || sizes=(1000 10000)
work=$(mktemp -d)
server=
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

config() { # DIR LIB
	cat >"$1/isync.toml" <<-EOF
	listen = "127.0.0.1:0"
	data_dir = "$1/data"
	[scan]
	prerender_threads = 0
	[[library]]
	path = "$2"
	users = ["fam"]
	EOF
	echo pass-$$ | "$bin" --config "$1/isync.toml" user add fam --password-stdin >/dev/null 2>&1
}

# 1. Database size per 1,000 files.
ffmpeg -loglevel error -f lavfi -i testsrc=size=64x48 -frames:v 1 "$work/t.jpg"
for n in "${sizes[@]}"; do
	d=$work/db$n lib=$work/db$n/lib
	mkdir -p "$d"
	for ((i = 0; i < n; i++)); do
		f=$lib/Photos/2024/2024-$(printf %02d $((i / 100 / 28 % 12 + 1)))-$(printf %02d $((i / 100 % 28 + 1)))
		((i % 100 == 0)) && mkdir -p "$f"
		cp "$work/t.jpg" "$f/IMG_$(printf %04d $((i % 10000))).JPG"
	done
	config "$d" "$lib"
	"$bin" --config "$d/isync.toml" scan >/dev/null 2>&1
	db=$(cat "$d"/data/isync.db* | wc -c)
	"$bin" --config "$d/isync.toml" backup --to "$d/bk" >/dev/null 2>&1
	bk=$(find "$d/bk" -type f -name '*.db*' -printf '%s\n' | sort -n | tail -n1)
	echo "db: $n files: database $db B ($((db * 1000 / n)) B per 1,000 files), backup $bk B"
done

# 2. Thumbnail bytes per photo and video, levels 0 and 1.
d=$work/th lib=$work/th/lib
mkdir -p "$lib"
jd=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 1 -name 'index.crates.io-*' | head -n1)
jd=$(ls -d "$jd"/jpeg-decoder-*/benches | tail -n1)
cp "$jd/large_image.jpg" "$jd/tower.jpg" "$lib/"
ffmpeg -loglevel error -i "$jd/large_image.jpg" -vf scale=4032:3024 -q:v 2 "$lib/photo-12mp.jpg"
ffmpeg -loglevel error -f lavfi -i testsrc2=size=1920x1080:rate=30 -t 3 -pix_fmt yuv420p \
	-c:v libx264 "$lib/video-1080p.mp4"
config "$d" "$lib"
"$bin" --config "$d/isync.toml" serve 2>"$d/log" &
server=$!
for _ in $(seq 600); do grep -q 'listening on' "$d/log" && break; sleep 0.1; done
base=http://$(sed -n 's/.*listening on //p' "$d/log" | head -n1)
jar=$d/jar
curl -sf -c "$jar" "$base/login.icc?userName=fam&password=pass-$$" >/dev/null
"$bin" --config "$d/isync.toml" scan >/dev/null 2>&1
python3 - "$d/data/isync.db" >"$d/ids" <<-'EOF'
	import sqlite3, sys
	for r in sqlite3.connect(sys.argv[1]).execute("SELECT id, name, size, width, height FROM files ORDER BY name"):
	    print(*r)
	EOF
while read -r id name size w h; do
	for level in 0 1; do
		curl -sf -b "$jar" -o "$d/t" "$base/thumbnail.icc?id=$id&level=$level"
		dims=$(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0:s=x "$d/t")
		echo "thumb: $name (${w}x$h, $size B) level $level: $(wc -c <"$d/t") B, $dims"
	done
done <"$d/ids"
echo "thumbs: cache on disk: $(du -sb "$d/data/thumbs" 2>/dev/null | cut -f1) B (du -sb)"
