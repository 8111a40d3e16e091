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
from scipy import stats
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
    quantiles = [{"q": q, "df": df, "t": float(stats.t.ppf(q, df))}
                 for df in (1, 2, 3, 4, 5, 9, 29, 100, 1000) for q in (0.975, 0.5, 0.6, 0.95, 0.995, 0.9995, 0.025)]
    runs = []
    for v in ([0.744, 0.752, 0.739], [0.5, 0.7], [0.81, 0.80, 0.83, 0.79, 0.8], [-0.002, 0.004, 0.001]):
        v = np.array(v)
        lo, hi = stats.t.interval(0.95, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
        runs.append({"values": v.tolist(), "mean": float(v.mean()), "std": float(v.std(ddof=1)),
                     "interval": [float(lo), float(hi)]})
    out = {
        "mcnemar": cases,
        "t_quantiles": quantiles,
        "seed_intervals": runs,
        "bootstrap": {
            "num_labels": k, "gold": gold.tolist(), "base": base.tolist(), "variant": variant.tolist(),
            "indices": idx.tolist(),
            "b": int(np.sum((base == gold) & (variant != gold))), "c": int(np.sum((base != gold) & (variant == gold))),
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
