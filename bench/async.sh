#!/usr/bin/env bash
# Benchmark durable asynchronous submissions through fc-init: `POST /invoke` with
# `X-Fc-Invocation-Type: Async`, each answered `202 Accepted` only once the event is committed to
# the SQLite store (WAL, synchronous=FULL, group commit). wrk submits at 1 connection and at
# CONNS keep-alive connections; the baseline, in the same run and the same directory, is the
# disk's one-fsync-per-event rate: SQLite (WAL, synchronous=FULL) committing one small row per
# transaction in a loop. Prints a markdown table. See bench/README.md.
#
# Then, in the same run: the same submissions through a previous build (FC_INIT_BASE, when set:
# "unchanged within noise" is the ratio of the two), the handoff (`Prefer: respond-async,
# wait=10`, docs/reference.md §10) against a plain synchronous request at 1 and CONNS
# connections (the ratio is its overhead), and filtered lists on a store of LIST_EVENTS events
# (1,000,000 by default: each list of at most 100 should answer in under 50 ms).
#
#     bench/async.sh                  # from anywhere; builds fc-init if needed
#     FC_INIT=path/to/fc-init DURATION=5s BENCH_DIR=/mnt/disk bench/async.sh
#     FC_INIT_BASE=/path/to/old/fc-init bench/async.sh
#     DURATION=1s LIST_EVENTS=10000 BASELINE_SECONDS=1 bench/async.sh   # a smoke check
#
# Progress goes to stderr, the table to stdout.
set -euo pipefail
export LC_ALL=C

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FC_INIT=${FC_INIT:-}  # default: the static release build (bench/lib.sh)
DURATION=${DURATION:-10s}          # per wrk run
CONNS=${CONNS:-64}                 # connections of the loaded run
THREADS=${THREADS:-2}              # wrk threads of the loaded run
BASELINE_SECONDS=${BASELINE_SECONDS:-5}
WORKERS=${WORKERS:-10}             # async.max_concurrency
BENCH_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}} # where the store and the baseline database live
TARGET=${TARGET:-5}                # wanted ratio of the loaded run to the baseline
FC_INIT_BASE=${FC_INIT_BASE:-}     # a previous build to compare submissions/s with
LIST_EVENTS=${LIST_EVENTS:-1000000} # events in the store the lists are timed on (0: none)
LIST_RUNS=${LIST_RUNS:-7}          # times each list is asked (median and max reported)
LIST_TARGET_MS=${LIST_TARGET_MS:-50}

SCRIPT=async.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh  # the script has moved to the repository root

need nginx=nginx-light wrk=wrk curl=curl python3=python3
fc_init_binary
NGINX=$(command -v nginx)

scratch "$BENCH_DIR" async
PORT=$(free_port)
SOCK=$T/fn.sock
ADMIN=$T/admin.sock
BODY='{"bench":"async","payload":"0123456789abcdef0123456789abcdef"}'

# ---- the baseline: one row per fsync'd commit, in the directory of the store -----------------

# measure_baseline: commits/s of one-row transactions (WAL, synchronous=FULL) for
# BASELINE_SECONDS on a fresh database in $T, printed. Run with fc-init stopped, so that
# nothing else of the benchmark touches the disk meanwhile.
measure_baseline() {
    log "baseline: one-row commits (WAL, synchronous=FULL) for ${BASELINE_SECONDS}s in $T"
    python3 - "$T/baseline.db" "$BASELINE_SECONDS" "$BODY" <<'EOF'
import sqlite3, sys, time
path, seconds, body = sys.argv[1], float(sys.argv[2]), sys.argv[3].encode()
db = sqlite3.connect(path, isolation_level=None)  # autocommit: we issue BEGIN/COMMIT
assert db.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
db.execute("PRAGMA synchronous=FULL")
assert db.execute("PRAGMA synchronous").fetchone()[0] == 2
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, request_id TEXT UNIQUE, body BLOB)")
n, start = 0, time.monotonic()
deadline = start + seconds
while time.monotonic() < deadline:
    db.execute("BEGIN")
    db.execute("INSERT INTO t (request_id, body) VALUES (?, ?)", (f"base-{n}", body))
    db.execute("COMMIT")
    n += 1
