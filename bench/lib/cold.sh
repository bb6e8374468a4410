# Cold start and burst, on a valet of their own (so the warm-hop valet's numbers stay clean).
# Sourced by run.sh.

write_valet_cold_conf() {
    local dir=$1
    mkdir -p "$dir"
    cat >"$dir/valet.toml" <<CONF
# Cold: a fresh key per run (path:1), so every request meets a stopped instance.
# Burst: one key hit by $BURST clients at once; the upstream appends a line to STARTS_FILE on
# every start, so starts are counted outside valet. Readiness is valet's default (a TCP
# connect, retried on valet's default schedule), as a user who sets nothing would get.
[server]
listen = "127.0.0.1:$COLD_PORT"
admin_listen = "127.0.0.1:$((COLD_PORT + 1))"
data_dir = "$dir/data"
access_log = false
# The benchmark starts many keys from one address on purpose.
cold_starts_per_client = { starts = 0 }

[[containers]]
class_name = "Cold"
command = ["$UPSTREAM_BIN", "{port}"]
max_instances = $((COLD_RUNS + 10))

[[containers]]
class_name = "Burst"
command = ["$UPSTREAM_BIN", "{port}"]
env = { STARTS_FILE = "$dir/burst-starts" }

[[routes]]
pattern = "/cold/*"
container = "Cold"
instance = "path:1"

[[routes]]
pattern = "/burst/*"
container = "Burst"
instance = "path:1"
CONF
}

run_cold_and_burst() {
    local dir=$WORK/valet-cold pid
    write_valet_cold_conf "$dir"
    start_bg valet-cold "$dir/valet.log" "$VALET" up "$dir/valet.toml"
    pid=$BG_PID
    wait_port "$COLD_PORT"

    log "cold start: $COLD_RUNS runs, app alone vs a fresh key through valet"
    run_client cold cold --valet "127.0.0.1:$COLD_PORT" --path '/cold/{key}/' --runs "$COLD_RUNS" \
        --upstream-bin "$UPSTREAM_BIN"

    # The same client against an upstream that already runs, without valet: what $BURST
    # simultaneous new connections cost this machine anyway.
    start_bg upstream-baseline "$dir/upstream-baseline.log" "$UPSTREAM_BIN" "$UPSTREAM_PORT"
    local upstream=$BG_PID
    wait_port "$UPSTREAM_PORT"
    log "burst baseline: $BURST clients straight to a running upstream"
    run_client burst_direct burst --addr "127.0.0.1:$UPSTREAM_PORT" --path / --clients "$BURST"
    stop_pid "$upstream"

    log "burst: $BURST clients, first requests to one cold key"
    : >"$dir/burst-starts"
    run_client burst burst --addr "127.0.0.1:$COLD_PORT" --path /burst/one/ --clients "$BURST"
    R[burst.starts]=$(wc -l <"$dir/burst-starts")
    stop_pid "$pid" 60
}

# Docker cold start: the same measurement with driver = "docker" and a busybox httpd image built
# here (FROM scratch, Debian's static busybox): the app alone is created and started through
# the Engine API by valet-bench, as valet's driver does it, then through valet to a fresh key.
run_cold_docker() {
    local dir=$WORK/valet-docker pid image=valet-bench-busybox:latest
    if ! docker info >/dev/null 2>&1; then
        log "docker: no Docker Engine answers; the Docker cold start is not measured"
        R[dcold.skipped]="Not measured: no Docker Engine answered \`docker info\`."
        return
    fi
    # The image's only file is busybox itself, so it must be the static build.
    if ! ldd /bin/busybox 2>&1 | grep -q 'not a dynamic executable'; then
        log "installing busybox-static with apt-get"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >&2
    fi
    mkdir -p "$dir/image/www"
    cp /bin/busybox "$dir/image/busybox"
    echo "hello" >"$dir/image/www/index.html"
    cat >"$dir/image/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY www /www
EXPOSE 8080
CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]
DOCKERFILE
    log "docker: building $image"
    docker build -q -t "$image" "$dir/image" >/dev/null
    cat >"$dir/valet.toml" <<CONF
# Docker cold start: a fresh key per run; standard-3 (2 vCPU, 8 GiB) leaves the container as
# unconstrained as the one valet-bench starts alone. Readiness is an HTTP GET: the published
# port accepts (docker-proxy) before the app inside listens.
[server]
listen = "127.0.0.1:$COLD_PORT"
admin_listen = "127.0.0.1:$((COLD_PORT + 1))"
data_dir = "$dir/data"
driver = "docker"
access_log = false
# The benchmark starts many keys from one address on purpose.
cold_starts_per_client = { starts = 0 }

[[containers]]
class_name = "DockerCold"
image = "$image"
instance_type = "standard-3"
readiness = { path = "/index.html" }
max_instances = $((DOCKER_RUNS + 10))

[[routes]]
pattern = "/dcold/*"
container = "DockerCold"
instance = "path:1"
strip_prefix = "/dcold/*"
CONF
    start_bg valet-docker "$dir/valet.log" "$VALET" up "$dir/valet.toml"
    pid=$BG_PID
    wait_port "$COLD_PORT"
    log "docker cold start: $DOCKER_RUNS runs, the container alone vs a fresh key through valet"
    run_client dcold cold --valet "127.0.0.1:$COLD_PORT" --path '/dcold/{key}/' --runs "$DOCKER_RUNS" \
        --key-prefix "dcold$$-" --docker-image "$image" --poll-us 1000
    stop_pid "$pid" 120
}
