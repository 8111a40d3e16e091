#!/usr/bin/env bash
# CPU data parallel against threads, the same global batch: `qbert train` on the
# IndoBERT-base shape (random weights, the embedded sample data, max_length 64, no
# dropout) as 1 process x N threads with batch G, then as N processes x 1 thread
# (mpirun) with batch G / N. Prints each one's training samples/s (the median of the
# per-step rates after the first step, from train_log.jsonl) and the ratio.
# usage: bench/dp_cpu.sh [OUTDIR] (env: QBERT=build/qbert N=2 G=16 STEPS=6)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
qbert=${QBERT:-build/qbert} n=${N:-2} g=${G:-16} steps=${STEPS:-6}
mkdir -p "$out"
cat > "$out/dp.ini" <<INI
[model]
preset = indobert-base-p2
[data]
train = embedded:train.tsv
labels = positive, neutral, negative
max_length = 64
[train]
max_steps = $steps
log_every = 1
dropout = false
group_by_length = false
INI
export OMP_WAIT_POLICY=PASSIVE OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rate() {  # median samples/s of the steps after the first
  python3 -c 'import json,sys,statistics; r=[json.loads(l)["samples_per_second"] for l in open(sys.argv[1]) if "\"step\"" in l and "eval" not in l][1:]; print("%.2f" % statistics.median(r))' "$1/train_log.jsonl"
}
OMP_NUM_THREADS=$n "$qbert" train "$out/dp.ini" --set output.dir="$out/threads" --set train.batch_size=$g \
  --set device.threads=$n > "$out/threads.log" 2>&1
OMP_NUM_THREADS=1 mpirun --oversubscribe --bind-to core -np "$n" "$qbert" train "$out/dp.ini" \
  --set output.dir="$out/procs" --set train.batch_size=$((g / n)) --set device.threads=1 > "$out/procs.log" 2>&1
a=$(rate "$out/threads") b=$(rate "$out/procs")
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
echo "1 process x $n threads, batch $g:        $a samples/s"
echo "$n processes x 1 thread, batch $((g / n)) each: $b samples/s"
python3 -c "print('ratio (processes / threads): %.3f' % ($b / $a))"
