#!/usr/bin/env bash
# Cold start on Docker Swarm (BENCHMARKS.md): a new service's first HTTP answer, measured side by
# side on one 3-node lab swarm (scripts/lab/swarm.sh; needs root and dockerd):
#
#   swarm alone  `docker service create` of a busybox httpd by image ID, host-mode published, then
#                polling the task for its node and published port, then GET until 200;
#   valet        a request to a key that has no service yet, through `valet up` with
#                driver = "swarm" (the same image, built by valet and loaded onto the nodes
#                before the first round): service create, placement, valet's readiness probe,
#                the proxied request.
#
#   bench/swarm_cold_start.sh [--rounds N] [--valet PATH]
#
# Then wake from sleep, both ways a sleeping service can come back:
#
#   scale alone  one service scaled 0 -> 1 (`docker service scale --detach`, retried when the
#                manager answers "update out of sequence"), then its new task's node and
#                port polled with the CLI, then GET until 200; scaled to 0 between rounds and
#                waited for until its container and its task are gone (see no_container);
#   valet        a key asleep (valet removes the service for sleep and re-creates it to wake:
#                its container gone, which valet logged) and one request through valet.
#
# Every wait is bounded (60 s): a round that does not finish fails the run, it never hangs.
# The manager is drained, as in production, so tasks land on the two workers. Prints each
# round and the medians.
set -euo pipefail

