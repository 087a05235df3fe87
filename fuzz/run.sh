#!/usr/bin/env bash
# Runs fuzz targets for a bounded time each (docs/fuzzing.md); `make fuzz-ci`
# and `make fuzz` call it.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 25 s, every target
#
# Each target starts from its committed seeds (fuzz/seeds/TARGET, read
# only) plus the corpus earlier runs grew (build/fuzz/corpus/TARGET, kept:
# a longer local run makes the next one start further). A crash, a failed
# invariant, a timeout (> 10 s for one input) or an allocation past the
# target's cap stops that target; the others still run, then the script
# names every failed target and its crash input and exits 1.
#
# The build is cargo-fuzz's on stable Rust: `--sanitizer none` passes only
# stable rustc flags (coverage by `-Cpasses=sancov-module` and LLVM
# options), so neither nightly nor RUSTC_BOOTSTRAP is needed. Memory is
# checked by the targets' own allocator cap (fuzz/src/lib.rs) and
# libFuzzer's -rss_limit_mb.
set -uo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-25}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	mapfile -t targets < <(cargo fuzz list)
fi
# libFuzzer's RSS watchdog: the 1 GB of a Raspberry Pi.
rss_mb=${FUZZ_RSS_MB:-1024}
out=build/fuzz
mkdir -p "$out"

echo "=== fuzz: building every target (cargo fuzz build --sanitizer none)"
start=$(date +%s)
cargo fuzz build --sanitizer none || exit 1
echo "=== fuzz: built in $(($(date +%s) - start)) s"

failed=()
for t in "${targets[@]}"; do
	corpus=$out/corpus/$t
	artifacts=$out/artifacts/$t
	rm -rf "$artifacts"
	mkdir -p "$corpus" "$artifacts"
	echo "=== fuzz: $t for ${seconds} s"
	start=$(date +%s)
	if cargo fuzz run --sanitizer none "$t" "$corpus" "fuzz/seeds/$t" -- \
		-max_total_time="$seconds" -timeout=10 -rss_limit_mb="$rss_mb" \
		-artifact_prefix="$artifacts/" -print_final_stats=1 \
		>"$out/$t.log" 2>&1; then
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log")
		echo "=== fuzz: $t ok: $runs executions in $(($(date +%s) - start)) s," \
			"corpus $(find "$corpus" -type f | wc -l) inputs"
	else
		tail -n 40 "$out/$t.log"
		crash=$(ls -t "$artifacts"/* 2>/dev/null | head -n 1)
		echo "=== fuzz: $t FAILED; input: ${crash:-none written (see $out/$t.log)}"
		# A CI log is all that is left of a fresh clone: print small inputs
		# whole, so they can be rebuilt with `base64 -d`.
		if [ -n "$crash" ] && [ "$(stat -c %s "$crash")" -le 65536 ]; then
			echo "=== fuzz: $t input as base64 (base64 -d > crash):"
			base64 -w 76 "$crash"
		fi
		failed+=("$t: ${crash:-$out/$t.log}")
	fi
done

if [ ${#failed[@]} -gt 0 ]; then
	echo "=== fuzz: ${#failed[@]} target(s) failed:"
	printf '  %s\n' "${failed[@]}"
	echo "reproduce with: cargo fuzz run --sanitizer none TARGET INPUT"
	exit 1
fi
echo "=== fuzz: all ${#targets[@]} targets ran ${seconds} s each without a finding"
