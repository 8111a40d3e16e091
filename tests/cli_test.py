#!/usr/bin/env python3
"""End-to-end tests of the qbert command: eval / predict / init / demo / tokenize on the
golden tiny model, predict's probabilities against the ones Hugging Face transformers
computed (tests/golden/tiny_forward.safetensors), and the bad-input cases: each must exit
non-zero with one message naming the file and the problem. Standard library only."""
import json
import os
import shutil
import subprocess
import sys

from testutil import QBERT, check, expect_error, main_in_tempdir, qbert, read_safetensors, write

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden")


def read_bytes_or(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def main():
    return main_in_tempdir("cli_test", run)


def copy_model(src, dst):
    shutil.copytree(os.path.join(GOLDEN, src), dst)
    return dst


def run(tmp):
    tiny = os.path.join(GOLDEN, "tiny")
    for cmd in ("eval", "predict", "init", "tokenize", "demo", "quantize", "experiment", "bench", "train"):
        rc, out, _ = qbert(cmd, "--help")
        check(rc == 0 and "usage: qbert " + cmd in out, cmd + " --help")

    # predict vs transformers: rows 0, 1, 3 of the fixture are the plain tokenisation of
    # the texts at max_length 16 (row 2 had token types edited by the fixture script).
    ref = read_safetensors(os.path.join(GOLDEN, "tiny_forward.safetensors"))
    probs = ref["probabilities"][1]
    with open(os.path.join(GOLDEN, "tiny_texts.txt"), encoding="utf-8") as f:
        texts = f.read().splitlines()
    def check_predict(rc, out, err, what):
        lines = out.splitlines()
        check(rc == 0 and len(lines) == len(texts), "%s: exit %d, %d lines: %s" % (what, rc, len(lines), err))
        for i in (0, 1, 3):
            if i >= len(lines):
                break
            o = json.loads(lines[i])
            got = [o["probabilities"][k] for k in ("positive", "neutral", "negative")]
            want = probs[3 * i:3 * i + 3]
            check(max(abs(a - b) for a, b in zip(got, want)) < 1e-5, "%s row %d: %s vs transformers %s" % (what, i, got, want))
            check(o["text"] == texts[i] and o["label"] == ("positive", "neutral", "negative")[got.index(max(got))],
                  "%s row %d label/text" % (what, i))

    args = ["predict", "--model", tiny, "--max-length", "16", "--text"]
    check_predict(*qbert(*args, stdin="\n".join(texts).encode()), "predict")
    # on the GPU: the same probabilities; without a usable one, a clear error
    rc, out, err = qbert(*args, "--device", "cuda", stdin="\n".join(texts).encode())
    if rc == 0:
        check_predict(rc, out, err, "predict --device cuda")
    else:
        check(rc == 1 and "device = cuda" in err and "CUDA" in err and not out,
              "predict --device cuda without a GPU: exit %d %r" % (rc, err))
    expect_error(["predict", "--model", tiny, "--device", "tpu"], 2, ["--device", "tpu"], stdin=b"x\n")
    # bf16 products (the CPU's emulation): near transformers' FP32, not equal to it
    rc, out, err = qbert(*args, "--math", "bf16", stdin="\n".join(texts).encode())
    lines = out.splitlines()
    if check(rc == 0 and len(lines) == len(texts), "predict --math bf16: exit %d: %s" % (rc, err)):
        diffs = [abs(json.loads(lines[i])["probabilities"][k] - probs[3 * i + j])
                 for i in (0, 1, 3) for j, k in enumerate(("positive", "neutral", "negative"))]
        check(0 < max(diffs) < 2e-2, "predict --math bf16: largest difference from transformers %.3g" % max(diffs))
    expect_error(["predict", "--model", tiny, "--math", "fp8"], 2, ["--math", "fp8", "bf16"], stdin=b"x\n")
    expect_error(["quantize", "--model", tiny, "--scheme", "int8-dynamic", "--out", os.path.join(tmp, "q"),
                  "--device", "cuda"], 2, ["quantize runs on the CPU", "--device"])

    # eval: a small labelled file; JSON and SVG written, numbers consistent with predict.
    data = write(os.path.join(tmp, "d.tsv"), "".join("%s\t%s\n" % (t, l) for t, l in
                                                      zip(texts, ("positive", "negative", "neutral", "1"))))
    js, svg = os.path.join(tmp, "m.json"), os.path.join(tmp, "cm.svg")
    rc, out, err = qbert("eval", "--model", tiny, "--data", data, "--json", js, "--svg", svg, "--threads", "1")
    check(rc == 0 and "accuracy" in out and "confusion matrix" in out, "eval: exit %d %s" % (rc, err))
    if rc == 0:
        m = json.load(open(js))
        check(m["n"] == 4 and 0 <= m["accuracy"] <= 1 and "f1_weighted" in m and "confusion_matrix" in m,
              "eval JSON keys")
        check(sum(map(sum, m["confusion_matrix"]["matrix"])) == 4, "eval confusion matrix sums to n")
        check(open(svg).read().startswith("<svg"), "eval SVG")
    # CSV with a header, columns by name, quoted field with a comma
    csv = write(os.path.join(tmp, "d.csv"), '\ufefflabel,text\nneutral,"enak, murah"\n2,"tidak ""enak"""\n')
    rc, out, err = qbert("eval", "--model", tiny, "--data", csv)
    check(rc == 0 and "2 texts" in out, "eval csv: exit %d %s" % (rc, err))
    # a TSV with a header row (by column name) through --delimiter tab; bare CR line ends
    tsvh = write(os.path.join(tmp, "h.tsv"), 'id\tsentiment\ttext\r1\tpositive\tenak sekali\r2\tnegative\t"a\tb"\r')
    rc, out, err = qbert("eval", "--model", tiny, "--data", tsvh, "--delimiter", "tab", "--label-column", "sentiment")
    check(rc == 0 and "2 texts" in out, "eval --delimiter tab: exit %d %s" % (rc, err))
    expect_error(["eval", "--model", tiny, "--data", tsvh, "--delimiter", "space"], 2, ["--delimiter", "tab, comma"])
    # output folders: made when missing; a path that cannot be written fails before the run
    nested = os.path.join(tmp, "new", "deeper", "m.json")
    rc, _, err = qbert("eval", "--model", tiny, "--data", data, "--json", nested)
    check(rc == 0 and os.path.isfile(nested), "eval --json into missing folders: exit %d %s" % (rc, err[-300:]))
    blocker = write(os.path.join(tmp, "blocker"), "x")
    rc, _, err = qbert("eval", "--model", tiny, "--data", data, "--json", os.path.join(blocker, "m.json"))
    check(rc == 1 and "blocker is not a folder" in err and "[eval]" not in err,
          "eval --json under a file: exit %d, %r (want a failure before the run)" % (rc, err[-300:]))
    rc, so, err = qbert("init", "--preset", "bert-tiny", "--out", os.path.join(tmp, "new", "a", "b", "model"))
    check(rc == 0 and os.path.isfile(os.path.join(tmp, "new", "a", "b", "model", "config.json")) and
          "[init]" in err and "wrote" in so, "init --out into missing folders: exit %d %s" % (rc, err[-300:]))
    rc, so, err = qbert("quantize", "--model", tiny, "--scheme", "int8-dynamic", "--out",
                        os.path.join(tmp, "new", "q", "int8"))
    check(rc == 0 and os.path.isfile(os.path.join(tmp, "new", "q", "int8", "model.safetensors")),
          "quantize --out into missing folders: exit %d %s" % (rc, err[-300:]))
    # qbert-bench checks --json before its run too, naming the path (not a temporary file)
    bench = os.path.join(os.path.dirname(QBERT), "qbert-bench")
    if os.path.exists(bench):
        p = subprocess.run([bench, "gemm", "--m", "128", "--json", os.path.join(blocker, "g.json")],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 2 and "blocker is not a folder" in p.stderr and ".tmp." not in p.stderr and
              "GMAC" not in p.stdout, "qbert-bench --json under a file: exit %d %r" % (p.returncode, p.stderr[-300:]))
    rc, _, err = qbert("init", "--preset", "bert-tiny", "--out", mdir_again := os.path.join(tmp, "again"),
                       "--vocab", os.path.join(tiny, "vocab.txt"))
    rc2, _, err2 = qbert("init", "--preset", "bert-tiny", "--out", mdir_again)
    fresh = read_bytes_or(os.path.join(mdir_again, "vocab.txt"))
    check(rc == 0 and rc2 == 0 and fresh and fresh != read_bytes_or(os.path.join(tiny, "vocab.txt")),
          "init again without --vocab kept the earlier vocab.txt: %s %s" % (err[-200:], err2[-200:]))
    # without --vocab: a vocabulary of single characters, so the new model runs at once
    rc, out, err = qbert("predict", "--model", mdir_again, stdin=b"saya suka buku\n")
    check(rc == 0 and len(out.splitlines()) == 1, "predict on init without --vocab: exit %d %s" % (rc, err[-300:]))
    # integer labels that are not the model's classes: a warning, and a label map for them
    ints = write(os.path.join(tmp, "binary.tsv"), "enak sekali\t1\nburuk\t0\n")
    rc, out, err = qbert("eval", "--model", tiny, "--data", ints)
    check(rc == 0 and "2 of the model's 3 classes" in err and "--label-map" in err,
          "eval of 0/1 labels: exit %d, %r" % (rc, err[-400:]))
    rc, out, err = qbert("eval", "--model", tiny, "--data", ints, "--label-map", "0=negative,1=positive")
    check(rc == 0 and "classes" not in err, "eval --label-map: exit %d, %r" % (rc, err[-400:]))
    # the sample set inside the binary, as the trainer reads it
    rc, out, err = qbert("eval", "--model", tiny, "--data", "embedded:test.tsv")
    check(rc == 0 and "60 texts" in out, "eval --data embedded:test.tsv: exit %d %s" % (rc, err[-300:]))

    # init + predict on the new directory; a preset grows its vocabulary to fit vocab.txt
    mdir = os.path.join(tmp, "init")
    rc, _, err = qbert("init", "--preset", "bert-tiny", "--out", mdir, "--vocab", os.path.join(tiny, "vocab.txt"), "--seed", "5")
    check(rc == 0 and os.path.exists(os.path.join(mdir, "model.safetensors")), "init: %s" % err)
    # the max_length a model was trained with (tokenizer_config.json model_max_length, which
    # the trainer writes) is the default: the same as asking for it, not as 128
    short = copy_model("tiny", os.path.join(tmp, "short"))
    conf = json.load(open(os.path.join(short, "tokenizer_config.json")))
    conf["model_max_length"] = 5
    write(os.path.join(short, "tokenizer_config.json"), json.dumps(conf))
    long_text = b"makanan enak sekali tetapi pelayanan lambat dan mahal\n"
    outs = [qbert("predict", "--model", short, *extra, stdin=long_text)[1] for extra in ([], ["--max-length", "5"],
                                                                                         ["--max-length", "128"])]
    check(outs[0] and outs[0] == outs[1] and outs[0] != outs[2],
          "predict's default max_length is the model's: %r" % [o[:80] for o in outs])
    # a NUL byte does not end the text early: read as U+FFFD, with a warning naming the line
    rc, out, err = qbert("predict", "--model", tiny, "--text", stdin=b"makanan\x00 enak\nbiasa\n")
    lines = out.splitlines()
    check(rc == 0 and len(lines) == 2 and json.loads(lines[0])["text"] == "makanan\ufffd enak" and "line 1" in err,
          "predict with a NUL byte: exit %d %r %r" % (rc, out[:200], err[-200:]))
    rc, out, err = qbert("predict", "--model", mdir, stdin=b"saya suka\n\xff\xfe bad utf-8\n")
    check(rc == 0 and len(out.splitlines()) == 2, "predict on init model / invalid UTF-8: exit %d %s" % (rc, err))

    # demo end to end
    demo = os.path.join(tmp, "demo")
    rc, out, err = qbert("demo", "--out", demo, "--threads", "2")
    check(rc == 0 and os.path.exists(os.path.join(demo, "metrics.json")) and "accuracy" in out, "demo: %s" % err)

    # tokenize
    rc, out, _ = qbert("tokenize", "--model", tiny, stdin=b"makanan enak\n")
    check(rc == 0 and out.split()[0] == "2" and out.split()[-1] == "3", "tokenize: %r" % out)

    # ---- bad input: exit status and a message naming the file and the problem ----
    expect_error(["eval", "--data", data], 2, ["--model"], what="eval without --model")
    expect_error(["eval", "--model", tiny, "--data", data, "--bogus"], 2, ["--bogus"])
    expect_error(["eval", "--model", tiny, "--data", data, "--batch", "0"], 2, ["--batch"])
    empty = write(os.path.join(tmp, "empty.tsv"), "")
    expect_error(["eval", "--model", tiny, "--data", empty], 1, ["empty.tsv", "no rows"])
    badlabel = write(os.path.join(tmp, "bad.tsv"), "enak\tpositive\nenak\tgreat\n")
    expect_error(["eval", "--model", tiny, "--data", badlabel], 1, ["bad.tsv:2", "great"])
    expect_error(["eval", "--model", tiny, "--data", os.path.join(tmp, "nope.tsv")], 1, ["nope.tsv"])
    expect_error(["eval", "--model", os.path.join(tmp, "none"), "--data", data], 1, ["config.json"])

    # truncated safetensors
    d = copy_model("tiny", os.path.join(tmp, "trunc"))
    st = os.path.join(d, "model.safetensors")
    write(st, open(st, "rb").read()[:5000])
    expect_error(["eval", "--model", d, "--data", data], 1, ["model.safetensors"], what="truncated safetensors")
    # corrupt .bin (not a zip)
    d = copy_model("tiny_bin", os.path.join(tmp, "badbin"))
    write(os.path.join(d, "pytorch_model.bin"), b"this is not a zip archive" * 10)
    expect_error(["eval", "--model", d, "--data", data], 1, ["pytorch_model.bin"], what="corrupt .bin")
    # config.json missing a field / wrong type
    d = copy_model("tiny", os.path.join(tmp, "badcfg"))
    cfg = json.load(open(os.path.join(d, "config.json")))
    del cfg["hidden_size"]
    write(os.path.join(d, "config.json"), json.dumps(cfg))
    expect_error(["eval", "--model", d, "--data", data], 1, ["config.json", "hidden_size"])
    cfg["hidden_size"] = "32"
    write(os.path.join(d, "config.json"), json.dumps(cfg))
    expect_error(["eval", "--model", d, "--data", data], 1, ["config.json", "hidden_size"], what="wrong-typed field")
    # vocab without [UNK]
    d = copy_model("tiny", os.path.join(tmp, "nounk"))
    vocab = open(os.path.join(d, "vocab.txt"), encoding="utf-8").read().replace("[UNK]\n", "[UNKNOWN]\n")
    write(os.path.join(d, "vocab.txt"), vocab)
    expect_error(["predict", "--model", d], 1, ["vocab.txt", "[UNK]"], stdin=b"x\n")
    expect_error(["init", "--preset", "bert-huge", "--out", os.path.join(tmp, "x")], 1, ["bert-huge"])


if __name__ == "__main__":
    sys.exit(main())
