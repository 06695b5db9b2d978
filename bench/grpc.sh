#!/usr/bin/env bash
# Benchmark unary gRPC through fc-init (h2c, docs/reference.md §14) against the same calls
# direct to the function and through nginx's `grpc_pass`, in one run, and print a markdown
# table: calls/s at 1 and at 64 concurrent calls, the ratio of each to direct, and the p50
# latency at 1 call (with what the proxy adds to it).
#
# The function is the grpcio server of the h2c tests (tests/fixtures/grpc_function.py,
# method fc.Test/Echo), started by fc-init on a unix socket and listening on a TCP port too
# for the direct baseline; nginx proxies to the same socket. The load is h2load (Debian's
# nghttp2-client) sending gRPC-framed POSTs with prior knowledge: 64 concurrent calls are
# 8 connections of 8 streams each, as gRPC clients multiplex calls on few channels. h2load
# prints no percentiles, so p50 comes from its per-request log.
# See bench/README.md.
#
#     bench/grpc.sh                   # from anywhere; builds fc-init if needed
#     FC_INIT=path/to/fc-init DURATION=5 bench/grpc.sh
#
# Progress goes to stderr, the table to stdout.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FC_INIT=${FC_INIT:-}  # default: the static release build (bench/lib.sh)
DURATION=${DURATION:-10}  # seconds per h2load run
WARMUP=${WARMUP:-1}       # seconds of warm-up before each measured run
CONNS=${CONNS:-8}         # connections of the loaded run...
STREAMS=${STREAMS:-8}     # ...times concurrent streams on each: 64 calls at once

SCRIPT=grpc.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need nginx=nginx-light h2load=nghttp2-client python3=python3
python3 -c 'import grpc' 2>/dev/null || die "grpcio is needed: pip install grpcio"
fc_init_binary
NGINX=$(command -v nginx)

scratch  # $T, and $PIDS to stop at exit

DIRECT=$(free_port) NGINX_PROXY=$(free_port) FC=$(free_port)
SOCK=$T/fn.sock

cat >"$T/fc-init.toml" <<EOF
[function]
command = ["python3", "$PWD/tests/fixtures/grpc_function.py"]
socket = "$SOCK"
env = { FIXTURE_ALSO_PORT = "$DIRECT" }
[server]
listen = "127.0.0.1:$FC"
[admin]
socket = "$T/admin.sock"
[async]
store = "$T/events.db"
[log]
invocations = false
EOF

# nginx's gRPC proxy: h2c with prior knowledge in front, kept-alive h2c connections behind.
nginx_conf nginx-grpc auto root <<EOF
    upstream function { server unix:$SOCK; keepalive 128; keepalive_requests 1000000; }
    server {
        listen 127.0.0.1:$NGINX_PROXY http2;
        location / { grpc_pass grpc://function; }
    }
EOF

# One gRPC message: no compression flag, a 4-byte length, 16 bytes.
printf '\x00\x00\x00\x00\x10bench-call-bytes' >"$T/call.bin"

# grpc_ok PORT: one call through PORT answers grpc-status 0.
grpc_ok() {
    curl -s --http2-prior-knowledge -o /dev/null -D - -H 'content-type: application/grpc' \
        -H 'te: trailers' --data-binary "@$T/call.bin" \
        "http://127.0.0.1:$1/fc.Test/Echo" 2>/dev/null | grep -q '^grpc-status: 0'
}
wait_grpc() {
    local deadline=$((SECONDS + 30))
    until grpc_ok "$1"; do
        if ((SECONDS >= deadline)); then
            tail -n 20 "$T"/*.err >&2 || true
            die "no gRPC call goes through port $1"
        fi
        sleep 0.05
    done
}

log "starting fc-init (and the grpcio function) and nginx"
"$FC_INIT" -c "$T/fc-init.toml" >/dev/null 2>"$T/fc-init.err" &
PIDS+=($!)
wait_grpc "$FC"
wait_grpc "$DIRECT"
"$NGINX" -c "$T/nginx-grpc.conf" 2>"$T/nginx-grpc.err" &
PIDS+=($!)
wait_grpc "$NGINX_PROXY"

# run_h2load PORT CONNS STREAMS: prints "calls_per_s p50_us" (p50 from the request log).
run_h2load() {
    local logf=$T/h2load.log out rps p50
    rm -f "$logf"
    out=$(h2load -D "$DURATION" --warm-up-time="$WARMUP" -c "$2" -m "$3" -t 1 \
        -d "$T/call.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
        --log-file="$logf" "http://127.0.0.1:$1/fc.Test/Echo")
    if grep -q '^requests: .* 0 succeeded' <<<"$out"; then
        log "$out"
        die "no call succeeded on port $1"
    fi
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    # The log: start time, status, latency in microseconds, one request a line.
    p50=$(awk '{print $3}' "$logf" | sort -n | awk '{a[NR] = $1} END {print (NR ? a[int((NR + 1) / 2)] : 0)}')
    echo "$rps $p50"
}

declare -A RPS64 RPS1 P50
NAMES=(direct nginx-grpc_pass fc-init)
declare -A PORT=([direct]=$DIRECT [nginx-grpc_pass]=$NGINX_PROXY [fc-init]=$FC)
for name in "${NAMES[@]}"; do
    log "h2load: $name, $((CONNS * STREAMS)) concurrent calls"
    read -r RPS64[$name] _ < <(run_h2load "${PORT[$name]}" "$CONNS" "$STREAMS")
    log "h2load: $name, 1 call at a time"
    read -r RPS1[$name] P50[$name] < <(run_h2load "${PORT[$name]}" 1 1)
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf (b > 0 ? "%.2f" : "-"), a / b }'; }
echo "| proxy | calls/s at $((CONNS * STREAMS)) | ratio to direct | calls/s at 1 | ratio to direct | p50 at 1 (µs) | added (µs) |"
echo "|---|---|---|---|---|---|---|"
for name in "${NAMES[@]}"; do
    printf '| %s | %.0f | %s | %.0f | %s | %s | %s |\n' "$name" "${RPS64[$name]}" \
        "$(ratio "${RPS64[$name]}" "${RPS64[direct]}")" "${RPS1[$name]}" \
        "$(ratio "${RPS1[$name]}" "${RPS1[direct]}")" "${P50[$name]}" \
        "$((${P50[$name]%.*} - ${P50[direct]%.*}))"
done
