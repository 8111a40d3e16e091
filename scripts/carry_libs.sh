#!/usr/bin/env bash
# Copies the shared libraries the built binaries need that a GPU machine without
# qbert's build dependencies may lack (cJSON, inih, utf8proc, Open MPI and what it
# loads with it) into OUTDIR, for LD_LIBRARY_PATH there. Left out: the C and C++
# runtimes and the CUDA libraries, which such a machine has (and which must match it).
# usage: scripts/carry_libs.sh OUTDIR [BUILD_DIR]   (default build-gpu)
set -euo pipefail
out=${1:?usage: scripts/carry_libs.sh OUTDIR [BUILD_DIR]}
dir=${2:-build-gpu}
mkdir -p "$out"
skip='/(ld-linux|libc|libm|libmvec|libpthread|libdl|librt|libstdc\+\+|libgcc_s|libcuda|libcudart|libcublas|libcublasLt)\.so'
for b in "$dir"/qbert "$dir"/qbert-bench "$dir"/tests/test_*; do
  [ -x "$b" ] && ldd "$b"
done | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | grep -Ev "$skip" | while read -r lib; do
  cp -L "$lib" "$out/"
  echo "$(basename "$lib")"
done
