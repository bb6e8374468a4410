#!/usr/bin/env bash
# A real Kubernetes control plane and node on one machine, as in CLUSTER-LAB.md ("Kubernetes: a
# real apiserver and kubelet from Debian's source package"): etcd, kube-apiserver and a kubelet
# running Pods on a dockerd of the lab's own. No scheduler and no controller-manager: a Pod must
# name its node (`spec.nodeName`), which is what a driver that places Pods itself does, and no
# namespace gets its `default` ServiceAccount, so the ServiceAccount admission plugin is off.
#
#   kube.sh build              builds kube-apiserver and kubelet 1.20 from Debian's `kubernetes`
#                              source package (golang-go, offline with its vendor/ tree) once, into
#                              the cache folder; prints that folder. About 5 minutes on 2 cores.
#   kube.sh up PREFIX          starts etcd, kube-apiserver and a kubelet (node PREFIX-node) with a
#                              dockerd of its own on a bridge of its own; waits until the node is
#                              Ready; prints the kubeconfig's path (an admin token, the apiserver
#                              on the lab bridge's address). State: /tmp/valet-lab/PREFIX-kube.
#   kube.sh down PREFIX        stops what `up` started (by the pids it recorded, each checked
#                              against its command line), removes the lab's containers, bridge
#                              and state folder.
#   kube.sh env PREFIX         prints KUBECONFIG=..., NODE=..., POD_CIDR=..., API_HOST=...,
#                              API_PORT=..., API_CA=... of a lab that is up.
#   kube.sh restart-apiserver PREFIX
#                              stops the lab's kube-apiserver and starts it again on its port
#                              (every watch on it is cut); prints how long it was away (ms).
#
# Cache: $VALET_KUBE_CACHE, else /work/cache/kube-1.20 when /work is writable, else
# ~/.cache/valet-kube-1.20. The build is done once per machine (CI on the same machine too).
#
# Networking. The kubelet's dockerd gets a bridge `PREFIX-kb` with 172.31.N.1/24 (N free here)
# and runs with --iptables=false and --ip-masq=false, and the kubelet with
# --make-iptables-util-chains=false: the host's iptables are touched only by one FORWARD rule
# that lets the lab's Pods reach each other over its bridge (removed by `down`). Pods get addresses
# on that bridge, which this machine reaches directly: valet dials Pod IPs. Pods have no way out
# (no masquerading), which these tests do not need. The apiserver listens on the bridge's
# address (172.31.N.1), where both this machine and the Pods reach it.
#
# This sandbox refuses a negative oom_score_adj, which the kubelet asks for its pause
# containers: the lab's dockerd runs every container through a runc wrapper that rewrites
# `.process.oomScoreAdj` to 0 in the bundle's config.json before calling runc.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${VALET_LAB_STATE:-/tmp/valet-lab}
READY_WITHIN=${KUBE_READY_WITHIN:-120} # seconds the apiserver and the node may take

die() { echo "kube.sh: $*" >&2; exit 1; }
note() { echo "kube.sh: $*" >&2; }
usage() { die "usage: kube.sh build | up PREFIX | down PREFIX | env PREFIX | restart-apiserver PREFIX"; }

cache_dir() {
  if [ -n "${VALET_KUBE_CACHE:-}" ]; then echo "$VALET_KUBE_CACHE"
  elif [ -d /work ] && [ -w /work ]; then echo /work/cache/kube-1.20
  else echo "$HOME/.cache/valet-kube-1.20"; fi
}

need_apt() { # need_apt COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  }
}

need_apt_pkg() { # need_apt_pkg PACKAGE
  dpkg -s "$1" >/dev/null 2>&1 && return 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  }
}

