#!/usr/bin/env bash
# A lab of "hosts" on one machine: network namespaces on a bridge, as in CLUSTER-LAB.md.
#
#   netns.sh up PREFIX N [X]   hub PREFIX-hub (bridge br0 at 10.X.0.1/24), db PREFIX-db at
#                              10.X.0.2, nodes PREFIX-n1..PREFIX-nN at 10.X.0.11, .12, ...;
#                              prints X. Idempotent: an existing lab keeps its X.
#   netns.sh down PREFIX       kills what still runs in the lab's namespaces, removes them all
#   netns.sh cut PREFIX I      node I's hub-side veth down: it reaches nothing and nothing it
#   netns.sh heal PREFIX I     ... and up again
#   netns.sh subnet PREFIX     prints the lab's X
#
# The bridge lives in the hub namespace, so the host's iptables and existing interfaces are never
# touched. The one thing added to the namespace this script runs in is a veth `PREFIX-r` into the
# hub with the address 10.X.0.254/24, so that a test process there reaches every host on the
# bridge directly (removed by `down`, with the hub). A cut node is unreachable from it too.
#
# X is derived from PREFIX (100..199, never 77, the hand-made lab's), skipping any 10.X.0.0/24
# that an address or route here or in another namespace already uses. PREFIX is at most 12
# characters (`PREFIX-r` must fit in an interface name's 15).
set -euo pipefail

die() { echo "netns.sh: $*" >&2; exit 1; }
usage() { die "usage: netns.sh up PREFIX N [X] | down PREFIX | cut PREFIX I | heal PREFIX I | subnet PREFIX"; }

[ $# -ge 2 ] || usage
cmd=$1 prefix=$2
[[ $prefix =~ ^[a-zA-Z0-9][a-zA-Z0-9_]{0,11}$ ]] || die "PREFIX must be 1-12 letters, digits or _: '$prefix'"
hub=$prefix-hub db=$prefix-db root_link=$prefix-r

ns_exists() { [ -e "/run/netns/$1" ]; }

# The X of an existing lab, from its bridge's address.
current_subnet() {
  ns_exists "$hub" || return 1
  ip -n "$hub" -4 -o addr show dev br0 2>/dev/null | sed -nE 's/.* inet 10\.([0-9]+)\.0\.1\/24.*/\1/p' | head -1
}

# Whether 10.X.0.0/24 appears in any address or route here or in any namespace.
subnet_used() {
  local x=$1 ns
  { ip -4 -o addr; ip -4 route; } | grep -qE "(^|[^0-9])10\.$x\." && return 0
  for ns in $(ip netns list | awk '{ print $1 }'); do
    { ip -n "$ns" -4 -o addr; ip -n "$ns" -4 route; } 2>/dev/null | grep -qE "(^|[^0-9])10\.$x\." && return 0
  done
  return 1
}

pick_subnet() {
  local start x i
  start=$(( $(printf '%s' "$prefix" | cksum | cut -d' ' -f1) % 100 ))
  for i in $(seq 0 99); do
    x=$(( 100 + (start + i) % 100 ))
    [ "$x" = 77 ] && continue
    subnet_used "$x" || { echo "$x"; return 0; }
  done
  die "no free 10.X.0.0/24 between 10.100 and 10.199"
}

add_ns() { # add_ns NAME: a namespace with lo up
  ns_exists "$1" || ip netns add "$1"
  ip -n "$1" link set lo up
}

link_exists() { ip -n "$1" link show "$2" >/dev/null 2>&1; }

# add_host NS HUB_SIDE ADDR: a veth from the hub's bridge to eth0 in NS, ADDR/24, default route.
add_host() {
  local ns=$1 side=$2 addr=$3
  add_ns "$ns"
  if ! link_exists "$hub" "$side"; then
    link_exists "$ns" eth0 && ip -n "$ns" link del eth0
    ip -n "$hub" link add "$side" type veth peer name eth0 netns "$ns"
  fi
  ip -n "$hub" link set "$side" master br0 up
  ip -n "$ns" addr replace "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route replace default via "10.$x.0.1"
}

up() {
  local n=$1 i
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 89 ] || die "N must be 1..89"
  x=$(current_subnet || true)
  if [ -z "$x" ]; then
    x=${2:-$(pick_subnet)}
    [[ $x =~ ^[0-9]+$ ]] && [ "$x" -le 255 ] || die "X must be 0..255"
  elif [ -n "${2:-}" ] && [ "$2" != "$x" ]; then
    die "$hub already uses 10.$x.0.0/24, not 10.$2"
  fi
  add_ns "$hub"
  link_exists "$hub" br0 || ip -n "$hub" link add br0 type bridge
  ip -n "$hub" addr replace "10.$x.0.1/24" dev br0
  ip -n "$hub" link set br0 up
  add_host "$db" db "10.$x.0.2"
  for i in $(seq 1 "$n"); do
    add_host "$prefix-n$i" "n$i" "10.$x.0.$((10 + i))"
  done
  # The way in from here: a veth whose far end is a port of the bridge.
  if ! ip link show "$root_link" >/dev/null 2>&1; then
    ip -n "$hub" link del root 2>/dev/null || true
    ip link add "$root_link" type veth peer name root netns "$hub"
  fi
  ip -n "$hub" link set root master br0 up
  ip addr replace "10.$x.0.254/24" dev "$root_link"
  ip link set "$root_link" up
  echo "$x"
}

down() {
  local ns pid
  for ns in $(ip netns list | awk '{ print $1 }'); do
    case $ns in
      "$hub" | "$db" | "$prefix"-n[0-9]*) ;;
      *) continue ;;
    esac
    # Whatever a test left running there (by pid: only this lab's namespaces are searched).
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip netns del "$ns"
  done
  # Gone with its peer in the hub; removed here in case the hub was deleted by hand first.
  ip link del "$root_link" 2>/dev/null || true
}

node_link() { # node_link I: node I's hub-side veth
  [[ $1 =~ ^[0-9]+$ ]] || die "I must be a node number"
  ns_exists "$prefix-n$1" || die "no node $1 in lab $prefix"
  echo "n$1"
}

# Labs are made and removed one at a time, so two never pick the same X.
lock() { mkdir -p /run/lock; exec 9>/run/lock/valet-netns.lock; flock 9; }

case $cmd in
  up) [ $# -ge 3 ] || usage; lock; up "$3" "${4:-}" ;;
  down) lock; down ;;
  cut) [ $# -ge 3 ] || usage; ip -n "$hub" link set "$(node_link "$3")" down ;;
  heal) [ $# -ge 3 ] || usage; ip -n "$hub" link set "$(node_link "$3")" up ;;
  subnet) current_subnet || die "no lab $prefix" ;;
  *) usage ;;
esac
