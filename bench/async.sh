#!/usr/bin/env bash
# Benchmark durable asynchronous submissions through fc-init: `POST /invoke` with
# `X-Fc-Invocation-Type: Async`, each answered `202 Accepted` only once the event is committed to
# the SQLite store (WAL, synchronous=FULL, group commit). wrk submits at 1 connection and at
# CONNS keep-alive connections; the baseline, in the same run and the same directory, is the
# disk's one-fsync-per-event rate: SQLite (WAL, synchronous=FULL) committing one small row per
# transaction in a loop. Prints a markdown table. See bench/README.md.
#
#     bench/async.sh                  # from anywhere; builds fc-init if needed
#     FC_INIT=path/to/fc-init DURATION=5s BENCH_DIR=/mnt/disk bench/async.sh
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
cat >"$T/function.conf" <<EOF
daemon off;
worker_processes 1;
pid $T/function.pid;
error_log $T/function.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen unix:$SOCK;
        location / { return 200 "ok\n"; }
    }
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

log "starting fc-init (and the function)"
"$FC_INIT" -c "$T/fc-init.toml" >/dev/null 2>"$T/fc-init.err" &
FC_PID=$!
PIDS+=("$FC_PID")
deadline=$((SECONDS + 30))
until curl -fs -o /dev/null --unix-socket "$ADMIN" http://fc/health; do
    if ((SECONDS >= deadline)) || ! kill -0 "$FC_PID" 2>/dev/null; then
        tail -n 20 "$T"/*.err >&2 || true
        die "fc-init is not ready after 30 s"
    fi
    sleep 0.05
done

# admin_count [STATUS]: the number of stored events (of that status).
admin_count() {
    local query=limit=1
    [[ -n ${1:-} ]] && query+="&status=$1"
    curl -fsS --unix-socket "$ADMIN" "http://fc/async-events?$query" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["totalCount"])'
}

# One submission by hand: a 202 with the id we gave, and the event is stored.
code=$(curl -s -o "$T/first.json" -w '%{http_code}' -X POST -H 'X-Fc-Invocation-Type: Async' \
    -H 'x-fc-request-id: async-bench-probe' --data "$BODY" "http://127.0.0.1:$PORT/invoke")
[[ $code == 202 ]] || die "a submission got $code: $(cat "$T/first.json")"
curl -fsS -o /dev/null --unix-socket "$ADMIN" http://fc/async-events/async-bench-probe ||
    die "the probe event was answered 202 but is not stored"

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

log "stopping fc-init"
kill -TERM "$FC_PID"
wait "$FC_PID" || true
PIDS=()
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
