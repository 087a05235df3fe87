# isync — build, run and test. A newcomer on a fresh Debian machine needs only:
#   make run    # installs what it needs, starts a demo server with a demo library
#   make test   # installs what it needs, runs the whole test suite
#   make fuzz-ci  # every fuzz target for 25 s (mk/fuzz.mk, docs/fuzzing.md)
# Appliance targets (cross builds, systemd checks, SD image) live in mk/appliance.mk.

SHELL := /bin/bash
CARGO ?= cargo
DEMO_DIR ?= $(CURDIR)/.isync-demo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps run test bench fmt lint clean

all: build

# System packages the server and its tests use at run time: ffmpeg/ffprobe for
# video and audio, libtiff-tools' tiff2rgba for the TIFFs the built-in decoder
# cannot read (media/tiffrgba.rs), pkg-config and a C compiler for the bundled SQLite.
# libheif-examples is a test tool only (tests/it/heif.rs checks our HEIF
# fixtures and our reading of irot/imir with heif-convert); the server
# never runs it. python3-pil and python3-pip serve tests/it/corpus.rs only:
# Pillow is its reference decoder, pip fetches its corpus (tests/corpus/).
APT_PKGS := ffmpeg libtiff-tools pkg-config gcc make ca-certificates curl libheif-examples \
	python3-pil python3-pip
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v $(CARGO) >/dev/null 2>&1 || { \
	  echo "installing Rust (rustup)"; \
	  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal; }

build: deps
	$(CARGO) build --release

# Starts `isync serve --demo`: creates (once) a demo library and user under
# $(DEMO_DIR) and prints the URL and login.
run: deps
	ISYNC_DATA_DIR=$(DEMO_DIR) $(CARGO) run --release -- serve --demo

test: deps
	$(CARGO) test --lib --bins --tests

bench: deps
	$(CARGO) bench

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 tools/long_fns.py src

clean:
	$(CARGO) clean

-include mk/appliance.mk
-include mk/fuzz.mk
