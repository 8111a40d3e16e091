#!/usr/bin/env python3
"""qbert eda against Python's own counting (collections, statistics, re, and HF
`tokenizers` for the token lengths): on SmSA (../../shared/data, when present; required
under CI=true) and on a small file made here with empty texts, missing labels,
duplicates, conflicting labels and texts shared between splits. Every count is exact;
statistics (pandas' describe: sample std, numpy's linear percentiles) and the log-odds
z-scores (Monroe et al. 2008, written out here) agree to 1e-9. Then the outputs
(report.md, eda.html with the charts inline, the SVGs) and bad input."""
import collections
import json
import math
import os
import re
import statistics
import sys
import xml.etree.ElementTree as ET

from testutil import check, expect_error, main_in_tempdir, qbert, write

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))
TINY = os.path.join(HERE, "golden", "tiny")
TOP = 15


def main():
    return main_in_tempdir("eda_test", run)


def read_tsv(path):
    """(text, label) rows as qbert's loader keeps them: the label after the last tab,
    both trimmed of ASCII whitespace, the text lowercased; rows with an empty text or
    label are dropped and counted."""
    rows, empty, unlabelled = [], 0, 0
    with open(path, encoding="utf-8", newline="") as f:
        for line in f.read().replace("\r\n", "\n").split("\n"):
            if not line.strip():
                continue
            text, label = line.rsplit("\t", 1)
            text, label = text.strip(" \t\r\n\v\f"), label.strip(" \t\r\n\v\f")
            if not text:
                empty += 1
            elif not label:
                unlabelled += 1
            else:
                rows.append((text.lower(), label))
    return rows, empty, unlabelled


def percentile(sorted_v, q):
    pos = (len(sorted_v) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_v) - 1)
    return sorted_v[lo] + (sorted_v[hi] - sorted_v[lo]) * (pos - lo)


def describe(v):
    s = sorted(v)
    out = {"n": len(v), "mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else None,
           "min": s[0], "max": s[-1]}
    for q, k in ((25, "p25"), (50, "median"), (75, "p75"), (90, "p90"), (99, "p99")):
        out[k] = percentile(s, q)
    return out


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def check_stats(what, got, want):
    check(all(close(got[k], want[k]) for k in want), "%s: %r, Python says %r" % (what, got, want))


def ranked(counter):
    return [[w, c] for w, c in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0].encode()))][:TOP]


def word_lists(rows, stop):
    """Counters per label and overall: unigrams, unigrams without stopwords, bigrams,
    bigrams of the words left once stopwords are out."""
    lists = {k: collections.defaultdict(collections.Counter) for k in
             ("unigrams", "unigrams_no_stopwords", "bigrams", "bigrams_no_stopwords")}
    for text, label in rows:
        words = re.findall(r"\w+", text)
        kept = [w for w in words if w not in stop]
        grams = {"unigrams": words, "unigrams_no_stopwords": kept,
                 "bigrams": [a + " " + b for a, b in zip(words, words[1:])],
                 "bigrams_no_stopwords": [a + " " + b for a, b in zip(kept, kept[1:])]}
        for k, g in grams.items():
            lists[k][label].update(g)
            lists[k]["(all)"].update(g)
    return lists


def log_odds(uni, labels):
    """Monroe et al. (2008) 3.5 with the prior a_w = the word's count over all labels."""
    total = {w: sum(uni[l][w] for l in labels) for l in labels for w in uni[l]}
    n = {l: sum(uni[l].values()) for l in labels}
    a0 = sum(n.values())
    out = {}
    for l in labels:
        z = []
        for w, yw in total.items():
            yk, yr, nr = uni[l][w], yw - uni[l][w], a0 - n[l]
            d = math.log((yk + yw) / (n[l] + a0 - yk - yw)) - math.log((yr + yw) / (nr + a0 - yr - yw))
            z.append((d / math.sqrt(1 / (yk + yw) + 1 / (yr + yw)), w, yk))
        z.sort(key=lambda t: (-t[0], t[1].encode()))
        out[l] = z[:TOP]
    return out


