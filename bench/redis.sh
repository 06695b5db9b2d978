#!/usr/bin/env bash
# Benchmark the fleet's store on Redis (async.backend = "redis"):
#  1. durable submissions/s through fc-init (`POST /invoke` with `X-Fc-Invocation-Type: Async`,
#     each answered 202 only once Redis acknowledged the event) at 1 and CONNS connections, with
#     Redis at `appendfsync always`, at `everysec`, and at `everysec` with one replica (then
#     each 202 also waits for the replica's WAIT), against the raw `XADD` rate that
#     `redis-benchmark` gets from the same master in the same run at the same client counts
#     (the ratio is the figure; the aim is >= 0.5). Beside them, where the time goes: the rate
#     `redis-benchmark` gets calling fc-init's own SUBMIT script directly (one event per call,
#     no HTTP, no fc-init), and the CPU time Redis spends per XADD and per durable submission
#     (its `used_cpu_*` over the run). The events are submitted with
#     `X-Fc-Async-Delay: SUBMIT_DELAY` so that the workers do not run them meanwhile: the
#     figure is the submission path alone, as the XADD is (part 2 measures running them);
#  2. events/s run end to end by 3 instances on one queue against 1 instance (a backlog is
#     submitted first; the rate is FINISHED events per second while it lasts);
#  3. a Redis Cluster of 3 masters (no replicas; appendfsync everysec): durable submissions/s
#     of 3 instances on one queue (one slot, one master) against 3 instances on three queues
#     whose slots sit on the three masters, each against the raw XADD rate of the same
#     masters (redis-benchmark on keys of the same slots, in the same run).
# Prints markdown tables on stdout, progress on stderr. See bench/README.md.
#
#     bench/redis.sh                       # from anywhere; builds fc-init if needed
#     FC_INIT=path/to/fc-init DURATION=5s bench/redis.sh
set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FC_INIT=${FC_INIT:-}          # default: the static release build (bench/lib.sh)
DURATION=${DURATION:-10s}     # per wrk run
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}         # wrk threads of the loaded run
RAW_SECONDS=${RAW_SECONDS:-5} # per redis-benchmark run (its request count is sized to it)
WORKERS=${WORKERS:-10}        # async.max_concurrency of each instance
BACKLOG_SECONDS=${BACKLOG_SECONDS:-3}  # submissions that build the backlog of part 2
E2E_SECONDS=${E2E_SECONDS:-5}          # the measuring window of part 2
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}}
PARTS=${PARTS:-123}           # which parts to run: any of 1, 2, 3
SUBMIT_DELAY=${SUBMIT_DELAY:-3600}     # X-Fc-Async-Delay of part 1's submissions (0: run them)

SCRIPT=redis.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh

need nginx=nginx-light wrk=wrk curl=curl python3=python3 redis-server=redis-server \
    redis-benchmark=redis-tools
fc_init_binary
NGINX=$(command -v nginx)

scratch "$BENCH_DIR" redis
REDIS_PORT=$(free_port)
BODY='{"bench":"async","payload":"0123456789abcdef0123456789abcdef"}'

# ---- Redis ------------------------------------------------------------------------------------