elapsed = time.monotonic() - start
assert db.execute("SELECT COUNT(*) FROM t").fetchone()[0] == n
print(f"{n / elapsed:.1f}")
EOF
    rm -f "$T"/baseline.db*
}

# The disk's fsync rate drifts (other tenants of the machine), so it is measured before
# fc-init starts and again after it stops; the ratios are to the mean of the two.
BASELINE_BEFORE=$(measure_baseline)
log "baseline before: $BASELINE_BEFORE commits/s"

# ---- fc-init, its function, and the wrk script -----------------------------------------------

# The function: one nginx worker answering 200 on the unix socket, so that the async workers
# running the stored events meanwhile cost little.
nginx_conf function 1 <<EOF
    server {
        listen unix:$SOCK;
        location / { return 200 "ok\n"; }
    }
EOF

cat >"$T/fc-init.toml" <<EOF
[function]
command = ["$NGINX", "-c", "$T/function.conf"]
socket = "$SOCK"
[server]
listen = "127.0.0.1:$PORT"
[admin]
socket = "$ADMIN"
[async]
store = "$T/events.db"
max_queued = 100000000
max_concurrency = $WORKERS
EOF

# Counts the answers by status in every thread; done() prints the totals, wrk's socket errors
# and the median latency as "key value" lines.
cat >"$T/async.lua" <<EOF
wrk.method = "POST"
wrk.path = "/invoke"
wrk.headers["X-Fc-Invocation-Type"] = "Async"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '$BODY'

local threads = {}
function setup(thread) table.insert(threads, thread) end

function init(args)
    accepted, other, other_status, bad_body = 0, 0, 0, 0
end

function response(status, headers, body)
    if status == 202 then
        accepted = accepted + 1
        -- The answer names the event it stored.
        if not string.find(body, '{"requestId":"', 1, true) then bad_body = bad_body + 1 end
    else
        other = other + 1
        other_status = status
    end
end

function done(summary, latency, requests)
    local a, o, s, b = 0, 0, 0, 0
    for _, t in ipairs(threads) do
        a = a + t:get("accepted")
        o = o + t:get("other")
        b = b + t:get("bad_body")
        if t:get("other_status") ~= 0 then s = t:get("other_status") end
    end
    local e = summary.errors
    io.write(string.format("accepted %d\nnon202 %d\nnon202_status %d\nbad_body %d\n", a, o, s, b))
    io.write(string.format("socket_errors %d\n", e.connect + e.read + e.write + e.timeout))
    io.write(string.format("seconds %.6f\n", summary.duration / 1e6))
    io.write(string.format("p50_us %d\np99_us %d\n", latency:percentile(50), latency:percentile(99)))
end
EOF

