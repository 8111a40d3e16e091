"""ONNX Runtime FP32 and dynamic INT8 latency on the model make_random_bert.py wrote,
with the protocol of `qbert-bench latency` (random ids from a fixed seed, full mask,
warm-up then timed runs, one run = ids to logits). INT8 is made the way the research
made it: onnxruntime.quantization.quantize_dynamic with QInt8 weights (MatMul and
the other ops ORT quantizes by default; per-tensor weights, per-tensor dynamic
activations).

usage: python ort_latency.py --dir DIR [--threads 2] [--points 1x32,1x64,1x128,32x128]
           [--warmup 5] [--runs 20] [--precisions fp32,int8-dynamic] [--json FILE]
writes DIR/model.int8.onnx and the JSON (default DIR/ort.json). Needs onnxruntime, onnx and numpy
(a venv: pip install onnxruntime onnx numpy).
"""
import argparse
import json
import os
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import QuantType, quantize_dynamic

from latency_stats import stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points", default="1x32,1x64,1x128,32x128")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--vocab-size", type=int, default=50000)
    ap.add_argument("--precisions", default="fp32,int8-dynamic")
    ap.add_argument("--json", help="output file (default DIR/ort.json)")
    a = ap.parse_args()
    fp32 = os.path.join(a.dir, "model.onnx")
    int8 = os.path.join(a.dir, "model.int8.onnx")
    if not os.path.exists(int8):
        quantize_dynamic(fp32, int8, weight_type=QuantType.QInt8)
    out = {"runtime": f"ONNX Runtime {ort.__version__} (CPUExecutionProvider)", "threads": a.threads,
           "warmup": a.warmup, "runs": a.runs, "sizes_bytes": {"fp32": os.path.getsize(fp32),
                                                               "int8": os.path.getsize(int8)},
           "results": []}
    paths = {"fp32": fp32, "int8-dynamic": int8}
    for name in a.precisions.split(","):
        if name not in paths:
            ap.error(f"--precisions: unknown '{name}' (expected fp32 or int8-dynamic)")
        path = paths[name]
        so = ort.SessionOptions()
        so.intra_op_num_threads = a.threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(42)
        for p in a.points.split(","):
            batch, seq = (int(v) for v in p.split("x"))
            ids = rng.integers(0, a.vocab_size, size=(batch, seq), dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            times = []
            for r in range(a.warmup + a.runs):
                t0 = time.perf_counter()
                sess.run(None, feed)
                if r >= a.warmup:
                    times.append(1e3 * (time.perf_counter() - t0))
            row = {"precision": name, "batch": batch, "seq": seq, **stats(times)}
            out["results"].append(row)
            print(f"ort {name:12s} batch {batch:3d} seq {seq:4d}: median {row['median_ms']:9.2f} ms", flush=True)
    with open(a.json or os.path.join(a.dir, "ort.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
