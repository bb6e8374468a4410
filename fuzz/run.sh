#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 60) with nightly and cargo-fuzz:
#
#   fuzz/run.sh [SECONDS] [TARGET...]        # every target when none is named
#   MERGE=1 fuzz/run.sh 300 config           # afterwards, add the inputs that found new
#                                            # coverage to the committed corpus/<target>/
#
# New inputs go to fuzz/work/<target>/ (not committed), read together with the committed seed
# corpus fuzz/corpus/<target>/. A crash is written to fuzz/artifacts/<target>/: minimize it
# (`cargo +nightly fuzz tmin <target> <file>`), fix the cause, and keep the file there: the
# test crates/fuzzing/tests/corpus.rs replays corpus/ and artifacts/ under `cargo test`.
# Prints one line per target and exits 1 if any target crashed.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "$0")" && pwd)"
cd "$fuzz_dir/.."
seconds="${1:-60}"
shift || true
case "$seconds" in
'' | *[!0-9]*)
	echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
	exit 2
	;;
esac

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
	echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
	exit 2
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	mapfile -t targets < <(cargo +nightly fuzz list)
fi

# valet's crates forbid unsafe code, so a sanitizer buys little; -s none keeps std prebuilt.
flags=(-O -s none)
cargo +nightly fuzz build "${flags[@]}"

count() { find "$1" -maxdepth 1 -type f 2>/dev/null | wc -l; }

status=0
mkdir -p "$fuzz_dir/logs"
for t in "${targets[@]}"; do
	work="$fuzz_dir/work/$t"
	seeds="$fuzz_dir/corpus/$t"
	artifacts="$fuzz_dir/artifacts/$t"
	log="$fuzz_dir/logs/$t.log"
	mkdir -p "$work" "$seeds" "$artifacts"
	work_before=$(count "$work")
	crashes_before=$(count "$artifacts")
	code=0
	cargo +nightly fuzz run "${flags[@]}" "$t" "$work" "$seeds" -- \
		-max_total_time="$seconds" -timeout=20 -print_final_stats=1 >"$log" 2>&1 || code=$?
	runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1 || true)
	if [ -z "$runs" ]; then
		runs=$(grep -o '^#[0-9]*' "$log" | tail -n1 | tr -d '#' || true)
	fi
	cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | grep -o '[0-9]*' || true)
	new=$(($(count "$work") - work_before))
	crashes=$(($(count "$artifacts") - crashes_before))
	result=ok
	if [ "$code" -ne 0 ] || [ "$crashes" -gt 0 ]; then
		result="CRASH (exit $code, see $log and $artifacts)"
		status=1
	fi
	printf '%-16s %6ss  runs %-10s cov %-6s new corpus entries %-5s crashes %-3s %s\n' \
		"$t" "$seconds" "${runs:-?}" "${cov:-?}" "$new" "$crashes" "$result"
	if [ "${MERGE:-0}" = 1 ] && [ "$code" -eq 0 ]; then
		cargo +nightly fuzz run "${flags[@]}" "$t" "$seeds" "$work" -- -merge=1 \
			>>"$log" 2>&1
	fi
done
exit $status
