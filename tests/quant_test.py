#!/usr/bin/env python3
"""End-to-end tests of qbert quantize: every scheme written from the golden tiny model is a
directory that qbert eval and qbert predict load; the file's metadata and dtypes are
what the scheme says; and the bad-input cases (unknown scheme, missing or short
calibration file, options that do not fit the scheme, a file whose metadata was edited
to disagree with its tensors) each exit non-zero with a message naming the problem.
The numbers (integers, scales, forward pass) are checked in test_quant_model.c.
Standard library only."""
import json
import os
import shutil
import struct
import sys

from testutil import check, expect_error, main_in_tempdir, qbert, write

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "golden", "tiny")


def header(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def rewrite_metadata(path, **changes):
    """Rewrites the file's __metadata__ with `changes` (tensors untouched)."""
    head, body = header(path)
    head["__metadata__"].update(changes)
    text = json.dumps(head).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + body)


def main():
    return main_in_tempdir("quant_test", run)


def run(tmp):
    with open(os.path.join(HERE, "golden", "tiny_texts.txt"), encoding="utf-8") as f:
        texts = [t for t in f.read().splitlines() if t.strip()]
    labels = ["positive", "neutral", "negative"]
    data = write(os.path.join(tmp, "d.tsv"), "".join("%s\t%s\n" % (t, labels[i % 3]) for i, t in enumerate(texts)))
    fp32_size = os.path.getsize(os.path.join(TINY, "model.safetensors"))

    # A model of 24 positions calibrates at 24 tokens (the engine's length), not at a
    # default 128 it cannot take; a random one from init, with a config of its own
    cfg = json.load(open(os.path.join(TINY, "config.json")))
    cfg["max_position_embeddings"] = 24
    short_dir = os.path.join(tmp, "short")
    rc, _, err = qbert("init", "--config", write(os.path.join(tmp, "short.json"), json.dumps(cfg)), "--out", short_dir,
                       "--vocab", os.path.join(TINY, "vocab.txt"))
    long_texts = write(os.path.join(tmp, "long.tsv"), "".join("%s\t%s\n" % (" ".join(texts[:8]), l) for l in labels))
    rc2, _, err2 = qbert("quantize", "--model", short_dir, "--scheme", "int8-static", "--calib", long_texts,
                         "--calib-samples", "3", "--out", os.path.join(tmp, "short-int8"))
    check(rc == 0 and rc2 == 0 and "calibration pass" in err2,
          "int8-static on a 24-position model: exit %d %d: %s %s" % (rc, rc2, err[-200:], err2[-300:]))

    # Each scheme: a loadable directory whose tensors have the scheme's dtypes.
    want_dtype = {"fp16": "F16", "bf16": "BF16", "int8-dynamic": "I8", "int8-static": "I8", "int4": "U8",
                  "int4-tensor": "U8"}
    for scheme, dtype in want_dtype.items():
        out = os.path.join(tmp, scheme)
        args = ["quantize", "--model", TINY, "--scheme", scheme, "--out", out]
        if scheme.startswith("int4"):
            args += ["--group-size", "16"]  # the tiny model's rows are 32 wide
        if scheme == "int8-static":
            args += ["--calib", data, "--calib-samples", str(len(texts)), "--calib-method", "mse"]
        rc, so, err = qbert(*args)
        if not check(rc == 0, "quantize %s: exit %d: %s" % (scheme, rc, err)):
            continue
        check("wrote" in so and scheme in so, "quantize %s prints what it wrote: %r" % (scheme, so))
        head, _ = header(os.path.join(out, "model.safetensors"))
        meta = head["__metadata__"]
        check(meta["qbert.scheme"] == scheme and meta["qbert.format"] == "qbert-quant/1", "%s metadata %r" % (scheme, meta))
        q = "bert.encoder.layer.0.attention.self.query"
        check(head[q + ".weight"]["dtype"] == dtype, "%s: query weight is %s" % (scheme, head[q + ".weight"]["dtype"]))
        check((q + ".input_scale" in head) == (scheme == "int8-static"), "%s: input_scale present iff static" % scheme)
        if scheme == "int8-static":
            check("mse" in meta.get("qbert.calibration", ""), "calibration noted: %r" % meta)
        for f in ("config.json", "vocab.txt"):
            check(os.path.exists(os.path.join(out, f)), "%s: %s copied" % (scheme, f))
        size = os.path.getsize(os.path.join(out, "model.safetensors"))
        check(size < fp32_size, "%s: %d bytes, FP32 %d" % (scheme, size, fp32_size))
        rc, so, err = qbert("eval", "--model", out, "--data", data)
        check(rc == 0 and "accuracy" in so, "eval on %s: exit %d %s" % (scheme, rc, err[-300:]))
        rc, so, err = qbert("predict", "--model", out, stdin="\n".join(texts[:3]).encode())
        lines = so.strip().splitlines()
        check(rc == 0 and len(lines) == 3 and all("label" in json.loads(l) for l in lines),
              "predict on %s: exit %d %r %s" % (scheme, rc, so[:200], err[-300:]))
        # the same file on the GPU: the CPU's probabilities (the integer products are
        # exact; LayerNorm and GELU round differently, which can move a quantized input
        # by one step); without a usable GPU, a clear error
        rc, gso, err = qbert("predict", "--model", out, "--device", "cuda", stdin="\n".join(texts[:3]).encode())
        if rc == 0 and len(lines) == 3:
            got = [json.loads(l)["probabilities"] for l in gso.strip().splitlines()]
            want = [json.loads(l)["probabilities"] for l in lines]
            diff = max(abs(g[k] - w[k]) for g, w in zip(got, want) for k in w) if len(got) == 3 else 1.0
            check(diff < 1e-3, "predict --device cuda on %s: largest difference from the CPU %.3g" % (scheme, diff))
        else:
            # only the backend's refusal to start counts as "no GPU" (--device = cuda: ...)
            check(rc == 1 and "device = cuda:" in err, "predict --device cuda on %s: exit %d %s" % (scheme, rc, err[-300:]))

    # Weight-only INT4 runs with FP32 inputs.
    out = os.path.join(tmp, "w4")
    rc, so, err = qbert("quantize", "--model", TINY, "--scheme", "int4", "--group-size", "32", "--act", "fp32",
                        "--out", out)
    check(rc == 0 and header(os.path.join(out, "model.safetensors"))[0]["__metadata__"]["qbert.activations"] == "fp32",
          "int4 --act fp32: exit %d %s" % (rc, err))

    # Bad input.
    base = ["quantize", "--model", TINY, "--out", os.path.join(tmp, "bad")]
    expect_error(base + ["--scheme", "int5"], 2, ["unknown scheme \"int5\"", "int8-dynamic", "hybrid or qat"])
    expect_error(base + ["--scheme", "qat-int8"], 2, ["unknown scheme \"qat-int8\"", "or qat"])
    expect_error(base + ["--scheme", "int8-static"], 2, ["needs --calib"])
    expect_error(base + ["--scheme", "int8-static", "--calib", data, "--calib-samples", "1000"], 1,
                 ["d.tsv", "%d rows, fewer than the 1000" % len(texts)])
    expect_error(base + ["--scheme", "int8-static", "--calib", os.path.join(tmp, "none.tsv")], 1, ["none.tsv"])
    expect_error(base + ["--scheme", "fp16", "--act", "fp32"], 2, ["--act must be int8 or fp32, for an integer scheme"])
    expect_error(base + ["--scheme", "int8-dynamic", "--calib", data], 2, ["--calib is only used by int8-static"])
    expect_error(base + ["--scheme", "int8-static", "--calib", data, "--calib-method", "kl"], 2, ["--calib-method"])
    expect_error(base + ["--scheme", "int4"], 1, ["group size 64 must be even and divide the row length 32"])
    expect_error(base + ["--scheme", "int4", "--group-size", "12"], 1, ["group size 12"])
    expect_error(["quantize", "--model", os.path.join(tmp, "int8-dynamic"), "--scheme", "int4", "--group-size", "16",
                  "--out", os.path.join(tmp, "again")], 1, ["already quantized (int8-dynamic)"])
    expect_error(["quantize", "--scheme", "int8-dynamic"], 2, ["--model, --scheme and --out are required"])

    # A file whose metadata disagrees with its tensors: eval names the file and the tensor.
    edited = shutil.copytree(os.path.join(tmp, "int8-dynamic"), os.path.join(tmp, "edited"))
    st = os.path.join(edited, "model.safetensors")
    rewrite_metadata(st, **{"qbert.scheme": "int4"})
    expect_error(["eval", "--model", edited, "--data", data], 1,
                 [st, "bert.encoder.layer.0.attention.self.query.weight is stored as int8, the metadata says int4"])
    rewrite_metadata(st, **{"qbert.scheme": "int8-dynamic", "qbert.activations": "static-int8"})
    expect_error(["predict", "--model", edited], 1, [st, "static-int8 inputs need"], stdin=b"enak\n")
    rewrite_metadata(st, **{"qbert.activations": "dynamic-int8", "qbert.scheme": "float7"})
    expect_error(["eval", "--model", edited, "--data", data], 1, [st, "unknown quantization scheme \"float7\""])
    qat_end_to_end(tmp, data)
    hybrid_end_to_end(tmp, data, len(texts))

    # A quantized model cannot be fine-tuned.
    cfg = write(os.path.join(tmp, "t.ini"), "[model]\npath = %s\n[data]\ntrain = %s\nvalid = %s\n"
                "labels = positive,neutral,negative\n[train]\nepochs = 1\n"
                "[output]\ndir = %s\n" % (os.path.join(tmp, "int8-dynamic"), data, data, os.path.join(tmp, "run")))
    expect_error(["train", cfg], 1, ["quantized (int8-dynamic) model cannot be trained"])


