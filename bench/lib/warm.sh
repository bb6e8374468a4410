# Warm hop: one upstream reached directly, through nginx, through HAProxy and through valet,
# interleaved round by round with the same wrk settings; then the same four at a fixed rate with
# oha. Sourced by run.sh; leaves the upstream and valet running for the streams and cluster phases.

write_nginx_conf() {
    local dir=$1
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<CONF
# nginx as a reverse proxy tuned the way a fair peer would be: HTTP/1.1 to the upstream with a
# pool of idle keep-alive connections (untuned nginx opens a connection per request).
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
}

write_haproxy_conf() {
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/haproxy.cfg" <<CONF
# HAProxy as a reverse proxy tuned the way a fair peer would be: HTTP mode (it parses every
# request, as nginx and valet do), idle server connections kept and shared between client
# connections (http-reuse always), one thread per core, no log lines (no log directive at all).
global
    nbthread $(nproc)
    maxconn 4096
    pidfile $dir/haproxy.pid

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend bench
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend bench_upstream

backend bench_upstream
    server upstream 127.0.0.1:$UPSTREAM_PORT
CONF
}

write_valet_warm_conf() {
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/valet.toml" <<CONF
# One class, one fixed key: every request goes to the same warm instance of the same upstream
# binary the direct and nginx targets use.
[server]
listen = "127.0.0.1:$VALET_PORT"
admin_listen = "127.0.0.1:$((VALET_PORT + 1))"
data_dir = "$dir/data"
access_log = false

[[containers]]
class_name = "Upstream"
command = ["$UPSTREAM_BIN", "{port}"]
sleep_after = "1h"

[[routes]]
pattern = "/*"
container = "Upstream"
instance = "name:warm"
CONF
}

start_warm_targets() {
    # A session of its own, as valet's instances have (valet starts each with setsid): with
    # the kernel's autogroup scheduling a session is a scheduling group, so the upstream
    # behind direct and nginx must not share one with the load generator and the proxy when
    # valet's does not.
    start_bg upstream "$WORK/upstream.log" setsid "$UPSTREAM_BIN" "$UPSTREAM_PORT"
    UPSTREAM_PID=$BG_PID
    wait_port "$UPSTREAM_PORT"

    write_nginx_conf "$WORK/nginx"
    start_bg nginx "$WORK/nginx/stdout.log" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"
    NGINX_PID=$BG_PID
    wait_port "$NGINX_PORT"

    # Started like nginx and valet (in the script's session, not a session of its own): the
    # three proxies share one scheduling group with wrk, the upstreams each have their own.
    write_haproxy_conf "$WORK/haproxy"
    "$HAPROXY" -c -q -f "$WORK/haproxy/haproxy.cfg" >&2 || die "haproxy refused its config"
    start_bg haproxy "$WORK/haproxy/haproxy.log" "$HAPROXY" -db -f "$WORK/haproxy/haproxy.cfg"
    HAPROXY_PID=$BG_PID
    wait_port "$HAPROXY_PORT"

    write_valet_warm_conf "$WORK/valet-warm"
    start_bg valet "$WORK/valet-warm/valet.log" "$VALET" up "$WORK/valet-warm/valet.toml"
    VALET_PID=$BG_PID
    wait_port "$VALET_PORT"
    # The first request starts the instance; the warm hop measures only what comes after.
    wait_http "$VALET_PORT" / 30
    wait_http "$NGINX_PORT" / 10
    wait_http "$HAPROXY_PORT" / 10
}

# The port of a target: the warm hop's, and the cluster phase's (bench/lib/cluster.sh), where
# "single" is the warm-hop valet again.
target_port() {
    case $1 in
        direct) echo "$UPSTREAM_PORT" ;;
        nginx) echo "$NGINX_PORT" ;;
        haproxy) echo "$HAPROXY_PORT" ;;
        valet | single) echo "$VALET_PORT" ;;
        forwarded) echo "$CLUSTER_B_PORT" ;;
        owner) echo "$CLUSTER_A_PORT" ;;
        *) die "unknown target $1" ;;
    esac
}

