#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 30) from its committed seeds,
# two at a time (a 2-core machine runs all six in about three times SECONDS). Exits non-zero
# when any target finds a crash; the input is then in fuzz/artifacts/<target>/ and the log
# is printed. Needs a nightly toolchain and cargo-fuzz (README.md).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-30}
targets=(request_head response_head chunked config redis_url admin_query exchange h2_frames h2_conn)

cargo +nightly fuzz build
logs=$(mktemp -d)
run() {
  local t=$1
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$logs/$t.log" 2>&1
}
failed=()
for ((i = 0; i < ${#targets[@]}; i += 2)); do
  pids=()
  for t in "${targets[@]:i:2}"; do
    run "$t" &
    pids+=("$!:$t")
  done
  for p in "${pids[@]}"; do
    if wait "${p%%:*}"; then
      t=${p#*:}
      echo "fuzz $t: $(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$') runs, no crash"
    else
      failed+=("${p#*:}")
    fi
  done
done
for t in "${failed[@]}"; do
  echo "fuzz $t: FAILED" >&2
  tail -n 60 "$logs/$t.log" >&2
done
rm -rf "$logs"
[ ${#failed[@]} -eq 0 ]
