# Coverage-guided fuzzing of the parsers of untrusted bytes (docs/fuzzing.md).
# Included by the top-level Makefile.
#
#   make fuzz-ci                  every target 25 s (CI runs this after make test)
#   make fuzz FUZZ_SECONDS=1800   every target 30 min; FUZZ_TARGETS="mp4 exif" for some
#
# Stable Rust only: cargo-fuzz with --sanitizer none (fuzz/run.sh says why).

# Pinned: the version this corpus and docs/fuzzing.md were made with.
CARGO_FUZZ_VERSION := 0.13.2
# libfuzzer-sys compiles libFuzzer (C++) from source.
FUZZ_APT_PKGS := g++
FUZZ_SECONDS ?= 1800
FUZZ_TARGETS ?=

.PHONY: fuzz-deps fuzz-ci fuzz

fuzz-deps: deps
	@missing=""; for p in $(FUZZ_APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@if [ "$$($(CARGO) fuzz --version 2>/dev/null)" != "cargo-fuzz $(CARGO_FUZZ_VERSION)" ]; then \
	  echo "installing cargo-fuzz $(CARGO_FUZZ_VERSION)"; \
	  $(CARGO) install --locked cargo-fuzz --version $(CARGO_FUZZ_VERSION); \
	fi

fuzz-ci: fuzz-deps
	fuzz/run.sh 25

fuzz: fuzz-deps
	fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)
