# Helpers shared by the bench scripts; sourced, not run. Set SCRIPT (the script's name, for
# messages) before sourcing.

log() { printf '%s\n' "$*" >&2; }
die() { log "$SCRIPT: $*"; exit 1; }

# need COMMAND=PACKAGE...: installs, from Debian, the package of every command that is missing.
need() {
    local pair missing=()
    for pair in "$@"; do
        command -v "${pair%%=*}" >/dev/null || missing+=("${pair#*=}")
    done
    ((${#missing[@]})) || return 0
    local sudo=
    ((EUID == 0)) || sudo=sudo
    log "installing ${missing[*]}"
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${missing[@]}" >&2
}

# The binary fc-init ships: static and non-PIE (.cargo/config.toml says why), built for this
# machine's own target. The flags go with an explicit --target so that build scripts and
# proc-macros are built without them.
STATIC_TARGET=$(rustc -vV | sed -n 's/^host: //p')
STATIC_FC_INIT=target/$STATIC_TARGET/release/fc-init
build_static() {
    log "building fc-init (static, $STATIC_TARGET)"
    RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static" \
        cargo build --release --locked --target "$STATIC_TARGET" >&2
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT: until something answers HTTP 200 on 127.0.0.1:PORT, at most 30 s; on
# failure the end of every $T/*.err is shown.
wait_port() {
    local deadline=$((SECONDS + 30))
    until curl -fs -o /dev/null "http://127.0.0.1:$1/"; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$T"/*.err >&2 || true
            die "nothing answers on port $1"
        fi
        sleep 0.05
    done
}

# scratch [DIR [NAME]]: a fresh temp dir in $T (under DIR, default /tmp), removed at exit, when
# every pid in $PIDS is killed first.
scratch() {
    T=$(mktemp -d "${1:-/tmp}/fc-init-${2:-bench}.XXXXXX")
    PIDS=()
    trap scratch_cleanup EXIT
}
scratch_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$T"
}

# fc_init_binary: $FC_INIT as an absolute path, or the static release build when it is unset.
fc_init_binary() {
    if [[ -z $FC_INIT ]]; then
        build_static
        FC_INIT=$STATIC_FC_INIT
    elif [[ ! -x $FC_INIT ]]; then
        die "FC_INIT=$FC_INIT is not executable"
    fi
    FC_INIT=$(realpath "$FC_INIT")
}

# nginx_conf NAME WORKERS [root]: writes $T/NAME.conf, an nginx in the foreground with WORKERS
# worker processes, its pid and error log in $T/NAME.pid and $T/NAME.err, no access log, and
# the rest of its http block (upstreams, servers) read from stdin. Keep-alive connections last:
# nginx closes one after keepalive_requests (1000 by default; for HTTP/2 on either side), and a
# timed run would end there. With `root`, a script run as root keeps the workers root: they
# would drop to "nobody", who may neither connect to a function's socket nor read the files
# in $T, a private directory.
nginx_conf() {
    {
        if [[ ${3:-} == root ]] && ((EUID == 0)); then
            echo "user root;"
        fi
        cat <<CONF
daemon off;
worker_processes $2;
pid $T/$1.pid;
error_log $T/$1.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
CONF
        cat
        echo "}"
    } >"$T/$1.conf"
}
