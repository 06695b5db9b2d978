#!/usr/bin/env bash
# Benchmark fc-init as a plain init (no config, no hooks, no listener) against
# tini and catatonit, in the same run, and print a markdown table with the
# absolute figures and their ratio to tini. See bench/README.md.
#
#     bench/init.sh                   # from anywhere; builds fc-init if needed
#     FC_INIT=path/to/fc-init bench/init.sh
#     FC_INIT_BASELINE=path/to/older/fc-init bench/init.sh   # adds a column for it
#
# Progress goes to stderr, the table to stdout.
set -euo pipefail
export LC_ALL=C # EPOCHREALTIME must use "." as its decimal point

cd "$(dirname "${BASH_SOURCE[0]}")/.."

FC_INIT=${FC_INIT:-}  # default: the static release build (bench/lib.sh)
TRUE_RUNS=${TRUE_RUNS:-300}     # runs of `INIT -- /bin/true`
TERM_RUNS=${TERM_RUNS:-30}      # runs of the SIGTERM-to-exit measurement
ORPHANS=${ORPHANS:-2000}        # orphans per run of the reaping measurement
ORPHAN_RUNS=${ORPHAN_RUNS:-10}  # runs of the reaping measurement
INITS=(fc-init tini catatonit)
FC_INIT_BASELINE=${FC_INIT_BASELINE:-} # an older fc-init to compare with, in the same run
[[ -n $FC_INIT_BASELINE ]] && INITS+=(baseline)

# fc-init must be a plain init here: FC_SERVER_PORT would make it listen.
unset FC_SERVER_PORT FC_INIT_CONFIG

SCRIPT=init.sh
# shellcheck source=bench/lib.sh
source bench/lib.sh  # the script has moved to the repository root

find_fc_init() {
    if [[ -z $FC_INIT ]]; then
        build_static
        FC_INIT=$STATIC_FC_INIT
    elif ! command -v "$FC_INIT" >/dev/null; then
        die "FC_INIT=$FC_INIT is not executable"
    fi
    FC_INIT=$(realpath "$(command -v "$FC_INIT")")
    [[ -e /etc/fc-init/fc-init.toml ]] &&
        log "warning: /etc/fc-init/fc-init.toml exists; fc-init reads it, so it may not be a plain init"
    "$FC_INIT" -- /bin/true || die "$FC_INIT -- /bin/true failed"
}

# init_argv NAME: the init's command line up to and including "--", in $argv.
# tini needs -s to adopt orphans when it is not PID 1; fc-init and catatonit
# become child subreapers on their own.
init_argv() {
    case $1 in
        fc-init) argv=("$FC_INIT" --) ;;
        tini) argv=(tini -s --) ;;
        catatonit) argv=(catatonit --) ;;
        baseline) argv=("$FC_INIT_BASELINE" --) ;;
    esac
}

# hyperfine_all FILE RUNS WARMUP COMMAND...: run `INIT -- COMMAND` for every
# init, without a shell in between, and keep the results as JSON in FILE.
hyperfine_all() {
    local file=$1 runs=$2 warmup=$3 name args=()
    shift 3
    for name in "${INITS[@]}"; do
        init_argv "$name"
        argv+=("$@")
        args+=(-n "$name" "${argv[*]@Q}")
    done
    # hyperfine's report goes to stderr with the progress; only the table is stdout.
    hyperfine -N --style basic --warmup "$warmup" --runs "$runs" --export-json "$file" "${args[@]}" >&2
}

# hyperfine_mean FILE NAME: the mean of NAME's runs in FILE, in milliseconds.
hyperfine_mean() {
    python3 -c '
import json, sys
results = json.load(open(sys.argv[1]))["results"]
print("%.3f" % (next(r for r in results if r["command"] == sys.argv[2])["mean"] * 1000))
' "$1" "$2"
}

now_us() { us=${EPOCHREALTIME/./}; }

