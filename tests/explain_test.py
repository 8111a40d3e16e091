#!/usr/bin/env python3
"""qbert explain end to end on the golden tiny model and its INT8 / INT4 files: every
method on texts of a file; occlusion's weights against qbert predict's probabilities of
the texts without each word (the words cut here with LIME's own rule, re \\W+); integrated
gradients' completeness on the FP32, the quantized (dequantized) and a QAT (fake-quantized
weights) model; --compare's
top-k overlap and Spearman correlation recomputed here from the two weight lists; the
HTML page and charts; bad input. Standard library only."""
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

from testutil import check, expect_error, main_in_tempdir, qbert, write

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "golden", "tiny")
LABELS = ["positive", "neutral", "negative"]
TEXTS = ["makanan nya enak sekali, tempat nya bagus", "pelayanan lambat dan mahal!", "biasa saja, tidak ada yang istimewa"]


def main():
    return main_in_tempdir("explain_test", run)


def lime_words(text):
    """IndexedString(bow=True, split_expression=r'\\W+'): segments, distinct words."""
    segments = [s for s in re.split(r"(\W+)|$", text) if s]
    words = []
    for s in segments:
        if not re.match(r"\W+", s) and s not in words:
            words.append(s)
    return segments, words


def without(text, word):
    segments, _ = lime_words(text)
    return "".join(s for s in segments if s != word)


def probabilities(model, texts):
    rc, so, err = qbert("predict", "--model", model, stdin="\n".join(texts).encode())
    check(rc == 0, "predict: exit %d %s" % (rc, err[-300:]))
    return [json.loads(line)["probabilities"] for line in so.splitlines()]


def explain(tmp, name, *args):
    out = os.path.join(tmp, name)
    rc, so, err = qbert("explain", *args, "--out", out)
    if not check(rc == 0, "explain %s: exit %d %s" % (name, rc, err[-800:])):
        return None, out
    check("[explain]" in err and "wrote" in so, "%s: progress and the files named" % name)
    with open(os.path.join(out, "explanations.json"), encoding="utf-8") as f:
        return json.load(f), out


def average_ranks(v):
    return [sum(x < y for x in v) + (sum(x == y for x in v) + 1) / 2 for y in v]


def spearman(a, b):
    ra, rb = average_ranks(a), average_ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else None


def top(weights, k):
    order = sorted(range(len(weights)), key=lambda i: -abs(weights[i]))  # stable: ties by position
    return set(order[:k])


def check_occlusion(res, model):
    for t in res["texts"]:
        e = t["explanation"]
        words = [w["word"] for w in e["words"]]
        check(words == lime_words(t["text"])[1], "occlusion words %r" % words)
        probs = probabilities(model, [t["text"]] + [without(t["text"], w) for w in words])
        check(e["predicted"] == max(probs[0], key=probs[0].get), "predicted %r: %r" % (e["predicted"], probs[0]))
        p0 = probs[0][e["target"]]
        for w, p in zip(e["words"], probs[1:]):
            check(abs(w["weight"] - (p0 - p[e["target"]])) < 1e-5,
                  "occlusion of %r: %r, predict gives %r" % (w["word"], w["weight"], p0 - p[e["target"]]))


def check_ig(res, what):
    for t in res["texts"]:
        e = t["explanation"]
        total = sum(w["weight"] for w in e["words"]) + e["attribution_outside_words"]
        delta = e["p_text"] - e["p_baseline"]
        check(e["completeness_error"] < 0.01 and abs(total - delta) <= 0.01 * abs(delta) + 1e-9,
              "%s IG completeness: sum %r, p(text) - p(baseline) %r" % (what, total, delta))
        # FP32: the prediction's probability; a quantized model's IG runs on its dequantized
        # weights with FP32 activations, close to the INT8-input prediction but not equal
        gap = abs(e["p_text"] - e["probabilities"][e["target"]])
        check(gap < (1e-4 if what == "fp32" else 0.05), "%s IG p(text) %r vs the prediction's %r" % (
            what, e["p_text"], e["probabilities"][e["target"]]))


def check_compare(res, k):
    for t in res["texts"]:
        a = [w["weight"] for w in t["explanation"]["words"]]
        b = [w["weight"] for w in t["compared"]["words"]]
        want_rho = spearman(a, b)
        check(t["top_k_overlap"] == len(top(a, k) & top(b, k)) / min(k, len(a)), "top-k overlap %r" % t["top_k_overlap"])
        check((want_rho is None and t["spearman"] is None) or abs(t["spearman"] - want_rho) < 1e-12,
              "spearman %r, Python %r" % (t["spearman"], want_rho))


def check_lime_classes(x, k):
    """A LIME surrogate per class, each keeping at most k words; the predicted class's
    is the explanation."""
    kept = {w["word"]: w["weight"] for w in x["words"] if w["weight"] != 0}
    classes = x["classes"]
    mine = classes.get(x["predicted"], {"words": [], "score": -1})
    check(sorted(classes) == sorted(LABELS) and all(len(c["words"]) <= k for c in classes.values()),
          "LIME: a surrogate of at most %d words per class: %r" % (k, classes))
    check({w["word"]: w["weight"] for w in mine["words"]} == kept and len(kept) <= k and 0 <= mine["score"] <= 1,
          "the predicted class's surrogate is the explanation: %r, %r" % (mine, kept))
    weights = [abs(w["weight"]) for w in mine["words"]]
    check(weights == sorted(weights, reverse=True), "a class's words by |weight|: %r" % weights)


