#!/usr/bin/env bash
# Benchmark fc-init's traffic forwarding against nginx and HAProxy as reverse proxies, all in
# front of the same function (nginx on a unix socket: `return 200` for small answers, a static
# 64 MiB file for large ones), in one run, and print markdown tables: requests/s, ratio to
# hitting the function directly, p50 latency and the latency added at one connection; the
# throughput of large answers at a few connections; then fc-init's RSS with 256 open idle
# connections. Two more rows show what busy polling does: HAProxy with its `busy-polling`,
# and fc-init with `server.busy_poll = "0s"`.
# See bench/README.md.
#
#     bench/proxy.sh                  # from anywhere; builds fc-init if needed
#     FC_INIT=path/to/fc-init DURATION=5s bench/proxy.sh
#
# Progress goes to stderr, the table to stdout.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FC_INIT=${FC_INIT:-}  # default: the static release build (bench/lib.sh)
DURATION=${DURATION:-10s}   # per wrk run
CONNS=${CONNS:-64}          # connections of the loaded run
IDLE_CONNS=${IDLE_CONNS:-256}
BIG_MIB=${BIG_MIB:-64}      # size of the large answer
BIG_CONNS=${BIG_CONNS:-4}   # connections of the large-answer run

SCRIPT=proxy.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh  # the script has moved to the repository root

need nginx=nginx-light haproxy=haproxy wrk=wrk python3=python3
fc_init_binary  # $FC_INIT, or the static build
NGINX=$(command -v nginx)

scratch  # $T, and $PIDS to stop at exit

DIRECT=$(free_port) NGINX_PROXY=$(free_port) HAPROXY=$(free_port) FC=$(free_port)
HAPROXY_BUSY=$(free_port) FC_NOPOLL=$(free_port)
SOCK=$T/fn.sock

# The function: one nginx worker answering 200 on the unix socket fc-init gives it, and on a
# TCP port for the direct baseline. fc-init starts it, so the same process serves every run.
# Its workers stay root when the script is: they serve the large answer from $T.
nginx_conf function 1 root <<EOF
    server {
        listen unix:$SOCK;
        listen 127.0.0.1:$DIRECT;
        location / { return 200 "ok\n"; }
        location = /big { alias $T/big.bin; }
    }
EOF

cat >"$T/fc-init.toml" <<EOF
[function]
command = ["$NGINX", "-c", "$T/function.conf"]
socket = "$SOCK"
[server]
listen = "127.0.0.1:$FC"
[admin]
socket = "$T/admin.sock"
EOF

# The same fc-init with busy polling off, in front of the same function: it supervises a
# `sleep` and forwards to the first one's function socket.
cat >"$T/fc-init-nopoll.toml" <<EOF
[function]
command = ["sleep", "infinity"]
socket = "$SOCK"
[server]
listen = "127.0.0.1:$FC_NOPOLL"
busy_poll = "0s"
[admin]
socket = "$T/admin-nopoll.sock"
[async]
store = "$T/events-nopoll.db"
EOF

nginx_conf nginx-proxy auto root <<EOF
    upstream function { server unix:$SOCK; keepalive 128; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NGINX_PROXY;
        location / {
            proxy_pass http://function;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF

cat >"$T/haproxy.cfg" <<EOF
global
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:$HAPROXY
    default_backend be
backend be
    server function unix@$SOCK
EOF
# HAProxy's own busy polling (it never sleeps), to compare with fc-init's bounded one.
sed -e "s/^global/global\n    busy-polling/" -e "s/127.0.0.1:$HAPROXY\$/127.0.0.1:$HAPROXY_BUSY/" \
    "$T/haproxy.cfg" >"$T/haproxy-busy.cfg"

head -c $((BIG_MIB << 20)) /dev/urandom >"$T/big.bin"

log "starting fc-init (and the function), nginx and haproxy"
# The second fc-init first: each removes a stale socket file at the function's path before
# it starts its command, and this one's command is not the function.
"$FC_INIT" -c "$T/fc-init-nopoll.toml" >/dev/null 2>"$T/fc-init-nopoll.err" &
PIDS+=($!)
deadline=$((SECONDS + 30))
until pgrep -P "${PIDS[-1]}" -x sleep >/dev/null; do
    ((SECONDS < deadline)) || die "the second fc-init never started its command"
    sleep 0.05
done
"$FC_INIT" -c "$T/fc-init.toml" >/dev/null 2>"$T/fc-init.err" &
FC_PID=$!
PIDS+=("$FC_PID")
wait_port "$FC"
"$NGINX" -c "$T/nginx-proxy.conf" 2>"$T/nginx-proxy.err" &
PIDS+=($!)
haproxy -f "$T/haproxy.cfg" -db >"$T/haproxy.out" 2>&1 &
PIDS+=($!)
wait_port "$DIRECT"
wait_port "$NGINX_PROXY"
wait_port "$HAPROXY"
wait_port "$FC_NOPOLL"

# run_wrk PORT CONNS THREADS [PATH]: prints "rps p50_us"
run_wrk() {
    local out
    out=$(wrk -t"$3" -c"$2" -d"$DURATION" --latency "http://127.0.0.1:$1/${4:-}")
    local rps p50
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    # wrk prints latencies as 123.45us, 1.23ms or 1.01s.
    p50=$(awk -v v="$p50" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); print v }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 }
        else { sub(/s$/, "", v); print v * 1000000 } }')
    echo "$rps $p50"
}

