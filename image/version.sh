#!/bin/sh
# The version the image and its file name carry: Cargo.toml's, plus the git
# commit when built from a checkout.
cd "$(dirname "$0")/.."
v=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
c=$(git rev-parse --short HEAD 2>/dev/null || true)
echo "$v${c:+ ($c)}"
