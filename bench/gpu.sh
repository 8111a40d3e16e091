#!/usr/bin/env bash
# The whole GPU measurement in one run, for a machine with an NVIDIA GPU (sm_80 or
# later), in about 6 minutes on an H200 (DEADLINE): every step is logged and timed,
# and a step that would start past the deadline is skipped, saying so.
#   build       Release for sm_90 only (ARCH), unless PREBUILT=1
#   tests       each CUDA test binary and the host emulation of the tensor-core
#               kernels, then each CUDA test again under compute-sanitizer memcheck;
#               tests/dist_test.py (NCCL under mpirun -np 1) where mpirun exists
#   kernels     qbert-bench kernels: every CUDA op against the measured ceilings
#   training    qbert-bench train, IndoBERT-base shape, seq 128: bf16 at batch 32
#               (the step as it is, and recorded as one CUDA graph) and 256 (graph),
#               fp32 at batch 32, INT8 QAT at batch 32 (both ways); MFU against the
#               BF16 ceiling just measured, host waits per step
#   latency     qbert-bench latency --device cuda, batch 1 and 128, seq 128, of a random
#               IndoBERT-base model with FP32 / BF16 / FP16 products and of its INT8
#               and INT4 files with FP16 activations around the integer products,
#               each on every kernel it has (INT8: the pipelined GEMM, the default,
#               and cuBLASLt; INT4: pipelined, mma on nibbles, dp4a), and INT8 with
#               FP32 activations (the reference path) for comparison
#   peer        bench/peers/torch_gpu.py: PyTorch FP32 / FP16 inference and bf16
#               training (eager, torch.compile), the same shapes (needs torch +
#               transformers; skipped without them)
#   cpu-vs-gpu  qbert bench --devices cpu,cuda on the SmSA test texts, every precision
# usage: bench/gpu.sh OUTDIR
#   BUILD_DIR   the build (default build-gpu)
#   PREBUILT=1  use BUILD_DIR as it is: on a GPU machine without the build
#               dependencies, build elsewhere with the same CUDA and copy it (with
#               LD_LIBRARY_PATH naming where libcjson / libinih / libutf8proc are)
#   DEADLINE    seconds for the whole run (default 360); SAN=0 skips compute-sanitizer
#   SHARED      where the shared data is (default ../shared: the IndoBERT vocabulary, SmSA)
# OUTDIR receives 8 files and nothing else (models go to a temporary directory):
# summary.md (the goals table, printed last), run.log (every step's output),
# tests.log, kernels.json, train.json, latency.json, torch.json, cpu-vs-gpu.json.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/gpu.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
dir=${BUILD_DIR:-build-gpu}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
deadline=${DEADLINE:-360}
log="$out/run.log"
: > "$log"

# step NAME SECONDS CMD...: runs CMD (output to run.log) unless the deadline is near;
# at most SECONDS, cut to what is left.
step() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - ($(date +%s) - start)))
  if [ "$left" -lt 10 ]; then
    echo "== $name: SKIPPED (deadline)" | tee -a "$log"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$(date +%s)
  echo "== $name" >> "$log"
  timeout -k 5 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  printf '== %-40s rc=%-3s %4ss\n' "$name" "$rc" "$(($(date +%s) - t0))" | tee -a "$log"
  return $rc
}

if [ "${PREBUILT:-0}" != 1 ]; then
  step build 300 bash -c "cmake -S . -B '$dir' -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=${ARCH:-90} \
    && cmake --build '$dir' -j$(nproc)" || { echo "bench/gpu.sh: the build failed (see $log)"; exit 1; }
fi
bench="$dir/qbert-bench"
qbert="$dir/qbert"
bin=$(cd "$dir" && pwd)

# Tests: from tests/, as ctest runs them; tests.log has each binary's output.
: > "$out/tests.log"
for t in "$bin"/tests/test_cuda_* "$bin"/tests/test_*_emu; do
  [ -x "$t" ] || continue
  n=$(basename "$t")
  step "test $n" 90 bash -c "cd tests && '$t' > '$tmp/$n.log' 2>&1"
  echo "$n rc=$?" >> "$out/tests.log"
  cat "$tmp/$n.log" >> "$out/tests.log"
done
if [ "${SAN:-1}" != 0 ]; then
  san=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  for t in "$bin"/tests/test_cuda_*; do
    n=$(basename "$t")
    step "memcheck $n" 90 bash -c "cd tests && '$san' --tool memcheck --error-exitcode 1 '$t' > '$tmp/san-$n.log' 2>&1"
    echo "memcheck $n rc=$?" >> "$out/tests.log"
    grep -E "ERROR SUMMARY|passed|CHECK failed" "$tmp/san-$n.log" >> "$out/tests.log"
  done