def qat_end_to_end(tmp, data):
    """QAT on the embedded sample: a run stopped and resumed ends with the same model
    (weights and observer ranges) as one run straight through; qbert quantize --scheme
    qat writes it as a static INT8 file that eval loads; bad QAT input."""
    def cfg(name, extra=""):
        return write(os.path.join(tmp, name), "[model]\npreset = bert-tiny\n[data]\ntrain = embedded:train.tsv\n"
                     "valid = embedded:valid.tsv\nlabels = positive, neutral, negative\nmax_length = 32\n"
                     "[train]\nlearning_rate = 1e-3\nbatch_size = 16\nmax_steps = 6\nlog_every = 1\n"
                     "[qat]\nenabled = true\n%s" % extra)
    c8 = cfg("qat8.ini")
    a, b = os.path.join(tmp, "qat-a"), os.path.join(tmp, "qat-b")
    rc, so, err = qbert("train", c8, "--set", "output.dir=" + a)
    if not check(rc == 0 and "qat: INT8 weights per output channel" in err, "QAT train: exit %d %s" % (rc, err[-800:])):
        return
    rc, _, err = qbert("train", c8, "--set", "output.dir=" + b, "--stop-after", "3")
    check(rc == 0, "QAT train --stop-after 3: exit %d %s" % (rc, err[-500:]))
    rc, _, err = qbert("train", c8, "--set", "output.dir=" + b, "--resume", b)
    check(rc == 0, "QAT resume: exit %d %s" % (rc, err[-500:]))
    ha, body_a = header(os.path.join(a, "model", "model.safetensors"))
    hb, body_b = header(os.path.join(b, "model", "model.safetensors"))
    check(body_a == body_b and ha["__metadata__"] == hb["__metadata__"],
          "QAT stopped + resumed = straight through (weights and observer ranges)")
    check(ha["__metadata__"].get("qbert.qat.weight_bits") == "8" and
          "bert.pooler.dense.input_range" in ha, "QAT model keeps its settings and ranges: %r" % ha["__metadata__"])
    out = os.path.join(tmp, "qat-int8")
    rc, so, err = qbert("quantize", "--model", os.path.join(a, "model"), "--scheme", "qat", "--out", out)
    if check(rc == 0, "quantize --scheme qat: exit %d %s" % (rc, err)):
        meta = header(os.path.join(out, "model.safetensors"))[0]["__metadata__"]
        check(meta["qbert.scheme"] == "qat-int8" and meta["qbert.activations"] == "static-int8", "qat file %r" % meta)
        rc, so, err = qbert("eval", "--model", out, "--data", data)
        check(rc == 0 and "accuracy" in so, "eval on the QAT INT8 file: exit %d %s" % (rc, err[-300:]))
    # INT4 QAT per group: the tiny model's 128-wide rows take groups of 32.
    c4 = cfg("qat4.ini", "weight_bits = 4\ngroup_size = 32\n")
    d4 = os.path.join(tmp, "qat4")
    rc, _, err = qbert("train", c4, "--set", "output.dir=" + d4)
    check(rc == 0 and "qat: INT4 weights per group of 32" in err, "QAT INT4 train: exit %d %s" % (rc, err[-500:]))
    rc, so, err = qbert("quantize", "--model", os.path.join(d4, "model"), "--scheme", "qat", "--out", d4 + "-int4")
    check(rc == 0 and "qat-int4" in so, "quantize --scheme qat (INT4): exit %d %s" % (rc, err))
    # Bad QAT input.
    expect_error(["train", cfg("bad_bits.ini", "weight_bits = 6\n")], 1, ["bad_bits.ini:", "weight_bits = \"6\": expected 4 or 8"])
    expect_error(["train", cfg("bad_group.ini", "weight_bits = 4\ngroup_size = 48\n"), "--set", "output.dir=" +
                  os.path.join(tmp, "bad-group")], 1, ["[qat]", "group_size 48 must be even and divide the row length 128"])
    expect_error(["quantize", "--model", TINY, "--scheme", "qat", "--out", os.path.join(tmp, "no-qat")], 1,
                 ["no QAT state"])
    expect_error(["quantize", "--model", os.path.join(a, "model"), "--scheme", "qat", "--group-size", "32", "--out",
                  os.path.join(tmp, "x")], 2, ["--scheme qat takes its settings from the checkpoint"])


