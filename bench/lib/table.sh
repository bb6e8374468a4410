# The markdown table run.sh prints, from the results in R. Sourced by run.sh.

# met AWK-CONDITION: "met" or "**missed**".
met() {
    if awk "BEGIN { exit !($1) }"; then echo "met"; else echo "**missed**"; fi
}

mb() { calc "$1 / 1024" 1; }

print_header() {
    local dirty=""
    git -C "$REPO" diff --quiet HEAD -- crates 2>/dev/null || dirty=" + uncommitted changes in crates/"
    cat <<EOF
## valet benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')

Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, Linux $(uname -r). valet $(git -C "$REPO" rev-parse --short HEAD)$dirty. Load generator, upstream and proxy share these cores. 1-minute load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1 /proc/loadavg) (the run itself adds about 2).
EOF
}

print_warm() {
    local t name cpu cpu_req hwm nginx_version haproxy_version
    nginx_version=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')
    haproxy_version=$("$HAPROXY" -v 2>&1 | awk 'NR == 1 { print $3 }')
    cat <<EOF

### Warm hop: $CONNECTIONS connections, wrk -t$WRK_THREADS, ${DURATION}s x $ROUNDS rounds per target, interleaved

| target | requests/s | p50 ms | p99 ms | p99.9 ms | proxy CPU s | proxy CPU us/request | of it in the kernel | machine CPU us/request | proxy peak RSS MB | errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    for t in $TARGETS; do
        case $t in
            direct) name="direct (no proxy)" ;;
            nginx) name="nginx $nginx_version, reverse proxy with upstream keepalive 64, HTTP/1.1, worker_processes auto, access_log off" ;;
            haproxy) name="HAProxy $haproxy_version, mode http, http-reuse always (upstream keep-alive), nbthread $(nproc), no logging" ;;
            valet) name="valet, access_log = false" ;;
        esac
        if [[ $t == direct ]]; then
            cpu="-" cpu_req="-" sys_req="-" hwm="-"
        else
            cpu=${R[warm.$t.cpu_s]} cpu_req=${R[warm.$t.cpu_us_per_req]} hwm=$(mb "${R[warm.$t.hwm_kb]}")
            sys_req=${R[warm.$t.sys_us_per_req]}
        fi
        echo "| $name | ${R[warm.$t.rps]} | ${R[warm.$t.p50_ms]} | ${R[warm.$t.p99_ms]} | ${R[warm.$t.p999_ms]} | $cpu | $cpu_req | $sys_req | ${R[warm.$t.machine_us_per_req]} | $hwm | ${R[warm.$t.errors]} |"
    done
    # What the proxy's own code can buy here at most: the machine's work per request through
    # nginx, less nginx's user-space part, is what a proxy with nginx's kernel work and no
    # user-space work at all would cost; on a machine this busy, requests/s go as its inverse.
    local user_us ceiling
    user_us=$(calc "${R[warm.nginx.cpu_us_per_req]} - ${R[warm.nginx.sys_us_per_req]}" 1)
    ceiling=$(calc "${R[warm.nginx.machine_us_per_req]} / (${R[warm.nginx.machine_us_per_req]} - $user_us)" 2)
    cat <<EOF

valet / nginx throughput: $(calc "${R[warm.valet.rps]} / ${R[warm.nginx.rps]}" 2)x; round by round:$(printf ' %s' ${R[warm.ratios]:-})x (median $(median ${R[warm.ratios]:-0})x).

valet / haproxy throughput: $(calc "${R[warm.valet.rps]} / ${R[warm.haproxy.rps]}" 2)x; round by round:$(printf ' %s' ${R[warm.ratios_haproxy]:-})x (median $(median ${R[warm.ratios_haproxy]:-0})x).

The targets run in turn, the order reversed every other round. Requests/s: all requests of all rounds over their total time. Latency columns: the median of the rounds' percentiles. nginx's CPU and RSS: master plus workers (RSS summed); HAProxy is one process of $(nproc) threads. "Of it in the kernel": the proxy's system time (its socket calls, the loopback TCP work run inside them, scheduling). Machine CPU: every core's busy time during the target's rounds (load generator, upstream, proxy and the kernel), per request.

