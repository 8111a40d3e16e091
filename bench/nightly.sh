#!/usr/bin/env bash
# The nightly kernel benchmark: runs what the machine supports (qbert-bench gemm on any
# CPU; qbert-bench kernels where a GPU is present), appends a record per device to
# HISTORY_DIR/history.jsonl (date, commit, machine, device, each kernel's time), compares
# each kernel with the median of its last WINDOW records on the same machine and device
# (bench/nightly.py: slower by more than THRESHOLD and by more than its spread is a
# regression), prints the table, draws HISTORY_DIR/trend-DEVICE.svg, and exits 1 on a
# regression.
# usage: bench/nightly.sh HISTORY_DIR   (env: BUILD_DIR=build, WINDOW=10, THRESHOLD=0.10)
set -uo pipefail
cd "$(dirname "$0")/.."
hist=${1:?usage: bench/nightly.sh HISTORY_DIR}
dir=${BUILD_DIR:-build}
mkdir -p "$hist"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
machine="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
status=0
check() {  # check DEVICE JSON...: record, then compare
  local device=$1
  shift
  python3 bench/nightly.py record "$hist/history.jsonl" --machine "$machine" --device "$device" --commit "$commit" "$@" &&
    python3 bench/nightly.py compare "$hist/history.jsonl" --machine "$machine" --device "$device" \
      --window "${WINDOW:-10}" --threshold "${THRESHOLD:-0.10}" --svg "$hist/trend-${device// /-}.svg" || status=1
}
if "$dir/qbert-bench" gemm --threads "$(nproc)" --json "$tmp/gemm.json" > "$tmp/gemm.log" 2>&1; then
  check cpu "$tmp/gemm.json"
else
  cat "$tmp/gemm.log"
  status=1
fi
if [ -x "$dir/qbert-bench" ] && "$dir/qbert-bench" kernels --json "$tmp/kernels.json" > "$tmp/kernels.log" 2>&1; then
  check cuda "$tmp/kernels.json"
else
  echo "(no GPU benchmark: $(tail -1 "$tmp/kernels.log" 2>/dev/null))"
fi
exit $status