# wait_for_child PID COMM: poll until PID has a child that runs COMM (it has
# exec'd), within 5 s. Children are listed per thread, so every thread is read.
wait_for_child() {
    local parent=$1 want=$2 child comm us deadline
    now_us
    deadline=$((us + 5000000))
    while now_us && ((us < deadline)); do
        kill -0 "$parent" 2>/dev/null || die "pid $parent exited before running $want"
        for child in $(cat /proc/"$parent"/task/*/children 2>/dev/null); do
            read -r comm 2>/dev/null </proc/"$child"/comm && [[ $comm == "$want" ]] && return 0
        done
        sleep 0.001
    done
    die "pid $parent has no $want child after 5 s"
}

# start_sleeping NAME: start `INIT -- sleep 1000` in the background and return
# once sleep runs; the init's pid is left in $pid.
start_sleeping() {
    init_argv "$1"
    "${argv[@]}" sleep 1000 &
    pid=$!
    wait_for_child "$pid" sleep
}

# stop_sleeping: SIGTERM the init (it forwards it to sleep, which exits) and
# wait for the init to exit; its exit status (143) is expected.
stop_sleeping() {
    kill -TERM "$pid"
    wait "$pid" || true
    pid=
}

measure_rss() {
    start_sleeping "$1"
    rss=$(awk '/^VmRSS:/ { print $2 }' /proc/"$pid"/status)
    anon=$(awk '/^RssAnon:/ { print $2 }' /proc/"$pid"/status)
    stop_sleeping
}

# measure_term NAME: the median over TERM_RUNS runs of the time from kill -TERM
# to the init's exit, in milliseconds.
measure_term() {
    local i t0 samples=()
    for ((i = 0; i < TERM_RUNS; i++)); do
        start_sleeping "$1"
        now_us
        t0=$us
        stop_sleeping
        now_us
        samples+=($((us - t0)))
    done
    median_ms=$(printf '%s\n' "${samples[@]}" | sort -n |
        awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f", m / 1000 }')
}

# Run by the init under test: leave ORPHANS orphaned processes for the init to
# reap, and exit only once the init has reaped them all. A middle process puts
# itself in a new process group, forks the grandchildren (which exit at once)
# and exits, so they are reparented to the init. A zombie stays a member of its
# process group until it is reaped, so the group is gone exactly when the init
# has reaped the last one. An init that never reaps fails the run after 60 s.
write_orphan_spawner() {
    cat >"$1" <<'EOF'
import os, sys, time

middle = os.fork()
if middle == 0:
    os.setpgid(0, 0)
    for _ in range(int(sys.argv[1])):
        if os.fork() == 0:
            os._exit(0)
    os._exit(0)
os.waitpid(middle, 0)
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        os.killpg(middle, 0)
    except ProcessLookupError:
        sys.exit(0)
    time.sleep(0.0005)
sys.exit("orphans.py: the orphans were not reaped within 60 s")
EOF
}

size_kib() { echo $(($(stat -c %s "$1") / 1024)); }

# row LABEL UNIT DECIMALS VAR: one table line from the associative array VAR
# (keyed by init), each figure followed by its ratio to tini.
row() {
    local label=$1 unit=$2 decimals=$3 name line
    local -n values=$4
    line="| $label |"
    for name in "${INITS[@]}"; do
        line+=$(awk -v v="${values[$name]}" -v t="${values[tini]}" -v u="$unit" -v d="$decimals" \
            'BEGIN { printf " %.*f %s (%.2f×) |", d, v, u, (t > 0 ? v / t : 0) }')
    done
    echo "$line"
}

cleanup() {
    [[ -n ${pid:-} ]] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$tmp"
}

main() {
    need tini=tini catatonit=catatonit hyperfine=hyperfine python3=python3
    find_fc_init
    tmp=$(mktemp -d)
    pid=
    trap cleanup EXIT
    # The interpreter itself, not a version manager's shim script, so that its
    # start-up costs the same for every init.
    local python name
    python=$(python3 -c 'import sys; print(sys.executable)')

    declare -A true_ms rss_kib anon_kib term_ms orphans_ms size

    log "== INIT -- /bin/true ($TRUE_RUNS runs)"
    hyperfine_all "$tmp/true.json" "$TRUE_RUNS" 20 /bin/true
    for name in "${INITS[@]}"; do true_ms[$name]=$(hyperfine_mean "$tmp/true.json" "$name"); done

    log "== RSS while supervising sleep, SIGTERM to exit ($TERM_RUNS runs)"
    for name in "${INITS[@]}"; do
        measure_rss "$name"
        rss_kib[$name]=$rss
        anon_kib[$name]=$anon
        measure_term "$name"
        term_ms[$name]=$median_ms
        log "$name: ${rss} KiB, SIGTERM to exit ${median_ms} ms"
    done

    log "== reaping $ORPHANS orphans ($ORPHAN_RUNS runs)"
    write_orphan_spawner "$tmp/orphans.py"
    hyperfine_all "$tmp/orphans.json" "$ORPHAN_RUNS" 2 "$python" "$tmp/orphans.py" "$ORPHANS"
    for name in "${INITS[@]}"; do orphans_ms[$name]=$(hyperfine_mean "$tmp/orphans.json" "$name"); done

    # fc-init's release profile strips already; strip a copy to be sure.
    strip -o "$tmp/fc-init" "$FC_INIT"
    size[fc-init]=$(size_kib "$tmp/fc-init")
    size[tini]=$(size_kib "$(command -v tini)")
    size[catatonit]=$(size_kib "$(command -v catatonit)")
    if [[ -n $FC_INIT_BASELINE ]]; then
        strip -o "$tmp/baseline" "$FC_INIT_BASELINE"
        size[baseline]=$(size_kib "$tmp/baseline")
    fi

    echo "fc-init: \`$("$FC_INIT" --version 2>&1 | head -n1)\` ($FC_INIT);" \
        "tini: \`$(tini --version)\`; catatonit: \`$(catatonit --version)\`;" \
        "Linux $(uname -r), $(nproc) CPUs"
    echo
    local header="| measure |" rule="|---|"
    for name in "${INITS[@]}"; do
        header+=" $name |"
        rule+="---:|"
    done
    echo "$header"
    echo "$rule"
    row "\`INIT -- /bin/true\`, mean of $TRUE_RUNS" ms 3 true_ms
    row "RSS while supervising \`sleep 1000\`" KiB 0 rss_kib
    row "of which private (RssAnon)" KiB 0 anon_kib
    row "SIGTERM to exit, median of $TERM_RUNS" ms 3 term_ms
    row "reap $ORPHANS orphans, mean of $ORPHAN_RUNS" ms 1 orphans_ms
    row "binary size (fc-init stripped)" KiB 0 size
    echo
    local note="Ratios are to tini. Debian's tini is dynamically linked against libc"
    command -v tini-static >/dev/null && note+=" (tini-static: $(size_kib "$(command -v tini-static)") KiB)"
    echo "$note; catatonit is static. RSS is mostly the executable's own pages, shared with every"
    echo "process running it and reclaimable (they grow with the binary's size); RssAnon is the memory"
    echo "each instance really adds."
    [[ -z $FC_INIT_BASELINE ]] || echo "baseline: \`$FC_INIT_BASELINE\`."
}

main "$@"
