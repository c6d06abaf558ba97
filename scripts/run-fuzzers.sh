#!/bin/sh
# Runs every libFuzzer harness for a bounded time, starting from its seed
# corpus in fuzz/corpus/<name>/. Usage: run-fuzzers.sh BUILD_DIR SECONDS
set -eu
build="$1"
secs="$2"
root="$(cd "$(dirname "$0")/.." && pwd)"
fail=0
for bin in "$build"/fuzz_*; do
	[ -x "$bin" ] || continue
	name="$(basename "$bin")"
	work="$(mktemp -d)"
	seeds="$root/fuzz/corpus/$name"
	[ -d "$seeds" ] && cp -r "$seeds"/. "$work"/ 2>/dev/null || true
	echo "fuzz: $name for ${secs}s"
	if ! "$bin" -max_total_time="$secs" -max_len=4096 -print_final_stats=0 \
		-artifact_prefix="$work/" "$work" >"$work/log" 2>&1; then
		echo "fuzz: $name FAILED"
		tail -40 "$work/log"
		ls "$work"/crash-* "$work"/leak-* "$work"/timeout-* 2>/dev/null || true
		fail=1
	else
		grep -E "^#[0-9]+.*DONE" "$work/log" | tail -1 || true
		rm -rf "$work"
	fi
done
exit $fail
