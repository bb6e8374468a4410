#!/usr/bin/env bash
# A long fault soak: a steady rate of GETs through valet to one instance (oha), while its
# backend process is killed with SIGKILL every few seconds and a stream of new random keys
# arrives beside it. Prints the status counts, the success rate and valet's peak memory and
# descriptors; every request should be answered 200 (idempotent GETs that meet a dead
# connection are sent again to the restarted process). Results go into RELIABILITY.md.
#
# Usage: bench/faults_soak.sh [SECONDS] [RATE] [KILL_EVERY]
#   SECONDS     length of the run (default 300)
#   RATE        requests per second to the instance (default 500)
#   KILL_EVERY  seconds between SIGKILLs of the instance (default 10)
# Env: VALET_BIN (default $CARGO_TARGET_DIR/release/valet, built if missing), PORT (19380; uses
# PORT and PORT+1).
set -euo pipefail

main() {
    local seconds=${1:-300} rate=${2:-500} kill_every=${3:-10}
    local root target bin port valet_pid up=0
    root=$(cd "$(dirname "$0")/.." && pwd)
    target=${CARGO_TARGET_DIR:-$root/target}
    bin=${VALET_BIN:-$target/release/valet}
    port=${PORT:-19380}
    if [[ ! -x $bin ]]; then
        (cd "$root" && cargo build --release --locked -p valet)
    fi
    command -v oha >/dev/null || { echo "oha is needed (cargo install oha)" >&2; exit 1; }

    dir=$(mktemp -d /tmp/valet-soak-XXXXXX)
    trap cleanup EXIT
    cat >"$dir/valet.toml" <<EOF
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$((port + 1))"
access_log = false
forget_after = "20s"

[[containers]]
class_name = "Echo"
command = ["python3", "$root/crates/valet/tests/fixtures/backend.py"]
readiness = { path = "/health" }
sleep_after = "2s"
max_instances = 100
env = { STARTS_FILE = "$dir/starts" }

[[routes]]
pattern = "/api/*"
container = "Echo"
instance = "name:one"
strip_prefix = "/api"

[[routes]]
pattern = "/k/*"
container = "Echo"
instance = "path:1"
strip_prefix = "/k/*"
EOF
    "$bin" up "$dir/valet.toml" >"$dir/valet.log" 2>&1 &
    valet_pid=$!
    echo "$valet_pid" >"$dir/valet.pid"
    for _ in $(seq 100); do
        curl -fs "http://127.0.0.1:$port/api/echo" >/dev/null && { up=1; break; }
        kill -0 "$valet_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ((up == 0)); then
        tail -5 "$dir/valet.log" >&2
        echo "valet did not come up (port $port taken? set PORT)" >&2
        exit 1
    fi
    echo "soak: ${seconds}s at ${rate}/s, SIGKILL of the instance every ${kill_every}s, valet pid $valet_pid" >&2

    oha -z "${seconds}s" -q "$rate" -c 32 --no-tui --output-format json \
        "http://127.0.0.1:$port/api/echo" >"$dir/oha.json" &
    local oha_pid=$! started=$SECONDS kills=0 keys=0 peak_rss=0 peak_fds=0 rss fds pid
    while kill -0 "$oha_pid" 2>/dev/null; do
        sleep "$kill_every"
        # The instance's newest process (the backend appends "<pid> <key>" when it starts).
        pid=$(awk '$2 == "one" { p = $1 } END { print p }' "$dir/starts")
        if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && ((SECONDS - started < seconds - 2)); then
            kill -KILL "$pid" && kills=$((kills + 1))
        fi
        # New random keys beside it: started, then asleep, then forgotten.
        for _ in 1 2 3; do
            curl -s -o /dev/null "http://127.0.0.1:$port/k/soak-$RANDOM$RANDOM/echo" && keys=$((keys + 1))
        done
        rss=$(awk '/VmRSS/ { print $2 }' "/proc/$valet_pid/status")
        fds=$(ls "/proc/$valet_pid/fd" | wc -l)
        ((rss > peak_rss)) && peak_rss=$rss
        ((fds > peak_fds)) && peak_fds=$fds
    done
    wait "$oha_pid" || true
    python3 - "$dir/oha.json" "$kills" "$keys" "$peak_rss" "$peak_fds" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
codes = report.get("statusCodeDistribution", {})
errors = report.get("errorDistribution", {})
# Requests still in flight when oha's -z deadline ends are its own cut, not valet's answers.
cut = errors.pop("aborted due to deadline", 0)
total = sum(codes.values()) + sum(errors.values())
ok = codes.get("200", 0)
print(f"requests {total}, 200: {ok} ({100.0 * ok / max(total, 1):.3f}%)")
print(f"other statuses: { {k: v for k, v in codes.items() if k != '200'} }")
print(f"client errors: {errors}; in flight at the end of the run (not counted): {cut}")
lat = report.get("latencyPercentiles", {})
print(f"latency p50 {lat.get('p50', 0) * 1000:.1f} ms, p99 {lat.get('p99', 0) * 1000:.1f} ms")
print(f"instance SIGKILLs: {sys.argv[2]}, new keys: {sys.argv[3]}")
print(f"valet peak RSS {int(sys.argv[4]) // 1024} MiB, peak fds {sys.argv[5]}")
PY
    echo "backend starts: $(wc -l <"$dir/starts"), valet log: $dir/valet.log" >&2
}

# The run's folder: config, valet's log, the backends' starts file, oha's report.
dir=""

# Stops the valet this script started (by its pid, never by name), which stops its backends.
cleanup() {
    local pid
    [[ -n $dir ]] || return 0
    pid=$(cat "$dir/valet.pid" 2>/dev/null || true)
    if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
}

main "$@"
