# Autoscale (issue 21): a worker-bound backend (one request at a time, 200 ms each) behind one
# key, with `scale = { max_replicas = 8, target_concurrency = 1 }` and without, under wrk at
# rising concurrency. Throughput can only come from more processes, so the curve shows how
# many replicas the load gets and what they give; afterwards every replica must sleep again
# after sleep_after. A valet of its own. Sourced by run.sh.

# Concurrencies of the sweep; each gets a warm-up (the scale-up happens there) and a measured run.
AUTOSCALE_CONCURRENCY="1 2 4 8 16 32"
AUTOSCALE_MAX_REPLICAS=8
AUTOSCALE_SLEEP_AFTER=3
AUTOSCALE_WARMUP=2

# The backend of crates/valet/tests/system/scale.rs: a lock around each answer makes one worker.
write_autoscale_worker() {
    cat >"$1" <<'PY'
import os, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        with LOCK:
            time.sleep(0.2)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

fd = os.open(os.environ["STARTS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, f"{os.getpid()} {os.environ.get('VALET_REPLICA', '-')}\n".encode())
os.close(fd)
ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
PY
}

write_valet_autoscale_conf() {
    local dir=$1 python=$2
    cat >"$dir/valet.toml" <<CONF
# Two classes of the same one-worker backend, one fixed key each: Scaled may run up to
# $AUTOSCALE_MAX_REPLICAS replicas of its key, Single runs one instance (valet without scale).
[server]
listen = "127.0.0.1:$AUTOSCALE_PORT"
admin_listen = "127.0.0.1:$((AUTOSCALE_PORT + 1))"
admin_token = "$AUTOSCALE_ADMIN_TOKEN"
data_dir = "$dir/data"
access_log = false
# Every replica start comes from this one address.
cold_starts_per_client = { starts = 0 }

[[containers]]
class_name = "Scaled"
command = ["$python", "$dir/worker.py"]
sleep_after = "${AUTOSCALE_SLEEP_AFTER}s"
env = { STARTS_FILE = "$dir/scaled-starts" }
scale = { max_replicas = $AUTOSCALE_MAX_REPLICAS, target_concurrency = 1 }

[[containers]]
class_name = "Single"
command = ["$python", "$dir/worker.py"]
sleep_after = "${AUTOSCALE_SLEEP_AFTER}s"
env = { STARTS_FILE = "$dir/single-starts" }

[[routes]]
pattern = "/scaled/*"
container = "Scaled"
instance = "name:w"

[[routes]]
pattern = "/single/*"
container = "Single"
instance = "name:w"
CONF
    chmod 600 "$dir/valet.toml"
}

autoscale_metrics() {
    curl -fsS -H "Authorization: Bearer $AUTOSCALE_ADMIN_TOKEN" "http://127.0.0.1:$((AUTOSCALE_PORT + 1))/metrics"
}

# autoscale_running CLASS: its instances starting, ready or stopping now (the one key's replicas).
autoscale_running() {
    autoscale_metrics | awk -v c="$1" '
        index($1, "valet_instances{class=\"" c "\",state=") == 1 && $1 !~ /state="(stopped|crashed)"/ { s += $2 }
        END { printf "%d\n", s }'
}

# autoscale_counter NAME CLASS: a per-class series of /metrics.
autoscale_counter() {
    autoscale_metrics | awk -v n="$1{class=\"$2\"}" '$1 == n { v = $2 } END { printf "%d\n", v }'
}

# autoscale_run CLASS C: a warm-up, then $DURATION s of wrk at C connections to CLASS's key,
# sampling the key's replicas every 0.25 s. Stores R[autoscale.CLASS.C.*].
# When wrk stops, the requests it leaves in flight stay queued on the one-worker backend, which
# serves them anyway: autoscale_drain waits them out after the warm-up and after the run, so no
# run starts behind another's leftovers.
autoscale_run() {
    local class=$1 c=$2 path out wrk_pid n max=0 p=autoscale.$1.$2
    path=/$(tr '[:upper:]' '[:lower:]' <<<"$class")/work
    # One wrk thread: a few hundred requests/s at most, and wrk needs a connection per thread.
    # The timeout covers 32 clients queued on one 200 ms worker (6.4 s).
    wrk -t 1 -c "$c" -d "${AUTOSCALE_WARMUP}s" --timeout 30s "http://127.0.0.1:$AUTOSCALE_PORT$path" >/dev/null
    autoscale_drain "$path"
    out=$WORK/autoscale-wrk-$class-$c
    wrk -t 1 -c "$c" -d "${DURATION}s" --timeout 30s -s "$BENCH_DIR/wrk-report.lua" \
        "http://127.0.0.1:$AUTOSCALE_PORT$path" >"$out" &
    wrk_pid=$!
    while kill -0 "$wrk_pid" 2>/dev/null; do
        n=$(autoscale_running "$class")
        ((n > max)) && max=$n
        sleep 0.25
    done
    wait "$wrk_pid" || die "autoscale: wrk at -c $c failed"
    autoscale_drain "$path"
    parse_result "$p" "$(grep '^RESULT' "$out")"
    R[$p.replicas_max]=$max
    R[$p.replicas_end]=$(autoscale_running "$class")
    R[$p.rps]=$(calc "${R[$p.rps]}" 1)
    R[$p.p50_ms]=$(calc "${R[$p.p50_us]} / 1000" 0)
    R[$p.p99_ms]=$(calc "${R[$p.p99_us]} / 1000" 0)
    log "autoscale $class -c $c: ${R[$p.rps]} req/s, replicas up to $max, p99 ${R[$p.p99_ms]} ms"
}

# autoscale_drain PATH: one request, answered once the worker has served what an ended wrk left
# queued ahead of it (the worker takes connections in order; at most 32 x 200 ms here).
autoscale_drain() {
    curl -fsS -m 60 -o /dev/null "http://127.0.0.1:$AUTOSCALE_PORT$1" ||
        log "autoscale: the drain request to $1 failed; the next run may start behind a backlog"
}

run_autoscale() {
    local dir=$WORK/valet-autoscale pid python c start n
    mkdir -p "$dir"
    # The interpreter itself, not a version manager's shim (a shell script run on every start).
    if ! python=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null); then
        log "autoscale: no python3 for the backend; not measured"
        R[autoscale.skipped]="Not measured: the backend needs python3, which was not found."
        return
    fi
    AUTOSCALE_ADMIN_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    write_autoscale_worker "$dir/worker.py"
    write_valet_autoscale_conf "$dir" "$python"
    : >"$dir/scaled-starts"
    : >"$dir/single-starts"
    start_bg valet-autoscale "$dir/valet.log" "$VALET" up "$dir/valet.toml"
    pid=$BG_PID
    wait_port "$AUTOSCALE_PORT"

    log "autoscale: scaled key (max_replicas $AUTOSCALE_MAX_REPLICAS, target_concurrency 1), -c $AUTOSCALE_CONCURRENCY"
    for c in $AUTOSCALE_CONCURRENCY; do
        autoscale_run Scaled "$c"
    done
    R[autoscale.scale_ups]=$(autoscale_counter valet_scale_ups_total Scaled)
    R[autoscale.starts_loaded]=$(wc -l <"$dir/scaled-starts")

    # Idle: every replica must stop once sleep_after has passed with nothing in flight.
    start=$SECONDS
    n=$(autoscale_running Scaled)
    while ((n > 0 && SECONDS - start < 10 * AUTOSCALE_SLEEP_AFTER)); do
        sleep 0.25
        n=$(autoscale_running Scaled)
    done
    R[autoscale.idle_running]=$n
    R[autoscale.idle_s]=$((SECONDS - start))
    R[autoscale.scale_downs]=$(autoscale_counter valet_scale_downs_total Scaled)
    R[autoscale.starts_total]=$(wc -l <"$dir/scaled-starts")
    log "autoscale: ${R[autoscale.idle_running]} replicas running ${R[autoscale.idle_s]} s after the load"

    log "autoscale: the same backend without scale, -c $AUTOSCALE_CONCURRENCY"
    for c in $AUTOSCALE_CONCURRENCY; do
        autoscale_run Single "$c"
    done
    R[autoscale.single_starts]=$(wc -l <"$dir/single-starts")
    stop_pid "$pid" 60
}
