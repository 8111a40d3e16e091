#!/usr/bin/env bash
# The qbert vs Hugging Face Trainer fine-tuning comparison (bench/peers/README.md), on
# an N-example subset of SmSA train, full valid and test sets, same hyper-parameters,
# seed and thread count, length-grouped batches on both sides. Run on an idle machine.
#   bench/peers/run_comparison.sh N OUTDIR      (needs ./build/qbert, /usr/bin/python3 with
#                                                 transformers + accelerate, the MiniLM dir)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000}
OUT=${2:-bench/results}
MODEL=${MINILM:-/work/minilm}
D=../shared/data/smsa
mkdir -p "$OUT"
SUB=$(mktemp -d)/smsa_train_$N.tsv
python3 bench/peers/make_subset.py $D/train.tsv "$SUB" "$N" --seed 42
BIN=$(mktemp -d)/qbert && cp build/qbert "$BIN"   # a rebuild cannot touch the running binary

echo "== qbert" >&2
"$BIN" train experiments/minilm_smsa.ini --set model.path="$MODEL" --set data.train="$SUB" \
    --set output.dir="$OUT/qbert-minilm-smsa-$N" 2>&1 | grep -v '^epoch' >&2
cp "$OUT/qbert-minilm-smsa-$N/metrics.json" "$OUT/qbert-minilm-smsa-$N.json"

echo "== Hugging Face Trainer (OpenBLAS: see README)" >&2
LD_LIBRARY_PATH=${OPENBLAS_DIR:-/tmp/oblas/root/usr/lib/x86_64-linux-gnu/openblas-openmp} \
/usr/bin/python3 bench/peers/hf_finetune.py --model "$MODEL" --train "$SUB" --valid $D/valid.tsv \
    --test $D/test.tsv --epochs 3 --lr 2e-5 --batch 16 --max-length 128 --weight-decay 0.01 \
    --seed 42 --threads 2 --group-by-length --out "$OUT/hf-minilm-smsa-$N.json" >&2
