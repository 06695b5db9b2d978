#!/usr/bin/env bash
# Attacks fc-init as an attacker would, with tools written by others, on loopback only, bounded
# in count and time (docs/reference.md §12; README.md "Attack"): slowhttptest's slowloris (-H), slow
# body (-B), slow read (-X) and range (-R) while a probe sends good requests; CL.TE, TE.CL and
# TE.TE smuggling shapes against a strict function written with Python's h11 that records what
# it parsed; a network mutation fuzzer of ATTACK_COUNT (default 20000) requests. Checks that
# fc-init never crashes, nothing hangs past its timeouts, and nothing reaches the function
# after fc-init answered 4xx. Prints a table on stdout; exits 1 when a check fails.
#
#   bench/attack.sh                              # the static release build
#   FC_INIT=target/debug/fc-init bench/attack.sh # another binary
#   ATTACK_COUNT=2000 ATTACK_SLOW_SECONDS=10 bench/attack.sh   # a quicker run
set -uo pipefail
SCRIPT=attack.sh
cd "$(dirname "$0")/.."
source bench/lib.sh

COUNT=${ATTACK_COUNT:-20000}
SLOW_SECONDS=${ATTACK_SLOW_SECONDS:-30}
CONNS=${ATTACK_CONNECTIONS:-1000}
TIMEOUT=2 # header_timeout, body_timeout and idle_timeout, in seconds

need slowhttptest=slowhttptest python3=python3 curl=curl
python3 -c 'import h11' 2>/dev/null || python3 -m pip install --quiet h11 ||
    python3 -m pip install --quiet --break-system-packages h11 || die "cannot install h11"
FC_INIT=${FC_INIT:-}
fc_init_binary
scratch /tmp attack
# slowhttptest opens CONNS sockets and fc-init as many plus the function's.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

port=$(free_port)
cat >"$T/fc-init.toml" <<TOML
[function]
command = ["python3", "$PWD/tests/fixtures/h11_function.py"]
socket = "$T/fn.sock"
env = { H11_RECORD = "$T/h11.jsonl" }
timeout = "5s"
[server]
listen = "127.0.0.1:$port"
header_timeout = "${TIMEOUT}s"
body_timeout = "${TIMEOUT}s"
idle_timeout = "${TIMEOUT}s"
max_connections = 4096
[admin]
socket = "$T/admin.sock"
[async]
store = "$T/events.db"
TOML
"$FC_INIT" -c "$T/fc-init.toml" >"$T/fc-init.out" 2>"$T/fc-init.err" &
fc_pid=$!
PIDS+=("$fc_pid")
T_ERR="$T/fc-init.err"
wait_port "$port"
log "fc-init $fc_pid on 127.0.0.1:$port, strict h11 function; header/body/idle timeout ${TIMEOUT}s"

failed=0
rows=()
alive() { kill -0 "$fc_pid" 2>/dev/null && ! grep -q panicked "$T/fc-init.err"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$fc_pid/status" 2>/dev/null; }

# slowhttptest: each mode for SLOW_SECONDS with CONNS connections, a probe alongside.
for mode in H B X R; do
    case $mode in
    H) name="slowloris (-H)"; extra=(-H -i 1 -x 24) ;;
    B) name="slow body (-B)"; extra=(-B -i 1 -s 8192 -x 24) ;;
    X) name="slow read (-X)"; extra=(-X -k 8 -n 1 -w 1 -y 64 -z 8) ;;
    R) name="range (-R)"; extra=(-R -a 10 -b 3000) ;;
    esac
    log "slowhttptest $name for ${SLOW_SECONDS}s"
    python3 bench/attack.py probe --port "$port" --seconds "$((SLOW_SECONDS + 2))" \
        --out "$T/probe-$mode.json" >/dev/null &
    probe=$!
    timeout $((SLOW_SECONDS + 30)) slowhttptest "${extra[@]}" -c "$CONNS" -r 500 -l "$SLOW_SECONDS" -p 3 \
        -u "http://127.0.0.1:$port/slow" >"$T/slow-$mode.log" 2>&1
    wait "$probe"
    ok=yes
    alive || ok=no
    # Good traffic is served: every probe answered 200.
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d["failed"] != 0 or d["ok"] == 0)' \
        "$T/probe-$mode.json" || ok=no
    [[ $ok == yes ]] || failed=1
    rows+=("| slowhttptest $name, $CONNS connections, ${SLOW_SECONDS} s | $(python3 bench/attack.py row slowlog "$T/slow-$mode.log") | $(python3 bench/attack.py row probe "$T/probe-$mode.json") | $(rss_kib) KiB | $ok |")
done

log "smuggling shapes"
python3 bench/attack.py smuggle --port "$port" --record "$T/h11.jsonl" >"$T/smuggle.json"
s_ok=$?
alive || s_ok=1
((s_ok == 0)) || failed=1
rows+=("| CL.TE / TE.CL / TE.TE smuggling | $(python3 bench/attack.py row smuggle "$T/smuggle.json") | – | – | $(rss_kib) KiB | $( ((s_ok == 0)) && echo yes || echo no) |")

log "mutation fuzzer: $COUNT requests"
python3 bench/attack.py mutate --port "$port" --record "$T/h11.jsonl" --count "$COUNT" \
    --bound "$((TIMEOUT + 2))" >"$T/mutate.json"
m_ok=$?
alive || m_ok=1
((m_ok == 0)) || failed=1
rows+=("| mutation fuzzer, $COUNT requests in $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$T/mutate.json") s | $(python3 bench/attack.py row mutate "$T/mutate.json") | – | – | $(rss_kib) KiB | $( ((m_ok == 0)) && echo yes || echo no) |")

alive || failed=1
printf '| attack | result | probe ok/sent | probe p50 / p99 / max ms | fc-init RSS after | pass |\n'
printf '|---|---|---|---|---:|---|\n'
printf '%s\n' "${rows[@]}"
printf '\nfc-init alive at the end: %s; "panicked" on its stderr: %s\n' \
    "$(kill -0 "$fc_pid" 2>/dev/null && echo yes || echo no)" "$(grep -c panicked "$T/fc-init.err")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("mutation answers:", d["answers"]); [print("FAIL:", f) for f in d["failures"]]' "$T/mutate.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); [print("FAIL:", f) for f in d["failures"]]' "$T/smuggle.json"
exit "$failed"