def check_pages(out, n):
    with open(os.path.join(out, "explanations.html"), encoding="utf-8") as f:
        html = f.read()
    check(html.count("<h2>Text") == n and html.count("<svg") >= n and "rgba(" in html, "explanations.html: %d texts" % n)
    for i in range(1, n + 1):
        try:
            ET.parse(os.path.join(out, "text-%d.svg" % i))
        except (ET.ParseError, OSError) as e:
            check(False, "text-%d.svg: %s" % (i, e))


def qat_checkpoint(tmp, data):
    """A QAT INT8 model (fake quantization) trained a few steps from the tiny model."""
    cfg = write(os.path.join(tmp, "qat.ini"), "[model]\npath = %s\n[data]\ntrain = %s\nvalid = %s\n"
                "labels = positive, neutral, negative\nmax_length = 32\n[train]\nlearning_rate = 1e-3\nbatch_size = 2\n"
                "max_steps = 3\n[qat]\nenabled = true\n[output]\ndir = %s\n" % (TINY, data, data, os.path.join(tmp, "qat")))
    rc, _, err = qbert("train", cfg)
    check(rc == 0, "QAT train: exit %d %s" % (rc, err[-500:]))
    return os.path.join(tmp, "qat", "model")


def run(tmp):
    data = write(os.path.join(tmp, "texts.tsv"), "".join("%s\tpositive\n" % t for t in TEXTS))
    int8, int4 = os.path.join(tmp, "int8"), os.path.join(tmp, "int4")
    for scheme, out, extra in (("int8-dynamic", int8, []), ("int4", int4, ["--group-size", "16"])):
        rc, _, err = qbert("quantize", "--model", TINY, "--scheme", scheme, "--out", out, *extra)
        check(rc == 0, "quantize %s: %s" % (scheme, err[-300:]))
    res, out = explain(tmp, "occ", "--model", TINY, "--data", data, "--method", "occlusion")
    if res:
        check(len(res["texts"]) == 3 and res["method"] == "occlusion", "three texts")
        check_occlusion(res, TINY)
        check_pages(out, 3)
    res, _ = explain(tmp, "occ8", "--model", int8, "--data", data, "--method", "occlusion", "--limit", "2")
    if res:
        check(len(res["texts"]) == 2, "--limit 2")
        check_occlusion(res, int8)
    qat = qat_checkpoint(tmp, data)
    for model, what in ((TINY, "fp32"), (int8, "int8"), (int4, "int4"), (qat, "qat")):
        res, _ = explain(tmp, "ig-" + what, "--model", model, "--data", data, "--method", "ig", "--steps", "48")
        if res:
            check_ig(res, what)
    res, out = explain(tmp, "lime", "--model", TINY, "--compare", int8, "--data", data, "--samples", "300",
                       "--top", "4")
    if res:
        check(res["compare"] == int8 and res["options"]["samples"] == 300, "options %r" % res["options"])
        check_compare(res, 4)
        s = res["summary"]
        check(abs(s["top_k_overlap_mean"] - sum(t["top_k_overlap"] for t in res["texts"]) / 3) < 1e-12, "summary %r" % s)
        for t in res["texts"]:
            check_lime_classes(t["explanation"], 4)
        check_pages(out, 3)
        with open(os.path.join(out, "explanations.html"), encoding="utf-8") as f:
            check(f.read().count('<table class="classes">') == 6, "a table of every class's words per text and model")
    neu, _ = explain(tmp, "occ-neutral", "--model", TINY, "--compare", int8, "--data", data, "--method", "occlusion",
                     "--class", "neutral")
    if neu:
        check(all(t["explanation"]["target"] == t["compared"]["target"] == "neutral" for t in neu["texts"]),
              "--class neutral: both models explain neutral")
        check_occlusion(neu, TINY)
    cmp4, _ = explain(tmp, "lime-compare", "--model", int4, "--compare", TINY, "--data", data, "--samples", "100")
    if cmp4:
        check(all(t["compared"]["target"] == t["explanation"]["target"] == t["explanation"]["predicted"]
                  for t in cmp4["texts"]), "--compare explains the first model's predicted class with both")
    res2, _ = explain(tmp, "lime-again", "--model", TINY, "--text", TEXTS[0], "--samples", "300", "--top", "4")
    if res and res2:
        check(res2["texts"][0]["explanation"]["words"] == res["texts"][0]["explanation"]["words"],
              "LIME with the same seed: the same weights (--text and --data alike)")
    bad(tmp, data)


def bad(tmp, data):
    out = ["--out", os.path.join(tmp, "bad")]
    expect_error(["explain", "--model", TINY] + out, 2, ["one of --text or --data"])
    expect_error(["explain", "--model", TINY, "--text", "a", "--data", data] + out, 2, ["one of --text or --data"])
    expect_error(["explain", "--model", TINY, "--text", "a", "--method", "shap"] + out, 2, ["--method must be lime"])
    expect_error(["explain", "--model", TINY, "--text", "a", "--class", "happy"] + out, 1,
                 ['--class "happy": expected one of the model\'s labels (positive, neutral, negative) or an id below 3'])
    expect_error(["explain", "--model", TINY, "--text", "a", "--samples", "1"] + out, 2, ["--samples"])
    expect_error(["explain", "--model", TINY, "--text", "?!"] + out, 1, ["has no words"])
    expect_error(["explain", "--model", os.path.join(tmp, "none"), "--text", "a"] + out, 1, ["none"])


if __name__ == "__main__":
    sys.exit(main())
