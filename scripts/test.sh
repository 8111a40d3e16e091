#!/usr/bin/env bash
# Builds qbert and runs the whole test suite (ctest). BUILD_DIR and extra cmake
# options can be given: BUILD_DIR=build-asan scripts/test.sh -DQBERT_SANITIZE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh --tests
dir=${BUILD_DIR:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)"
ctest --test-dir "$dir" --output-on-failure -j"$(nproc)"