def hf_token_lengths(texts):
    """[CLS] + pieces + [SEP] and [UNK] counts by HF tokenizers, or None without it."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    tok = Tokenizer.from_file(os.path.join(DATA, "indobert-base-p2", "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    encs = tok.encode_batch(texts)
    unk = tok.token_to_id("[UNK]")
    return [len(e.ids) for e in encs], sum(sum(1 for i in e.ids if i == unk) for e in encs)


def check_split(got, name, rows, empty, unlabelled, labels, tokens):
    texts = [t for t, _ in rows]
    check(got["name"] == name and got["rows"] == len(rows) and got["skipped_empty_text"] == empty and
          got["skipped_bad_label"] == unlabelled, "%s: rows %r" % (name, {k: got[k] for k in ("rows", "skipped_empty_text")}))
    first = {}
    conflicts = set()
    for t, l in rows:
        if first.setdefault(t, l) != l:
            conflicts.add(t)
    check(got["duplicate_texts"] == len(texts) - len(set(texts)) and got["texts_with_conflicting_labels"] == len(conflicts),
          "%s: duplicates %d / conflicts %d, Python %d / %d" % (name, got["duplicate_texts"],
                                                               got["texts_with_conflicting_labels"],
                                                               len(texts) - len(set(texts)), len(conflicts)))
    counts = collections.Counter(l for _, l in rows)
    check(got["label_counts"] == {l: counts[l] for l in labels}, "%s: label counts %r vs %r" % (name, got["label_counts"], counts))
    lengths = {"chars": [len(t) for t in texts], "words": [len(t.split()) for t in texts]}
    if tokens:
        lengths["tokens"] = tokens
    for kind, v in lengths.items():
        check_stats("%s %s" % (name, kind), got["length"][kind]["all"], describe(v))
        for l in labels:
            lv = [x for x, (_, lab) in zip(v, rows) if lab == l]
            if lv:
                check_stats("%s %s %s" % (name, kind, l), got["length"][kind]["per_label"][l], describe(lv))


def check_words(res, rows, labels, stop):
    lists = word_lists(rows, stop)
    for k, per in lists.items():
        got = res["words"][k]
        check(got["all"] == ranked(per["(all)"]), "%s overall: %r, Python %r" % (k, got["all"][:5], ranked(per["(all)"])[:5]))
        for l in labels:
            check(got["per_label"][l] == ranked(per[l]), "%s %s: %r vs %r" % (k, l, got["per_label"][l][:5], ranked(per[l])[:5]))
    want = log_odds(lists["unigrams"], labels)
    for l in labels:
        got = res["distinctive_words"][l]
        ok = len(got) == len(want[l]) and all(g["word"] == w and g["count"] == c and close(g["z"], z)
                                             for g, (z, w, c) in zip(got, want[l]))
        check(ok, "distinctive words of %s: %r, Python %r" % (l, got[:3], want[l][:3]))


def check_leaks(res, splits):
    pairs = [(a, b) for a in range(len(splits)) for b in range(a + 1, len(splits))]
    check(len(res["shared_texts"]) == len(pairs), "one leakage entry per pair")
    for got, (a, b) in zip(res["shared_texts"], pairs):
        ta, tb = {t for t, _ in splits[a][1]}, [t for t, _ in splits[b][1]]
        check(got["a"] == splits[a][0] and got["b"] == splits[b][0] and
              got["distinct_texts_in_both"] == len(ta & set(tb)) and got["rows_of_b_in_a"] == sum(t in ta for t in tb),
              "shared %s/%s: %r" % (splits[a][0], splits[b][0], got))


def run_eda(tmp, out, files, extra=()):
    rc, so, err = qbert("eda", "--data", *files, "--out", out, "--top", str(TOP), *extra)
    if not check(rc == 0, "eda: exit %d %s" % (rc, err[-800:])):
        return None
    with open(os.path.join(out, "eda.json"), encoding="utf-8") as f:
        return json.load(f)


def stopword_file(tmp):
    """Stopwords for the test: a few of SmSA's most frequent function words."""
    return write(os.path.join(tmp, "stop.txt"), "# test list\nyang\ndi\ndan\nnya\nini\nitu\nke\ndengan\n")