REDIS_PID=
REPLICA_PID=
REPLICA_PORT=$(free_port)
# replica_start: a replica of the server of redis_start, in sync.
replica_start() {
    mkdir -p "$T/redis-replica"
    redis-server --port "$REPLICA_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --replicaof 127.0.0.1 "$REDIS_PORT" --dir "$T/redis-replica" \
        --logfile "$T/redis-replica.log" &
    REPLICA_PID=$!
    PIDS+=("$REPLICA_PID")
    local deadline=$((SECONDS + 20))
    until redis-cli -p "$REPLICA_PORT" info replication 2>/dev/null | grep -q 'master_link_status:up'; do
        ((SECONDS < deadline)) || die "the replica never came in sync"
        sleep 0.05
    done
}
# redis_start MODE NAME: a fresh redis-server (appendonly, appendfsync MODE) in $T/redis-NAME.
redis_start() {
    redis_stop
    mkdir -p "$T/redis-$2"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly yes \
        --appendfsync "$1" --dir "$T/redis-$2" --logfile "$T/redis-$2.log" &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    local deadline=$((SECONDS + 10))
    # PONG, not LOADING: a server still reading its append-only file refuses commands.
    until [[ $(redis-cli -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; do
        ((SECONDS < deadline)) || die "redis-server did not start"
        sleep 0.05
    done
}
redis_stop() {
    if [[ -n $REPLICA_PID ]]; then
        kill "$REPLICA_PID" 2>/dev/null || true
        wait "$REPLICA_PID" 2>/dev/null || true
        REPLICA_PID=
    fi
    [[ -n $REDIS_PID ]] || return 0
    kill "$REDIS_PID" 2>/dev/null || true
    wait "$REDIS_PID" 2>/dev/null || true
    REDIS_PID=
}

# redis_cpu: the CPU seconds the Redis server of redis_start has used so far (all its threads).
redis_cpu() {
    redis-cli -p "$REDIS_PORT" info cpu |
        awk -F: '/^used_cpu_(sys|user):/ { t += $2 } END { printf "%.6f\n", t }'
}
# per_op CPU_BEFORE OPS: Redis CPU microseconds per operation since CPU_BEFORE.
per_op() {
    awk -v a="$1" -v b="$(redis_cpu)" -v n="$2" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }'
}
# bench_rate ARGS...: requests/s of one redis-benchmark run (-q output).
bench_rate() {
    local out
    out=$(redis-benchmark -p "$REDIS_PORT" -q "$@")
    awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "requests") r = $i } END { print r }' \
        <<<"${out//$'\r'/$'\n'}"
}
# sized CLIENTS ARGS...: the request count that makes a redis-benchmark run of ARGS last about
# RAW_SECONDS (from a first short run).
sized() {
    local r
    r=$(bench_rate -c "$1" -n 2000 "${@:2}")
    awk -v r="$r" -v s="$RAW_SECONDS" 'BEGIN { n = int(r * s); print (n < 2000 ? 2000 : n) }'
}
# raw_xadd CLIENTS: XADD/s that redis-benchmark gets at CLIENTS connections (no pipelining),
# and Redis's CPU microseconds per XADD.
raw_xadd() {
    local n cpu r
    n=$(sized "$1" XADD rawbench '*' f "$BODY")
    cpu=$(redis_cpu)
    r=$(bench_rate -c "$1" -n "$n" XADD rawbench '*' f "$BODY")
    echo "$r $(per_op "$cpu" "$n")"
    redis-cli -p "$REDIS_PORT" del rawbench >/dev/null
}
# raw_script CLIENTS: SUBMIT script calls/s that redis-benchmark gets at CLIENTS connections,
# each storing one new event as fc-init's submitters would (queue `scriptbench`, the same
# body, a delay as SUBMIT_DELAY): what the store costs with no HTTP and no fc-init in front.
raw_script() {
    local sha now n stored r
    sha=$({ printf '\n'; cat src/events/redis/scripts/prelude.lua; printf '\n\n'
        cat src/events/redis/scripts/submit.lua; } | redis-cli -p "$REDIS_PORT" -x script load)
    now=$(date +%s%3N)
    # KEYS[1] the stream; ARGV: prefix, now, retention, consumer, max_queued, hold, then one
    # event: id, submit time, method, target, headers, body, function, qualifier, not before
    # (src/events/redis/mod.rs, push_submission).
    local args=(EVALSHA "$sha" 1 'fc-init:{scriptbench}:stream' 'fc-init:{scriptbench}:'
        "$now" 86400000 bench 0 0 "sb-$1-__rand_int__" "$now" POST /invoke '[]' "$BODY" fn
        LATEST "$((now + SUBMIT_DELAY * 1000))")
    n=$(sized "$1" -r 1000000000 "${args[@]}")
    r=$(bench_rate -c "$1" -n "$n" -r 1000000000 "${args[@]}")
    # Every call must have stored its event (a changed script or argument layout would not).
    stored=$(redis-cli -p "$REDIS_PORT" zcard 'fc-init:{scriptbench}:all')
    ((stored >= n)) || die "the SUBMIT script stored $stored events of $n calls: its arguments changed?"
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    echo "$r"
}

# ---- fc-init instances ------------------------------------------------------------------------

# instance N QUEUE: writes $T/iN/fc-init.toml (function: one nginx worker answering 200), on
# REDIS_URL (default: the single server of parts 1 and 2).
instance() {
    local d=$T/i$1
    mkdir -p "$d"
    cat >"$d/function.conf" <<EOF
daemon off;
worker_processes 1;
pid $d/function.pid;
error_log $d/function.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen unix:$d/fn.sock;
        location / { return 200 "ok\n"; }
    }
}
EOF
    cat >"$d/fc-init.toml" <<EOF
