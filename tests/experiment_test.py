#!/usr/bin/env python3
"""End-to-end test of qbert experiment: an experiment over the golden tiny model (FP32,
FP16, INT8 dynamic and static, INT4 per group and per tensor, and a QAT INT8 checkpoint
trained from it here) writes results.json / .md / .svg whose numbers are the ones other
commands give for the same model directories: qbert eval's metrics, agreement counted
from qbert predict's labels, the sizes of the files on disk, differences taken against
the first row. Then the bad-input cases of the INI file, each a non-zero exit naming
the file, the line or section, and what was expected. qbert bench builds the same table
from its options: its rows are checked the same way, on the CPU and, where a GPU is
present, on the GPU against qbert eval --device cuda (without one, a clear error before
any work). Significance: every row's discordant counts and McNemar p against the
baseline are those counted from qbert predict's labels (p from the binomial written out
here); with [experiment] seeds, each seed's models are run and the summary over seeds is
the mean / std / t-interval of the per-seed scores. Standard library only."""
import json
import math
import statistics
import os
import struct
import sys
import xml.etree.ElementTree as ET

from testutil import check, expect_error, main_in_tempdir, qbert, write

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "golden", "tiny")
LABELS = ["positive", "neutral", "negative"]


def main():
    return main_in_tempdir("experiment_test", run)


def labelled_texts(tmp):
    """24 labelled texts made from the golden tiny texts' words (a test set that is
    not all one length)."""
    with open(os.path.join(HERE, "golden", "tiny_texts.txt"), encoding="utf-8") as f:
        words = f.read().split()
    rows = ["%s\t%s\n" % (" ".join(words[i:i + 3 + i % 7]), LABELS[i % 3]) for i in range(24)]
    return write(os.path.join(tmp, "test.tsv"), "".join(rows))


def qat_checkpoint(tmp, data):
    """A QAT INT8 model fine-tuned a few steps from the tiny FP32 model."""
    cfg = write(os.path.join(tmp, "qat.ini"), "[model]\npath = %s\n[data]\ntrain = %s\nvalid = %s\n"
                "labels = positive, neutral, negative\nmax_length = 32\n[train]\nlearning_rate = 1e-3\n"
                "batch_size = 8\nmax_steps = 4\n[qat]\nenabled = true\n[output]\ndir = %s\n"
                % (TINY, data, data, os.path.join(tmp, "qat")))
    rc, _, err = qbert("train", cfg)
    check(rc == 0, "QAT train: exit %d %s" % (rc, err[-500:]))
    return os.path.join(tmp, "qat", "model")


def experiment_ini(tmp, data, qat, out, variants=None, extra=""):
    if variants is None:
        variants = ("[variant fp32]\nscheme = fp32\n\n[variant fp16]\nscheme = fp16\n\n"
                    "[variant int8-dynamic]\nscheme = int8-dynamic\n\n"
                    "[variant int8-static]\nscheme = int8-static\ncalib-method = minmax\n\n"
                    "[variant int4-g16]\nscheme = int4\ngroup-size = 16\n\n"
                    "[variant int4-tensor]\nscheme = int4-tensor\ngroup-size = 16\n\n"
                    "[variant qat-int8]\nscheme = qat\nmodel = %s\n" % qat)
    return ("[experiment]\nmodel = %s\ntest = %s\nout = %s\nmax_length = 32\nbatch = 8\nthreads = 1\n\n"
            "[calibration]\ndata = %s\nsamples = 12\n\n[latency]\nwarmup = 1\nruns = 4\nbatches = 1, 8\n%s\n%s"
            % (TINY, data, out, data, extra, variants))


def metadata(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))["__metadata__"]


def predictions(model, data):
    with open(data, encoding="utf-8") as f:
        texts = [line.rsplit("\t", 1)[0] for line in f]
    rc, so, err = qbert("predict", "--model", model, "--max-length", "32", stdin="\n".join(texts).encode())
    check(rc == 0, "predict on %s: exit %d %s" % (model, rc, err[-300:]))
    return [json.loads(line)["label"] for line in so.splitlines()]


def gold_labels(data):
    with open(data, encoding="utf-8") as f:
        return [line.rstrip("\n").rsplit("\t", 1)[1] for line in f]


def mcnemar_exact(b, c):
    """statsmodels' mcnemar(exact=True): two-sided binomial test of min(b, c) in b + c."""
    n = b + c
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n) if n else 1.0