def smsa(tmp, stop_path, stop):
    files = [os.path.join(DATA, "smsa", s + ".tsv") for s in ("train", "valid", "test")]
    if not os.path.exists(files[0]):
        check(os.environ.get("CI") != "true", "CI=true but %s is missing" % files[0])
        print("skipped: SmSA (%s not found)" % files[0])
        return
    out = os.path.join(tmp, "smsa")
    res = run_eda(tmp, out, files, ("--model", os.path.join(DATA, "indobert-base-p2"), "--stopwords", stop_path))
    if not res:
        return
    labels = res["labels"]
    check(labels == ["positive", "neutral", "negative"], "labels in order of first appearance: %r" % labels)
    splits = []
    for name, path, got in zip(("train", "valid", "test"), files, res["splits"]):
        rows, empty, unlabelled = read_tsv(path)
        hf = hf_token_lengths([t for t, _ in rows])
        if hf is None:
            check(os.environ.get("CI") != "true", "CI=true but the tokenizers package is missing")
        else:
            check(got["tokens"]["unk_pieces"] == hf[1] and got["tokens"]["longer_than_max_length"] ==
                  sum(n > 128 for n in hf[0]), "%s: [UNK] / truncated %r" % (name, got["tokens"]))
        check_split(got, name, rows, empty, unlabelled, labels, hf and hf[0])
        splits.append((name, rows))
    check_words(res, [r for _, rows in splits for r in rows], labels, stop)
    check_leaks(res, splits)
    check_outputs(out, res)
    print("eda on SmSA: %d / %d / %d rows checked" % tuple(len(r) for _, r in splits))


def check_outputs(out, res):
    """report.md has every section; eda.html holds the charts inline and refers to no
    other file; every SVG parses."""
    with open(os.path.join(out, "report.md"), encoding="utf-8") as f:
        md = f.read()
    for h in ("## Splits and labels", "## Text length in words", "## Top bigrams without stopwords per label",
              "## Words that distinguish each label", "## Texts in more than one split", "![labels.svg](labels.svg)"):
        check(h in md, "report.md has %r" % h)
    with open(os.path.join(out, "eda.html"), encoding="utf-8") as f:
        html = f.read()
    svgs = sorted(f for f in os.listdir(out) if f.endswith(".svg"))
    check(html.count("<svg") == len(svgs) and "src=" not in html and "href=" not in html,
          "eda.html: %d inline charts for %d files, no outside references" % (html.count("<svg"), len(svgs)))
    for s in svgs:
        try:
            ET.parse(os.path.join(out, s))
        except ET.ParseError as e:
            check(False, "%s: %s" % (s, e))
    kinds = 3 if "tokens" in res["splits"][0]["length"] else 2
    check(len(svgs) == 1 + 2 * kinds + 2 * len(res["labels"]), "charts: %r" % svgs)