declare -A RPS64 RPS1 P50 BIG
NAMES=(direct nginx haproxy haproxy-busy-polling fc-init fc-init-no-busy-poll)
declare -A PORT=([direct]=$DIRECT [nginx]=$NGINX_PROXY [haproxy]=$HAPROXY
    [haproxy-busy-polling]=$HAPROXY_BUSY [fc-init]=$FC [fc-init-no-busy-poll]=$FC_NOPOLL)
for name in "${NAMES[@]}"; do
    # It takes a core whether or not it has traffic: it runs only for its own row.
    if [[ $name == haproxy-busy-polling ]]; then
        haproxy -f "$T/haproxy-busy.cfg" -db >"$T/haproxy-busy.out" 2>&1 &
        BUSY_PID=$!
        PIDS+=("$BUSY_PID")
        wait_port "$HAPROXY_BUSY"
    fi
    log "wrk: $name, $CONNS connections"
    read -r RPS64[$name] _ < <(run_wrk "${PORT[$name]}" "$CONNS" 2)
    log "wrk: $name, 1 connection"
    read -r RPS1[$name] P50[$name] < <(run_wrk "${PORT[$name]}" 1 1)
    log "wrk: $name, $BIG_MIB MiB answers, $BIG_CONNS connections"
    read -r BIG[$name] _ < <(run_wrk "${PORT[$name]}" "$BIG_CONNS" 2 big)
    if [[ $name == haproxy-busy-polling ]]; then
        kill "$BUSY_PID"
        wait "$BUSY_PID" 2>/dev/null || true
    fi
done

log "fc-init RSS with $IDLE_CONNS open idle connections"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$FC_PID/status"; }
RSS_BEFORE=$(rss)
RSS_IDLE=$(python3 - "$FC" "$IDLE_CONNS" "$FC_PID" <<'EOF'
import socket, sys, time
port, n, pid = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    # One request each, so every connection thread has run and holds its buffers.
    s.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
    data = b""
    while not data.endswith(b"ok\n"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed")
        data += chunk
    conns.append(s)
# Past fc-init's 1 s buffer release, so the figure is that of idle connections.
time.sleep(2.5)
with open(f"/proc/{pid}/status") as f:
    print(next(l.split()[1] for l in f if l.startswith("VmRSS")))
EOF
)

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.0f", a - b }'; }

printf '| target | req/s, %s conns | ratio to direct | req/s, 1 conn | ratio to direct | p50 at 1 conn (µs) | added p50 (µs) |\n' "$CONNS"
printf '|---|---:|---:|---:|---:|---:|---:|\n'
for name in "${NAMES[@]}"; do
    printf '| %s | %.0f | %s | %.0f | %s | %.0f | %s |\n' "$name" \
        "${RPS64[$name]}" "$(ratio "${RPS64[$name]}" "${RPS64[direct]}")" \
        "${RPS1[$name]}" "$(ratio "${RPS1[$name]}" "${RPS1[direct]}")" \
        "${P50[$name]}" "$(added "${P50[$name]}" "${P50[direct]}")"
done
printf '\n| target | %s MiB answers/s, %s conns | MiB/s | ratio to direct |\n' "$BIG_MIB" "$BIG_CONNS"
printf '|---|---:|---:|---:|\n'
for name in "${NAMES[@]}"; do
    printf '| %s | %.1f | %.0f | %s |\n' "$name" "${BIG[$name]}" \
        "$(awk -v r="${BIG[$name]}" -v m="$BIG_MIB" 'BEGIN { print r * m }')" \
        "$(ratio "${BIG[$name]}" "${BIG[direct]}")"
done
printf '\nfc-init RSS: %s KiB after the runs, %s KiB with %s open idle connections (%s cores).\n' \
    "$RSS_BEFORE" "$RSS_IDLE" "$IDLE_CONNS" "$(nproc)"
