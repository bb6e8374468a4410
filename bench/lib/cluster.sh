# Cluster: two valet replicas (A and B) on one PostgreSQL store, the warm hop's class (one fixed
# key, the same upstream binary). A's first request makes A the key's owner; then wrk loads
# B (the non-owner: every request is forwarded to A's peer listener), A (the owner) and the
# warm-hop valet (one replica, no [cluster]), interleaved round by round. Afterwards the store's
# transaction counter for the bench's own database is read around an idle window and around
# one more forwarded run: a warm request, owned or forwarded, must make no store round trip
# (issue 16), so both windows should hold only the replicas' background rounds.
# Sourced by run.sh; needs the warm-hop valet running (start_warm_targets).

# Every replica renews its leases 4 times per lease_ttl (one statement per round for all its
# keys); a replica that forwards to owners also re-reads those owners once per lease_ttl.
CLUSTER_LEASE_TTL=5

# pg_psql DATABASE-URL SQL: one statement through psql, unaligned and bare.
pg_psql() {
    psql "$1" -qtAX -v ON_ERROR_STOP=1 -c "$2"
}

# The URL of another database on the server of $PG_URL (its path replaced).
pg_url_of() {
    local base=${PG_URL%%\?*}
    echo "${base%/*}/$1${PG_URL#"$base"}"
}

# Dropped on exit too (on_exit), so a failed run leaves no database behind.
cluster_drop_db() {
    [[ -n ${CLUSTER_DB:-} ]] || return 0
    pg_psql "$PG_URL" "DROP DATABASE IF EXISTS $CLUSTER_DB WITH (FORCE)" >/dev/null ||
        log "could not drop database $CLUSTER_DB: drop it by hand"
    CLUSTER_DB=""
}

# write_valet_cluster_conf NAME PORT: replica NAME's public listener on PORT, its admin one on
# PORT+1 and its peer listener on PORT+2.
write_valet_cluster_conf() {
    local name=$1 port=$2 dir=$WORK/valet-cluster-$1
    mkdir -p "$dir"
    cat >"$dir/valet.toml" <<CONF
# Replica $name of two on one PostgreSQL store; the warm hop's class and route. The upstream
# appends a line to STARTS_FILE on every start, so starts across both replicas are counted.
[server]
listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$((port + 1))"
admin_token = "$CLUSTER_ADMIN_TOKEN"
data_dir = "$dir/data"
store = "$CLUSTER_STORE"
access_log = false

[cluster]
node = "bench-$name"
listen = "127.0.0.1:$((port + 2))"
secret = "$CLUSTER_SECRET"
lease_ttl = "${CLUSTER_LEASE_TTL}s"

[[containers]]
class_name = "Upstream"
command = ["$UPSTREAM_BIN", "{port}"]
sleep_after = "1h"
env = { STARTS_FILE = "$WORK/cluster-starts" }

[[routes]]
pattern = "/*"
container = "Upstream"
instance = "name:warm"
CONF
    # It holds the cluster secret, the admin token and the store's password.
    chmod 600 "$dir/valet.toml"
}

# Transactions committed or rolled back in the bench database so far. Read over a connection
# to another database, so the reading itself is not counted. PostgreSQL counts a backend's
# transactions when it flushes its statistics (at most once a second; an idle backend within
# 10 s), so a window's count can be off by the rounds of about a second at either edge.
cluster_xacts() {
    pg_psql "$PG_URL" "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '$CLUSTER_DB'"
}

# valet_requests_forwarded_total of replica B, all classes.
cluster_forwarded() {
    curl -fsS -H "Authorization: Bearer $CLUSTER_ADMIN_TOKEN" "http://127.0.0.1:$((CLUSTER_B_PORT + 1))/metrics" |
        awk '$1 ~ /^valet_requests_forwarded_total/ { s += $2 } END { printf "%d\n", s }'
}