def check_significance(name, sig, gold, base_pred, pred):
    """sig (a row's vs_baseline.significance) against the labels themselves."""
    b = sum(g == x and g != y for g, x, y in zip(gold, base_pred, pred))
    c = sum(g != x and g == y for g, x, y in zip(gold, base_pred, pred))
    check(sig["only_baseline_right"] == b and sig["only_variant_right"] == c and
          abs(sig["mcnemar_p"] - mcnemar_exact(b, c)) < 1e-12, "%s: significance %r, labels give b %d c %d" % (name, sig, b, c))
    acc = (c - b) / len(gold)
    lo, hi = sig["accuracy_diff_interval"]
    check(abs(sig["accuracy_diff"] - acc) < 1e-12 and lo <= acc <= hi and (b + c > 0 or lo == hi == 0),
          "%s: accuracy difference %r in [%r, %r], labels give %r" % (name, sig["accuracy_diff"], lo, hi, acc))
    return b + c


def run(tmp):
    data = labelled_texts(tmp)
    qat = qat_checkpoint(tmp, data)
    out = os.path.join(tmp, "ex")
    ini = write(os.path.join(tmp, "ex.ini"), experiment_ini(tmp, data, qat, out))
    rc, so, err = qbert("experiment", ini)
    if not check(rc == 0, "experiment: exit %d %s" % (rc, err[-1500:])):
        return
    check("[experiment] 7/7 qat-int8" in err and "ETA" in err, "progress lines: %r" % err[-600:])
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        res = json.load(f)
    names = ["fp32", "fp16", "int8-dynamic", "int8-static", "int4-g16", "int4-tensor", "qat-int8"]
    rows = res["variants"]
    check([r["name"] for r in rows] == names and res["baseline"] == "fp32", "rows in the INI's order")
    check(res["test_texts"] == 24 and res["latency_protocol"]["runs"] == 4, "protocol %r" % res["latency_protocol"])
    base = rows[0]
    base_pred = predictions(base["model"], data)
    gold = gold_labels(data)
    for r in rows:
        name, m = r["name"], r["metrics"]
        # The model directory is the input model for fp32, else the one written for the row.
        want_dir = TINY if name == "fp32" else os.path.join(out, name)
        check(r["model"] == want_dir, "%s: model %s" % (name, r["model"]))
        weights = os.path.join(want_dir, "model.safetensors")
        check(r["size_bytes"] == os.path.getsize(weights), "%s: size %d" % (name, r["size_bytes"]))
        if name != "fp32":
            scheme = metadata(weights).get("qbert.scheme")
            want = {"int4-g16": "int4", "qat-int8": "qat-int8"}.get(name, name)
            check(scheme == want, "%s: the file's scheme is %r" % (name, scheme))
        # The metrics qbert eval reports for the same directory.
        ej = os.path.join(tmp, name + ".json")
        rc, _, err = qbert("eval", "--model", want_dir, "--data", data, "--max-length", "32", "--batch", "8",
                           "--threads", "1", "--json", ej)
        if check(rc == 0, "eval %s: exit %d %s" % (name, rc, err[-300:])):
            with open(ej, encoding="utf-8") as f:
                e = json.load(f)
            for k in ("accuracy", "f1_weighted", "precision_weighted", "recall_weighted", "avg_confidence"):
                check(abs(e[k] - m[k]) < 1e-9, "%s: %s %r, qbert eval says %r" % (name, k, m[k], e[k]))
        # Agreement with the baseline, counted from qbert predict.
        pred = predictions(want_dir, data)
        agree = sum(a == b for a, b in zip(pred, base_pred)) / len(base_pred)
        check(len(pred) == 24 and abs(r["agreement_with_baseline"] - agree) < 1e-12,
              "%s: agreement %r, predict gives %r" % (name, r["agreement_with_baseline"], agree))
        d = r["vs_baseline"]
        if name == "fp32":
            check(d["significance"] is None, "the baseline has no significance")
        else:
            check_significance(name, d["significance"], gold, base_pred, pred)
        check(abs(d["accuracy"] - (m["accuracy"] - base["metrics"]["accuracy"])) < 1e-12 and
              abs(d["size_ratio"] - r["size_bytes"] / base["size_bytes"]) < 1e-12, "%s: differences %r" % (name, d))
        for b in ("batch_1", "batch_8"):
            s = r["latency_ms"][b]
            check(s["n"] == 4 and 0 < s["min"] <= s["median"] <= s["p95"] <= s["max"] and
                  s["min"] <= s["mean"] <= s["max"], "%s %s: latency %r" % (name, b, s))
            check(abs(d[b]["speedup_median"] - base["latency_ms"][b]["median"] / s["median"]) < 1e-9,
                  "%s %s: speedup" % (name, b))
    check(rows[0]["agreement_with_baseline"] == 1.0 and rows[0]["vs_baseline"]["size_ratio"] == 1.0, "baseline row")
    sizes = {r["name"]: r["vs_baseline"]["size_ratio"] for r in rows}
    check(sizes["int8-dynamic"] < 0.5 and sizes["int4-g16"] < sizes["int8-dynamic"] < sizes["fp16"] < 1,
          "sizes shrink with the bits: %r" % sizes)
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        md = f.read()
    check(all("| %s |" % n in md for n in names) and md.count("Latency, batch") == 2 and md in so,
          "results.md has every row and both latency tables, and is printed")
    check("Is the difference real?" in md and "| qat-int8 | cpu | %d | %d |" % (
        rows[-1]["vs_baseline"]["significance"]["only_baseline_right"],
        rows[-1]["vs_baseline"]["significance"]["only_variant_right"]) in md, "results.md: the significance table")
    svg = ET.parse(os.path.join(out, "results.svg")).getroot()
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    check(all(n in texts for n in names) and "ms, batch 8 (median, p95)" in texts, "results.svg draws every row")
    # the chart's title is short, every value of a panel has the same decimals, the
    # accuracy axis says where it starts when zoomed, latency bars have p95 whiskers
    title = texts[0] or ""
    check(len(title) < 90 and "qbert" not in title, "results.svg title %r (not the command line)" % title)
    lines = [l for l in svg.iter("{http://www.w3.org/2000/svg}line")]
    check(len(lines) >= 4 + 2 * len(names), "results.svg: %d lines (axes and p95 whiskers)" % len(lines))
    accs = [t for t in texts if t and t.endswith("%") and "axis" not in t]
    check(accs and all(len(a.split(".")[-1]) == 2 for a in accs), "accuracy labels one decimal: %r" % accs)

    seeds(tmp, data)
    bad_input(tmp, data, qat)
    bench(tmp, data)