Ceiling of the proxy's own code on this machine: nginx spends $user_us us per request in user space of the ${R[warm.nginx.machine_us_per_req]} us the whole machine spends; a proxy with nginx's kernel work that spent nothing in user space would serve at most ${ceiling}x nginx's requests/s here.

### Fixed rate: $RATE requests/s (half of nginx's maximum above), oha -q with --latency-correction, $CONNECTIONS connections, ${DURATION}s x $ROUNDS rounds

| target | achieved req/s | p50 ms | p99 ms | p99.9 ms | added p99 over direct, ms | errors |
|---|---:|---:|---:|---:|---:|---:|
EOF
    for t in $TARGETS; do
        local added=${R[rate.$t.added_p99_ms]}
        [[ $t == direct ]] && added="-"
        echo "| $t | ${R[rate.$t.achieved]} | ${R[rate.$t.p50_ms]} | ${R[rate.$t.p99_ms]} | ${R[rate.$t.p999_ms]} | $added | ${R[rate.$t.errors]} |"
    done
}

print_cold() {
    cat <<EOF

### Cold start, process driver: $COLD_RUNS runs, a fresh key each

| | median ms | p90 ms |
|---|---:|---:|
| the app alone: spawn until it answers a GET (polled every 200 us) | ${R[cold.app_p50_ms]} | ${R[cold.app_p90_ms]} |
| through valet: connect + GET to a fresh key until the response head | ${R[cold.valet_p50_ms]} | ${R[cold.valet_p90_ms]} |
| valet's share (difference of the two) | ${R[cold.share_p50_ms]} | ${R[cold.share_p90_ms]} |

### Burst: $BURST concurrent first requests to one cold key

| | clients | succeeded (200) | outcomes | instance starts | median answer ms | last answer ms |
|---|---:|---:|---|---:|---:|---:|
| through valet, cold key | ${R[burst.clients]} | ${R[burst.ok]} | ${R[burst.statuses]} | ${R[burst.starts]} | ${R[burst.p50_ms]} | ${R[burst.last_ms]} |
| baseline: straight to a running upstream | ${R[burst_direct.clients]} | ${R[burst_direct.ok]} | ${R[burst_direct.statuses]} | - | ${R[burst_direct.p50_ms]} | ${R[burst_direct.last_ms]} |
EOF
}

print_scale() {
    cat <<EOF

### Scale

| measurement | value |
|---|---:|
| valet RSS, 1 instance running | $(mb "${R[scale.rss_base_kb]}") MB |
| valet RSS, + $KEYS sleeping keys (outcomes ${R[sleeping.statuses]}) | $(mb "${R[scale.rss_keys_kb]}") MB |
| gateway memory per sleeping key | ${R[scale.bytes_per_key]} bytes |
| valet RSS, + $INSTANCES running instances | $(mb "${R[scale.rss_running_kb]}") MB |
| gateway memory per running instance | ${R[scale.kb_per_instance]} kB |
| valet peak RSS after $INSTANCES more, started at once | $(mb "${R[scale.rss_hwm_kb]}") MB |
| instance starts/s, $INSTANCES one after another (outcomes ${R[seq.statuses]}) | $(calc "${R[seq.per_s]}" 1) |
| instance starts/s, $INSTANCES at once (outcomes ${R[conc.statuses]}) | $(calc "${R[conc.per_s]}" 1) |
EOF
}

print_streams() {
    local d=direct v=valet
    cat <<EOF

### Streams: direct vs through valet, median of $ROUNDS interleaved rounds

| | direct | valet |
|---|---:|---:|
| WebSocket echo, msgs/s ($WS_CONNECTIONS connections, 100 B, 64 in flight each) | $(calc "${R[ws.$d.msgs_per_s]}" 0) | $(calc "${R[ws.$v.msgs_per_s]}" 0) |
| WebSocket round trip p50 / p99 us (one in flight) | $(calc "${R[ws.$d.rtt_p50_us]}" 0) / $(calc "${R[ws.$d.rtt_p99_us]}" 0) | $(calc "${R[ws.$v.rtt_p50_us]}" 0) / $(calc "${R[ws.$v.rtt_p99_us]}" 0) |
| SSE delivery delay p50 / p99 / max us (10 streams, 1 event per 10 ms each) | $(calc "${R[sse.$d.p50_us]}" 0) / $(calc "${R[sse.$d.p99_us]}" 0) / $(calc "${R[sse.$d.max_us]}" 0) | $(calc "${R[sse.$v.p50_us]}" 0) / $(calc "${R[sse.$v.p99_us]}" 0) / $(calc "${R[sse.$v.max_us]}" 0) |
| SSE events received / expected | ${R[sse.$d.events]} / ${R[sse.$d.expected]} | ${R[sse.$v.events]} / ${R[sse.$v.expected]} |
EOF
}

