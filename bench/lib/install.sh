# Installs what the benchmark needs when it is missing: Debian's nginx, haproxy, wrk and jq (and
# postgresql-client's psql for the cluster phase), and oha from crates.io (wrk has no fixed-rate
# mode; oha's -q has). Sourced by run.sh.

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

ensure_tools() {
    local missing=() tool
    # The nginx and haproxy binaries live in /usr/sbin, which is not on every user's PATH.
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || missing+=(haproxy)
    for tool in wrk jq; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if has_phase cluster; then
        command -v psql >/dev/null || missing+=(postgresql-client)
    fi
    if ((${#missing[@]})); then
        log "installing ${missing[*]} with apt-get"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
    # The packaged services are not ours and not part of the run: a machine that had nginx or
    # haproxy before keeps its service, one that got it just now gets it stopped.
    local service
    for service in nginx haproxy; do
        if [[ " ${missing[*]} " == *" $service "* ]] && command -v systemctl >/dev/null; then
            as_root systemctl stop "$service" 2>/dev/null || true
        fi
    done
    if ! command -v oha >/dev/null; then
        [[ -x "$HOME/.cargo/bin/oha" ]] || {
            log "installing oha with cargo install (a few minutes, once)"
            cargo install oha --locked >&2
        }
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
    HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
}
