#!/usr/bin/env bash
# valet's benchmarks, beside nginx, HAProxy and a direct connection, in one run: warm hop (max
# throughput and a fixed rate), cold start, burst, scale, streams, cluster (two replicas on
# one PostgreSQL) and autoscale (a key's replicas against its load). Prints a markdown table
# on stdout; progress goes to stderr. See BENCHMARKS.md for what each number means.
#
# Everything runs from main(), called on the last line: bash then parses the whole script
# before running any of it, so editing this file during a run cannot break that run.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: bench/run.sh [options]

  -d, --duration SECONDS     length of each wrk / oha run (default 6)
  -c, --connections N        connections for the warm hop and the fixed rate (default 64)
  -r, --rounds N             interleaved rounds of direct, nginx, haproxy, valet (and of the
                             cluster's targets), the order reversed every other round (default 5)
      --cold-runs N          cold starts measured (default 20)
      --docker-runs N        Docker cold starts measured (default 10)
      --burst N              concurrent first requests in the burst (default 1000)
      --keys N               sleeping keys for the memory measurement (default 10000)
      --instances N          running instances for the scale measurement (default 200)
      --only LIST            phases to run, comma-separated:
                             warm,cold,docker,scale,streams,cluster,autoscale
                             (default all; docker is reported as not measured without an engine,
                             cluster without a PostgreSQL server)
      --postgres URL         a PostgreSQL server for the cluster phase, as a role that may create
                             databases; the phase makes a database of its own there and drops
                             it (default $VALET_TEST_POSTGRES, else
                             postgres://valet:valet@127.0.0.1:5432/postgres, as .ci/run sets up)
      --perf FILE            also record valet with `perf record -g` during one extra valet
                             run of the warm hop and write a summary of `perf report` to FILE
      --out FILE             also write the table to FILE
      --no-build             use the release binaries already built
      --quick                a smoke test: tiny durations and counts; the numbers mean nothing
      --port-base N          first of the local ports used (default 19080; uses N..N+16)
  -h, --help

Needs: cargo, and python3 for the autoscale phase; installs nginx, haproxy, wrk and jq (apt-get;
postgresql-client for the cluster phase) and oha (cargo install) when missing.
USAGE
}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

DURATION=6
CONNECTIONS=64
ROUNDS=5
COLD_RUNS=20
DOCKER_RUNS=10
BURST=1000
KEYS=10000
INSTANCES=200
PHASES=warm,cold,docker,scale,streams,cluster,autoscale
PG_URL=${VALET_TEST_POSTGRES:-postgres://valet:valet@127.0.0.1:5432/postgres}
PERF_OUT=""
OUT=""
BUILD=1
PORT_BASE=19080
WARMUP=2
WS_CONNECTIONS=4
WS_MESSAGES=50000
WS_ROUND_TRIPS=2000
SSE_EVENTS=200

parse_args() {
    while (($#)); do
        case $1 in
            -d | --duration) DURATION=$2; shift 2 ;;
            -c | --connections) CONNECTIONS=$2; shift 2 ;;
            -r | --rounds) ROUNDS=$2; shift 2 ;;
            --cold-runs) COLD_RUNS=$2; shift 2 ;;
            --docker-runs) DOCKER_RUNS=$2; shift 2 ;;
            --burst) BURST=$2; shift 2 ;;
            --keys) KEYS=$2; shift 2 ;;
            --instances) INSTANCES=$2; shift 2 ;;
            --only) PHASES=$2; shift 2 ;;
            --postgres) PG_URL=$2; shift 2 ;;
            --perf) PERF_OUT=$(realpath -m "$2"); shift 2 ;;
            --out) OUT=$(realpath -m "$2"); shift 2 ;;
            --no-build) BUILD=0; shift ;;
            --port-base) PORT_BASE=$2; shift 2 ;;
            --quick)
                DURATION=1 ROUNDS=1 WARMUP=1 COLD_RUNS=3 DOCKER_RUNS=2 BURST=50 KEYS=200 INSTANCES=5
                WS_MESSAGES=2000 WS_ROUND_TRIPS=100 SSE_EVENTS=20
                shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; exit 2 ;;
        esac
    done
}

has_phase() { [[ ",$PHASES," == *",$1,"* ]]; }

