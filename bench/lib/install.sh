# Installs what the benchmark needs when it is missing: Debian's nginx, wrk and jq, and oha
# from crates.io (wrk has no fixed-rate mode; oha's -q has). Sourced by run.sh.

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
    # The nginx binary lives in /usr/sbin, which is not on every user's PATH.
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
    for tool in wrk jq; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]} with apt-get"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
    fi
    # The packaged service (port 80) is not ours and not part of the run: a machine that had
    # nginx before keeps its service, one that got it just now gets it stopped.
    if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null; then
        as_root systemctl stop nginx 2>/dev/null || true
    fi
    if ! command -v oha >/dev/null; then
        [[ -x "$HOME/.cargo/bin/oha" ]] || {
            log "installing oha with cargo install (a few minutes, once)"
            cargo install oha --locked >&2
        }
        PATH="$HOME/.cargo/bin:$PATH"
    fi
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}
