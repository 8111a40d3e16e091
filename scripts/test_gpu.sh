#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (sm_80 or later) and the CUDA toolkit: builds
# qbert with the CUDA backend, runs the CUDA tests (every CUDA op against the CPU
# backend, and the whole model's forward, backward and AdamW steps), then runs them
# again under compute-sanitizer memcheck. BUILD_DIR as for scripts/test.sh.
# Without a GPU the same tests print "skipped" and pass (they are part of ctest).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BUILD_DIR:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -R '^test_cuda_'
sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for t in "$dir"/tests/test_cuda_*; do
  [ -x "$t" ] || continue
  echo "== compute-sanitizer memcheck: $(basename "$t")"
  abs=$(realpath "$t")
  (cd tests && "$sanitizer" --tool memcheck --error-exitcode 1 --leak-check full "$abs")
done
