#!/usr/bin/env bash
# The GPU benchmarks of bench/RESULTS.md in one command, on a machine with an NVIDIA GPU
# (sm_80 or later), the CUDA toolkit and, for the peer rows, PyTorch + transformers:
#   kernels     qbert-bench kernels: every CUDA op against the measured ceilings
#   training    qbert-bench train, IndoBERT-base shape, seq 128, batch 32, fp32 / tf32 / bf16,
#               MFU against the BF16 ceiling just measured
#   inference   qbert-bench latency --device cuda, batch 1 and 128 at seq 128: a random
#               IndoBERT-base model with FP32 / TF32 / BF16 / FP16 products, and its INT8
#               and INT4 files (qbert quantize)
#               and again without CUDA graphs (QBERT_CUDA_GRAPHS=0): what the graphs save,
#               and the INT4 file on the dp4a W4A8 kernel (QBERT_CUDA_W4A8=dp4a; mma by default)
#   cpu-vs-gpu  qbert bench --devices cpu,cuda: the same model in FP32 / FP16 / INT8 / INT4
#               through the engine on the SmSA test texts, on both (the accuracy of a random
#               model means nothing; its agreement across devices and its latencies do)
#   peers       bench/peers/torch_gpu.py: PyTorch FP32 / FP16 inference, bf16 training
#               (eager, torch.compile), the same shapes
# usage: bench/gpu.sh OUTDIR   (BUILD_DIR as for scripts/test.sh; the IndoBERT vocabulary
# from ../shared/data/indobert-base-p2: the model files need one)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bench/gpu.sh OUTDIR}
mkdir -p "$out"
dir=${BUILD_DIR:-build}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$dir" -j"$(nproc)"
bench="$dir/qbert-bench"

"$bench" kernels --json "$out/kernels.json" | tee "$out/kernels.txt"
ceiling=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ceiling_bf16_tflops"])' "$out/kernels.json")
for p in fp32 tf32 bf16; do
  "$bench" train --precision "$p" --ceiling "$ceiling" --json "$out/train-$p.json" | tee "$out/train-$p.txt"
done

vocab=../shared/data/indobert-base-p2/vocab.txt
[ -f "$vocab" ] || { echo "bench/gpu.sh: $vocab not found (the model files need a vocabulary)" >&2; exit 1; }
rm -rf "$out/base" && "$dir/qbert" init --preset indobert-base-p2 --vocab "$vocab" --out "$out/base"
for s in int8-dynamic int4; do
  rm -rf "$out/$s" && "$dir/qbert" quantize --model "$out/base" --scheme "$s" --out "$out/$s"
done
for m in fp32 tf32 bf16 fp16; do
  "$bench" latency --model "$out/base" --device cuda --math "$m" --batch 1,128 --seq 128 --warmup 10 --runs 50 \
    --json "$out/latency-$m.json" | tee "$out/latency-$m.txt"
done
for s in int8-dynamic int4; do
  "$bench" latency --model "$out/$s" --device cuda --batch 1,128 --seq 128 --warmup 10 --runs 50 \
    --json "$out/latency-$s.json" | tee "$out/latency-$s.txt"
done
QBERT_CUDA_W4A8=dp4a "$bench" latency --model "$out/int4" --device cuda --batch 1,128 --seq 128 --warmup 10 \
  --runs 50 --json "$out/latency-int4-dp4a.json" | tee "$out/latency-int4-dp4a.txt"
for s in base int8-dynamic; do
  QBERT_CUDA_GRAPHS=0 "$bench" latency --model "$out/$s" --device cuda --batch 1,128 --seq 128 --warmup 10 \
    --runs 50 --json "$out/latency-$s-nographs.json" | tee "$out/latency-$s-nographs.txt"
done
"$dir/qbert" bench --model "$out/base" --data ../shared/data/smsa/test.tsv --devices cpu,cuda \
  --precisions fp32,fp16,int8,int4 --batches 1,128 --warmup 3 --runs 10 --out "$out/cpu-vs-gpu" \
  | tee "$out/cpu-vs-gpu.txt"

python3 bench/peers/torch_gpu.py --config "$out/base/config.json" --json "$out/torch.json" | tee "$out/torch.txt"
