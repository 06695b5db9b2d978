#!/usr/bin/env bash
# Benchmark WebSockets through fc-init: the echo round trip through fc-init against the
# function directly, in one run, and fc-init's memory and threads with many WebSockets open
# at once. The function is bench/ws_echo.py (asyncio), the client bench/ws_client.py.
# See bench/README.md.
#
#     bench/websocket.sh                       # builds fc-init (static) if needed
#     FC_INIT=path/to/fc-init OPEN=2000 bench/websocket.sh
#
# Progress goes to stderr, the tables to stdout.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FC_INIT=${FC_INIT:-}   # default: the static release build (bench/lib.sh)
ROUNDS=${ROUNDS:-5000} # sequential echoes per round-trip measurement
OPEN=${OPEN:-10000}    # WebSockets held open at once (fewer when the descriptor limit says so)
HOLD=${HOLD:-3}        # seconds they are held before fc-init is measured

SCRIPT=websocket.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need python3=python3 curl=curl
fc_init_binary  # $FC_INIT, or the static build
# Every WebSocket is two descriptors in fc-init (its client and function ends), one in the
# client and one in the function; fc-init keeps a reserve besides (src/proxy/fds.rs).
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
FIT=$((($(ulimit -n) - 200) / 2))
if ((OPEN > FIT)); then
    log "RLIMIT_NOFILE is $(ulimit -n) here (not raisable): holding $FIT WebSockets, not $OPEN"
    OPEN=$FIT
fi

scratch  # $T, and $PIDS to stop at exit

DIRECT=$(free_port) FC=$(free_port)
cat >"$T/fc-init.toml" <<EOT
[function]
command = ["python3", "$PWD/bench/ws_echo.py", "$T/fn.sock", "$DIRECT"]
socket = "$T/fn.sock"
timeout = "1h"
[server]
listen = "127.0.0.1:$FC"
max_connections = $((OPEN + 1000))
max_concurrency = 0
[admin]
socket = "$T/admin.sock"
[log]
invocations = false
EOT

log "starting fc-init and the echo function"
"$FC_INIT" -c "$T/fc-init.toml" >/dev/null 2>"$T/fc-init.err" &
FC_PID=$!
PIDS+=("$FC_PID")
wait_port "$FC"
wait_port "$DIRECT"

declare -A P50 P99
for name in direct fc-init; do
    port=$DIRECT
    [[ $name == fc-init ]] && port=$FC
    log "echo round trips: $name, $ROUNDS rounds"
    read -r P50[$name] P99[$name] < <(python3 bench/ws_client.py rtt "$port" "$ROUNDS")
done

log "holding $OPEN WebSockets open through fc-init for ${HOLD}s"
read -r RSS0 THR0 RSS THR < <(python3 bench/ws_client.py hold "$FC" "$OPEN" "$FC_PID" "$HOLD")

printf '| path | echo round trip p50 (µs) | p99 (µs) | added p50 (µs) |\n'
printf '|---|---:|---:|---:|\n'
for name in direct fc-init; do
    printf '| %s | %s | %s | %+d |\n' "$name" "${P50[$name]}" "${P99[$name]}" \
        "$((P50[$name] - P50[direct]))"
done
printf '\n| fc-init | RSS (KiB) | threads |\n|---|---:|---:|\n'
printf '| before | %s | %s |\n| %s WebSockets open | %s | %s |\n' \
    "$RSS0" "$THR0" "$OPEN" "$RSS" "$THR"
printf '\n(%s cores; RSS per open WebSocket: %s bytes)\n' "$(nproc)" \
    "$(( (RSS - RSS0) * 1024 / OPEN ))"