T_975_DF1 = 12.706204736174707  # scipy.stats.t.ppf(0.975, 1), a table value


def seeds(tmp, data):
    """[experiment] seeds = 1, 2: QAT models trained with train.seeds = 1, 2, named by
    {seed}; each seed's rows are run, quantized models go to out/seed-S/, and
    across_seeds is the mean / sample std / t-interval of the per-seed scores."""
    qs = os.path.join(tmp, "qat-seeds")
    cfg = write(os.path.join(tmp, "qat-seeds.ini"), "[model]\npath = %s\n[data]\ntrain = %s\nvalid = %s\n"
                "labels = positive, neutral, negative\nmax_length = 32\n[train]\nlearning_rate = 3e-3\n"
                "batch_size = 8\nmax_steps = 6\nseeds = 1, 2\n[qat]\nenabled = true\n[output]\ndir = %s\n" % (TINY, data, data, qs))
    rc, _, err = qbert("train", cfg)
    if not check(rc == 0, "QAT train over seeds: exit %d %s" % (rc, err[-500:])):
        return
    out = os.path.join(tmp, "ex-seeds")
    variants = ("[variant fp32]\nscheme = fp32\n\n[variant int8]\nscheme = int8-dynamic\n\n"
                "[variant qat]\nscheme = qat\nmodel = %s/seed-{seed}/model\n" % qs)
    ini = write(os.path.join(tmp, "ex-seeds.ini"), experiment_ini(tmp, data, None, out, variants).replace(
        "threads = 1\n", "threads = 1\nseeds = 1, 2\n").replace("batches = 1, 8", "batches = 1\n[significance]\n"
                                                                 "resamples = 500\nseed = 3"))
    rc, so, err = qbert("experiment", ini)
    if not check(rc == 0, "experiment with seeds: exit %d %s" % (rc, err[-1500:])):
        return
    check("[experiment] 6/6 qat (qat) on cpu, seed 2" in err, "progress names the seed: %r" % err[-400:])
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        res = json.load(f)
    check(res["seeds"] == [1, 2] and res["significance_protocol"]["bootstrap_resamples"] == 500 and
          res["significance_protocol"]["bootstrap_seed"] == 3, "seeds and protocol %r" % res.get("seeds"))
    gold, discordant = gold_labels(data), 0
    for r in res["variants"]:
        per = r["per_seed"]
        check([p["seed"] for p in per] == [1, 2], "%s: per_seed %r" % (r["name"], [p["seed"] for p in per]))
        want = {"fp32": [TINY] * 2, "int8": [os.path.join(out, "seed-%d" % s, "int8") for s in (1, 2)],
                "qat": [os.path.join(out, "seed-%d" % s, "qat") for s in (1, 2)]}[r["name"]]
        check([p["model"] for p in per] == want and r["model"] == want[0], "%s: models %r" % (r["name"], per))
        check(r["metrics"] == per[0]["metrics"], "%s: the top-level metrics are the first seed's" % r["name"])
        for k, key in (("accuracy", "accuracy"), ("f1_weighted", "f1_weighted")):
            v = [p["metrics"][key] for p in per]
            a = r["across_seeds"][k]
            half = T_975_DF1 * statistics.stdev(v) / math.sqrt(2)
            check(abs(a["mean"] - statistics.mean(v)) < 1e-12 and abs(a["std"] - statistics.stdev(v)) < 1e-12 and
                  abs(a["t_interval_95"][0] - (statistics.mean(v) - half)) < 1e-9 and
                  abs(a["t_interval_95"][1] - (statistics.mean(v) + half)) < 1e-9, "%s: across seeds %s %r" % (r["name"], k, a))
        for s, p in enumerate(per):
            if r["name"] != "fp32":
                base = res["variants"][0]["per_seed"][s]["model"]
                discordant += check_significance("%s seed %d" % (r["name"], p["seed"]), p["significance"], gold,
                                   predictions(base, data), predictions(p["model"], data))
    check(discordant > 0, "some row predicts a text differently from fp32 (the significance checks compared something)")
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        md = f.read()
    check("means over the seeds (1, 2)" in md and "Across the 2 seeds (1, 2)" in md and "| qat | cpu | 2 |" in md,
          "results.md: the tables over seeds")