fi

# Data parallel: NCCL with one process under mpirun against the run without a
# launcher and the CPU's (tests/dist_test.py; needs Open MPI's mpirun).
if command -v mpirun > /dev/null; then
  step "test dist (mpirun)" 120 bash -c "cd tests && QBERT_BIN='$qbert' python3 dist_test.py > '$tmp/dist.log' 2>&1"
  echo "dist_test rc=$?" >> "$out/tests.log"
  cat "$tmp/dist.log" >> "$out/tests.log"
else
  echo "== test dist: SKIPPED (no mpirun: Open MPI is not installed)" | tee -a "$log"
fi

step kernels 90 "$bench" kernels --json "$out/kernels.json"
ceiling=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ceiling_bf16_tflops"])' \
  "$out/kernels.json" 2>/dev/null || echo 769)
# RUN = precision:batch:graphs[:qat bits]; the JSON key is precision-batch[-g][-qatN]
for run in bf16:32:0 bf16:32:1 bf16:256:1 fp32:32:0 fp32:32:0:8 fp32:32:1:8; do
  IFS=: read -r p b g q <<< "$run"
  key=$p-$b
  [ "$g" = 1 ] && key=$key-g
  key=$key${q:+-qat$q}
  step "train $key" 60 "$bench" train --precision "$p" --batch "$b" --graphs "$g" ${q:+--qat "$q"} \
    --ceiling "$ceiling" --json "$tmp/train-$key.json"
done

shared=${SHARED:-../shared}
vocab=$shared/data/indobert-base-p2/vocab.txt
if step "models" 120 bash -c "'$qbert' init --preset indobert-base-p2 --vocab '$vocab' --out '$tmp/base' && \
    '$qbert' quantize --model '$tmp/base' --scheme int8-dynamic --out '$tmp/int8' && \
    '$qbert' quantize --model '$tmp/base' --scheme int4 --out '$tmp/int4'"; then
  lat() {  # lat NAME MODEL MATH [VAR=VALUE ...]: batch 1 and 128 at seq 128
    local name=$1 model=$2 math=$3
    shift 3
    step "latency $name" 60 env "$@" "$bench" latency --model "$model" --device cuda ${math:+--math "$math"} \
      --batch 1,128 --seq 128 --warmup 10 --runs 50 --json "$tmp/latency-$name.json"
  }
  for m in fp32 bf16 fp16; do lat "$m" "$tmp/base" "$m"; done
  lat int8 "$tmp/int8" fp16
  lat int8-cublaslt "$tmp/int8" fp16 QBERT_CUDA_INT8=cublaslt
  lat int8-fp32 "$tmp/int8" ""
  lat int4 "$tmp/int4" fp16
  lat int4-mma "$tmp/int4" fp16 QBERT_CUDA_W4A8=mma
  lat int4-dp4a "$tmp/int4" fp16 QBERT_CUDA_W4A8=dp4a
fi

if python3 -c 'import torch, transformers' 2>/dev/null; then
  step peer 150 python3 bench/peers/torch_gpu.py --config "$tmp/base/config.json" --json "$out/torch.json"
else
  echo "== peer: SKIPPED (no torch + transformers)" | tee -a "$log"
fi

step cpu-vs-gpu 120 "$qbert" bench --model "$tmp/base" --data "$shared/data/smsa/test.tsv" --devices cpu,cuda \
  --precisions fp32,fp16,bf16,int8,int4 --batches 1,128 --warmup 2 --runs 5 --out "$tmp/cvg" &&
  cp "$tmp/cvg/results.json" "$out/cpu-vs-gpu.json"

# The per-run JSON files, one file per kind.
python3 - "$tmp" "$out" <<'EOF'
import glob, json, os, sys
tmp, out = sys.argv[1:]
for kind in ("train", "latency"):
    runs = {}
    for f in sorted(glob.glob(os.path.join(tmp, kind + "-*.json"))):
        runs[os.path.basename(f)[len(kind) + 1:-5]] = json.load(open(f))
    json.dump(runs, open(os.path.join(out, kind + ".json"), "w"), indent=1)
EOF
python3 bench/gpu_summary.py "$out" > "$out/summary.md"
echo
cat "$out/summary.md"
