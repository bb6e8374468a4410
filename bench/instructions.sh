#!/usr/bin/env bash
# Instructions valet executes per proxied request, counted by valgrind (callgrind): a number
# that moves far less than wrk's requests/s, for comparing two builds of the hot path. It is
# not exact: timers, wake-ups and connection reuse differ from run to run, and the same binary
# has measured 18,571-19,175 over four runs, so compare builds in one call and trust a
# difference of a few percent, not of a few hundred instructions. User space only (the
# kernel's socket work is not counted), one connection's worth of work at a time, and slowed
# down about 50x, so it says nothing about throughput or latency by itself.
#
#   bench/instructions.sh [VALET_BINARY ...]     (default: $CARGO_TARGET_DIR/release/valet)
#
# For each binary: valet runs under callgrind with the warm-hop config (one warm instance of
# valet-bench-upstream), takes N1 and then, in a second run, N2 requests from oha (8
# connections); the difference of the two totals over N2 - N1 is the per-request count, so
# start-up and shutdown cancel out. Needs valgrind (apt-get install valgrind) and oha.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO/target}
UPSTREAM_BIN=$TARGET_DIR/release/valet-bench-upstream
PORT=${PORT:-19090}
N1=${N1:-2000}
N2=${N2:-6000}
WORK=$(mktemp -d)
trap 'pkill -INT -f "up $WORK/valet.toml" 2>/dev/null || true; rm -rf "$WORK"' EXIT

command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
command -v oha >/dev/null || { echo "needs oha (cargo install oha --locked)" >&2; exit 1; }
[[ -x $UPSTREAM_BIN ]] || { echo "no $UPSTREAM_BIN: cargo build --release -p valet-bench" >&2; exit 1; }

# The warm hop's own valet config (bench/lib/warm.sh), on this script's port.
# shellcheck source=lib/warm.sh
source "$BENCH_DIR/lib/warm.sh"
VALET_PORT=$PORT
write_valet_warm_conf "$WORK"

# total BINARY REQUESTS: callgrind's instruction total for start-up, REQUESTS requests, shutdown.
total() {
    local out=$WORK/callgrind.out pid
    rm -f "$out"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$1" up "$WORK/valet.toml" \
        >"$WORK/valet.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
        sleep 0.2
    done
    oha --no-tui -n "$2" -c 8 "http://127.0.0.1:$PORT/" >/dev/null
    kill -INT "$pid"
    wait "$pid" || true
    awk '/^totals:/ { print $2 }' "$out"
}

binaries=("$@")
[[ ${#binaries[@]} -gt 0 ]] || binaries=("$TARGET_DIR/release/valet")
for bin in "${binaries[@]}"; do
    a=$(total "$bin" "$N1")
    b=$(total "$bin" "$N2")
    echo "$bin: $(((b - a) / (N2 - N1))) instructions per request"
done