print_cold_docker() {
    if [[ -n ${R[dcold.skipped]:-} ]]; then
        printf '\n### Cold start, Docker driver\n\n%s\n' "${R[dcold.skipped]}"
        return
    fi
    cat <<EOF

### Cold start, Docker driver: $DOCKER_RUNS runs, a fresh key each (busybox httpd, FROM scratch)

| | median ms | p90 ms |
|---|---:|---:|
| the container alone: create + start through the Engine API until it answers a GET (polled every 1 ms) | ${R[dcold.app_p50_ms]} | ${R[dcold.app_p90_ms]} |
| through valet: connect + GET to a fresh key until the response head | ${R[dcold.valet_p50_ms]} | ${R[dcold.valet_p90_ms]} |
| valet's share (difference of the two) | ${R[dcold.share_p50_ms]} | ${R[dcold.share_p90_ms]} |
EOF
}

print_cluster() {
    if [[ -n ${R[cluster.skipped]:-} ]]; then
        printf '\n### Cluster: two replicas on one PostgreSQL store\n\n%s\n' "${R[cluster.skipped]}"
        return
    fi
    local t name
    cat <<EOF

### Cluster: two replicas on one PostgreSQL store, $CONNECTIONS connections, wrk -t$WRK_THREADS, ${DURATION}s x $ROUNDS rounds per target, interleaved

The warm hop's class (one fixed key, the same upstream binary), lease_ttl ${CLUSTER_LEASE_TTL}s, everything on 127.0.0.1. Replica A took the key's lease with its first request and runs the instance; instance starts across both replicas: ${R[cluster.starts]}.

| target | requests/s | p50 ms | p99 ms | p99.9 ms | valet CPU us/request | errors |
|---|---:|---:|---:|---:|---:|---:|
EOF
    for t in forwarded owner single; do
        case $t in
            forwarded) name="forwarded: through replica B, which forwards every request to A's peer listener (CPU: B + A)" ;;
            owner) name="owner: through replica A, which runs the instance" ;;
            single) name="single replica: the warm-hop valet, no [cluster] (SQLite store)" ;;
        esac
        echo "| $name | ${R[cluster.$t.rps]} | ${R[cluster.$t.p50_ms]} | ${R[cluster.$t.p99_ms]} | ${R[cluster.$t.p999_ms]} | ${R[cluster.$t.cpu_us_per_req]} | ${R[cluster.$t.errors]} |"
    done
    cat <<EOF

forwarded / single-replica throughput: $(calc "${R[cluster.forwarded.rps]} / ${R[cluster.single.rps]}" 2)x; round by round:$(printf ' %s' ${R[cluster.ratios_forwarded]})x (median $(median ${R[cluster.ratios_forwarded]})x).

owner / single-replica throughput: $(calc "${R[cluster.owner.rps]} / ${R[cluster.single.rps]}" 2)x; round by round:$(printf ' %s' ${R[cluster.ratios_owner]})x (median $(median ${R[cluster.ratios_owner]})x).

CPU per forwarded request: replica B (client side, forwards) ${R[cluster.cpu_b_us_per_req]} us + replica A (peer listener, proxies to the instance) ${R[cluster.cpu_a_us_per_req]} us, against ${R[cluster.single.cpu_us_per_req]} us for the single replica.

