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
    local t name cpu cpu_req hwm nginx_version
    nginx_version=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')
    cat <<EOF

### Warm hop: $CONNECTIONS connections, wrk -t$WRK_THREADS, ${DURATION}s x $ROUNDS rounds per target, interleaved

| target | requests/s | p50 ms | p99 ms | p99.9 ms | proxy CPU s | proxy CPU us/request | proxy peak RSS MB | errors |
|---|---:|---:|---:|---:|---:|---:|---:|---:|
EOF
    for t in $TARGETS; do
        case $t in
            direct) name="direct (no proxy)" ;;
            nginx) name="nginx $nginx_version, reverse proxy with upstream keepalive 64, HTTP/1.1, worker_processes auto, access_log off" ;;
            valet) name="valet, access_log = false" ;;
        esac
        if [[ $t == direct ]]; then
            cpu="-" cpu_req="-" hwm="-"
        else
            cpu=${R[warm.$t.cpu_s]} cpu_req=${R[warm.$t.cpu_us_per_req]} hwm=$(mb "${R[warm.$t.hwm_kb]}")
        fi
        echo "| $name | ${R[warm.$t.rps]} | ${R[warm.$t.p50_ms]} | ${R[warm.$t.p99_ms]} | ${R[warm.$t.p999_ms]} | $cpu | $cpu_req | $hwm | ${R[warm.$t.errors]} |"
    done
    cat <<EOF

valet / nginx throughput: $(calc "${R[warm.valet.rps]} / ${R[warm.nginx.rps]}" 2)x; round by round:$(printf ' %s' ${R[warm.ratios]:-})x (median $(median ${R[warm.ratios]:-0})x). The targets run in turn, the order reversed every other round. Requests/s: all requests of all rounds over their total time. Latency columns: the median of the rounds' percentiles. nginx's CPU and RSS: master plus workers (RSS summed).

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

print_targets() {
    cat <<EOF

### Targets (issue 3)

| target | goal | measured | |
|---|---|---|---|
EOF
    if has_phase warm; then
        # The median of the rounds' ratios: one odd round moves the overall ratio, not this.
        local ratio
        ratio=$(median ${R[warm.ratios]:-0})
        echo "| warm throughput | >= nginx | $(calc "$ratio" 2)x nginx (median of the rounds; overall $(calc "${R[warm.valet.rps]} / ${R[warm.nginx.rps]}" 2)x) | $(met "$ratio >= 1") |"
        echo "| added p99 at the fixed rate | < 1 ms over direct | ${R[rate.valet.added_p99_ms]} ms (nginx: ${R[rate.nginx.added_p99_ms]} ms) | $(met "${R[rate.valet.added_p99_ms]} < 1") |"
    fi
    if has_phase cold; then
        echo "| valet's share of a cold start | < 5 ms | ${R[cold.share_p50_ms]} ms (median) | $(met "${R[cold.share_p50_ms]} < 5") |"
        echo "| burst | $BURST of $BURST succeed, exactly 1 start | ${R[burst.ok]} of $BURST, ${R[burst.starts]} start(s) | $(met "${R[burst.ok]} == $BURST && ${R[burst.starts]} == 1") |"
    fi
    if has_phase docker && [[ -z ${R[dcold.skipped]:-} ]]; then
        echo "| Docker cold start | reported (no target) | ${R[dcold.valet_p50_ms]} ms to first byte, valet's share ${R[dcold.share_p50_ms]} ms (medians) | - |"
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
    print_targets
}
