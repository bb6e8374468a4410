# Helpers shared by the benchmark phases: logging, processes we start (and only those), /proc
# accounting, waiting for ports, and RESULT lines from the clients. Sourced by run.sh.

# Every process a phase starts is registered here so the exit trap can stop exactly those.
STARTED_PIDS=()

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

# start_bg NAME LOGFILE CMD...: runs CMD in the background and sets BG_PID.
start_bg() {
    local name=$1 logfile=$2
    shift 2
    "$@" >"$logfile" 2>&1 &
    BG_PID=$!
    STARTED_PIDS+=("$BG_PID")
    log "started $name (pid $BG_PID, log $logfile)"
}

# stop_pid PID [SECONDS]: SIGTERM, wait up to SECONDS (default 30), then SIGKILL.
stop_pid() {
    local pid=$1 grace=${2:-30} waited=0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((waited < grace * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid ignored SIGTERM for ${grace}s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# Once reaped, a pid may be reused by someone else's process: never signal it again.
forget_pid() {
    local p kept=()
    for p in "${STARTED_PIDS[@]}"; do
        [[ $p == "$1" ]] || kept+=("$p")
    done
    STARTED_PIDS=("${kept[@]}")
}

stop_all() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid" 30
    done
}

# wait_port PORT [SECONDS]: until something accepts TCP connections on 127.0.0.1:PORT.
wait_port() {
    local port=$1 limit=${2:-30} tries=0
    until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        tries=$((tries + 1))
        ((tries < limit * 20)) || die "nothing listens on port $port after ${limit}s"
        sleep 0.05
    done
}

# wait_http PORT PATH [SECONDS]: until GET PATH answers 200 (through our own client).
wait_http() {
    local port=$1 path=$2 limit=${3:-60} start=$SECONDS
    until "$CLIENT" keys --addr "127.0.0.1:$port" --path "$path" --count 1 --concurrency 1 2>/dev/null |
        grep -q 'statuses=200:1 '; do
        ((SECONDS - start < limit)) || die "GET 127.0.0.1:$port$path did not answer 200 within ${limit}s"
        sleep 0.1
    done
}

# cpu_ticks [--sys] PID...: utime + stime of each process (all its threads), summed, in clock
# ticks; with --sys, stime alone (the kernel's work on the processes' behalf: system calls, the
# loopback TCP stack run inside them, scheduling).
cpu_ticks() {
    local pid stat total=0 user=1
    local -a f
    if [[ ${1:-} == --sys ]]; then
        user=0
        shift
    fi
    for pid in "$@"; do
        stat=$(<"/proc/$pid/stat")
        # Fields after "(comm)": state is f[0], utime f[11], stime f[12].
        read -r -a f <<<"${stat##*) }"
        total=$((total + user * f[11] + f[12]))
    done
    echo "$total"
}

# machine_ticks: CPU time of the whole machine spent busy (every process and the kernel's own
# work, all cores: user, nice, system, irq, softirq, steal), in clock ticks.
machine_ticks() {
    local cpu user nice system idle iowait irq softirq steal rest
    read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
    echo $((user + nice + system + irq + softirq + steal))
}

# status_kb FIELD PID...: a /proc/PID/status field (VmHWM, VmRSS) summed over the PIDs, in kB.
status_kb() {
    local field=$1 pid total=0 v
    shift
    for pid in "$@"; do
        v=$(awk -v f="$field:" '$1 == f { print $2 }' "/proc/$pid/status")
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# nginx_pids MASTER: the master and its workers (the workers do the proxying).
nginx_pids() {
    echo "$1" $(pgrep -P "$1" || true)
}

# Results live in R["phase.key"]; parse_result PHASE LINE stores every k=v of a RESULT line.
declare -A R=()
parse_result() {
    local phase=$1 line=$2 kv
    [[ $line == RESULT* ]] || die "$phase: expected a RESULT line, got: $line"
    for kv in ${line#RESULT}; do
        R["$phase.${kv%%=*}"]=${kv#*=}
    done
}

# run_client PHASE ARGS...: runs valet-bench ARGS, stores its RESULT line under PHASE.
run_client() {
    local phase=$1 out
    shift
    out=$("$CLIENT" "$@") || die "$phase: valet-bench $* failed"
    parse_result "$phase" "$(grep '^RESULT' <<<"$out" | tail -1)"
}

# median_of_rounds PREFIX KEY...: R[PREFIX.KEY] = median of R[PREFIX.1.KEY] .. R[PREFIX.$ROUNDS.KEY].
median_of_rounds() {
    local prefix=$1 key round values
    shift
    for key in "$@"; do
        values=()
        for ((round = 1; round <= ROUNDS; round++)); do
            values+=("${R[$prefix.$round.$key]}")
        done
        R[$prefix.$key]=$(median "${values[@]}")
    done
}

# Arithmetic on decimals, which bash lacks: calc 'EXPR' with awk, printed with %.Nf (N=$2, default 2).
calc() { awk "BEGIN { v = $1; printf \"%.${2:-2}f\", v }"; }

# median of the arguments.
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
