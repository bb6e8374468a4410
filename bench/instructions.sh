#!/usr/bin/env bash
# Instructions valet executes per proxied request, counted by valgrind (callgrind): a number
# that moves far less than wrk's requests/s, for comparing two builds of the hot path. It is
# not exact: timers, wake-ups and connection reuse differ from run to run, and the same binary
# has measured 18,571-19,175 over four runs, so compare builds in one call and trust a
# difference of a few percent, not of a few hundred instructions. User space only (the
# kernel's socket work is not counted), one connection's worth of work at a time, and slowed
# down about 50x, so it says nothing about throughput or latency by itself.
#
#   bench/instructions.sh [--peers] [VALET_BINARY ...]   (default: $CARGO_TARGET_DIR/release/valet)
#
# --peers also counts nginx and HAProxy the same way, each proxying to one valet-bench-upstream
# with the warm hop's configs (bench/lib/warm.sh), as one process of one thread (nginx
# `master_process off`, HAProxy `nbthread 1`) so that callgrind sees all of it.
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
PEERS=0
if [[ ${1:-} == --peers ]]; then
    PEERS=1
    shift
fi
UPSTREAM_PID=""
trap 'pkill -INT -f "up $WORK/valet.toml" 2>/dev/null || true
    [[ -z $UPSTREAM_PID ]] || kill "$UPSTREAM_PID" 2>/dev/null || true
    rm -rf "$WORK"' EXIT

command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
command -v oha >/dev/null || { echo "needs oha (cargo install oha --locked)" >&2; exit 1; }
[[ -x $UPSTREAM_BIN ]] || { echo "no $UPSTREAM_BIN: cargo build --release -p valet-bench" >&2; exit 1; }

# The warm hop's own valet config (bench/lib/warm.sh), on this script's port.
# shellcheck source=lib/warm.sh
source "$BENCH_DIR/lib/warm.sh"
VALET_PORT=$PORT
write_valet_warm_conf "$WORK"

# count PORT REQUESTS COMMAND...: callgrind's instruction total for COMMAND's start-up,
# REQUESTS requests to PORT, and its shutdown (SIGINT: valet and nginx stop on it; SIGTERM for
# HAProxy, which the caller passes as KILL_SIGNAL).
count() {
    local port=$1 n=$2 out=$WORK/callgrind.out pid
    shift 2
    rm -f "$out"
    valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$WORK/target.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.2
    done
    oha --no-tui -n "$n" -c 8 "http://127.0.0.1:$port/" >/dev/null
    kill "-${KILL_SIGNAL:-INT}" "$pid"
    wait "$pid" || true
    awk '/^totals:/ { print $2 }' "$out"
}

# per_request NAME PORT COMMAND...: the difference of two runs (N1 and N2 requests) over N2 - N1.
per_request() {
    local name=$1 port=$2 a b
    shift 2
    a=$(count "$port" "$N1" "$@")
    b=$(count "$port" "$N2" "$@")
    echo "$name: $(((b - a) / (N2 - N1))) instructions per request"
}

binaries=("$@")
[[ ${#binaries[@]} -gt 0 ]] || binaries=("$TARGET_DIR/release/valet")
for bin in "${binaries[@]}"; do
    per_request "$bin" "$PORT" "$bin" up "$WORK/valet.toml"
done

if ((PEERS)); then
    NGINX_PORT=$((PORT + 2)) HAPROXY_PORT=$((PORT + 3)) UPSTREAM_PORT=$((PORT + 4))
    "$UPSTREAM_BIN" "$UPSTREAM_PORT" >"$WORK/upstream.log" 2>&1 &
    UPSTREAM_PID=$!
    write_nginx_conf "$WORK/nginx"
    sed -i 's/^worker_processes auto;/worker_processes 1;\nmaster_process off;/' "$WORK/nginx/nginx.conf"
    write_haproxy_conf "$WORK/haproxy"
    sed -i 's/^    nbthread .*/    nbthread 1/' "$WORK/haproxy/haproxy.cfg"
    per_request "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///')" "$NGINX_PORT" \
        nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
    KILL_SIGNAL=TERM per_request "HAProxy $(haproxy -v 2>&1 | awk 'NR == 1 { print $3 }')" \
        "$HAPROXY_PORT" haproxy -db -f "$WORK/haproxy/haproxy.cfg"
fi
