#!/usr/bin/env bash
# A Docker Swarm of N nodes on one machine: one dockerd per node of a `netns.sh` lab, as in
# CLUSTER-LAB.md ("Docker Swarm, three nodes").
#
#   swarm.sh up PREFIX N       netns.sh up PREFIX N, then a dockerd in each node PREFIX-nI with
#                              its own data-root, exec-root, pidfile and socket under
#                              /tmp/valet-lab/PREFIX/nI; swarm init on node 1 (the manager, at
#                              10.X.0.11), join of nodes 2..N as workers, node label
#                              valet.node=nI on each. Prints the sockets' paths, node 1 first.
#                              Idempotent: running daemons are kept, a dead one is started again
#                              (its node rejoins with its old identity), a joined node is left.
#   swarm.sh load PREFIX IMAGE saves IMAGE from the host's engine (or node 1's when the host has
#                              none) and loads it on every node; prints its ID (sha256:...), the
#                              same on every node.
#   swarm.sh kill PREFIX I     SIGKILL of node I's dockerd only (node-loss tests): its containerd,
#                              shims and containers keep running, as when a node's daemon dies.
#   swarm.sh down PREFIX       each node leaves the swarm, its dockerd is stopped (by its
#                              pidfile's pid), leftover containers and mounts are removed, the
#                              state folder goes, then netns.sh down.
#   swarm.sh sockets PREFIX    prints the sockets' paths of a lab that is up.
#
# State: /tmp/valet-lab/PREFIX (VALET_LAB_STATE overrides /tmp/valet-lab): nI/ per node (data,
# exec, docker.pid, docker.sock, log, daemon.json), subnet (X), times (see tick/tock below).
#
# Only processes this script started are ever stopped: a dockerd by the pid in its own pidfile,
# checked against its command line (which names this lab's socket); containerd and shims by a
# command line naming this lab's state folder; containers through runc's state root of this
# lab's daemons. The host's dockerd, its containers and its iptables rules are never touched.
#
# Networking. Each dockerd runs in its node's network namespace (setsid nsenter --net=..., not
# `ip netns exec`, which would also remount /sys and bind /etc/netns files). iptables rules,
# ip_forward and the br_netfilter switches are per network namespace, so the daemons' NAT and
# filter rules (and their docker0/docker_gwbridge bridges on 172.17/172.18, which would clash
# with the host's own) live in the node's namespace only: the host's docker is unaffected. That
# is why --iptables stays on (the default): a host-mode published port is a DNAT rule in the
# node's namespace, and CLUSTER-LAB.md's node-loss measurements (the old container keeps
# answering after its dockerd died) depend on that rule. --bridge=none is not used either: a
# task with no network of its own is attached to the default bridge, and host-mode publishing
# needs it. The only thing shared with the host's iptables is its lock file (/run/xtables.lock),
# which every iptables caller takes with a wait. The kernel has no IPVS: the ingress routing
# mesh and virtual IPs do not work; publish with mode=host and reach a task at its node.
#
# Each daemon reads a --config-file of its own, so an /etc/docker/daemon.json written for the
# host's engine never applies to the lab's; it only lists the lab's subnet as insecure registries.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NETNS_SH=$here/netns.sh
STATE=${VALET_LAB_STATE:-/tmp/valet-lab}
START_WITHIN=${SWARM_START_WITHIN:-60} # seconds a dockerd may take to answer

die() { echo "swarm.sh: $*" >&2; exit 1; }
note() { echo "swarm.sh: $*" >&2; }
usage() { die "usage: swarm.sh up PREFIX N | load PREFIX IMAGE | kill PREFIX I | down PREFIX | sockets PREFIX"; }

