#!/bin/sh
# CPU latency of one random-weight BERT (indobert-base-p2 shape) in every runtime,
# one after another on an otherwise idle machine, same thread count everywhere:
# PyTorch FP32 eager, ONNX Runtime FP32 and dynamic INT8, qbert FP32 / INT8-dynamic /
# INT4 (group 64). Batch 1 at sequence 32, 64, 128 (5 warm-up + 20 timed runs) and
# batch 32 at 128 (1 + 5: about 5 s a run). JSON files go to OUT.
#
# usage: bench/peers/run_latency_peers.sh WORK OUT [THREADS]
#   WORK: a scratch directory for the models (~1.3 GB)
# needs: ./build/qbert and ./build/qbert-bench; /usr/bin/python3 with torch and
# transformers (+ OpenBLAS first on LD_LIBRARY_PATH, see README.md); $ORT_PYTHON, a
# python with onnxruntime, onnx and numpy (default: python3).
set -eu
WORK=$1 OUT=$2 T=${3:-2}
CFG=${QBERT_CONFIG:-../shared/data/indobert-base-p2/config.json}
VOCAB=${QBERT_VOCAB:-../shared/data/indobert-base-p2/vocab.txt}
ORT_PYTHON=${ORT_PYTHON:-python3}
mkdir -p "$WORK" "$OUT"
B1="1x32,1x64,1x128" B32="32x128"

/usr/bin/python3 bench/peers/make_random_bert.py --config "$CFG" --vocab "$VOCAB" --out "$WORK/fp32" \
    --threads "$T" --points "$B1" --warmup 5 --runs 20
mv "$WORK/fp32/pytorch_fp32.json" "$OUT/pytorch-fp32-b1.json"
/usr/bin/python3 bench/peers/make_random_bert.py --config "$CFG" --vocab "$VOCAB" --out "$WORK/fp32" \
    --threads "$T" --points "$B32" --warmup 1 --runs 5
mv "$WORK/fp32/pytorch_fp32.json" "$OUT/pytorch-fp32-b32.json"

"$ORT_PYTHON" bench/peers/ort_latency.py --dir "$WORK/fp32" --threads "$T" --points "$B1" --warmup 5 --runs 20 \
    --json "$OUT/ort-b1.json"
"$ORT_PYTHON" bench/peers/ort_latency.py --dir "$WORK/fp32" --threads "$T" --points "$B32" --warmup 1 --runs 5 \
    --json "$OUT/ort-b32.json"

for s in int8-dynamic int4; do ./build/qbert quantize --model "$WORK/fp32" --scheme "$s" --out "$WORK/$s"; done
for m in fp32 int8-dynamic int4; do
    ./build/qbert-bench latency --model "$WORK/$m" --seq 32,64,128 --batch 1 --threads "$T" \
        --json "$OUT/qbert-$m-b1.json"
    ./build/qbert-bench latency --model "$WORK/$m" --seq 128 --batch 32 --warmup 1 --runs 5 --threads "$T" \
        --json "$OUT/qbert-$m-b32.json"
done