Store round trips during warm forwarded load: ${R[cluster.store.run_xacts]} transactions in the bench's database (pg_stat_database xact_commit + xact_rollback) during ${R[cluster.store.requests]} requests through B in $(calc "${R[cluster.store.seconds]}" 1) s (B's valet_requests_forwarded_total rose by ${R[cluster.store.forwarded]}; wrk leaves out the requests in flight when it stops); ${R[cluster.store.idle_xacts]} in an idle window of the same length just before. Background work expected in ${DURATION} s: ${R[cluster.store.expected_renewals]} renewal rounds (4 per lease_ttl per replica) and ${R[cluster.store.expected_sweeps]} owner sweeps of B (1 per lease_ttl). Transactions beyond the idle window, per request: ${R[cluster.store.extra_per_req]}. PostgreSQL counts a backend's transactions when it flushes its statistics (at most once a second), so either window may be off by a round or two.
EOF
}

# ratio_or_dash A B: A / B as "N.Nx", "-" when B is 0 (nothing completed).
ratio_or_dash() {
    if awk -v b="$2" 'BEGIN { exit !(b > 0) }'; then echo "$(calc "$1 / $2" 1)x"; else echo "-"; fi
}

print_autoscale() {
    local c s u
    if [[ -n ${R[autoscale.skipped]:-} ]]; then
        printf '\n### Autoscale: one key, a one-worker backend\n\n%s\n' "${R[autoscale.skipped]}"
        return
    fi
    cat <<EOF

### Autoscale: one key, a one-worker backend (one request at a time, 200 ms each), wrk -t1, ${AUTOSCALE_WARMUP}s warm-up + ${DURATION}s per concurrency

Scaled: \`scale = { max_replicas = $AUTOSCALE_MAX_REPLICAS, target_concurrency = 1 }\`, sleep_after ${AUTOSCALE_SLEEP_AFTER}s; single: the same class without \`scale\`. The concurrencies run in rising order without a pause, scaled first. Replicas: the key's instances starting, ready or stopping (\`valet_instances\` of its class), sampled every 0.25 s during the measured run (most seen) and at its end.

| connections | scaled req/s | replicas (most / at end) | scaled p50 / p99 ms | single req/s | single p50 / p99 ms | scaled / single | errors (scaled, single) |
|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    for c in $AUTOSCALE_CONCURRENCY; do
        s=autoscale.Scaled.$c u=autoscale.Single.$c
        echo "| $c | ${R[$s.rps]} | ${R[$s.replicas_max]} / ${R[$s.replicas_end]} | ${R[$s.p50_ms]} / ${R[$s.p99_ms]} | ${R[$u.rps]} | ${R[$u.p50_ms]} / ${R[$u.p99_ms]} | $(ratio_or_dash "${R[$s.rps]}" "${R[$u.rps]}") | $((R[$s.errors] + R[$s.non2xx])), $((R[$u.errors] + R[$u.non2xx])) |"
    done
    cat <<EOF

Scaled key: ${R[autoscale.starts_loaded]} instance starts under load (\`valet_scale_ups_total\` ${R[autoscale.scale_ups]}: replicas beside the first); ${R[autoscale.idle_running]} running ${R[autoscale.idle_s]} s after the load ended (sleep_after ${AUTOSCALE_SLEEP_AFTER}s; \`valet_scale_downs_total\` ${R[autoscale.scale_downs]}), ${R[autoscale.starts_total]} starts in all. Single key: ${R[autoscale.single_starts]} start(s).
EOF
}

print_targets() {
    cat <<EOF

### Targets (issue 3; the HAProxy ratio from DESIGN.md)

| target | goal | measured | |
|---|---|---|---|
EOF
    if has_phase warm; then
        # The median of the rounds' ratios: one odd round moves the overall ratio, not this.
        local ratio
        ratio=$(median ${R[warm.ratios]:-0})
        echo "| warm throughput | >= nginx | $(calc "$ratio" 2)x nginx (median of the rounds; overall $(calc "${R[warm.valet.rps]} / ${R[warm.nginx.rps]}" 2)x) | $(met "$ratio >= 1") |"
        ratio=$(median ${R[warm.ratios_haproxy]:-0})
        echo "| warm throughput vs HAProxy | >= 1.1x HAProxy (DESIGN.md) | $(calc "$ratio" 2)x HAProxy (median of the rounds; overall $(calc "${R[warm.valet.rps]} / ${R[warm.haproxy.rps]}" 2)x) | $(met "$ratio >= 1.1") |"
        echo "| added p99 at the fixed rate | < 1 ms over direct | ${R[rate.valet.added_p99_ms]} ms (nginx: ${R[rate.nginx.added_p99_ms]} ms, HAProxy: ${R[rate.haproxy.added_p99_ms]} ms) | $(met "${R[rate.valet.added_p99_ms]} < 1") |"
    fi
    if has_phase cold; then
        echo "| valet's share of a cold start | < 5 ms | ${R[cold.share_p50_ms]} ms (median) | $(met "${R[cold.share_p50_ms]} < 5") |"
        echo "| burst | $BURST of $BURST succeed, exactly 1 start | ${R[burst.ok]} of $BURST, ${R[burst.starts]} start(s) | $(met "${R[burst.ok]} == $BURST && ${R[burst.starts]} == 1") |"
    fi
    if has_phase docker && [[ -z ${R[dcold.skipped]:-} ]]; then
        echo "| Docker cold start | reported (no target) | ${R[dcold.valet_p50_ms]} ms to first byte, valet's share ${R[dcold.share_p50_ms]} ms (medians) | - |"
    fi
    if has_phase cluster && [[ -z ${R[cluster.skipped]:-} ]]; then
        # Issue 16: a warm request, owned or forwarded, makes no store round trip. Fewer than one
        # transaction per thousand requests beyond the idle window is the statistics' noise.
        echo "| store round trips per warm forwarded request (issue 16) | 0 | ${R[cluster.store.run_xacts]} transactions during ${R[cluster.store.requests]} requests, ${R[cluster.store.idle_xacts]} when idle | $(met "${R[cluster.store.extra_per_req]} < 0.001") |"
        echo "| forwarded throughput | reported (no target) | $(calc "$(median ${R[cluster.ratios_forwarded]})" 2)x the single replica (median of the rounds) | - |"
    fi
    if has_phase autoscale && [[ -z ${R[autoscale.skipped]:-} ]]; then
        # Issue 21: 16 clients get at least 4x one instance's throughput, never more than
        # max_replicas run at once, and every replica sleeps again after idle. Starts are not
        # the measure here: a replica idle for sleep_after while the load is low sleeps, and a
        # later, higher load starts it again.
        # One instance's throughput: the best of the single key's runs (more clients only
        # queue longer on its one worker).
        local s16=autoscale.Scaled.16 c most=0 one=0
        for c in $AUTOSCALE_CONCURRENCY; do
            ((R[autoscale.Scaled.$c.replicas_max] > most)) && most=${R[autoscale.Scaled.$c.replicas_max]}
            one=$(awk -v a="$one" -v b="${R[autoscale.Single.$c.rps]}" 'BEGIN { print (b > a) ? b : a }')
        done
        echo "| autoscale: 16 clients on a one-worker key (issue 21) | >= 4x one instance, <= $AUTOSCALE_MAX_REPLICAS replicas at once, 0 running after idle | ${R[$s16.rps]} req/s: $(calc "${R[$s16.rps]} / $one" 1)x one instance's best ($one req/s), at most $most at once (${R[autoscale.starts_total]} starts), ${R[autoscale.idle_running]} running ${R[autoscale.idle_s]} s after the load | $(met "${R[$s16.rps]} >= 4 * $one && $most <= $AUTOSCALE_MAX_REPLICAS && ${R[autoscale.idle_running]} == 0") |"
    fi
    if has_phase scale; then
        echo "| memory per sleeping key | < 2 KB | ${R[scale.bytes_per_key]} bytes | $(met "${R[scale.bytes_per_key]} < 2048") |"
    fi
}

print_table() {
    print_header
    if has_phase warm; then print_warm; fi
    if has_phase cold; then print_cold; fi
    if has_phase docker; then print_cold_docker; fi
    if has_phase scale; then print_scale; fi
    if has_phase streams; then print_streams; fi
    if has_phase cluster; then print_cluster; fi
    if has_phase autoscale; then print_autoscale; fi
    print_targets
}