rounds=7 valet=${CARGO_TARGET_DIR:-target}/debug/valet
while (($#)); do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --valet) valet=$2; shift 2 ;;
        -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -x "$valet" ] || { echo "no valet binary at $valet (cargo build -p valet, or --valet)" >&2; exit 2; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
swarm=$root/scripts/lab/swarm.sh
prefix=vb$$
work=$(mktemp -d)
valet_pid=
cleanup() {
    [ -n "$valet_pid" ] && kill "$valet_pid" 2>/dev/null && wait "$valet_pid" 2>/dev/null
    bash "$swarm" down "$prefix" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
trap "exit 1" INT TERM

mapfile -t socks < <(bash "$swarm" up "$prefix" 3)
manager="docker -H unix://${socks[0]}"
$manager node update --availability drain "$($manager node ls -q --filter role=manager)" >/dev/null

mkdir -p "$work/ctx/www" "$work/valet"
cp /bin/busybox "$work/ctx/"
echo hello >"$work/ctx/www/index.html"
printf 'FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\n' >"$work/ctx/Dockerfile"
$manager build -q -t valet-bench-swarm:1 "$work/ctx" >/dev/null 2>&1
image=$(bash "$swarm" load "$prefix" valet-bench-swarm:1)

now() { date +%s%N; }
ms() { echo $((($2 - $1) / 1000000)); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }

# The node address and published port of a service's running task, once it has one.
endpoint() {
    local task node
    task=$($manager service ps -q --filter desired-state=running "$1" 2>/dev/null | head -1)
    [ -n "$task" ] || return 1
    local port
    port=$($manager inspect --format '{{with .Status.PortStatus.Ports}}{{(index . 0).PublishedPort}}{{end}}' "$task" 2>/dev/null)
    [ -n "$port" ] || return 1
    node=$($manager inspect --format '{{.NodeID}}' "$task")
    echo "$($manager node inspect --format '{{.Status.Addr}}' "$node"):$port"
}

# Runs "$@" every 20 ms until it succeeds; fails after 60 s with WHAT.
within_60s() { # within_60s WHAT COMMAND...
    local what=$1 deadline=$((SECONDS + 60)); shift
    until "$@"; do
        [ $SECONDS -lt $deadline ] || { echo "no $what within 60 s" >&2; exit 1; }
        sleep 0.02
    done
}
answers() { at=$(endpoint "$1") && curl -sf -o /dev/null --max-time 1 "http://$at/index.html"; }
# Scales service $1 to $2 replicas; the manager refuses a write made from a stale version of
# the service ("update out of sequence") while its orchestrator writes too: try again.
scale() { $manager service scale --detach "$1=$2" >/dev/null 2>&1; }
# Its containers gone on every node and its tasks gone from the manager: a scale to 1 while
# the scaled-down task is still listed (desired state "remove") made no new task at all here
# (Engine 20.10), and the round waited for ever.
no_container() {
    local n
    [ -z "$($manager service ps -q "$1" 2>/dev/null)" ] || return 1
    for n in 1 2 3; do
        [ -z "$(docker -H "unix://${socks[$((n - 1))]}" ps -q --filter "label=com.docker.swarm.service.id=$1")" ] || return 1
    done
}

alone=()
for round in $(seq "$rounds"); do
    start=$(now)
    id=$($manager service create --detach --quiet --no-resolve-image --restart-condition none \
        --publish mode=host,target=8080 --stop-grace-period 1s --init \
        "$image" /bin/busybox httpd -f -p 8080 -h /www)
    until at=$(endpoint "$id"); do sleep 0.02; done
    until curl -sf -o /dev/null --max-time 1 "http://$at/index.html"; do sleep 0.02; done
    took=$(ms "$start" "$(now)")
    alone+=("$took")
    echo "swarm alone, round $round: ${took} ms ($at)"
    $manager service rm "$id" >/dev/null
done

# Scale 0 -> 1 alone: one service, up once, then slept and woken by scaling.
id=$($manager service create --detach --quiet --no-resolve-image --restart-condition none \
    --publish mode=host,target=8080 --stop-grace-period 1s --init \
    "$image" /bin/busybox httpd -f -p 8080 -h /www)
within_60s "first answer of the scaled service" answers "$id"
scaled=()
for round in $(seq "$rounds"); do
    within_60s "scale to 0" scale "$id" 0
    within_60s "the scaled service's container to go" no_container "$id"
    start=$(now)
    within_60s "scale to 1" scale "$id" 1
    within_60s "an answer after scale 0 -> 1" answers "$id"
    took=$(ms "$start" "$(now)")
    scaled+=("$took")
    echo "swarm scale 0 -> 1 alone, round $round: ${took} ms ($at)"
done
$manager service rm "$id" >/dev/null

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
listen=127.0.0.1:$(port)
cat >"$work/valet/valet.toml" <<EOF
[server]
listen = "$listen"
admin_listen = "127.0.0.1:$(port)"
driver = "swarm"
access_log = false

[swarm]
docker_host = "unix://${socks[0]}"
nodes = ["unix://${socks[0]}", "unix://${socks[1]}", "unix://${socks[2]}"]

[[containers]]
class_name = "Bench"
image = "$work/ctx/Dockerfile"
command = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
ports = { http = 8080 }
stop_timeout = "1s"
readiness = { path = "/index.html", timeout = "60s" }

[[routes]]
pattern = "/k/*"
container = "Bench"
instance = "path:1"
strip_prefix = "/k/*"

[[containers]]
class_name = "Nap"
image = "$work/ctx/Dockerfile"
command = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
ports = { http = 8080 }
stop_timeout = "1s"
sleep_after = "1s"
readiness = { path = "/index.html", timeout = "60s" }

[[routes]]
pattern = "/nap/*"
container = "Nap"
instance = "name:one"
strip_prefix = "/nap"
EOF
NO_COLOR=1 "$valet" up "$work/valet/valet.toml" >"$work/valet.log" 2>&1 &
valet_pid=$!
until curl -s -o /dev/null "http://$listen/"; do sleep 0.05; done
# The first key waits for the build and the loads onto the nodes: not a round.
curl -sf -o /dev/null --max-time 120 "http://$listen/k/warmup/index.html"

through=()
for round in $(seq "$rounds"); do
    start=$(now)
    curl -sf -o /dev/null --max-time 60 "http://$listen/k/round$round/index.html"
    took=$(ms "$start" "$(now)")
    through+=("$took")
    echo "through valet, round $round: ${took} ms"
done

# Wake: the key slept (its service removed and its container gone: valet logged the stop),
# then one request.
woke=()
curl -sf -o /dev/null --max-time 120 "http://$listen/nap/index.html"
for round in $(seq "$rounds"); do
    until [ "$(grep -c 'instance stopped instance=Nap/one' "$work/valet.log")" -ge "$round" ]; do sleep 0.05; done
    start=$(now)
    curl -sf -o /dev/null --max-time 60 "http://$listen/nap/index.html"
    took=$(ms "$start" "$(now)")
    woke+=("$took")
    echo "wake through valet, round $round: ${took} ms"
done

median_of() { printf '%s\n' "$@" | median; }
echo "median over $rounds rounds: create alone $(median_of "${alone[@]}") ms," \
    "cold key through valet $(median_of "${through[@]}") ms, scale 0 -> 1 alone $(median_of "${scaled[@]}") ms," \
    "wake through valet $(median_of "${woke[@]}") ms"