# The processes whose CPU and memory count as "the proxy" for a target. A forwarded request
# costs both replicas: the one it reached (B) and the owner (A).
target_pids() {
    case $1 in
        direct) ;;
        nginx) nginx_pids "$NGINX_PID" ;;
        haproxy) echo "$HAPROXY_PID" ;;
        valet | single) echo "$VALET_PID" ;;
        forwarded) echo "$CLUSTER_B_PID $CLUSTER_A_PID" ;;
        owner) echo "$CLUSTER_A_PID" ;;
        *) die "unknown target $1" ;;
    esac
}

# wrk_once TARGET SECONDS: one wrk run; prints its RESULT line (from bench/wrk-report.lua).
wrk_once() {
    local port
    port=$(target_port "$1")
    wrk -t "$WRK_THREADS" -c "$CONNECTIONS" -d "${2}s" --timeout 5s -s "$BENCH_DIR/wrk-report.lua" \
        "http://127.0.0.1:$port/" | grep '^RESULT'
}

# round_order ROUND TARGET...: the targets in the order of this round, reversed every other
# round, so that a drift of the machine over the run (other tenants, frequency) favours no target.
round_order() {
    local round=$1
    shift
    if ((round % 2)); then
        echo "$*"
    else
        printf '%s\n' "$@" | tac | tr '\n' ' '
    fi
}

# wrk_rounds PHASE TARGET...: a warm-up of $WARMUP s per target, then $ROUNDS interleaved
# rounds of $DURATION s each. Stores, per target T: R[PHASE.T.rps] (all requests of all rounds
# over their total time), .errors, .p50_ms/.p99_ms/.p999_ms (the median of the rounds'
# percentiles: wrk's histograms cannot be merged from outside), .cpu_s and .cpu_us_per_req
# (the processes of target_pids, summed), .sys_us_per_req (the part of it spent in the kernel),
# .cpu_us_per_req.PID (each of them alone), .hwm_kb, .machine_us_per_req (the whole
# machine's busy CPU time per request: load generator, upstream and proxy together);
# and R[PHASE.round.N.T], round N's requests/s.
wrk_rounds() {
    local phase=$1 round target line pids pid used tck
    shift
    declare -A cpu=() sys=() machine=() reqs=() secs=() errs=() p50=() p99=() p999=() before=()
    log "$phase: warm-up, ${WARMUP}s per target"
    for target in "$@"; do
        wrk_once "$target" "$WARMUP" >/dev/null
    done
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in $(round_order "$round" "$@"); do
            pids=$(target_pids "$target")
            for pid in $pids; do
                before[$pid]=$(cpu_ticks "$pid")
                before[sys.$pid]=$(cpu_ticks --sys "$pid")
            done
            before[machine]=$(machine_ticks)
            line=$(wrk_once "$target" "$DURATION")
            machine[$target]=$((${machine[$target]:-0} + $(machine_ticks) - before[machine]))
            for pid in $pids; do
                used=$(($(cpu_ticks "$pid") - before[$pid]))
                cpu[$target.$pid]=$((${cpu[$target.$pid]:-0} + used))
                cpu[$target]=$((${cpu[$target]:-0} + used))
                sys[$target]=$((${sys[$target]:-0} + $(cpu_ticks --sys "$pid") - before[sys.$pid]))
            done
            parse_result "wrk" "$line"
            log "$phase round $round/$ROUNDS $target: ${R[wrk.rps]} req/s, p99 ${R[wrk.p99_us]} us"
            reqs[$target]=$((${reqs[$target]:-0} + ${R[wrk.requests]}))
            secs[$target]=$(calc "${secs[$target]:-0} + ${R[wrk.seconds]}" 3)
            errs[$target]=$((${errs[$target]:-0} + ${R[wrk.errors]} + ${R[wrk.non2xx]}))
            p50[$target]+=" ${R[wrk.p50_us]}"
            p99[$target]+=" ${R[wrk.p99_us]}"
            p999[$target]+=" ${R[wrk.p999_us]}"
            R[$phase.round.$round.$target]=${R[wrk.rps]}
        done
    done
    tck=$(getconf CLK_TCK)
    for target in "$@"; do
        R[$phase.$target.rps]=$(calc "${reqs[$target]} / ${secs[$target]}" 0)
        R[$phase.$target.requests]=${reqs[$target]}
        R[$phase.$target.errors]=${errs[$target]}
        R[$phase.$target.p50_ms]=$(calc "$(median ${p50[$target]}) / 1000" 3)
        R[$phase.$target.p99_ms]=$(calc "$(median ${p99[$target]}) / 1000" 3)
        R[$phase.$target.p999_ms]=$(calc "$(median ${p999[$target]}) / 1000" 3)
        R[$phase.$target.cpu_s]=$(calc "${cpu[$target]:-0} / $tck" 2)
        R[$phase.$target.cpu_us_per_req]=$(calc "${cpu[$target]:-0} / $tck * 1000000 / ${reqs[$target]}" 1)
        R[$phase.$target.sys_us_per_req]=$(calc "${sys[$target]:-0} / $tck * 1000000 / ${reqs[$target]}" 1)
        R[$phase.$target.machine_us_per_req]=$(calc "${machine[$target]:-0} / $tck * 1000000 / ${reqs[$target]}" 1)
        pids=$(target_pids "$target")
        for pid in $pids; do
            R[$phase.$target.cpu_us_per_req.$pid]=$(calc "${cpu[$target.$pid]} / $tck * 1000000 / ${reqs[$target]}" 1)
        done
        R[$phase.$target.hwm_kb]=$( [[ -n $pids ]] && status_kb VmHWM $pids || echo 0)
    done
}

