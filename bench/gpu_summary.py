#!/usr/bin/env python3
"""The goals table of bench/gpu.sh (issue 18's goals, and issue 19's training ones) from
the JSON files of one run: each measure, its goal, the measured value and whether it
is met. A file or row that is missing reads 'not measured'.

usage: gpu_summary.py OUTDIR   (the directory bench/gpu.sh wrote)
"""
import json
import os
import sys


def load(out, name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def latency_ms(lat, name, batch):
    run = (lat or {}).get(name)
    for row in (run or {}).get("results", []):
        if row.get("batch") == batch:
            return row["median_ms"]
    return None


def kernel_rate(kernels, name, shape=None):
    for row in (kernels or {}).get("kernels", []):
        if row["kernel"] == name and (shape is None or row["shape"] == shape):
            return row.get("tflops")
    return None


def torch_ms(peer, precision, batch):
    for row in (peer or {}).get("inference", []):
        if row["precision"] == precision and row["batch"] == batch:
            return row["median_ms"]
    return None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, unit):
    return "not measured" if v is None else f"{v:.3g} {unit}".strip()


def main():
    out = sys.argv[1]
    lat, kernels = load(out, "latency.json"), load(out, "kernels.json")
    train, peer = load(out, "train.json") or {}, load(out, "torch.json")
    fp16_128, int8_128 = latency_ms(lat, "fp16", 128), latency_ms(lat, "int8", 128)
    rows = [  # measure, goal text, value, unit, met(value)
        ("FP16 inference, batch 128", "<= 6.0 ms", fp16_128, "ms", lambda v: v <= 6.0),
        ("  vs PyTorch FP16 eager, batch 128", ">= 1.27x", ratio(torch_ms(peer, "fp16", 128), fp16_128), "x",
         lambda v: v >= 1.27),
        ("INT8 inference, batch 128", "<= 4.0 ms", int8_128, "ms", lambda v: v <= 4.0),
        ("  INT8 speed-up over qbert FP16, batch 128", ">= 1.5x", ratio(fp16_128, int8_128), "x",
         lambda v: v >= 1.5),
        ("INT8 inference, batch 1", "<= 0.35 ms", latency_ms(lat, "int8", 1), "ms", lambda v: v <= 0.35),
        ("FP16 inference, batch 1", "<= 0.45 ms", latency_ms(lat, "fp16", 1), "ms", lambda v: v <= 0.45),
        ("INT4 / INT8, batch 1", "<= 1.1x", ratio(latency_ms(lat, "int4", 1), latency_ms(lat, "int8", 1)), "x",
         lambda v: v <= 1.1),
        ("INT4 / INT8, batch 128", "<= 1.3x", ratio(latency_ms(lat, "int4", 128), int8_128), "x",
         lambda v: v <= 1.3),
        ("attention bf16 forward, B32 T128 H12 D64", ">= 150 TFLOP/s",
         kernel_rate(kernels, "attention bf16 (inference)"), "TFLOP/s", lambda v: v >= 150),
        ("attention bf16 backward, B32 T128 H12 D64", ">= 100 TFLOP/s",
         kernel_rate(kernels, "attention_backward bf16"), "TFLOP/s", lambda v: v >= 100),
        ("linear bf16, 4096x3072x768", ">= 550 TFLOP/s", kernel_rate(kernels, "linear bf16", "4096x3072x768"),
         "TFLOP/s", lambda v: v >= 550),
        ("bf16 training, batch 32 (issue 19)", ">= 1100 samples/s",
         (train.get("bf16-32") or {}).get("samples_per_s"), "samples/s", lambda v: v >= 1100),
        ("  the same step as one CUDA graph", ">= 1100 samples/s",
         (train.get("bf16-32-g") or {}).get("samples_per_s"), "samples/s", lambda v: v >= 1100),
        ("bf16 training, batch 256 (graph): MFU (issue 19)", ">= 30%",
         100 * (train.get("bf16-256-g") or {}).get("mfu", float("nan")) if train.get("bf16-256-g") else None, "%",
         lambda v: v >= 30),
        ("host waits per training step, most of any run (QAT too)", "<= 1",
         max((r.get("host_waits_per_step", 0) for r in train.values()), default=None) if train else None, "",
         lambda v: v <= 1),
    ]
    print(f"# bench/gpu.sh: {(kernels or {}).get('device', 'device not measured')}\n")
    print("| measure | goal | measured | met |")
    print("|---|---|---|---|")
    for name, goal, value, unit, met in rows:
        verdict = "" if value is None else ("yes" if met(value) else "NO")
        print(f"| {name} | {goal} | {fmt(value, unit)} | {verdict} |")
    other = [(n, latency_ms(lat, n, b), b) for n in ("fp32", "bf16", "int4-dp4a") for b in (1, 128)]
    print("\nAlso: " + ", ".join(f"{n} batch {b} {fmt(v, 'ms')}" for n, v, b in other) +
          f"; PyTorch FP16 batch 1 {fmt(torch_ms(peer, 'fp16', 1), 'ms')}.")
    try:
        with open(os.path.join(out, "tests.log")) as f:
            results = [line.split() for line in f if " rc=" in line]
        failed = [" ".join(r[:-1]) for r in results if r[-1] not in ("rc=0", "rc=77")]  # 77: skipped
        print(f"Tests: {len(results) - len(failed)} of {len(results)} runs passed" +
              (": failed " + ", ".join(failed) if failed else "") + " (tests.log).")
    except OSError:
        print("Tests: not run.")


if __name__ == "__main__":
    main()
