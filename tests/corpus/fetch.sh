#!/usr/bin/env bash
# Fetches the real-world corpus of tests/it/corpus.rs through the package
# clients (pip, apt-get, cargo's registry) into a cache folder, so a fresh
# clone needs no committed third-party files. Idempotent: a file already in
# the cache is not fetched again.
#
#   tests/corpus/fetch.sh CACHE_DIR < LIST
#
# LIST has one line a file: `SOURCE PATH_IN_PACKAGE`, with SOURCE one of
#   pillow            Pillow's source distribution on PyPI (version below)
#   deb:PACKAGE       a Debian package, whatever version apt serves
#   crate:NAME        a crate of this workspace's Cargo.lock, from cargo's registry
# Each file lands at CACHE_DIR/files/SOURCE/PATH_IN_PACKAGE (":" → "_"), and
# CACHE_DIR/VERSIONS records the version each source came from.
# Any failure (no network, a path gone from a package) exits non-zero.
# Once every file is in place the downloads are removed.
set -euo pipefail

PILLOW_VERSION=11.1.0

cache=${1:?usage: fetch.sh CACHE_DIR < LIST}
mkdir -p "$cache/files" "$cache/dl"
cache=$(cd "$cache" && pwd)
versions="$cache/VERSIONS"
touch "$versions"

note_version() { # SOURCE VERSION
  grep -qxF "$1 $2" "$versions" || echo "$1 $2" >>"$versions"
}

pip_download() { # ARGS…: the first python with pip
  local py
  for py in python3 /usr/bin/python3; do
    if "$py" -m pip --version >/dev/null 2>&1; then
      "$py" -m pip download --disable-pip-version-check --no-deps "$@"
      return
    fi
  done
  echo "fetch.sh: no python3 with pip (apt-get install python3-pip)" >&2
  return 1
}

unpack_pillow() {
  local dir="$cache/dl/pillow-$PILLOW_VERSION"
  [ -d "$dir" ] && return
  # pip reads the sdist's metadata (with a build backend it fetches).
  local sdist
  sdist=$(ls "$cache"/dl/pillow-"$PILLOW_VERSION".tar.gz 2>/dev/null || true)
  if [ -z "$sdist" ]; then
    pip_download --no-binary :all: "Pillow==$PILLOW_VERSION" -d "$cache/dl" >&2
    sdist="$cache/dl/pillow-$PILLOW_VERSION.tar.gz"
  fi
  mkdir -p "$dir.tmp"
  tar -xzf "$sdist" -C "$dir.tmp" --strip-components=1
  mv "$dir.tmp" "$dir"
  note_version pillow "$PILLOW_VERSION (PyPI sdist)"
}

unpack_deb() { # PACKAGE → prints the unpacked dir
  local pkg=$1 dir="$cache/dl/deb-$1"
  if [ ! -d "$dir" ]; then
    local tmp
    tmp=$(mktemp -d "$cache/dl/deb.XXXXXX")
    if ! (cd "$tmp" && apt-get download "$pkg" >&2 2>/dev/null); then
      # A fresh machine may have no package lists yet.
      if [ "$(id -u)" = 0 ]; then apt-get update -qq >&2; fi
      (cd "$tmp" && apt-get download "$pkg" >&2)
    fi
    local deb
    deb=$(ls "$tmp"/*.deb)
    note_version "deb:$pkg" "$(dpkg-deb -f "$deb" Version) (Debian)"
    dpkg-deb -x "$deb" "$tmp/root"
    mv "$tmp/root" "$dir"
    rm -rf "$tmp"
  fi
  echo "$dir"
}

crate_dir() { # NAME → prints the crate's source dir in cargo's registry
  local meta="$cache/dl/cargo-metadata.json"
  if [ ! -s "$meta" ]; then
    local host
    host=$(rustc -vV | sed -n 's/^host: //p')
    "${CARGO:-cargo}" metadata --format-version 1 --filter-platform "$host" \
      --manifest-path "$(dirname "$0")/../../Cargo.toml" >"$meta.tmp"
    mv "$meta.tmp" "$meta"
  fi
  local py
  for py in python3 /usr/bin/python3; do command -v "$py" >/dev/null && break; done
  "$py" - "$meta" "$1" <<'PY'
import json, os, sys
meta = json.load(open(sys.argv[1]))
found = [p for p in meta["packages"] if p["name"] == sys.argv[2] and p["source"]]
if not found:
    sys.exit(f"fetch.sh: crate {sys.argv[2]} is not in Cargo.lock")
p = found[0]
print(os.path.dirname(p["manifest_path"]), p["version"])
PY
}

while read -r src path; do
  [ -z "${src:-}" ] && continue
  out="$cache/files/${src//:/_}/$path"
  [ -f "$out" ] && continue
  case "$src" in
    pillow)
      unpack_pillow
      from="$cache/dl/pillow-$PILLOW_VERSION/$path" ;;
    deb:*)
      from="$(unpack_deb "${src#deb:}")/$path" ;;
    crate:*)
      read -r dir version < <(crate_dir "${src#crate:}")
      note_version "$src" "$version (crates.io)"
      from="$dir/$path" ;;
    *) echo "fetch.sh: unknown source $src" >&2; exit 2 ;;
  esac
  if [ ! -f "$from" ]; then
    echo "fetch.sh: $src has no $path" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$out")"
  cp "$from" "$out.tmp" && mv "$out.tmp" "$out"
done

# Every listed file is in place: the archives and unpacked packages (some
# 150 MB) are not needed again until the list grows.
rm -rf "$cache/dl"