# round_ratios PHASE A B: R[PHASE.round.N.A] / R[PHASE.round.N.B] for every round, space-separated.
round_ratios() {
    local phase=$1 a=$2 b=$3 round out=""
    for ((round = 1; round <= ROUNDS; round++)); do
        out+=" $(calc "${R[$phase.round.$round.$a]} / ${R[$phase.round.$round.$b]}" 3)"
    done
    echo "$out"
}

run_warm_hop() {
    wrk_rounds warm $TARGETS
    R[warm.ratios]=$(round_ratios warm valet nginx)
    R[warm.ratios_haproxy]=$(round_ratios warm valet haproxy)
}

# oha_fixed TARGET RATE SECONDS: prints "achieved p50_ms p99_ms p999_ms errors". Requests still
# in flight when the duration ends ("aborted due to deadline") are not errors.
oha_fixed() {
    local port json
    port=$(target_port "$1")
    # --latency-correction measures from when each request was due, not when it was sent, so a
    # stall is not hidden by the requests it delayed (coordinated omission).
    json=$(oha --no-tui --output-format json --latency-correction -q "$2" -z "${3}s" -c "$CONNECTIONS" \
        "http://127.0.0.1:$port/")
    jq -r '[.summary.requestsPerSec,
            .latencyPercentiles.p50 * 1000, .latencyPercentiles.p99 * 1000,
            .latencyPercentiles["p99.9"] * 1000,
            ((.statusCodeDistribution | to_entries | map(select(.key != "200") | .value) | add) // 0)
            + ((.errorDistribution | to_entries | map(select(.key != "aborted due to deadline") | .value) | add) // 0)]
           | @tsv' <<<"$json"
}

run_fixed_rate() {
    local target achieved l50 l99 l999 errors round
    declare -A a=() q50=() q99=() q999=() e=()
    RATE=$(calc "${R[warm.nginx.rps]} / 2" 0)
    log "fixed rate: $RATE req/s (half of nginx's measured maximum)"
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in $(round_order "$round" $TARGETS); do
            read -r achieved l50 l99 l999 errors < <(oha_fixed "$target" "$RATE" "$DURATION")
            log "fixed rate round $round/$ROUNDS $target: $(calc "$achieved" 0) req/s, p99 $(calc "$l99" 3) ms"
            a[$target]+=" $achieved"
            q50[$target]+=" $l50"
            q99[$target]+=" $l99"
            q999[$target]+=" $l999"
            e[$target]=$((${e[$target]:-0} + errors))
        done
    done
    for target in $TARGETS; do
        R[rate.$target.achieved]=$(calc "$(median ${a[$target]})" 0)
        R[rate.$target.p50_ms]=$(calc "$(median ${q50[$target]})" 3)
        R[rate.$target.p99_ms]=$(calc "$(median ${q99[$target]})" 3)
        R[rate.$target.p999_ms]=$(calc "$(median ${q999[$target]})" 3)
        R[rate.$target.errors]=${e[$target]}
        R[rate.$target.added_p99_ms]=$(calc "${R[rate.$target.p99_ms]} - ${R[rate.direct.p99_ms]}" 3)
    done
}
