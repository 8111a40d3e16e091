#!/usr/bin/env bash
# Builds qbert and runs the end-to-end demo on the sample data embedded in the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
./build/qbert demo --out build/demo "$@"
