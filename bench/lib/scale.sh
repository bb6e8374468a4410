# Scale: valet's memory with many sleeping keys and with many running instances, and how fast
# it starts instances. A valet of its own, so its memory holds nothing from other phases.
# Sourced by run.sh.
#
# Refused keys: class Sleepy allows one instance, running on key k0 and kept up by
# min_instances (so it is never put to sleep to make room). A request for any other key finds
# the class full and is answered 503 max_instances_reached without starting anything, and
# leaves no record (the hardening of issue 14: before it, each refused key stayed known, and
# this phase measured ~bytes per sleeping key). bytes_per_key is now what a refused key costs.

write_valet_scale_conf() {
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/valet.toml" <<CONF
[server]
listen = "127.0.0.1:$SCALE_PORT"
admin_listen = "127.0.0.1:$((SCALE_PORT + 1))"
data_dir = "$dir/data"
access_log = false
# The benchmark starts many keys from one address on purpose.
cold_starts_per_client = { starts = 0 }

[[containers]]
class_name = "Sleepy"
command = ["$UPSTREAM_BIN", "{port}"]
max_instances = 1
min_instances = 1
sleep_after = "1h"

[[containers]]
class_name = "Sequential"
command = ["$UPSTREAM_BIN", "{port}"]
max_instances = $INSTANCES
sleep_after = "1h"

[[containers]]
class_name = "Concurrent"
command = ["$UPSTREAM_BIN", "{port}"]
max_instances = $INSTANCES
sleep_after = "1h"

[[routes]]
pattern = "/sleepy/*"
container = "Sleepy"
instance = "path:1"

[[routes]]
pattern = "/seq/*"
container = "Sequential"
instance = "path:1"

[[routes]]
pattern = "/conc/*"
container = "Concurrent"
instance = "path:1"
CONF
}

run_scale() {
    local dir=$WORK/valet-scale pid
    write_valet_scale_conf "$dir"
    start_bg valet-scale "$dir/valet.log" "$VALET" up "$dir/valet.toml"
    pid=$BG_PID
    wait_port "$SCALE_PORT"
    wait_http "$SCALE_PORT" /sleepy/k0/ 30
    # Let allocations from start-up and the first instance settle before the baseline.
    sleep 1
    R[scale.rss_base_kb]=$(status_kb VmRSS "$pid")

    log "scale: $KEYS refused keys (503 max_instances_reached, nothing starts, no record kept)"
    run_client sleeping keys --addr "127.0.0.1:$SCALE_PORT" --path '/sleepy/{key}/' --key-prefix s \
        --count "$KEYS" --concurrency 8
    sleep 1
    R[scale.rss_keys_kb]=$(status_kb VmRSS "$pid")
    R[scale.bytes_per_key]=$(calc "(${R[scale.rss_keys_kb]} - ${R[scale.rss_base_kb]}) * 1024 / $KEYS" 0)

    log "scale: $INSTANCES instances started one after another"
    run_client seq keys --addr "127.0.0.1:$SCALE_PORT" --path '/seq/{key}/' --key-prefix q \
        --count "$INSTANCES" --concurrency 1
    sleep 1
    R[scale.rss_running_kb]=$(status_kb VmRSS "$pid")
    R[scale.kb_per_instance]=$(calc "(${R[scale.rss_running_kb]} - ${R[scale.rss_keys_kb]}) / $INSTANCES" 1)

    log "scale: $INSTANCES more instances started all at once"
    run_client conc keys --addr "127.0.0.1:$SCALE_PORT" --path '/conc/{key}/' --key-prefix c \
        --count "$INSTANCES" --concurrency "$INSTANCES"
    R[scale.rss_hwm_kb]=$(status_kb VmHWM "$pid")
    log "scale: stopping valet and its $((2 * INSTANCES + 1)) instances"
    stop_pid "$pid" 120
}
