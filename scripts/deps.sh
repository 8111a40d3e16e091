#!/usr/bin/env bash
# Installs what qbert builds and tests with, from Debian packages (and the small
# `tokenizers` Python package that the tokenizer parity test compares against).
# Skips what is already there, so it is cheap to run every time.
set -euo pipefail
# Open MPI: data-parallel training (mpirun -np N qbert train ...) and its test
pkgs=(build-essential cmake pkg-config libcjson-dev libinih-dev libutf8proc-dev python3 libopenmpi-dev openmpi-bin)
# --fuzz: clang and its OpenMP runtime, for the libFuzzer harnesses (tests/fuzz/run.sh)
if [ "${1:-}" = "--fuzz" ]; then pkgs+=(clang libomp-dev); fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "${1:-}" = "--tests" ] && ! python3 -c "import tokenizers" 2>/dev/null; then
  echo "installing the tokenizers Python package (reference for the tokenizer parity test)"
  python3 -m pip install -q tokenizers 2>/dev/null || python3 -m pip install -q --break-system-packages tokenizers
fi
