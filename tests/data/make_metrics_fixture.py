#!/usr/bin/env python3
"""Writes tests/data/metrics_sklearn.json: random classification cases scored by
scikit-learn and latency samples summarised by numpy, the independent reference
for tests/test_metrics.c.

    python3 tests/data/make_metrics_fixture.py     (needs numpy and scikit-learn)

Metrics use labels=range(K) and sklearn's default zero_division, as qbert does.
The cases are chosen to cover a class with no predictions, a class with no gold
samples, a class absent from both, and binary labels.
"""
import json
import os
import warnings

import numpy as np
import sklearn
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (accuracy_score, confusion_matrix,
                             precision_recall_fscore_support)


def metrics_case(rng, name, k, n, gold_labels, pred_labels, p_correct):
    gold = rng.choice(gold_labels, size=n)
    # a prediction is right with probability p_correct, otherwise a random allowed label
    pred = np.where(rng.random(n) < p_correct, gold, rng.choice(pred_labels, size=n))
    pred = np.array([p if p in pred_labels else rng.choice(pred_labels) for p in pred])
    conf = np.round(rng.uniform(0.3, 1.0, size=n), 4)
    labels = list(range(k))
    per = precision_recall_fscore_support(gold, pred, labels=labels, average=None)
    mac = precision_recall_fscore_support(gold, pred, labels=labels, average="macro")
    wei = precision_recall_fscore_support(gold, pred, labels=labels, average="weighted")
    return {
        "name": name,
        "num_labels": k,
        "gold": gold.tolist(),
        "pred": pred.tolist(),
        "confidence": conf.tolist(),
        "accuracy": accuracy_score(gold, pred),
        "precision": per[0].tolist(),
        "recall": per[1].tolist(),
        "f1": per[2].tolist(),
        "support": per[3].tolist(),
        "precision_macro": mac[0], "recall_macro": mac[1], "f1_macro": mac[2],
        "precision_weighted": wei[0], "recall_weighted": wei[1], "f1_weighted": wei[2],
        # the C side reads the confidences as float32, so the reference does too
        "avg_confidence": float(conf.astype(np.float32).astype(np.float64).mean()),
        "confusion": confusion_matrix(gold, pred, labels=labels).tolist(),
    }


def latency_case(samples):
    s = np.asarray(samples, dtype=np.float64)
    return {
        "samples": s.tolist(),
        "mean": float(s.mean()),
        "median": float(np.percentile(s, 50)),
        "std": float(s.std(ddof=1)) if len(s) > 1 else 0.0,
        "p95": float(np.percentile(s, 95)),
        "min": float(s.min()),
        "max": float(s.max()),
    }


def main():
    warnings.simplefilter("ignore", UndefinedMetricWarning)
    rng = np.random.default_rng(20240611)
    cases = [
        metrics_case(rng, "three classes", 3, 30, [0, 1, 2], [0, 1, 2], 0.6),
        # class 2 is never predicted, class 3 never gold, class 4 absent from both
        metrics_case(rng, "missing classes", 5, 25, [0, 1, 2], [0, 1, 3], 0.5),
        metrics_case(rng, "binary", 2, 17, [0, 1], [0, 1], 0.7),
        metrics_case(rng, "four classes, noisy", 4, 40, [0, 1, 2, 3], [0, 1, 2, 3], 0.3),
    ]
    latency = [
        latency_case(np.round(rng.lognormal(2.0, 0.4, size=50), 3)),
        latency_case(np.round(rng.uniform(5.0, 6.0, size=7), 3)),
        latency_case([3.25, 1.5]),
    ]
    out = {
        "generator": "tests/data/make_metrics_fixture.py",
        "sklearn_version": sklearn.__version__,
        "numpy_version": np.__version__,
        "metrics": cases,
        "latency": latency,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "metrics_sklearn.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
