# Streams: WebSocket echo and SSE delivery, direct vs through the warm-hop valet (same upstream
# binary, the /ws and /sse endpoints), interleaved round by round like the warm hop; the table
# shows the median of the rounds. Sourced by run.sh.

run_streams() {
    local round target port
    for ((round = 1; round <= ROUNDS; round++)); do
        for target in direct valet; do
            port=$(target_port "$target")
            log "streams round $round/$ROUNDS: WebSocket echo and SSE, $target"
            run_client "ws.$target.$round" ws --url "ws://127.0.0.1:$port/ws" \
                --connections "$WS_CONNECTIONS" --messages "$WS_MESSAGES" --size 100 --window 64 \
                --round-trips "$WS_ROUND_TRIPS"
            run_client "sse.$target.$round" sse --addr "127.0.0.1:$port" --streams 10 \
                --events "$SSE_EVENTS" --interval-ms 10
        done
    done
    for target in direct valet; do
        median_of_rounds "ws.$target" msgs_per_s rtt_p50_us rtt_p99_us
        median_of_rounds "sse.$target" p50_us p99_us max_us
        # Events are summed, not a median: every lost event should show.
        local events=0 expected=0
        for ((round = 1; round <= ROUNDS; round++)); do
            events=$((events + ${R[sse.$target.$round.events]}))
            expected=$((expected + ${R[sse.$target.$round.expected]}))
        done
        R[sse.$target.events]=$events
        R[sse.$target.expected]=$expected
    done
}
