#!/usr/bin/env python3
"""Writes tests/golden/lime.json, the reference of tests/test_explain.c, with the `lime`
package (PyPI lime 0.2.0.1; never with qbert):
  - LimeBase.explain_instance_with_data (feature_selection 'auto' with 10 features, which
    takes the highest weights, and with 4 and 6, which select forward) on removal masks drawn as LimeTextExplainer draws them, with
    random class probabilities, the distances LimeTextExplainer computes (sklearn's cosine
    pairwise_distances x 100) and its kernel (width 25): intercept, (feature, weight) list,
    score, local prediction, for every class;
  - IndexedString(bow=True) of a few texts: the words and inverse_removing of a mask.
    pip install lime; python3 tests/golden/make_lime.py"""
import json
import os

import numpy as np
import scipy.sparse as sp
import sklearn.metrics
from lime.lime_base import LimeBase
from lime.lime_text import IndexedString

HERE = os.path.dirname(os.path.abspath(__file__))


def kernel(d, width=25):
    return np.sqrt(np.exp(-(d ** 2) / width ** 2))


def case(rs, d, n, k, num_features, selection):
    data = np.ones((n, d))
    for i, size in enumerate(rs.randint(1, d + 1, n - 1), start=1):
        data[i, rs.choice(range(d), size, replace=False)] = 0
    probs = rs.dirichlet(np.ones(k), n)
    dist = sklearn.metrics.pairwise_distances(sp.csr_matrix(data), sp.csr_matrix(data[0]), metric="cosine").ravel() * 100
    base = LimeBase(kernel, verbose=False, random_state=rs)
    fits = []
    for label in range(k):
        intercept, feats, score, local = base.explain_instance_with_data(data, probs, dist, label, num_features,
                                                                        feature_selection=selection)
        fits.append({"intercept": float(intercept), "features": [int(f) for f, _ in feats],
                     "weights": [float(w) for _, w in feats], "score": float(score), "local_pred": float(local[0])})
    return {"num_features": num_features, "selection": selection, "data": data.astype(int).tolist(),
            "probs": probs.tolist(), "distances": dist.tolist(), "fits": fits}


def main():
    rs = np.random.RandomState(11)
    cases = [case(rs, 12, 300, 3, 10, "auto"), case(rs, 5, 120, 3, 10, "auto"), case(rs, 20, 500, 2, 4, "auto"),
             case(rs, 9, 200, 3, 6, "auto")]
    texts = []
    for t in ("Makanan nya enak, enak sekali!", "  tempat-nya bagus;  harga_mahal 2018 ...", "tidak", "Kafé ini enak."):
        s = IndexedString(t, bow=True)
        remove = list(range(0, s.num_words(), 2))
        texts.append({"text": t, "words": list(s.inverse_vocab), "remove": remove, "removed": s.inverse_removing(remove)})
    with open(os.path.join(HERE, "lime.json"), "w") as f:
        json.dump({"cases": cases, "texts": texts}, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