[ $# -ge 2 ] || usage
cmd=$1 prefix=$2
[[ $prefix =~ ^[a-zA-Z0-9][a-zA-Z0-9_]{0,11}$ ]] || die "PREFIX must be 1-12 letters, digits or _: '$prefix'"
root=$STATE/$prefix

node_dir() { echo "$root/n$1"; }
sock() { echo "$(node_dir "$1")/docker.sock"; }
d() { local i=$1; shift; docker -H "unix://$(sock "$i")" "$@"; }

# The pid of node I's dockerd if it runs: the pidfile's pid, whose command line is a dockerd
# serving this node's socket (a stale pidfile's pid may have been reused by anything).
daemon_pid() {
  local pidfile pid
  pidfile=$(node_dir "$1")/docker.pid
  [ -s "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "^dockerd .*unix://$(sock "$1") " || return 1
  echo "$pid"
}

# The node numbers present in the state folder.
state_nodes() {
  local dir
  for dir in "$root"/n[0-9]*; do
    [ -d "$dir" ] && echo "${dir##*/n}"
  done | sort -n
}

start_daemon() {
  local i=$1 dir
  dir=$(node_dir "$i")
  daemon_pid "$i" >/dev/null && return 0
  [ -e "/run/netns/$prefix-n$i" ] || die "no namespace $prefix-n$i"
  # A daemon killed by `kill` left its containerd, shims and containers: a dockerd started
  # next to them cannot start its own containerd. The node comes back as after a reboot.
  # dockerd reuses the containerd of containerd.pid while that pid exists, and a killed
  # containerd can linger as a zombie for a while: it would wait for it forever.
  if [ -d "$dir" ]; then
    leftovers "$i"
    rm -f "$dir/exec/containerd/containerd.pid"
  fi
  mkdir -p "$dir"
  # The lab's own subnet is an insecure (plain HTTP) registry's, as 127.0.0.0/8 is by default:
  # a test's registry in the lab (its db namespace, 10.X.0.2) is what every node pulls from.
  [ -s "$dir/daemon.json" ] ||
    printf '{"insecure-registries": ["10.%s.0.0/24"]}\n' "$(cat "$root/subnet")" >"$dir/daemon.json"
  rm -f "$dir/docker.pid" "$dir/docker.sock"
  # setsid: the daemon outlives this script and any terminal or test process group; its
  # output goes to a file so that a caller reading our stdout is not held open by it.
  setsid nsenter --net="/run/netns/$prefix-n$i" dockerd \
    --config-file "$dir/daemon.json" \
    --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
    -H "unix://$dir/docker.sock" --storage-driver overlay2 \
    </dev/null >>"$dir/log" 2>&1 &
}

wait_daemon() {
  local i=$1 deadline=$((SECONDS + START_WITHIN))
  until d "$i" version >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      tail -20 "$(node_dir "$i")/log" >&2 || true
      die "node $i's dockerd does not answer after ${START_WITHIN}s"
    fi
    sleep 0.1
  done
}

swarm_state() { d "$1" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null; }

# Phase timings of `up` into $root/times ("NAME SECONDS" lines, only the steps it took), for
# tests to print: daemons (start to every socket answering), init, join I, labels.
t0=
tick() { t0=$EPOCHREALTIME; }
tock() { printf '%s %s\n' "$1" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')" >>"$root/times"; }

up() {
  local n=$1 x i state token addr id started=
  x=$(bash "$NETNS_SH" up "$prefix" "$n")
  mkdir -p "$root"
  echo "$x" >"$root/subnet"
  : >"$root/times"
  tick
  for i in $(seq 1 "$n"); do
    daemon_pid "$i" >/dev/null || { start_daemon "$i"; started=1; }
  done
  for i in $(seq 1 "$n"); do wait_daemon "$i"; done
  [ -z "$started" ] || tock daemons

  state=$(swarm_state 1 || true)
  if [ "$state" != active ]; then
    [ "$state" = inactive ] || d 1 swarm leave --force >/dev/null 2>&1 || true
    tick
    d 1 swarm init --advertise-addr "10.$x.0.11" --listen-addr "10.$x.0.11:2377" >/dev/null
    tock init
  fi
  token=$(d 1 swarm join-token -q worker)
  for i in $(seq 2 "$n"); do
    state=$(swarm_state "$i" || true)
    case $state in
      active) continue ;;
      pending) wait_state "$i" active 30 && continue ;;
    esac
    d "$i" swarm leave --force >/dev/null 2>&1 || true
    addr=10.$x.0.$((10 + i))
    tick
    d "$i" swarm join --token "$token" --advertise-addr "$addr" --listen-addr "$addr:2377" \
      "10.$x.0.11:2377" >/dev/null
    tock "join$i"
  done
  # Every node reports hostname "vm": tasks are placed by these labels.
  tick
  for i in $(seq 1 "$n"); do
    id=$(d "$i" info --format '{{.Swarm.NodeID}}')
    d 1 node update --label-add "valet.node=n$i" "$id" >/dev/null
  done
  tock labels
  for i in $(seq 1 "$n"); do sock "$i"; done
}

wait_state() { # wait_state I STATE SECONDS
  local deadline=$((SECONDS + $3))
  while [ $SECONDS -lt $deadline ]; do
    [ "$(swarm_state "$1")" = "$2" ] && return 0
    sleep 0.2
  done
  return 1
}

load() {
  local image=$1 tar=$root/image.tar i id first=
  [ -d "$root" ] || die "no lab $prefix"
  if docker image inspect "$image" >/dev/null 2>&1; then
    docker save -o "$tar" "$image"
  else
    d 1 save -o "$tar" "$image"
  fi
  for i in $(state_nodes); do
    daemon_pid "$i" >/dev/null || die "node $i's dockerd is not running"
    d "$i" load -q -i "$tar" >/dev/null
    id=$(d "$i" image inspect --format '{{.Id}}' "$image")
    [ -z "$first" ] && first=$id
    [ "$id" = "$first" ] || die "node $i has $image as $id, node 1 as $first"
  done
  rm -f "$tar"
  [ -n "$first" ] || die "no node in lab $prefix"
  echo "$first"
}

kill_node() {
  local i=$1 pid
  [[ $i =~ ^[0-9]+$ ]] || die "I must be a node number"
  [ -d "$(node_dir "$i")" ] || die "no node $i in lab $prefix"
  pid=$(daemon_pid "$i") || { note "node $i's dockerd is not running"; return 0; }
  kill -9 "$pid"
}

# Pids whose command line names this lab's state folder (node I's containerd and shims).
lab_pids() {
  local pid
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$pid" = $$ ] && continue
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -v '^grep ' | grep -qF "$1/" && echo "$pid"
  done
  return 0
}

leave() {
  daemon_pid "$1" >/dev/null || return 0
  timeout 20 docker -H "unix://$(sock "$1")" swarm leave --force >/dev/null 2>&1 || true
}

stop_node() {
  local i=$1 dir pid deadline
  dir=$(node_dir "$i")
  if pid=$(daemon_pid "$i"); then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while [ -d "/proc/$pid" ] && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  leftovers "$i"
}

# What a killed daemon left: its containers (runc's state of this daemon), then containerd
# and the shims (their command lines name this node's folder), then mounts.
leftovers() {
  local i=$1 dir pid id
  dir=$(node_dir "$i")
  if [ -d "$dir/exec/runtime-runc/moby" ]; then
    for id in $(runc --root "$dir/exec/runtime-runc/moby" list -q 2>/dev/null); do
      runc --root "$dir/exec/runtime-runc/moby" delete --force "$id" >/dev/null 2>&1 || true
    done
  fi
  for pid in $(lab_pids "$dir"); do kill -9 "$pid" 2>/dev/null || true; done
  # Overlay, shm and netns mounts under the folder, deepest first.
  awk '{ print $5 }' /proc/self/mountinfo | { grep -F "$dir/" || true; } | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}

down() {
  local i
  if [ -d "$root" ]; then
    # Workers leave first, together (a worker's leave takes ~6 s), then the manager; then the
    # daemons stop, together.
    for i in $(state_nodes); do [ "$i" = 1 ] || leave "$i" & done
    wait
    leave 1
    for i in $(state_nodes); do stop_node "$i" & done
    wait
    rm -rf "$root"
  fi
  bash "$NETNS_SH" down "$prefix"
}

sockets() {
  local i
  [ -d "$root" ] || die "no lab $prefix"
  for i in $(state_nodes); do sock "$i"; done
}

case $cmd in
  up)
    [ $# -ge 3 ] || usage
    [[ $3 =~ ^[0-9]+$ ]] && [ "$3" -ge 1 ] || die "N must be a number of nodes"
    up "$3"
    ;;
  load) [ $# -ge 3 ] || usage; load "$3" ;;
  kill) [ $# -ge 3 ] || usage; kill_node "$3" ;;
  down) down ;;
  sockets) sockets ;;
  *) usage ;;
esac