# shellcheck source=bench/lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=bench/lib/install.sh
source "$BENCH_DIR/lib/install.sh"
# shellcheck source=bench/lib/warm.sh
source "$BENCH_DIR/lib/warm.sh"
# shellcheck source=bench/lib/cold.sh
source "$BENCH_DIR/lib/cold.sh"
# shellcheck source=bench/lib/scale.sh
source "$BENCH_DIR/lib/scale.sh"
# shellcheck source=bench/lib/streams.sh
source "$BENCH_DIR/lib/streams.sh"
# shellcheck source=bench/lib/cluster.sh
source "$BENCH_DIR/lib/cluster.sh"
# shellcheck source=bench/lib/autoscale.sh
source "$BENCH_DIR/lib/autoscale.sh"
# shellcheck source=bench/lib/perf.sh
source "$BENCH_DIR/lib/perf.sh"
# shellcheck source=bench/lib/table.sh
source "$BENCH_DIR/lib/table.sh"

on_exit() {
    local code=$?
    stop_all
    cluster_drop_db
    if ((code == 0)); then
        rm -rf "$WORK"
    else
        log "failed; logs and configs kept in $WORK"
    fi
}

check_ports_free() {
    local port
    for port in $(seq "$PORT_BASE" $((PORT_BASE + 16))); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "port $port is already in use (pick others with --port-base)"
        fi
    done
}

# Release builds of valet and the bench helpers; a CARGO_TARGET_DIR in the environment is honoured.
build() {
    if ((BUILD)); then
        log "building valet and valet-bench (release)"
        (cd "$REPO" && cargo build --release -p valet -p valet-bench >&2)
    fi
    local target_dir=${CARGO_TARGET_DIR:-$REPO/target}
    VALET=$target_dir/release/valet
    UPSTREAM_BIN=$target_dir/release/valet-bench-upstream
    CLIENT=$target_dir/release/valet-bench
    local bin
    for bin in "$VALET" "$UPSTREAM_BIN" "$CLIENT"; do
        [[ -x $bin ]] || die "$bin is missing (run without --no-build)"
    done
}

main() {
    parse_args "$@"
    local phase
    for phase in ${PHASES//,/ }; do
        [[ $phase =~ ^(warm|cold|docker|scale|streams|cluster|autoscale)$ ]] || die "unknown phase $phase"
    done
    UPSTREAM_PORT=$PORT_BASE
    NGINX_PORT=$((PORT_BASE + 1))
    VALET_PORT=$((PORT_BASE + 2)) # + 1 for its admin listener
    COLD_PORT=$((PORT_BASE + 4))  # + 1
    SCALE_PORT=$((PORT_BASE + 6)) # + 1
    HAPROXY_PORT=$((PORT_BASE + 8))
    CLUSTER_A_PORT=$((PORT_BASE + 9))  # + 1 admin, + 2 peer listener
    CLUSTER_B_PORT=$((PORT_BASE + 12)) # + 1 admin, + 2 peer listener
    AUTOSCALE_PORT=$((PORT_BASE + 15)) # + 1
    TARGETS="direct nginx haproxy valet"
    # wrk's threads: one per core, so the load generator is as strong as the machine allows.
    WRK_THREADS=$(nproc)

    WORK=$(mktemp -d "${TMPDIR:-/tmp}/valet-bench.XXXXXX")
    trap on_exit EXIT
    trap 'exit 130' INT TERM
    check_ports_free
    ensure_tools
    build
    # Other work on the machine skews everything; the table shows the load around the run.
    LOAD_BEFORE=$(cut -d' ' -f1 /proc/loadavg)
    # The burst holds $BURST connections in one client; valet raises its own limit at start.
    ulimit -n "$(ulimit -Hn)"

    if has_phase warm || has_phase streams || has_phase cluster; then
        start_warm_targets
    fi
    if has_phase warm; then
        run_warm_hop
        run_fixed_rate
    fi
    if [[ -n $PERF_OUT ]]; then
        has_phase warm || die "--perf needs the warm phase"
        run_perf "$PERF_OUT"
    fi
    if has_phase streams; then
        run_streams
    fi
    if has_phase cluster; then
        run_cluster
    fi
    # The warm-hop processes go before the next phases, which measure valets of their own.
    stop_all
    if has_phase cold; then
        run_cold_and_burst
    fi
    if has_phase docker; then
        run_cold_docker
    fi
    if has_phase scale; then
        run_scale
    fi
    if has_phase autoscale; then
        run_autoscale
    fi

    if [[ -n $OUT ]]; then
        print_table | tee "$OUT"
    else
        print_table
    fi
}

main "$@"
