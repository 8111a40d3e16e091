#!/bin/sh
# ONNX Runtime dynamic INT8 against qbert INT8-dynamic at batch 1, interleaved: ROUNDS
# rounds, each timing both runtimes on every point (5 warm-up + 20 timed runs), the
# order flipped every round so that drift in this shared machine's speed falls on both
# sides alike. interleave_summary.py then prints each round's ratio and their median.
#
# usage: bench/peers/run_interleaved.sh WORK OUT [ROUNDS] [THREADS]
#   WORK: the directory run_latency_peers.sh filled (WORK/fp32 with model.onnx and
#         model.int8.onnx, WORK/int8-dynamic with the qbert file)
# needs: ./build/qbert-bench; $ORT_PYTHON, a python with onnxruntime, onnx and numpy.
set -eu
WORK=$1 OUT=$2 R=${3:-5} T=${4:-2}
ORT_PYTHON=${ORT_PYTHON:-python3}
P="1x32,1x64,1x128"
mkdir -p "$OUT"
ort() {
    "$ORT_PYTHON" bench/peers/ort_latency.py --dir "$WORK/fp32" --threads "$T" --points "$P" \
        --precisions int8-dynamic --json "$OUT/ort-int8-r$1.json"
}
qbert() {
    ./build/qbert-bench latency --model "$WORK/int8-dynamic" --seq 32,64,128 --batch 1 --threads "$T" \
        --json "$OUT/qbert-int8-r$1.json"
}
r=1
while [ "$r" -le "$R" ]; do
    if [ $((r % 2)) -eq 1 ]; then ort "$r"; qbert "$r"; else qbert "$r"; ort "$r"; fi
    r=$((r + 1))
done
python3 bench/peers/interleave_summary.py "$OUT" "$R"