def eval_metrics(tmp, model, data, device="cpu", math="fp32"):
    """What qbert eval reports for model on data (the bench's settings), or None."""
    ej = os.path.join(tmp, "eval.json")
    rc, _, err = qbert("eval", "--model", model, "--data", data, "--max-length", "32", "--batch", "8",
                       "--threads", "1", "--device", device, "--math", math, "--json", ej)
    if not check(rc == 0, "eval %s on %s: exit %d %s" % (model, device, rc, err[-300:])):
        return None
    with open(ej, encoding="utf-8") as f:
        return json.load(f)


def check_bench_rows(tmp, data, out, precisions, devices):
    """The rows of a qbert bench run: variant-major over devices, every one's metrics
    those of qbert eval on its model directory and device, speedups against the
    first row and the first row of the same device."""
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        res = json.load(f)
    rows = res["variants"]
    want = [(p, d) for p in precisions for d in devices]
    check([(r["name"], r["device"]) for r in rows] == want and res["devices"] == devices,
          "bench rows %r" % [(r["name"], r["device"]) for r in rows])
    maths = {"fp16": "fp16", "bf16": "bf16"}
    for i, r in enumerate(rows):
        name, dev = r["name"], r["device"]
        math = maths.get(name, "fp32") if dev == "cuda" else "fp32"
        check(r["math"] == math, "%s on %s: math %s, want %s" % (name, dev, r["math"], math))
        scheme = {"int8": "int8-dynamic"}.get(name, name)
        check(r["scheme"] == scheme and r["model"] == (TINY if name == "fp32" else os.path.join(out, name)),
              "%s: scheme %s, model %s" % (name, r["scheme"], r["model"]))
        e = eval_metrics(tmp, r["model"], data, dev, math)
        for k in ("accuracy", "f1_weighted", "avg_confidence"):
            check(e is not None and abs(e[k] - r["metrics"][k]) < 1e-9,
                  "bench %s on %s: %s %r, qbert eval says %r" % (name, dev, k, r["metrics"][k], e and e[k]))
        sig = r["vs_baseline"]["significance"]
        check((sig is None) == (i == 0) and (i == 0 or 0 <= sig["mcnemar_p"] <= 1),
              "bench %s on %s: significance against the first row %r" % (name, dev, sig))
        same_dev = rows[i % len(devices)]
        for b in ("batch_1", "batch_8"):
            med = r["latency_ms"][b]["median"]
            sp = r["vs_baseline"][b]
            check(abs(sp["speedup_median"] - rows[0]["latency_ms"][b]["median"] / med) < 1e-9 and
                  abs(sp["speedup_median_same_device"] - same_dev["latency_ms"][b]["median"] / med) < 1e-9,
                  "%s on %s %s: speedups %r" % (name, dev, b, sp))
    with open(os.path.join(out, "results.md"), encoding="utf-8") as f:
        md = f.read()
    check(all("| %s | %s | %s |" % (r["name"], r["device"], r["scheme"]) in md for r in rows) and
          "vs fp32 on the device" in md, "bench results.md has every row")