# start_fc BINARY CONFIG: starts fc-init (and the function), waits until it is ready; FC_PID.
start_fc() {
    log "starting $1 (and the function)"
    "$1" -c "$2" >/dev/null 2>"$T/fc-init.err" &
    FC_PID=$!
    PIDS+=("$FC_PID")
    local deadline=$((SECONDS + 60))
    until curl -fs -o /dev/null --unix-socket "$ADMIN" http://fc/health; do
        if ((SECONDS >= deadline)) || ! kill -0 "$FC_PID" 2>/dev/null; then
            tail -n 20 "$T"/*.err >&2 || true
            die "fc-init is not ready after 60 s"
        fi
        sleep 0.05
    done
}

# stop_fc: stops the fc-init of start_fc and waits for it.
stop_fc() {
    kill -TERM "$FC_PID"
    wait "$FC_PID" || true
    PIDS=()
}

# The previous build first, on a store of its own, with fc-init's own store moved aside.
if [[ -n $FC_INIT_BASE ]]; then
    [[ -x $FC_INIT_BASE ]] || die "FC_INIT_BASE=$FC_INIT_BASE is not executable"
    sed "s|$T/events.db|$T/base-events.db|" "$T/fc-init.toml" >"$T/base.toml"
    start_fc "$(realpath "$FC_INIT_BASE")" "$T/base.toml"
fi

start_base_runs() {
    log "previous build: wrk, 1 connection"
    run_wrk 1 1 >"$T/base1"
    log "previous build: wrk, $CONNS connections"
    run_wrk "$CONNS" "$THREADS" >"$T/baseN"
    stop_fc
    rm -f "$T"/base-events.db*
}

# admin_count [STATUS]: the number of stored events (of that status).
admin_count() {
    local query=limit=1
    [[ -n ${1:-} ]] && query+="&status=$1"
    curl -fsS --unix-socket "$ADMIN" "http://fc/async-events?$query" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["totalCount"])'
}

# probe: one submission by hand: a 202 with the id we gave, and the event is stored.
probe() {
code=$(curl -s -o "$T/first.json" -w '%{http_code}' -X POST -H 'X-Fc-Invocation-Type: Async' \
    -H 'x-fc-request-id: async-bench-probe' --data "$BODY" "http://127.0.0.1:$PORT/invoke")
[[ $code == 202 ]] || die "a submission got $code: $(cat "$T/first.json")"
curl -fsS -o /dev/null --unix-socket "$ADMIN" http://fc/async-events/async-bench-probe ||
    die "the probe event was answered 202 but is not stored"
}

# Counts fsync/fdatasync calls of fc-init while wrk runs, when perf can (a diagnostic: batching).
PERF_OK=
perf stat -e syscalls:sys_enter_fdatasync -- true >/dev/null 2>&1 && PERF_OK=1

# run_wrk CONNS THREADS: prints "rps p50_us p99_us stored_delta syncs".
run_wrk() {
    local before after out perf_pid= syncs=-
    before=$(admin_count)
    if [[ -n $PERF_OK ]]; then
        perf stat -x, -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync -p "$FC_PID" \
            -o "$T/perf.csv" 2>>"$T/perf.err" &
        perf_pid=$!
        PIDS+=("$perf_pid")
    fi
    out=$(wrk -t"$2" -c"$1" -d"$DURATION" -s "$T/async.lua" "http://127.0.0.1:$PORT/invoke")
    if [[ -n $perf_pid ]]; then
        kill -INT "$perf_pid" 2>/dev/null || true  # perf may have ended on its own
        wait "$perf_pid" || true
        syncs=$(awk -F, '$3 ~ /sys_enter_f(data)?sync/ { n += $1 } END { print n + 0 }' "$T/perf.csv")
    fi
    after=$(admin_count)
    log "$out"
    kv() { awk -v k="$1" '$1 == k { print $2 }' <<<"$out"; }
    local accepted non202 seconds
    accepted=$(kv accepted) non202=$(kv non202) seconds=$(kv seconds)
    [[ -n $accepted ]] || die "wrk printed no counts: $out"
    ((non202 == 0)) || die "$non202 answers were not 202 (one was $(kv non202_status))"
    (($(kv bad_body) == 0)) || die "$(kv bad_body) 202 answers had no requestId"
    (($(kv socket_errors) == 0)) || die "wrk had $(kv socket_errors) socket errors"
    # Every 202 is a stored event. At most one request per connection was still unanswered
    # when wrk stopped, so a few more events may be stored than were counted.
    local stored=$((after - before))
    ((stored >= accepted && stored <= accepted + $1)) ||
        die "$accepted submissions answered 202 but $stored events were stored"
    log "stored $stored events for $accepted 202 answers; $syncs fsyncs"
    awk -v a="$accepted" -v s="$seconds" -v p50="$(kv p50_us)" -v p99="$(kv p99_us)" \
        -v st="$stored" -v sy="$syncs" 'BEGIN { printf "%.1f %d %d %d %s\n", a / s, p50, p99, st, sy }'
}

if [[ -n $FC_INIT_BASE ]]; then
    probe
    start_base_runs
    read -r BASE_RPS1 _ _ _ _ <"$T/base1"
    read -r BASE_RPSN _ _ _ _ <"$T/baseN"
fi

start_fc "$FC_INIT" "$T/fc-init.toml"
probe
log "wrk: 1 connection"
run_wrk 1 1 >"$T/run1" # not in a subshell: a failed check must stop the script
read -r RPS1 P50_1 P99_1 STORED1 SYNCS1 <"$T/run1"
log "wrk: $CONNS connections"
run_wrk "$CONNS" "$THREADS" >"$T/runN"
read -r RPSN P50_N P99_N STOREDN SYNCSN <"$T/runN"

FAILED=$(admin_count FAILED)
FINISHED=$(admin_count FINISHED)
QUEUED=$(admin_count QUEUED)
((FAILED == 0)) || die "$FAILED events FAILED (the function answers 200)"
kill -0 "$FC_PID" 2>/dev/null || die "fc-init exited"

# ---- the handoff against a plain synchronous request, on this fc-init -------------------------

# sync_lua NAME [HEADER VALUE]: a wrk script that POSTs /invoke (with that header) and counts
# the 200 answers; done() prints "ok N", "other N", socket errors, seconds and latencies.
sync_lua() {
    local extra=
    [[ -n ${2:-} ]] && extra="wrk.headers[\"$2\"] = \"$3\""
    cat >"$T/$1.lua" <<EOF
wrk.method = "POST"
wrk.path = "/invoke"
wrk.headers["Content-Type"] = "application/json"
$extra
wrk.body = '$BODY'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok, other = 0, 0 end
function response(status, headers, body)
    if status == 200 and body == "ok\n" then ok = ok + 1 else other = other + 1 end
end
function done(summary, latency, requests)
    local o, x = 0, 0
    for _, t in ipairs(threads) do o = o + t:get("ok"); x = x + t:get("other") end
    local e = summary.errors
    io.write(string.format("ok %d\nother %d\nsocket_errors %d\nseconds %.6f\n", o, x,
        e.connect + e.read + e.write + e.timeout, summary.duration / 1e6))
    io.write(string.format("p50_us %d\np99_us %d\n", latency:percentile(50), latency:percentile(99)))
end
EOF
}
sync_lua plain
sync_lua handoff Prefer "respond-async, wait=10"

# run_sync NAME CONNS THREADS: prints "rps p50_us p99_us".
run_sync() {
    local out
    out=$(wrk -t"$3" -c"$2" -d"$DURATION" -s "$T/$1.lua" "http://127.0.0.1:$PORT/invoke")
    log "$out"
    kv() { awk -v k="$1" '$1 == k { print $2 }' <<<"$out"; }
    [[ -n $(kv ok) ]] || die "wrk printed no counts: $out"
    (($(kv other) == 0)) || die "$1: $(kv other) answers were not the function's 200"
    (($(kv socket_errors) == 0)) || die "$1: wrk had $(kv socket_errors) socket errors"
    awk -v a="$(kv ok)" -v s="$(kv seconds)" -v p50="$(kv p50_us)" -v p99="$(kv p99_us)" \
        'BEGIN { printf "%.1f %d %d\n", a / s, p50, p99 }'
}

# One handoff by hand: the function's answer, and the event FINISHED with it.
code=$(curl -s -o "$T/handoff.out" -w '%{http_code}' -X POST -H 'Prefer: respond-async, wait=10' \
    -H 'x-fc-request-id: handoff-bench-probe' --data "$BODY" "http://127.0.0.1:$PORT/invoke")
[[ $code == 200 && $(cat "$T/handoff.out") == ok ]] || die "a handoff got $code: $(cat "$T/handoff.out")"
curl -fsS --unix-socket "$ADMIN" http://fc/async-events/handoff-bench-probe | grep -q '"status":"FINISHED"' ||
    die "the handoff probe's event is not FINISHED"

for c in 1 "$CONNS"; do
    threads=$THREADS
    ((c == 1)) && threads=1
    # Alternated, so that a drift of the machine meanwhile weighs on both.
    log "plain synchronous requests, $c connection(s)"
    run_sync plain "$c" "$threads" >"$T/plain$c"
    log "handoffs, $c connection(s)"
    run_sync handoff "$c" "$threads" >"$T/handoff$c"
done
log "stopping fc-init"
stop_fc
BASELINE_AFTER=$(measure_baseline)
log "baseline after: $BASELINE_AFTER commits/s"
BASELINE=$(awk -v a="$BASELINE_BEFORE" -v b="$BASELINE_AFTER" 'BEGIN { printf "%.1f", (a + b) / 2 }')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
ms() { awk -v v="$1" 'BEGIN { printf "%.2f", v / 1000 }'; }
per_sync() { [[ $2 == - || $2 == 0 ]] && { echo -; return; }; awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }

printf '| measure | per second | ratio to baseline | p50 (ms) | p99 (ms) | events stored per fsync |\n'
printf '|---|---:|---:|---:|---:|---:|\n'
printf '| baseline: one-row commits, WAL, synchronous=FULL (before %.0f, after %.0f) | %.0f | 1.00 | | | 1 |\n' \
    "$BASELINE_BEFORE" "$BASELINE_AFTER" "$BASELINE"
printf '| async submissions, 1 connection | %.0f | %s | %s | %s | %s |\n' "$RPS1" \
    "$(ratio "$RPS1" "$BASELINE")" "$(ms "$P50_1")" "$(ms "$P99_1")" "$(per_sync "$STORED1" "$SYNCS1")"
printf '| async submissions, %s connections | %.0f | %s | %s | %s | %s |\n' "$CONNS" "$RPSN" \
    "$(ratio "$RPSN" "$BASELINE")" "$(ms "$P50_N")" "$(ms "$P99_N")" "$(per_sync "$STOREDN" "$SYNCSN")"
RATIO=$(ratio "$RPSN" "$BASELINE")
VERDICT=met
awk -v r="$RATIO" -v t="$TARGET" 'BEGIN { exit !(r >= t) }' || VERDICT=missed
printf '\nTarget: at %s connections at least %s× the baseline: **%s** (%s×). ' "$CONNS" "$TARGET" "$VERDICT" "$RATIO"
printf 'Every answer was 202 and every 202 was a stored event; meanwhile %s workers ran %s events (0 failed, %s still queued). ' \
    "$WORKERS" "$FINISHED" "$QUEUED"
printf 'The fsyncs counted include checkpoints (the workers'\'' claims and finishes do not fsync). %s CPUs; store and baseline in %s.\n' \
    "$(nproc)" "$BENCH_DIR"

# ---- filtered lists on a store of LIST_EVENTS events -------------------------------------------

# make_list_store DB: LIST_EVENTS events in DB (made by fc-init, then filled in one
# transaction): ids ev-0000000.., 10,000 functions of LIST_EVENTS/10,000 events each, two
# qualifiers, 1 in 100 FAILED and 1 in 10,000 QUEUED (due in the year 3000, so no worker
# takes it), the rest FINISHED; submitted 10 ms apart, started 5 ms and ended 20 ms after.
make_list_store() {
    python3 - "$1" "$LIST_EVENTS" <<'EOF'
import sqlite3, sys, time
path, n = sys.argv[1], int(sys.argv[2])
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=OFF")
now = int(time.time() * 1000)
first = now - n * 10 - 60_000
def rows():
    for i in range(n):
        t = first + i * 10
        status = "QUEUED" if i % 10000 == 0 else "FAILED" if i % 100 == 1 else "FINISHED"
        queued = status == "QUEUED"
        yield (f"ev-{i:07d}", status, t, None if queued else t + 5, None if queued else t + 20,
               None if queued else 15, None if queued else (500 if status == "FAILED" else 200),
               0 if queued else 1, 32503680000000 if queued else t, f"fn-{i % 10000}",
               "prod" if i % 2 else "LATEST")
db.execute("BEGIN")
db.executemany(
    "INSERT INTO events (request_id, status, submit_time, start_time, end_time, duration_ms, "
    "status_code, attempts, next_attempt_at, function_name, qualifier, method, target, headers, "
    "body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'POST', '/invoke', x'', x'')", rows())
db.execute("COMMIT")
print(first)
EOF
}

# time_list QUERY: "median_ms max_ms count" of LIST_RUNS asks of GET /async-events?QUERY.
time_list() {
    local i code times=()
    for ((i = 0; i < LIST_RUNS; i++)); do
        read -r code t < <(curl -s -o "$T/list.json" -w '%{http_code} %{time_total}\n' \
            --unix-socket "$ADMIN" "http://fc/async-events?$1")
        [[ $code == 200 ]] || die "GET /async-events?$1 got $code: $(cat "$T/list.json")"
        times+=("$t")
    done
    local count
    count=$(python3 -c 'import json, sys; e = json.load(open(sys.argv[1]))["events"]; assert len(e) <= 100; print(len(e))' "$T/list.json")
    printf '%s\n' "${times[@]}" | sort -n |
        awk -v c="$count" '{ t[NR] = $1 * 1000 } END { printf "%.1f %.1f %d\n", t[int((NR + 1) / 2)], t[NR], c }'
}

LIST_ROWS=()
if ((LIST_EVENTS > 0)); then
    log "the list store: $LIST_EVENTS events"
    sed -e "s|$T/events.db|$T/list.db|" -e 's|^max_queued = .*|max_queued = 100000000\nretention = "100000h"\nmax_event_age = "0s"|' \
        "$T/fc-init.toml" >"$T/list.toml"
    start_fc "$FC_INIT" "$T/list.toml"  # makes the schema
    stop_fc
    FIRST=$(make_list_store "$T/list.db")
    start_fc "$FC_INIT" "$T/list.toml"
    MID=$((FIRST + LIST_EVENTS * 5))
    for q in \
        "limit=100" \
        "status=FAILED&limit=100" \
        "status=QUEUED,FAILED&limit=100" \
        "functionName=fn-42&limit=100" \
        "functionName=fn-42&qualifier=LATEST&limit=100" \
        "qualifier=prod&limit=100" \
        "requestIdPrefix=ev-00012&limit=100" \
        "requestId=ev-0000042" \
        "invocationType=Async&limit=100" \
        "since=$MID&until=$((MID + 1000))&limit=100" \
        "startedSince=$MID&startedUntil=$((MID + 1000))&limit=100" \
        "endedSince=$MID&endedUntil=$((MID + 1000))&limit=100" \
        "orderBy=startTime&limit=100" \
        "orderBy=endTime&order=asc&limit=100" \
        "status=FINISHED&orderBy=endTime&limit=100" \
        "status=FAILED&orderBy=startTime&order=asc&limit=100" \
        "offset=10000&limit=100"; do
        LIST_ROWS+=("$q $(time_list "$q")")
        log "list $q: ${LIST_ROWS[-1]#* }"
    done
    stop_fc
fi

printf '\n| build | submissions/s, 1 connection | submissions/s, %s connections |\n|---|---:|---:|\n' "$CONNS"
if [[ -n $FC_INIT_BASE ]]; then
    printf '| previous (%s) | %.0f | %.0f |\n' "$FC_INIT_BASE" "$BASE_RPS1" "$BASE_RPSN"
    printf '| this one | %.0f (%s×) | %.0f (%s×) |\n' "$RPS1" "$(ratio "$RPS1" "$BASE_RPS1")" \
        "$RPSN" "$(ratio "$RPSN" "$BASE_RPSN")"
else
    printf '| this one | %.0f | %.0f |\n' "$RPS1" "$RPSN"
    printf '\n(No previous build: set FC_INIT_BASE=/path/to/old/fc-init to compare.)\n'
fi

printf '\n| connections | plain synchronous /s | handoff /s | handoff ÷ plain | p50 plain / handoff (ms) | p99 plain / handoff (ms) |\n|---:|---:|---:|---:|---:|---:|\n'
for c in 1 "$CONNS"; do
    read -r P_RPS P_P50 P_P99 <"$T/plain$c"
    read -r H_RPS H_P50 H_P99 <"$T/handoff$c"
    printf '| %s | %.0f | %.0f | %s | %s / %s | %s / %s |\n' "$c" "$P_RPS" "$H_RPS" \
        "$(ratio "$H_RPS" "$P_RPS")" "$(ms "$P_P50")" "$(ms "$H_P50")" "$(ms "$P_P99")" "$(ms "$H_P99")"
done
printf '\nA handoff (`Prefer: respond-async, wait=10`) is stored (one fsync'\''d write, group-committed) and\n'
printf 'ended (one write) around the same function exchange, which goes through fc-init'\''s listener once more.\n'

if ((${#LIST_ROWS[@]} > 0)); then
    printf '\n| list (of %s events) | median (ms) | max of %s (ms) | events | under %s ms |\n|---|---:|---:|---:|---|\n' \
        "$LIST_EVENTS" "$LIST_RUNS" "$LIST_TARGET_MS"
    for row in "${LIST_ROWS[@]}"; do
        read -r q med max count <<<"$row"
        ok=yes
        awk -v m="$med" -v t="$LIST_TARGET_MS" 'BEGIN { exit !(m < t) }' || ok=**no**
        printf '| `%s` | %s | %s | %s | %s |\n' "$q" "$med" "$max" "$count" "$ok"
    done
    printf '\nTimes are curl'\''s, on the admin socket, with the count of all matches in the same answer.\n'
fi
