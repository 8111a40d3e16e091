#!/usr/bin/env python3
"""PyTorch + transformers on the GPU, the peer of qbert-bench latency --device cuda and
qbert-bench train: the same shapes, random weights, random ids, the same protocol.

  inference  BertForSequenceClassification in eval mode, FP32 and FP16 (model.half()),
             each (batch, seq): warm-up, then timed runs of exactly what qbert times:
             the ids copied to the GPU, the forward, the logits copied back; median ms.
  training   the same model in FP32 master weights, bf16 autocast, dropout 0.1, AdamW
             (lr 5e-5), clip to norm 1: samples/s over timed steps after warm-up, eager
             and, when it compiles, torch.compile.

usage: torch_gpu.py --config indobert-base-p2/config.json --json OUT.json
       [--batch 1,128] [--seq 128] [--train-batch 32] [--warmup 10] [--runs 50]
       [--train-runs 20] [--no-compile]
"""
import argparse
import json
import statistics
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification


def sync():
    torch.cuda.synchronize()


def inference(model, cfg, batch, seq, warmup, runs):
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), dtype=torch.int64)
    mask = torch.ones_like(ids)
    times = []
    with torch.inference_mode():
        for r in range(warmup + runs):
            sync()
            t0 = time.perf_counter()
            logits = model(input_ids=ids.cuda(), attention_mask=mask.cuda()).logits.float().cpu()
            t1 = time.perf_counter()  # .cpu() waited for the GPU
            if r >= warmup:
                times.append((t1 - t0) * 1e3)
    del logits
    return statistics.median(times)


def training(cfg, batch, seq, warmup, runs, compile_model):
    torch.manual_seed(0)
    model = BertForSequenceClassification(cfg).cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    step_model = torch.compile(model) if compile_model else model
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), device="cuda")
    labels = torch.randint(0, cfg.num_labels, (batch,), device="cuda")
    for s in range(warmup + runs):
        if s == warmup:
            sync()
            t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = step_model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()  # the trainer reads the loss every step, as qbert does
    sync()
    return batch * runs / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--json", required=True)
    ap.add_argument("--batch", default="1,128")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--train-runs", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true")
    a = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("torch_gpu.py: no CUDA device")
    cfg = BertConfig.from_json_file(a.config)
    cfg.num_labels = 3
    out = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "seq": a.seq,
           "inference": [], "training": []}
    for dtype in ("fp32", "fp16"):
        torch.manual_seed(0)
        model = BertForSequenceClassification(cfg).cuda().eval()
        if dtype == "fp16":
            model = model.half()
        for b in map(int, a.batch.split(",")):
            ms = inference(model, cfg, b, a.seq, a.warmup, a.runs)
            out["inference"].append({"precision": dtype, "batch": b, "median_ms": ms, "samples_per_s": b * 1e3 / ms})
            print("torch %s batch %d seq %d: %.3f ms, %.1f samples/s" % (dtype, b, a.seq, ms, b * 1e3 / ms), flush=True)
        del model
        torch.cuda.empty_cache()
    for mode in ("eager", "compile"):
        if mode == "compile" and a.no_compile:
            continue
        try:
            sps = training(cfg, a.train_batch, a.seq, a.warmup, a.train_runs, mode == "compile")
        except Exception as e:  # torch.compile needs a working Triton; report, do not fail
            out["training"].append({"mode": mode, "error": str(e)[:300]})
            print("torch training %s: failed: %s" % (mode, str(e)[:300]), flush=True)
            continue
        out["training"].append({"mode": mode, "precision": "bf16 autocast", "batch": a.train_batch,
                                "samples_per_s": sps})
        print("torch training %s bf16 batch %d seq %d: %.1f samples/s" % (mode, a.train_batch, a.seq, sps), flush=True)
        torch.cuda.empty_cache()
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