[function]
command = ["$NGINX", "-c", "$d/function.conf"]
socket = "$d/fn.sock"
[server]
listen = "127.0.0.1:$(free_port)"
[admin]
socket = "$d/admin.sock"
[log]
invocations = false
[async]
backend = "redis"
redis_url = "${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}"
queue = "$2"
max_queued = 100000000
max_concurrency = $WORKERS
EOF
}

FC_PIDS=()
# start_instances N QUEUE...: N fc-inits, instance i on the i-th QUEUE (the last one for the
# rest), ready.
start_instances() {
    local i n=$1 queues=("${@:2}")
    for ((i = 0; i < n; i++)); do
        instance "$i" "${queues[i < ${#queues[@]} ? i : ${#queues[@]} - 1]}"
        "$FC_INIT" -c "$T/i$i/fc-init.toml" >/dev/null 2>"$T/i$i/fc-init.err" &
        FC_PIDS+=($!)
        PIDS+=($!)
    done
    for ((i = 0; i < $1; i++)); do
        local deadline=$((SECONDS + 30))
        until curl -fs -o /dev/null --unix-socket "$T/i$i/admin.sock" http://fc/health; do
            ((SECONDS < deadline)) || { tail -n 20 "$T/i$i/fc-init.err" >&2; die "instance $i not ready"; }
            sleep 0.05
        done
    done
}
stop_instances() {
    local pid
    for pid in "${FC_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${FC_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    FC_PIDS=()
}
port_of() { sed -n 's/^listen = "127.0.0.1:\(.*\)"/\1/p' "$T/i$1/fc-init.toml"; }
# count STATUS: events of that status in the fleet (through instance 0).
count() {
    curl -fsS --unix-socket "$T/i0/admin.sock" "http://fc/async-events?limit=0&status=$1" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["totalCount"])'
}

# write_async_lua DELAY: each request an asynchronous submission, with X-Fc-Async-Delay:
# DELAY (seconds; 0 for none).
write_async_lua() {
cat >"$T/async.lua" <<EOF
wrk.method = "POST"
wrk.path = "/invoke"
wrk.headers["X-Fc-Invocation-Type"] = "Async"
if $1 > 0 then wrk.headers["X-Fc-Async-Delay"] = "$1" end
wrk.body = '$BODY'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) accepted, other, other_status = 0, 0, 0 end
function response(status, headers, body)
    if status == 202 then accepted = accepted + 1 else other, other_status = other + 1, status end
end
function done(summary, latency, requests)
    local a, o, s = 0, 0, 0
    for _, t in ipairs(threads) do
        a, o = a + t:get("accepted"), o + t:get("other")
        if t:get("other_status") ~= 0 then s = t:get("other_status") end
    end
    local e = summary.errors
    io.write(string.format("accepted %d\nnon202 %d\nnon202_status %d\nsocket_errors %d\nseconds %.6f\n",
        a, o, s, e.connect + e.read + e.write + e.timeout, summary.duration / 1e6))
end
EOF
}