def small(tmp, stop_path, stop):
    """Edge cases: an empty text, a missing label, duplicates with and without a
    conflict, a text in both splits, CSV input, integer-free label names."""
    a = write(os.path.join(tmp, "a.tsv"), "Bagus sekali\tpos\n\tpos\nJelek\tneg\njelek\tneg\nJelek\tpos\nbiasa saja\t\n"
              "tempat yang dan bagus, bagus!\tpos\nharga_mahal 2018\tneu\n")
    b = write(os.path.join(tmp, "b.csv"), "label,text\nneg,\"jelek, sekali\"\npos,bagus sekali\nneu,biasa\n")
    out = os.path.join(tmp, "small")
    res = run_eda(tmp, out, [a, b], ("--names", "first,second", "--stopwords", stop_path, "--model", TINY))
    if not res:
        return
    labels = res["labels"]
    check(labels == ["pos", "neg", "neu"], "labels %r" % labels)
    rows_a, empty_a, unl_a = read_tsv(a)
    check(empty_a == 1 and unl_a == 1, "the fixture has one empty text and one missing label")
    rows_b = [("jelek, sekali", "neg"), ("bagus sekali", "pos"), ("biasa", "neu")]
    check_split(res["splits"][0], "first", rows_a, empty_a, unl_a, labels, None)
    check_split(res["splits"][1], "second", rows_b, 0, 0, labels, None)
    check(res["splits"][0]["duplicate_texts"] == 2 and res["splits"][0]["texts_with_conflicting_labels"] == 1,
          "duplicates: 'jelek' three times, once as pos")
    check_words(res, rows_a + rows_b, labels, stop)
    check_leaks(res, [("first", rows_a), ("second", rows_b)])
    check(res["shared_texts"][0]["distinct_texts_in_both"] == 1, "'bagus sekali' is in both")
    check("tokens" in res["splits"][0], "token statistics with --model")
    check_outputs(out, res)


def absent_label(tmp):
    """A label that the data lacks (--labels names it): zero counts, no statistics, and
    its histogram panel says n = 0 without a median (it read before its array once)."""
    a = write(os.path.join(tmp, "two.tsv"), "bagus sekali\tpos\njelek\tneg\nsangat bagus\tpos\n")
    out = os.path.join(tmp, "absent")
    res = run_eda(tmp, out, [a], ("--labels", "pos,neu,neg"))
    if not res:
        return
    split = res["splits"][0]
    chars = split["length"]["chars"]["per_label"]["neu"]
    check(split["label_counts"]["neu"] == 0 and chars["n"] == 0 and chars["median"] is None,
          "neu: no rows, no median %r" % chars)
    with open(os.path.join(out, "length_chars.svg"), encoding="utf-8") as f:
        panels = re.findall(r">n = (\d+)(?:, median ([^<]+))?<", f.read())
    lens = {"pos": [len("bagus sekali"), len("sangat bagus")], "neu": [], "neg": [len("jelek")]}
    want = [(3, "%g" % statistics.median(sum(lens.values(), [])))]
    want += [(len(v), "%g" % statistics.median(v) if v else "") for v in lens.values()]
    check([(int(n), m) for n, m in panels] == want, "histogram panels %r, expected %r" % (panels, want))
    check_outputs(out, res)


def bad_input(tmp):
    a = write(os.path.join(tmp, "ok.tsv"), "bagus\tpos\n")
    expect_error(["eda", "--out", os.path.join(tmp, "x")], 2, ["--data and --out are required"])
    expect_error(["eda", "--data", a, a, "--names", "one", "--out", os.path.join(tmp, "x")], 2,
                 ["--names \"one\": expected 2 names"])
    expect_error(["eda", "--data", a, "--out", os.path.join(tmp, "x"), "--labels", "neg"], 1,
                 ["ok.tsv: no rows", "label 'pos' is not one of neg"])
    expect_error(["eda", "--data", os.path.join(tmp, "none.tsv"), "--out", os.path.join(tmp, "x")], 1, ["none.tsv"])
    expect_error(["eda", "--data", a, "--out", os.path.join(tmp, "x"), "--model", os.path.join(tmp, "nomodel")], 1,
                 ["--model", "nomodel"])
    expect_error(["eda", "--data", a, "--out", os.path.join(tmp, "x"), "--label-map", "0=pos"], 1,
                 ["--label-map needs the label names"])
    expect_error(["eda", "--data", a, "--out", os.path.join(tmp, "x"), "--top", "0"], 2, ["--top"])


def run(tmp):
    stop_path = stopword_file(tmp)
    with open(stop_path, encoding="utf-8") as f:
        stop = {l.strip() for l in f if l.strip() and not l.startswith("#")}
    small(tmp, stop_path, stop)
    absent_label(tmp)
    smsa(tmp, stop_path, stop)
    bad_input(tmp)


if __name__ == "__main__":
    sys.exit(main())