def bench(tmp, data):
    common = ["bench", "--model", TINY, "--data", data, "--max-length", "32", "--batch", "8", "--threads", "1",
              "--batches", "1,8", "--warmup", "1", "--runs", "3", "--group-size", "16"]
    precisions = ["fp32", "int8", "int4", "fp16"]
    out = os.path.join(tmp, "bench-cpu")
    rc, so, err = qbert(*common, "--precisions", ",".join(precisions), "--out", out)
    if check(rc == 0, "bench on cpu: exit %d %s" % (rc, err[-1500:])):
        check("[experiment] 4/4 fp16 (fp16) on cpu" in err and "Latency, batch 8" in so, "bench progress and table")
        check_bench_rows(tmp, data, out, precisions, ["cpu"])
    # The CPU vs GPU table: every precision on both, or (no GPU) a clear error before any work.
    out = os.path.join(tmp, "bench-gpu")
    rc, so, err = qbert(*common, "--precisions", "fp32,int8,fp16", "--devices", "cpu,cuda", "--out", out)
    if rc == 1 and "devices = cuda:" in err:
        check(not os.path.exists(out), "no GPU: nothing written")
        print("bench --devices cpu,cuda: no GPU here (%s)" % err.strip().splitlines()[-1])
    elif check(rc == 0, "bench on cpu,cuda: exit %d %s" % (rc, err[-1500:])):
        check_bench_rows(tmp, data, out, ["fp32", "int8", "fp16"], ["cpu", "cuda"])

    def bad(args, needles):
        expect_error(common + args, 2, needles)

    bad(["--devices", "cpu,gpu"], ["--devices must be cpu, cuda or both"])
    bad(["--devices", "cpu,cpu"], ["--devices must be cpu, cuda or both"])
    bad(["--devices", "cpu,"], ["--devices must be cpu, cuda or both"])
    bad(["--precisions", "int8,int8-dynamic"], ["int8 and int8-dynamic are the same"])
    bad(["--precisions", "fp32,int3"], ["--precisions: unknown precision \"int3\"", "int4 or int4-tensor"])
    bad(["--precisions", "fp32,qat-int8"], ["--precisions: unknown precision \"qat-int8\""])
    bad(["--precisions", "fp32,fp32"], ["--precisions: fp32 twice"])
    bad(["--precisions", "qat"], ["qat needs more than a precision", "qbert experiment"])
    bad(["--precisions", "int8-static"], ["--precisions int8-static", "--calib FILE"])
    bad(["--batches", "0"], ["--batches must be"])
    bad(["--runs", "0"], ["--runs must be an integer in [1, 100000]"])
    bad(["--frobnicate"], ["unknown option \"--frobnicate\""])
    # the largest batch, wherever it is in the list (not only the last)
    expect_error(common + ["--batches", "4000,1", "--out", os.path.join(tmp, "b")], 1,
                 ["24 texts, fewer than the largest batch (4000)"])
    expect_error(["bench", "--data", data], 2, ["--model and --data are required"])
    expect_error(common + ["--model", os.path.join(tmp, "nowhere")], 2, ["--precisions fp32", "nowhere: no config.json"])