def tensor_bytes(head, name):
    a, b = head[name]["data_offsets"]
    return b - a


def hybrid_end_to_end(tmp, data, n):
    """--scheme hybrid: a budget between all-INT4 and all-FP16 gives a file within it
    whose Linears have the precisions the report names (and the sizes qbert's byte
    formula gives); the report's F1 of the chosen model is what qbert eval measures on
    it; --max-drop 0 keeps F1; bad input."""
    base = ["quantize", "--model", TINY, "--scheme", "hybrid", "--valid", data, "--valid-samples", str(n),
            "--group-size", "16"]
    big = os.path.join(tmp, "hybrid-all16")
    rc, _, err = qbert(*base, "--budget-mb", "100", "--out", big)
    if not check(rc == 0 and "sensitivity 14/14" in err, "hybrid, budget 100 MB: exit %d %s" % (rc, err[-800:])):
        return
    with open(os.path.join(big, "hybrid_report.json"), encoding="utf-8") as f:
        rep = json.load(f)
    lins = rep["linears"]
    check(len(lins) == 14 and all(l["chosen"] == "fp16" for l in lins) and
          all(0 <= l["kl_int8"] and 0 <= l["kl_int4"] for l in lins), "a budget above the FP16 file changes nothing")
    all16 = rep["all_fp16"]["size_bytes"]
    int4_saving = sum(l["N"] * l["K"] * 2 - (l["N"] * l["K"] // 2 + l["N"] * (l["K"] // 16) * 4) for l in lins)
    budget = (all16 - int4_saving / 2) / 1e6
    out = os.path.join(tmp, "hybrid")
    rc, so, err = qbert(*base, "--budget-mb", "%.6f" % budget, "--out", out)
    if not check(rc == 0, "hybrid, budget %.6f MB: exit %d %s" % (budget, rc, err[-800:])):
        return
    path = os.path.join(out, "model.safetensors")
    check(os.path.getsize(path) <= budget * 1e6, "hybrid file %d bytes, budget %.0f" % (os.path.getsize(path), budget * 1e6))
    with open(os.path.join(out, "hybrid_report.json"), encoding="utf-8") as f:
        rep = json.load(f)
    chosen = [l["chosen"] for l in rep["linears"]]
    head, _ = header(path)
    check(head["__metadata__"]["qbert.scheme"] == "hybrid" and head["__metadata__"]["qbert.layers"] == ",".join(chosen),
          "qbert.layers = the report's choice: %r" % chosen)
    check(any(c != "fp16" for c in chosen) and rep["chosen"]["size_bytes"] == os.path.getsize(path), "some Linears lowered")
    check(sorted(os.listdir(out)) == sorted(os.listdir(os.path.join(tmp, "int8-dynamic")) + ["hybrid_report.json",
                                                                                        "hybrid_report.md"]),
          "no candidate left beside the model: %r" % os.listdir(out))
    dtype = {"fp16": "F16", "int8": "I8", "int4": "U8"}
    for l, c in zip(rep["linears"], chosen):
        w = l["name"] + ".weight"
        stored = tensor_bytes(head, w) + (tensor_bytes(head, l["name"] + ".weight_scale") if c != "fp16" else 0)
        want = {"fp16": l["N"] * l["K"] * 2, "int8": l["N"] * l["K"] + l["N"] * 4,
                "int4": l["N"] * l["K"] // 2 + l["N"] * (l["K"] // 16) * 4}[c]
        check(head[w]["dtype"] == dtype[c] and stored == want, "%s: %s, %d bytes (want %d)" % (w, head[w]["dtype"], stored, want))
    ej = os.path.join(tmp, "hybrid-eval.json")
    rc, _, err = qbert("eval", "--model", out, "--data", data, "--json", ej)
    if check(rc == 0, "eval on the hybrid file: exit %d %s" % (rc, err[-300:])):
        with open(ej, encoding="utf-8") as f:
            e = json.load(f)
        check(abs(e["f1_weighted"] - rep["chosen"]["f1_weighted"]) < 1e-12, "report F1 %r, eval %r" %
              (rep["chosen"]["f1_weighted"], e["f1_weighted"]))
    with open(os.path.join(out, "hybrid_report.md"), encoding="utf-8") as f:
        md = f.read()
    check(all(l["name"] in md for l in rep["linears"]) and "| chosen |" in md, "hybrid_report.md lists every Linear")
    d0 = os.path.join(tmp, "hybrid-drop0")
    rc, _, err = qbert(*base, "--max-drop", "0", "--out", d0)
    if check(rc == 0, "hybrid --max-drop 0: exit %d %s" % (rc, err[-500:])):
        with open(os.path.join(d0, "hybrid_report.json"), encoding="utf-8") as f:
            r0 = json.load(f)
        check(r0["chosen"]["f1_weighted"] >= r0["fp32"]["f1_weighted"], "--max-drop 0 keeps F1: %r" % r0["chosen"])
    # Bad input.
    expect_error(base + ["--budget-mb", "0.001", "--out", os.path.join(tmp, "h-small")], 1,
                 ["--budget-mb 0.001: even with every Linear INT4 the file is"])
    expect_error(base[:5] + ["--budget-mb", "1", "--out", os.path.join(tmp, "h")], 2, ["needs --valid FILE"])
    expect_error(base + ["--budget-mb", "1", "--max-drop", "1", "--out", os.path.join(tmp, "h")], 2,
                 ["one of --budget-mb MB or --max-drop POINTS"])
    expect_error(["quantize", "--model", TINY, "--scheme", "int8-dynamic", "--budget-mb", "1", "--out",
                  os.path.join(tmp, "h")], 2, ["only used by --scheme hybrid"])
    expect_error(base[:5] + ["--valid", data, "--budget-mb", "1", "--out", os.path.join(tmp, "h")], 1,
                 ["group size 64 must be even and divide the row length 32"])
    unlabelled = write(os.path.join(tmp, "unlabelled.tsv"), "enak sekali\nburuk\n")
    expect_error(base[:5] + ["--valid", unlabelled, "--valid-samples", "2", "--group-size", "16", "--budget-mb", "1",
                             "--out", os.path.join(tmp, "h")], 1, ["unlabelled.tsv"])
    expect_error(base[:5] + ["--valid", data, "--valid-samples", "100", "--group-size", "16", "--budget-mb", "1",
                             "--out", os.path.join(tmp, "h")], 1, ["fewer than the 100 texts asked for (--valid-samples)"])


if __name__ == "__main__":
    sys.exit(main())
