"""A random-weight BertForSequenceClassification of a given config (the speed peers
need the shape, not trained weights), saved twice from the same weights: as a
Hugging Face directory (model.safetensors + config + vocab) that qbert loads, and as
ONNX (opset 14, dynamic batch and sequence axes) for ONNX Runtime. It then times
PyTorch FP32 eager on it with the protocol of `qbert-bench latency`: random token
ids from a fixed seed, full attention mask, `--warmup` untimed then `--runs` timed
forward passes per point, one pass = token ids to logits.

usage: python3 make_random_bert.py --config CONFIG.json --vocab VOCAB.txt --out DIR
           [--threads 2] [--points 1x32,1x64,1x128,32x128] [--warmup 5] [--runs 20]
writes DIR/model.safetensors, DIR/config.json, DIR/vocab.txt, DIR/model.onnx,
DIR/pytorch_fp32.json. Needs torch and transformers (Debian's python3-torch works).
"""
import argparse
import json
import os
import shutil
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

from latency_stats import stats


def parse_points(text):
    return [tuple(int(v) for v in p.split("x")) for p in text.split(",")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--points", default="1x32,1x64,1x128,32x128")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(a.threads)
    cfg = BertConfig.from_json_file(a.config)
    cfg.num_labels = 3
    model = BertForSequenceClassification(cfg).eval()
    os.makedirs(a.out, exist_ok=True)
    model.save_pretrained(a.out, safe_serialization=True)
    shutil.copy(a.vocab, os.path.join(a.out, "vocab.txt"))
    ids = torch.randint(0, cfg.vocab_size, (1, 16))
    torch.onnx.export(model, (ids, torch.ones_like(ids)), os.path.join(a.out, "model.onnx"),
                      input_names=["input_ids", "attention_mask"], output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "batch", 1: "seq"},
                                    "attention_mask": {0: "batch", 1: "seq"}, "logits": {0: "batch"}},
                      opset_version=14)
    gen = torch.Generator().manual_seed(42)
    rows = []
    with torch.inference_mode():
        for batch, seq in parse_points(a.points):
            ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=gen)
            mask = torch.ones_like(ids)
            times = []
            for r in range(a.warmup + a.runs):
                t0 = time.perf_counter()
                model(input_ids=ids, attention_mask=mask)
                if r >= a.warmup:
                    times.append(1e3 * (time.perf_counter() - t0))
            row = {"batch": batch, "seq": seq, **stats(times)}
            rows.append(row)
            print(f"pytorch fp32 batch {batch:3d} seq {seq:4d}: median {row['median_ms']:9.2f} ms", flush=True)
    with open(os.path.join(a.out, "pytorch_fp32.json"), "w") as f:
        json.dump({"runtime": f"PyTorch {torch.__version__} eager FP32", "threads": a.threads,
                   "warmup": a.warmup, "runs": a.runs, "results": rows}, f, indent=1)


if __name__ == "__main__":
    main()