run_cluster() {
    if ! pg_psql "$PG_URL" "SELECT 1" >/dev/null 2>"$WORK/psql.err"; then
        log "cluster: no PostgreSQL answers at $PG_URL ($(head -1 "$WORK/psql.err")); not measured"
        R[cluster.skipped]="Not measured: no PostgreSQL answered at the --postgres URL."
        return
    fi
    CLUSTER_DB=valet_bench_$$
    CLUSTER_STORE=$(pg_url_of "$CLUSTER_DB")
    CLUSTER_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
    CLUSTER_ADMIN_TOKEN=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    log "cluster: database $CLUSTER_DB"
    pg_psql "$PG_URL" "CREATE DATABASE $CLUSTER_DB" >/dev/null
    : >"$WORK/cluster-starts"

    write_valet_cluster_conf a "$CLUSTER_A_PORT"
    write_valet_cluster_conf b "$CLUSTER_B_PORT"
    start_bg valet-cluster-a "$WORK/valet-cluster-a/valet.log" "$VALET" up "$WORK/valet-cluster-a/valet.toml"
    CLUSTER_A_PID=$BG_PID
    wait_port "$CLUSTER_A_PORT"
    # Both replicas seal and open secrets with one key (a replica with another refuses to join).
    VALET_SECRET_KEY_FILE="$WORK/valet-cluster-a/data/secret.key" \
        start_bg valet-cluster-b "$WORK/valet-cluster-b/valet.log" "$VALET" up "$WORK/valet-cluster-b/valet.toml"
    CLUSTER_B_PID=$BG_PID
    wait_port "$CLUSTER_B_PORT"
    # The key's first request goes through A, which takes the lease and starts the instance;
    # B then finds A the owner and forwards.
    wait_http "$CLUSTER_A_PORT" / 30
    wait_http "$CLUSTER_B_PORT" / 30
    local owner
    owner=$(pg_psql "$CLUSTER_STORE" "SELECT string_agg(owner, ',') FROM valet_leases")
    [[ $owner == bench-a ]] || die "cluster: the key's owner is '$owner', not bench-a"

    wrk_rounds cluster forwarded owner single
    R[cluster.ratios_forwarded]=$(round_ratios cluster forwarded single)
    R[cluster.ratios_owner]=$(round_ratios cluster owner single)
    R[cluster.cpu_b_us_per_req]=${R[cluster.forwarded.cpu_us_per_req.$CLUSTER_B_PID]}
    R[cluster.cpu_a_us_per_req]=${R[cluster.forwarded.cpu_us_per_req.$CLUSTER_A_PID]}

    local x0 x1 x2 x3 f0 f1
    log "cluster: store transactions in an idle window of ${DURATION}s"
    x0=$(cluster_xacts)
    sleep "$DURATION"
    x1=$(cluster_xacts)
    log "cluster: store transactions during ${DURATION}s of forwarded load"
    f0=$(cluster_forwarded)
    x2=$(cluster_xacts)
    parse_result cluster_store "$(wrk_once forwarded "$DURATION")"
    x3=$(cluster_xacts)
    f1=$(cluster_forwarded)
    R[cluster.store.idle_xacts]=$((x1 - x0))
    R[cluster.store.run_xacts]=$((x3 - x2))
    R[cluster.store.requests]=${R[cluster_store.requests]}
    R[cluster.store.forwarded]=$((f1 - f0))
    R[cluster.store.seconds]=${R[cluster_store.seconds]}
    R[cluster.store.expected_renewals]=$(calc "4 * 2 * $DURATION / $CLUSTER_LEASE_TTL" 1)
    R[cluster.store.expected_sweeps]=$(calc "$DURATION / $CLUSTER_LEASE_TTL" 1)
    R[cluster.store.extra_per_req]=$(calc "(${R[cluster.store.run_xacts]} - ${R[cluster.store.idle_xacts]}) / ${R[cluster.store.requests]}" 6)
    log "cluster: ${R[cluster.store.run_xacts]} store transactions during ${R[cluster.store.requests]} forwarded requests; ${R[cluster.store.idle_xacts]} in the idle window"

    stop_pid "$CLUSTER_B_PID" 60
    stop_pid "$CLUSTER_A_PID" 60
    R[cluster.starts]=$(wc -l <"$WORK/cluster-starts")
    cluster_drop_db
}