build() {
  local cache src sources
  cache=$(cache_dir)
  if [ -x "$cache/kube-apiserver" ] && [ -x "$cache/kubelet" ]; then echo "$cache"; return 0; fi
  need_apt go golang-go
  need_apt etcd etcd-server
  need_apt jq jq
  need_apt rsync rsync
  need_apt dpkg-source dpkg-dev
  mkdir -p "$cache"
  src=$cache/src
  if [ ! -d "$src/tree" ]; then
    rm -rf "$src" && mkdir -p "$src"
    # A deb-src twin of the machine's own Debian sources, for as long as the download takes.
    sources=/etc/apt/sources.list.d/valet-kube-src.sources
    [ -f /etc/apt/sources.list.d/debian.sources ] || die "no /etc/apt/sources.list.d/debian.sources to make a deb-src entry from"
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$sources"
    trap 'rm -f '"$sources"'; apt-get update -qq || true' EXIT
    apt-get update -qq
    (cd "$src" && apt-get source --download-only kubernetes >/dev/null 2>&1) || die "apt-get source kubernetes failed"
    rm -f "$sources"; trap - EXIT; apt-get update -qq || true
    (cd "$src" && dpkg-source -x kubernetes_*.dsc tree >/dev/null) || die "dpkg-source -x failed"
    # The tree vendors reflect2 1.0.1, whose map iteration crashes under Go 1.18 and later
    # (kube-apiserver died with SIGSEGV in json-iterator's map encoder seconds after start);
    # Debian's reflect2 1.0.2 package has the fix, and its API is the same.
    need_apt_pkg golang-github-modern-go-reflect2-dev
    local vendored=$src/tree/vendor/github.com/modern-go/reflect2
    rm -f "$vendored"/*.go "$vendored"/*.s
    cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go \
      /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$vendored/"
  fi
  note "building kube-apiserver and kubelet in $src/tree (about 5 minutes on 2 cores)"
  (
    cd "$src/tree"
    export GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0
    make WHAT=cmd/kube-apiserver >"$cache/build.log" 2>&1
    make WHAT=cmd/kubelet >>"$cache/build.log" 2>&1
  ) || { tail -20 "$cache/build.log" >&2; die "build failed (log: $cache/build.log)"; }
  cp "$src/tree/_output/local/bin/linux/amd64/kube-apiserver" "$src/tree/_output/local/bin/linux/amd64/kubelet" "$cache/"
  # The source tree and Go's build cache are large; the binaries are what is kept.
  rm -rf "$src/tree/_output"
  echo "$cache"
}

[ $# -ge 1 ] || usage
cmd=$1
if [ "$cmd" = build ]; then build; exit 0; fi
[ $# -ge 2 ] || usage
prefix=$2
[[ $prefix =~ ^[a-zA-Z0-9][a-zA-Z0-9_]{0,11}$ ]] || die "PREFIX must be 1-12 letters, digits or _: '$prefix'"
root=$STATE/$prefix-kube
bridge=$prefix-kb
node=$(echo "$prefix-node" | tr '[:upper:]_' '[:lower:]-')

# The pid recorded for NAME if it still runs the command it was started as (its command line
# names this lab's state folder).
pid_of() {
  local file=$root/$1.pid pid
  [ -s "$file" ] || return 1
  pid=$(cat "$file")
  [[ $pid =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$root" || return 1
  echo "$pid"
}

# Starts NAME in a session of its own, output to $root/NAME.log, pid to $root/NAME.pid.
spawn() {
  local name=$1; shift
  setsid "$@" </dev/null >>"$root/$name.log" 2>&1 &
  echo $! >"$root/$name.pid"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A 172.31.N.0/24 no address or route here uses.
free_subnet() {
  local n used
  used=$(ip -4 -o addr show; ip -4 route show)
  for n in $(seq 1 254); do
    grep -q "172\.31\.$n\." <<<"$used" || { echo "$n"; return 0; }
  done
  die "no free 172.31.N.0/24"
}

wait_for() { # wait_for WHAT SECONDS COMMAND...
  local what=$1 within=$2 deadline; shift 2
  deadline=$((SECONDS + within))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

api() { # api PATH: GET on the apiserver with the admin token
  curl -sfk -H "Authorization: Bearer $(cat "$root/token")" "https://$(cat "$root/api.host"):$(cat "$root/api.port")$1"
}

# Starts kube-apiserver on the ports `up` recorded and waits until it is ready.
start_apiserver() { # start_apiserver BIN_DIR
  spawn apiserver "$1/kube-apiserver" --etcd-servers "http://127.0.0.1:$(cat "$root/etcd.port")" \
    --bind-address "$(cat "$root/api.host")" --advertise-address "$(cat "$root/api.host")" --secure-port "$(cat "$root/api.port")" --insecure-port 0 \
    --cert-dir "$root/certs" --token-auth-file "$root/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$root/sa.pub" --service-account-signing-key-file "$root/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --service-cluster-ip-range 10.96.0.0/16 \
    --allow-privileged=true --disable-admission-plugins ServiceAccount --endpoint-reconciler-type none \
    --kubelet-preferred-address-types InternalIP
  wait_for apiserver "$READY_WITHIN" api /readyz \
    || { tail -20 "$root/apiserver.log" >&2; die "kube-apiserver not ready within ${READY_WITHIN}s"; }
}

# Stops kube-apiserver (SIGTERM, then SIGKILL after 5 s) and starts it again on the same port:
# every watch on it is cut, as when a control plane is upgraded or its node reboots. Prints
# how long the apiserver was away, in milliseconds.
restart_apiserver() {
  local pid started
  pid=$(pid_of apiserver) || die "no apiserver of lab $prefix runs"
  started=$(date +%s%N)
  kill "$pid"
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  start_apiserver "$(cache_dir)"
  echo $((($(date +%s%N) - started) / 1000000))
}

up() {
  local bin n etcd_port peer_port api_port kubelet_port token
  bin=$(build)
  need_apt etcd etcd-server
  need_apt jq jq
  for tool in etcd dockerd runc jq openssl curl python3; do
    command -v "$tool" >/dev/null || die "the kube lab needs \`$tool\`"
  done
  if pid_of apiserver >/dev/null && pid_of kubelet >/dev/null; then
    echo "$root/kubeconfig"; return 0
  fi
  down_quiet
  mkdir -p "$root"/{etcd,certs,kubelet,docker}
  chmod 700 "$root"

  # The kubelet's container engine, on a bridge of its own. Labs started at once must not
  # pick the same subnet (Pod IPs would collide): choosing and taking it is one locked step.
  exec 9>"$(dirname "$root")/kube-subnet.lock"
  flock -w 60 9 || die "another lab holds the subnet lock"
  n=$(free_subnet)
  echo "$n" >"$root/subnet"
  # The apiserver listens on the bridge's address, not on 127.0.0.1: this machine reaches it
  # there, and so does a Pod (valet running in the cluster), which 127.0.0.1 would not. Its
  # serving certificate names that address, so a Pod can check it against certs/apiserver.crt.
  echo "172.31.$n.1" >"$root/api.host"
  ip link add "$bridge" type bridge
  ip addr add "172.31.$n.1/24" dev "$bridge"
  ip link set "$bridge" up
  # Pod to Pod on the bridge (valet in a Pod dialling its instances' Pods): with
  # bridge-nf-call-iptables on, bridged frames pass the FORWARD chain, whose policy the
  # machine's own Docker sets to DROP. One rule for this bridge alone, as a CNI bridge plugin
  # adds; `down` removes it.
  if command -v iptables >/dev/null && ! iptables -C FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null; then
    iptables -I FORWARD -i "$bridge" -o "$bridge" -j ACCEPT
  fi
  flock -u 9
  exec 9>&-
  cat >"$root/runc-wrap" <<EOF
#!/usr/bin/env bash
# runc with .process.oomScoreAdj forced to 0: this sandbox refuses negative values.
bundle=
prev=
for arg in "\$@"; do
  case "\$prev" in --bundle|-b) bundle=\$arg ;; esac
  case "\$arg" in --bundle=*) bundle=\${arg#--bundle=} ;; esac
  prev=\$arg
done
if [ -n "\$bundle" ] && [ -f "\$bundle/config.json" ]; then
  tmp=\$(mktemp "\$bundle/config.json.XXXXXX")
  jq '.process.oomScoreAdj = 0' "\$bundle/config.json" >"\$tmp" && mv "\$tmp" "\$bundle/config.json"
fi
exec $(command -v runc) "\$@"
EOF
  chmod 755 "$root/runc-wrap"
  echo '{}' >"$root/docker/daemon.json"
  spawn dockerd dockerd --config-file "$root/docker/daemon.json" \
    --data-root "$root/docker/data" --exec-root "$root/docker/exec" \
    --pidfile "$root/docker/docker.pid" -H "unix://$root/docker.sock" \
    --bridge "$bridge" --iptables=false --ip-masq=false --storage-driver overlay2 \
    --add-runtime "lab-runc=$root/runc-wrap" --default-runtime lab-runc
  wait_for "the lab's dockerd" 60 docker -H "unix://$root/docker.sock" version \
    || { tail -20 "$root/dockerd.log" >&2; die "the lab's dockerd does not answer"; }

  # The pause image: a FROM-scratch busybox that sleeps (nothing can be pulled here).
  local pause=$root/pause
  mkdir -p "$pause"
  cp "$(command -v busybox)" "$pause/busybox" 2>/dev/null || die "the pause image needs a static busybox (busybox-static)"
  printf 'FROM scratch\nCOPY busybox /busybox\nENTRYPOINT ["/busybox", "sleep", "2147483647"]\n' >"$pause/Dockerfile"
  docker -H "unix://$root/docker.sock" build -q -t valet-lab/pause:1 "$pause" >/dev/null

  # etcd, then the apiserver with a static admin token and a service-account key pair.
  etcd_port=$(free_port); peer_port=$(free_port)
  spawn etcd etcd --data-dir "$root/etcd" --name "$prefix" \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "$prefix=http://127.0.0.1:$peer_port"
  token=$(openssl rand -hex 24)
  echo "$token" >"$root/token"
  echo "$token,admin,admin,system:masters" >"$root/tokens.csv"
  openssl genrsa -out "$root/sa.key" 2048 2>/dev/null
  openssl rsa -in "$root/sa.key" -pubout -out "$root/sa.pub" 2>/dev/null
  api_port=$(free_port)
  echo "$api_port" >"$root/api.port"
  echo "$etcd_port" >"$root/etcd.port"
  start_apiserver "$bin"

  cat >"$root/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: https://$(cat "$root/api.host"):$api_port
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $token
contexts:
- name: lab
  context: {cluster: lab, user: admin, namespace: default}
current-context: lab
EOF
  chmod 600 "$root/kubeconfig"

  kubelet_port=$(free_port)
  spawn kubelet "$bin/kubelet" --kubeconfig "$root/kubeconfig" --hostname-override "$node" \
    --container-runtime docker --docker-endpoint "unix://$root/docker.sock" \
    --pod-infra-container-image valet-lab/pause:1 --root-dir "$root/kubelet" \
    --cert-dir "$root/kubelet/pki" --cgroups-per-qos=false --enforce-node-allocatable "" \
    --cgroup-driver cgroupfs --fail-swap-on=false --make-iptables-util-chains=false \
    --port "$kubelet_port" --read-only-port 0 --healthz-port 0 --address "172.31.$n.1" \
    --node-ip "172.31.$n.1" --register-node=true --image-gc-high-threshold 100 \
    --eviction-hard "" --volume-stats-agg-period 0
  node_ready() { api "/api/v1/nodes/$node" | jq -e '.status.conditions[] | select(.type == "Ready" and .status == "True")'; }
  wait_for "node Ready" "$READY_WITHIN" node_ready \
    || { tail -30 "$root/kubelet.log" >&2; die "node $node not Ready within ${READY_WITHIN}s"; }
  echo "$root/kubeconfig"
}

# Stops what an earlier `up` of this prefix started; says nothing.
down_quiet() {
  local name pid
  for name in kubelet apiserver etcd; do
    if pid=$(pid_of "$name"); then kill "$pid" 2>/dev/null || true; fi
  done
  for name in kubelet apiserver etcd; do
    if pid=$(pid_of "$name"); then
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  if pid=$(pid_of dockerd); then
    # The Pods' containers first: they would outlive the daemon.
    docker -H "unix://$root/docker.sock" ps -aq 2>/dev/null | xargs -r docker -H "unix://$root/docker.sock" rm -f >/dev/null 2>&1 || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # containerd and shims of this lab (their command lines name its state folder).
  pgrep -f -- "$root/docker" | xargs -r kill -9 2>/dev/null || true
  ip link show "$bridge" >/dev/null 2>&1 && ip link del "$bridge" || true
  if command -v iptables >/dev/null; then
    while iptables -D FORWARD -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null; do :; done
  fi
  if [ -d "$root" ]; then
    # Mounts the kubelet and dockerd left (volumes, overlay layers, shm), deepest first.
    awk -v r="$root" '$2 ~ "^" r { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    rm -rf "$root"
  fi
}

case "$cmd" in
  up) up ;;
  down) down_quiet ;;
  restart-apiserver) restart_apiserver ;;
  env)
    [ -s "$root/kubeconfig" ] || die "no lab $prefix is up"
    echo "KUBECONFIG=$root/kubeconfig"
    echo "NODE=$node"
    echo "POD_CIDR=172.31.$(cat "$root/subnet").0/24"
    echo "API_HOST=$(cat "$root/api.host")"
    echo "API_PORT=$(cat "$root/api.port")"
    # The apiserver's self-signed serving certificate followed by the CA that signed it.
    echo "API_CA=$root/certs/apiserver.crt"
    ;;
  *) usage ;;
esac