def bad_input(tmp, data, qat):
    def bad(name, text, needles):
        expect_error(["experiment", write(os.path.join(tmp, name), text)], 1, [name] + needles, what=name)

    ok = experiment_ini(tmp, data, qat, os.path.join(tmp, "bad-out"), "[variant fp32]\nscheme = fp32\n")
    # --set: a key of the file overridden from the command line (here the output folder
    # and the runs); an unknown one names itself
    okfile = write(os.path.join(tmp, "set.ini"), ok)
    setout = os.path.join(tmp, "set-out")
    rc, so, err = qbert("experiment", okfile, "--set", "experiment.out=" + setout, "--set", "latency.runs=1",
                        "--set", "variant fp32.math=fp32")
    check(rc == 0 and os.path.isfile(os.path.join(setout, "results.json")),
          "experiment --set: exit %d %s" % (rc, err[-300:]))
    expect_error(["experiment", okfile, "--set", "latency.runz=1"], 1, ["--set latency.runz=1", "unknown key"])
    expect_error(["experiment", okfile, "--set", "nodot"], 1, ["--set nodot", "section.key=value"])
    bad("unknown_key.ini", ok.replace("threads = 1", "thread = 1"), [":7:", "[experiment] thread = \"1\": unknown key"])
    bad("bad_runs.ini", ok.replace("runs = 4", "runs = zero"), [":15:", "[latency] runs = \"zero\": expected an integer in [1, 100000]"])
    bad("bad_batches.ini", ok.replace("batches = 1, 8", "batches = 1; 8"), ["batches", "like 1, 32"])
    bad("no_model.ini", ok.replace("model = %s\n" % TINY, "", 1), ["[experiment] model is required"])
    bad("no_variant.ini", ok.split("[variant")[0], ["no [variant NAME] section"])
    bad("unknown_scheme.ini", ok + "\n[variant x]\nscheme = int3\n", [":21:", "[variant x]",
                                                                       "unknown scheme \"int3\""])
    bad("act_fp16.ini", ok + "\n[variant h]\nscheme = fp16\nact = fp32\n", ["[variant h]", "--act must be int8 or fp32"])
    bad("dup.ini", ok + "\n[variant fp32]\nscheme = fp16\n", [":21:", "[variant fp32] again (first on line 18)"])
    bad("empty.ini", ok + "\n[variant nothing]\n", [":21:", "[variant nothing] has no scheme"])
    bad("qat_no_model.ini", ok + "\n[variant q]\nscheme = qat\n", ["[variant q]", "needs model = a QAT checkpoint"])
    bad("fp32_opts.ini", ok + "\n[variant f]\nscheme = fp32\ngroup-size = 16\n", ["scheme = fp32 is the model as it is"])
    no_calib = ok.replace("[calibration]\ndata = %s\n" % data, "[calibration]\n")
    bad("no_calib.ini", no_calib + "\n[variant s]\nscheme = int8-static\n", ["[variant s]",
                                                                           "needs [calibration] data = FILE"])
    bad("slash.ini", ok + "\n[variant a/b]\nscheme = fp16\n", ["no '/'"])
    bad("missing_model.ini", ok + "\n[variant m]\nscheme = fp16\nmodel = %s\n" % os.path.join(tmp, "nowhere"),
        [":21:", "[variant m] model", "nowhere: no config.json"])
    bad("big_batch.ini", ok.replace("batches = 1, 8", "batches = 1, 64"), ["[latency] batches", "24 texts, fewer than the "
                                                                          "largest batch (64)"])
    bad("syntax.ini", ok + "\nthis is not ini\n", [":21: syntax error"])
    bad("devices.ini", ok.replace("threads = 1", "threads = 1\ndevices = cpu, gpu"),
        [":8:", "[experiment] devices = \"cpu, gpu\": expected cpu, cuda or both"])
    bad("math.ini", ok + "\n[variant h]\nscheme = fp16\nmath = fp8\n", [":23:", "[variant h] math = \"fp8\": expected fp32, "
                                                                      "tf32, bf16 or fp16"])
    seeded = ok.replace("threads = 1", "threads = 1\nseeds = 1, 2")
    bad("seeds_twice.ini", ok.replace("threads = 1", "threads = 1\nseeds = 1, 1"),
        [":8:", "[experiment] seeds = \"1, 1\": expected 1 to 16 distinct integers"])
    bad("seeds_same_run.ini", seeded, ["no model path has {seed}", "every seed would be the same run"])
    bad("seed_unset.ini", ok + "\n[variant q]\nscheme = qat\nmodel = %s/seed-{seed}/model\n" % qat,
        ["[variant q]", "has {seed}: set [experiment] seeds"])
    bad("seed_missing.ini", seeded + "\n[variant q]\nscheme = qat\nmodel = %s-{seed}\n" % qat,
        ["[variant q]", "model %s-1: no config.json" % qat])
    bad("resamples.ini", ok + "\n[significance]\nresamples = 10\n", [":22:", "[significance] resamples = \"10\": "
                                                                        "expected an integer in [100, 1000000]"])
    expect_error(["experiment", os.path.join(tmp, "none.ini")], 1, ["none.ini", "cannot open"])
    expect_error(["experiment"], 2, ["usage: qbert experiment FILE.ini"])


if __name__ == "__main__":
    sys.exit(main())
