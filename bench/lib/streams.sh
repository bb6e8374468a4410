# Streams: WebSocket echo and SSE delivery, direct vs through the warm-hop valet (same upstream
# binary, the /ws and /sse endpoints). Sourced by run.sh.

run_streams() {
    local target port
    for target in direct valet; do
        port=$(target_port "$target")
        log "streams: WebSocket echo, $target"
        run_client "ws.$target" ws --url "ws://127.0.0.1:$port/ws" --connections "$WS_CONNECTIONS" \
            --messages "$WS_MESSAGES" --size 100 --window 64 --round-trips "$WS_ROUND_TRIPS"
        log "streams: SSE delivery delay, $target"
        run_client "sse.$target" sse --addr "127.0.0.1:$port" --streams 10 --events "$SSE_EVENTS" \
            --interval-ms 10
    done
}