# submit_rate CONNS THREADS PORT [DURATION]: 202s per second; every answer must be a 202. The
# count of 202s goes to $T/accepted.
submit_rate() {
    local out
    out=$(wrk -t"$2" -c"$1" -d"${4:-$DURATION}" -s "$T/async.lua" "http://127.0.0.1:$3/invoke")
    kv() { awk -v k="$1" '$1 == k { print $2 }' <<<"$out"; }
    (($(kv non202) == 0)) || die "$(kv non202) submissions were not answered 202 (one: $(kv non202_status))"
    (($(kv socket_errors) == 0)) || die "wrk had $(kv socket_errors) socket errors"
    kv accepted >"$T/accepted"
    awk -v a="$(kv accepted)" -v s="$(kv seconds)" 'BEGIN { printf "%.0f\n", a / s }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# ---- 1. submissions against raw XADD ----------------------------------------------------------

[[ $PARTS == *1* ]] && {
    printf '| appendfsync | connections | redis-benchmark XADD/s | SUBMIT script alone/s | fc-init durable submissions/s | ratio to XADD | ratio to script | Redis CPU µs per XADD / per submission |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
}
write_async_lua "$SUBMIT_DELAY"
# submitted CLIENTS THREADS PORT: submit_rate, setting SUB_CPU to Redis's CPU microseconds per
# durable submission.
submitted() {
    local cpu r
    cpu=$(redis_cpu)
    r=$(submit_rate "$@")
    SUB_CPU=$(per_op "$cpu" "$(cat "$T/accepted")")
    echo "$r"
}
for mode in always everysec replica; do
    [[ $PARTS == *1* ]] || break
    log "Redis: $mode"
    label=$mode
    if [[ $mode == replica ]]; then
        redis_start everysec replica-master
        replica_start
        label="everysec, 1 replica (WAIT)"
    else
        redis_start "$mode" "$mode"
    fi
    declare -A RAW RAW_CPU SCRIPT SUB SUB_CPUS
    for c in 1 "$CONNS"; do
        read -r "RAW[$c]" "RAW_CPU[$c]" < <(raw_xadd "$c")
        SCRIPT[$c]=$(raw_script "$c")
    done
    start_instances 1 "sub-$mode"
    port=$(port_of 0)
    for c in 1 "$CONNS"; do
        log "wrk: $c connection(s)"
        # Not in $(...): SUB_CPU is set here.
        submitted "$c" "$((c == 1 ? 1 : THREADS))" "$port" >"$T/rate"
        SUB[$c]=$(cat "$T/rate")
        SUB_CPUS[$c]=$SUB_CPU
    done
    stop_instances
    for c in 1 "$CONNS"; do
        printf '| %s | %s | %.0f | %.0f | %s | %s | %s | %s / %s |\n' "$label" "$c" "${RAW[$c]}" \
            "${SCRIPT[$c]}" "${SUB[$c]}" "$(ratio "${SUB[$c]}" "${RAW[$c]}")" \
            "$(ratio "${SUB[$c]}" "${SCRIPT[$c]}")" "${RAW_CPU[$c]}" "${SUB_CPUS[$c]}"
    done
done

# ---- 2. events run end to end: 3 instances against 1 ------------------------------------------

write_async_lua 0
if [[ $PARTS == *2* ]]; then
redis_start everysec e2e
declare -A E2E
for n in 1 3; do
    log "end to end: $n instance(s)"
    start_instances "$n" "e2e-$n"
    # A backlog first (submitting is much faster than running), then the rate while it lasts.
    submit_rate "$CONNS" "$THREADS" "$(port_of 0)" "${BACKLOG_SECONDS}s" >/dev/null
    before=$(count FINISHED)
    sleep "$E2E_SECONDS" # the measuring window
    after=$(count FINISHED)
    left=$(count QUEUED)
    ((left > 0)) || log "warning: the backlog ran out within the window; the rate is a lower bound"
    E2E[$n]=$(awk -v a="$before" -v b="$after" -v s="$E2E_SECONDS" 'BEGIN { printf "%.0f", (b - a) / s }')
    stop_instances
done
redis_stop
printf '\n| instances on one queue | events run end to end per second | ratio to 1 |\n'
printf '|---:|---:|---:|\n'
printf '| 1 | %s | 1.00 |\n' "${E2E[1]}"
printf '| 3 | %s | %s |\n' "${E2E[3]}" "$(ratio "${E2E[3]}" "${E2E[1]}")"
fi

# ---- 3. a 3-master cluster: three queues against one ------------------------------------------

CLUSTER_PIDS=()
CLUSTER_PORTS=()
cluster_start() {
    local i port bus
    for ((i = 0; i < 3; i++)); do
        port=$(free_port)
        bus=$(free_port)
        mkdir -p "$T/cluster-$i"
        redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --save '' \
            --appendonly yes --appendfsync everysec --cluster-enabled yes \
            --cluster-config-file nodes.conf --dir "$T/cluster-$i" \
            --logfile "$T/cluster-$i.log" &
        CLUSTER_PIDS+=($!)
        PIDS+=($!)
        CLUSTER_PORTS+=("$port")
    done
    for port in "${CLUSTER_PORTS[@]}"; do
        local deadline=$((SECONDS + 10))
        until [[ $(redis-cli -p "$port" ping 2>/dev/null) == PONG ]]; do
            ((SECONDS < deadline)) || die "cluster node $port did not start"
            sleep 0.05
        done
    done
    redis-cli --cluster create $(printf '127.0.0.1:%s ' "${CLUSTER_PORTS[@]}") \
        --cluster-replicas 0 --cluster-yes >"$T/cluster-create.log" ||
        die "redis-cli --cluster create failed (see $T/cluster-create.log)"
    # Every node, not only the first: one still without the others' slots answers CLUSTERDOWN.
    local deadline=$((SECONDS + 20))
    for port in "${CLUSTER_PORTS[@]}"; do
        until redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok'; do
            ((SECONDS < deadline)) || die "the cluster never became ok (node $port)"
            sleep 0.1
        done
    done
}
cluster_stop() {
    local pid
    for pid in "${CLUSTER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${CLUSTER_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    CLUSTER_PIDS=()
}
# owner_port KEY: the port of the master that holds KEY's slot.
owner_port() {
    local slot
    slot=$(redis-cli -p "${CLUSTER_PORTS[0]}" cluster keyslot "$1")
    # CLUSTER NODES: "<id> <ip:port@bus> <flags> <master> ... <state> <slots...>".
    redis-cli -p "${CLUSTER_PORTS[0]}" cluster nodes |
        awk -v s="$slot" '$3 ~ /master/ {
            for (i = 9; i <= NF; i++) {
                n = split($i, r, "-"); a = r[1]; b = (n > 1 ? r[2] : r[1])
                if (s + 0 >= a + 0 && s + 0 <= b + 0) { split($2, hp, "[:@]"); print hp[2] }
            } }' | head -n 1
}
# queue_on PORT: a queue name whose slot is on the master at PORT.
queue_on() {
    local i
    for ((i = 0; i < 1000; i++)); do
        [[ $(owner_port "fc-init:{cq$i}:stream") == "$1" ]] && { echo "cq$i"; return; }
    done
    die "no queue name found for the master at $1"
}
# raw_cluster PORTS...: XADD/s of redis-benchmark, CONNS connections on each master in
# parallel, on a key of the slot of the queue that master holds (the sum).
raw_cluster() {
    local port out total=0 files=() pids=()
    for port in "$@"; do
        local q n=$((RAW_SECONDS * 40000))
        q=$(queue_on "$port")
        redis-benchmark -p "$port" -c "$CONNS" -n "$n" -q XADD "fc-init:{$q}:rawbench" '*' f "$BODY" \
            >"$T/raw-$port.out" &
        pids+=($!)
        files+=("$T/raw-$port.out")
    done
    for port in "${pids[@]}"; do wait "$port" || die "redis-benchmark failed"; done
    for out in "${files[@]}"; do
        total=$(awk -v t="$total" '{ gsub("\r", "\n") } { for (i = 1; i < NF; i++) if ($(i + 1) == "requests") r = $i }
            END { print t + r }' "$out")
    done
    echo "$total"
}
# fleet_rate: 202s per second of all instances, one wrk of CONNS connections each, at once.
fleet_rate() {
    local i pids=() total=0
    for ((i = 0; i < 3; i++)); do
        submit_rate "$CONNS" "$THREADS" "$(port_of "$i")" >"$T/rate-$i" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || die "a submission run failed"; done
    for ((i = 0; i < 3; i++)); do total=$((total + $(cat "$T/rate-$i"))); done
    echo "$total"
}

if [[ $PARTS == *3* ]]; then
    log "a 3-master Redis Cluster"
    cluster_start
    REDIS_URL="redis+cluster://127.0.0.1:${CLUSTER_PORTS[0]}"
    one=$(queue_on "${CLUSTER_PORTS[1]}")
    three=("$(queue_on "${CLUSTER_PORTS[0]}")" "$one" "$(queue_on "${CLUSTER_PORTS[2]}")")
    raw1=$(raw_cluster "${CLUSTER_PORTS[1]}")
    raw3=$(raw_cluster "${CLUSTER_PORTS[@]}")
    log "3 instances on one queue ($one)"
    start_instances 3 "$one"
    sub1=$(fleet_rate)
    stop_instances
    log "3 instances on three queues (${three[*]})"
    start_instances 3 "${three[@]}"
    sub3=$(fleet_rate)
    stop_instances
    cluster_stop
    printf '\n| 3-master cluster (everysec), 3 instances x %s connections | fc-init durable submissions/s | redis-benchmark XADD/s on the same masters | ratio |\n' "$CONNS"
    printf '|---|---:|---:|---:|\n'
    printf '| one queue (one master) | %s | %.0f | %s |\n' "$sub1" "$raw1" "$(ratio "$sub1" "$raw1")"
    printf '| three queues (three masters) | %s | %.0f | %s |\n' "$sub3" "$raw3" "$(ratio "$sub3" "$raw3")"
    printf '\nthree queues / one queue: %s\n' "$(ratio "$sub3" "$sub1")"
fi

printf '\n%s CPUs; %s workers per instance; Redis %s on loopback.\n' "$(nproc)" "$WORKERS" \
    "$(redis-server --version | awk '{ print $3 }')"
