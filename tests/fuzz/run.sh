#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan + UBSan) and runs each on a copy of its
# seed corpus (tests/fuzz/seeds/<name>; JSON inputs with json.dict, the INI with
# ini.dict) for SECONDS seconds, or RUNS executions. A crash, a sanitizer report,
# a leak or a failed check stops that harness and the script exits non-zero; the
# reproducer is left in OUT/<name>/ (with the log). CI runs it for 30 s each; a long
# campaign is the same with more time (tests/fuzz/README.md has the results).
# usage: tests/fuzz/run.sh [SECONDS] [OUT]   (env: RUNS=N, JOBS=2, BUILD_DIR=build-fuzz,
#        HARNESSES="config dataset ...")
set -uo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-30}
out=${2:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
dir=${BUILD_DIR:-build-fuzz}
CC=${CC:-clang} cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQBERT_FUZZ=ON -DQBERT_CUDA=OFF \
  -DQBERT_MPI=OFF -DBUILD_TESTING=OFF > /dev/null || exit 1
cmake --build "$dir" -j"$(nproc)" --target $(printf 'fuzz_%s ' ${HARNESSES:-$(ls tests/fuzz/seeds)}) \
  > "$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
run_one() {  # run_one NAME: prints one summary line
  local h=$1 work="$out/$1"
  mkdir -p "$work/corpus"
  cp "$root"/tests/fuzz/seeds/"$h"/* "$work/corpus/"
  local dict=()
  case $h in
    config | safetensors | model_dir) dict=(-dict="$root/tests/fuzz/json.dict") ;;
    train_ini) dict=(-dict="$root/tests/fuzz/ini.dict") ;;
  esac
  local limit=(-max_total_time="$seconds")
  [ -n "${RUNS:-}" ] && limit=(-runs="$RUNS")
  (cd "$work" && "$root/$dir/tests/fuzz/fuzz_$h" "${limit[@]}" "${dict[@]}" -rss_limit_mb=2048 -timeout=20 \
     -print_final_stats=1 corpus > log 2>&1)
  local rc=$? execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
  printf '%-12s rc=%-3s %10s executions, corpus %4s files%s\n' "$h" "$rc" "${execs:-?}" \
    "$(ls "$work/corpus" | wc -l)" "$([ $rc -ne 0 ] && echo "  FINDING: see $work/log")"
  return $rc
}
export -f run_one
root=$(pwd)
export out dir seconds RUNS root
status=0
printf '%s\n' ${HARNESSES:-$(ls tests/fuzz/seeds)} | xargs -P "${JOBS:-2}" -I{} bash -c 'run_one {}' || status=1
exit $status
