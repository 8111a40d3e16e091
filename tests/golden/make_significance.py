#!/usr/bin/env python3
"""Writes tests/golden/significance.json, the reference of tests/test_metrics.c's
significance checks, with the reference packages (never with qbert):
  - McNemar's exact test: statsmodels.stats.contingency_tables.mcnemar(table, exact=True)
    for discordant counts (b, c) from 0 to large;
  - a paired bootstrap with numpy: 3-class gold / baseline / variant labels of 40 texts,
    200 resamples of 40 indices (numpy's Generator, seed 7, committed in the file so the C
    side uses the same draws), accuracy and weighted F1 (sklearn's definition, written out
    with numpy) differences, and np.percentile(..., [2.5, 97.5]) of each.
    pip install statsmodels numpy; python3 tests/golden/make_significance.py"""
import json
import os

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar

HERE = os.path.dirname(os.path.abspath(__file__))


def weighted_f1(gold, pred, k):
    f1s, support = [], []
    for c in range(k):
        tp = np.sum((gold == c) & (pred == c))
        fp = np.sum((gold != c) & (pred == c))
        fn = np.sum((gold == c) & (pred != c))
        den = 2 * tp + fp + fn
        f1s.append(2 * tp / den if den else 0.0)
        support.append(tp + fn)
    return float(np.dot(f1s, support) / np.sum(support))


def main():
    cases = []
    for b, c in ((0, 0), (0, 1), (1, 0), (3, 10), (10, 3), (5, 5), (37, 52), (1, 20), (100, 130), (400, 350)):
        r = mcnemar([[50, b], [c, 40]], exact=True)
        cases.append({"b": b, "c": c, "p": float(r.pvalue)})
    rng = np.random.default_rng(7)
    n, k, resamples = 40, 3, 200
    gold = rng.integers(0, k, n)
    base = np.where(rng.random(n) < 0.8, gold, rng.integers(0, k, n))
    variant = np.where(rng.random(n) < 0.75, gold, rng.integers(0, k, n))
    idx = rng.integers(0, n, (resamples, n))
    acc = np.array([np.mean(variant[i] == gold[i]) - np.mean(base[i] == gold[i]) for i in idx])
    f1 = np.array([weighted_f1(gold[i], variant[i], k) - weighted_f1(gold[i], base[i], k) for i in idx])
    out = {
        "mcnemar": cases,
        "bootstrap": {
            "num_labels": k, "gold": gold.tolist(), "base": base.tolist(), "variant": variant.tolist(),
            "indices": idx.tolist(),
            "acc_diff": float(np.mean(variant == gold) - np.mean(base == gold)),
            "f1_diff": weighted_f1(gold, variant, k) - weighted_f1(gold, base, k),
            "acc_interval": np.percentile(acc, [2.5, 97.5]).tolist(),
            "f1_interval": np.percentile(f1, [2.5, 97.5]).tolist(),
        },
    }
    with open(os.path.join(HERE, "significance.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
