#!/usr/bin/env python3
"""End-to-end tests of `qbert train` and `qbert demo` (csrc/train, csrc/cli/cmd_train.c):
the demo's output directory; resume after --stop-after (mid-epoch and at an epoch
boundary) and after Ctrl-C reproduces the uninterrupted run byte for byte; a NaN in the
weights stops the run (on_nan = stop) or skips the step (on_nan = skip); bad input fails
before the first step with a message naming the file and line or key; [device] type = cuda
follows the CPU run and its checkpoints resume on the CPU and back (or, without a usable
GPU, is a clear error); tf32 / bf16 / fp16 products (fp16 with loss scaling, its
overflows and its resume); padding to
max_length gives the losses of dynamic padding; several seeds give a summary.

Small and quick: bert-tiny, a third of the sample training set (written into a temporary
directory), max_length 32, 2 threads. Standard library only; the binary is $QBERT_BIN
(or argv[1]). Prints "train_test: N passed, N failed"; exit status 1 on any failure."""
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import testutil
from testutil import QBERT, TIMEOUT, check, qbert, sanitizer_clean, write

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "..", "data", "sample")
LABELS = ("positive", "neutral", "negative")
# OpenMP threads that spin while waiting (libgomp's default) fight over a shared, busy
# machine: a run can take 10x longer. Sleeping threads change no result.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def read_bytes(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        check(False, "%s: %s" % (path, e))
        return {}


def log_lines(out_dir):
    """train_log.jsonl as a list of objects (None when the file does not exist)."""
    path = os.path.join(out_dir, "train_log.jsonl")
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def step_lines(out_dir):
    return [x for x in (log_lines(out_dir) or []) if "step" in x and "eval" not in x]


def latest_checkpoint(out_dir):
    """(name, directory) of checkpoints/latest, or (None, None)."""
    b = read_bytes(os.path.join(out_dir, "checkpoints", "latest"))
    if b is None:
        return None, None
    name = b.decode().strip()
    return name, os.path.join(out_dir, "checkpoints", name)


def trajectory(lines, after=0):
    """The per-step numbers that must survive a resume (not samples_per_second)."""
    return [(x["step"], x["loss"], x["lr"], x["grad_norm"]) for x in lines if x["step"] > after]


# ---- setup ----

def write_data(tmp):
    """A third of the sample training set (100 rows, all three labels): 7 batches of 16."""
    with open(os.path.join(SAMPLE, "train.tsv"), encoding="utf-8") as f:
        rows = f.read().splitlines()
    return write(os.path.join(tmp, "train.tsv"), "".join(r + "\n" for i, r in enumerate(rows) if i % 3 == 0))


def base_config(tmp, train, name="base.ini", extra=""):
    return write(os.path.join(tmp, name), """[model]
preset = bert-tiny
[data]
train = %s
valid = embedded:valid.tsv
test = embedded:test.tsv
labels = positive, neutral, negative
max_length = 32
[train]
learning_rate = 1e-3
batch_size = 16
epochs = 2
warmup_ratio = 0.1
log_every = 5
%s
[device]
threads = 2
""" % (train, extra))


# ---- 1. demo ----

def test_demo(tmp):
    out = os.path.join(tmp, "demo")
    rc, stdout, err = qbert("demo", "--out", out, "--epochs", "2", "--threads", "2")
    if not check(rc == 0, "demo: exit %d: %s" % (rc, err[-2000:])):
        return
    cfg = read_json(os.path.join(out, "model", "config.json"))
    id2label = cfg.get("id2label", {})
    check([id2label.get(str(i)) for i in range(3)] == list(LABELS) and len(id2label) == 3,
          "demo: model/config.json id2label %r" % id2label)
    for f in ("model.safetensors", "vocab.txt"):
        p = os.path.join(out, "model", f)
        check(os.path.isfile(p) and os.path.getsize(p) > 0, "demo: model/%s missing or empty" % f)
    tok = read_json(os.path.join(out, "model", "tokenizer_config.json"))
    check(tok.get("model_max_length") == 64, "demo: model/tokenizer_config.json model_max_length %r (trained at 64)" %
          tok.get("model_max_length"))
    m = read_json(os.path.join(out, "metrics.json"))
    test = m.get("test", {})
    check(all(isinstance(test.get(k), (int, float)) for k in ("accuracy", "precision", "recall", "f1", "loss")),
          "demo: metrics.json test scores %r" % test)
    check(0 <= test.get("accuracy", -1) <= 1, "demo: test accuracy %r" % test.get("accuracy"))
    check(len(m.get("valid_history", [])) == 2, "demo: valid_history %r" % m.get("valid_history"))
    epochs = m.get("epochs", [])
    check(len(epochs) == 2 and all(isinstance(e.get("train_seconds"), (int, float)) and e["train_seconds"] > 0
                                   for e in epochs), "demo: metrics.json epochs %r" % epochs)
    # train_log.jsonl: every line JSON, the step lines complete
    path = os.path.join(out, "train_log.jsonl")
    try:
        with open(path, encoding="utf-8") as f:
            raw = [line for line in f.read().splitlines() if line.strip()]
    except OSError as e:
        check(False, "demo: %s" % e)
        raw = []
    parsed = []
    for line in raw:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            check(False, "demo: train_log.jsonl line is not JSON: %r" % line)
    steps = [x for x in parsed if "eval" not in x]
    evals = [x for x in parsed if "eval" in x]
    keys = ("step", "loss", "lr", "grad_norm", "samples_per_second")
    check(steps and all(all(isinstance(x.get(k), (int, float)) for k in keys) for x in steps),
          "demo: step lines lack %s: %r" % (keys, steps[:2]))
    check([x.get("step") for x in steps] == list(range(1, len(steps) + 1)) and m.get("steps") == len(steps),
          "demo: step lines numbered 1..%s" % m.get("steps"))
    check(len(evals) == 2, "demo: %d eval lines in train_log.jsonl (want 2)" % len(evals))
    report = read_bytes(os.path.join(out, "report.txt")) or b""
    check(b"accuracy" in report, "demo: report.txt")
    tm = read_json(os.path.join(out, "test_metrics.json"))
    check(isinstance(tm, dict) and "accuracy" in tm, "demo: test_metrics.json %r" % str(tm)[:200])
    svg = (read_bytes(os.path.join(out, "confusion.svg")) or b"").lstrip()
    check(svg.startswith(b"<svg") or svg.startswith(b"<?xml"), "demo: confusion.svg starts %r" % svg[:20])
    check("accuracy" in stdout, "demo: no test report on stdout")


# ---- 2. resume after --stop-after ----

def uninterrupted(tmp, cfg):
    """Run A: the reference for every resume comparison (run once)."""
    a = os.path.join(tmp, "A")
    rc, _, err = qbert("train", cfg, "--set", "output.dir=" + a)
    check(rc == 0, "run A: exit %d: %s" % (rc, err[-2000:]))
    # progress lines as every command writes them: "[train] ..." (warnings: "qbert: ...")
    odd = [l for l in err.replace("\r", "\n").splitlines() if l.strip() and not l.startswith(("[train] ", "qbert: "))]
    check(not odd, "run A: progress lines not in the [train] style: %r" % odd[:3])
    return a if rc == 0 else None


def same_as_reference(a, b, what):
    """b, stopped and resumed, must have computed exactly what a did."""
    check(read_bytes(os.path.join(a, "model", "model.safetensors")) is not None and
          read_bytes(os.path.join(a, "model", "model.safetensors")) == read_bytes(os.path.join(b, "model", "model.safetensors")),
          "%s: model/model.safetensors differs from the uninterrupted run's" % what)
    na, ca = latest_checkpoint(a)
    nb, cb = latest_checkpoint(b)
    check(na is not None and na == nb, "%s: final checkpoint %s vs %s" % (what, nb, na))
    if na is not None and na == nb:
        for f in ("model.safetensors", "optimizer.safetensors"):
            check(read_bytes(os.path.join(ca, f)) is not None and read_bytes(os.path.join(ca, f)) == read_bytes(os.path.join(cb, f)),
                  "%s: final checkpoint %s/%s differs" % (what, na, f))
    la, lb = step_lines(a), step_lines(b)
    check([x["step"] for x in lb] == list(range(1, len(la) + 1)),
          "%s: step lines of the resumed log: %s (want 1..%d, each once)" % (what, [x["step"] for x in lb], len(la)))
    check(trajectory(la) == trajectory(lb), "%s: loss/lr/grad_norm per step differ:\n  %s\n  %s" %
          (what, trajectory(la), trajectory(lb)))
    ma, mb = read_json(os.path.join(a, "metrics.json")), read_json(os.path.join(b, "metrics.json"))
    check(ma.get("valid_history", []) == mb.get("valid_history", [None]),
          "%s: valid_history differs" % what)
    check(ma.get("test") == mb.get("test") and ma.get("best") == mb.get("best"),
          "%s: test scores / best differ: %s %s vs %s %s" % (what, mb.get("test"), mb.get("best"), ma.get("test"), ma.get("best")))


def test_resume(tmp, cfg, a):
    la = log_lines(a) or []
    evals = [x for x in la if "eval" in x]
    total = read_json(os.path.join(a, "metrics.json")).get("steps")
    if not check(evals and total, "resume: run A has no eval lines / steps"):
        return
    per_epoch = evals[0]["step"]
    check(per_epoch > 5 and total == 2 * per_epoch, "resume: %s steps per epoch, %s in all" % (per_epoch, total))
    for stop, how in ((5, "mid-epoch"), (per_epoch, "epoch boundary")):
        what = "resume (%s, stop after %d)" % (how, stop)
        b = os.path.join(tmp, "B%d" % stop)
        rc, _, err = qbert("train", cfg, "--set", "output.dir=" + b, "--stop-after", str(stop))
        check(rc == 0 and "resume" in err, "%s: stop exit %d (want 0: it did what was asked): %s" %
              (what, rc, err[-1000:]))
        name, ckpt = latest_checkpoint(b)
        check(name == "step-%d" % stop, "%s: checkpoints/latest is %r" % (what, name))
        if name != "step-%d" % stop:
            continue
        for f in ("model.safetensors", "optimizer.safetensors", "state.json"):
            check(os.path.isfile(os.path.join(ckpt, f)), "%s: %s/%s missing" % (what, name, f))
        check(read_json(os.path.join(ckpt, "state.json")).get("step") == stop, "%s: state.json step" % what)
        check(len(step_lines(b)) == stop, "%s: %d step lines before the resume" % (what, len(step_lines(b))))
        rc, _, err = qbert("train", cfg, "--set", "output.dir=" + b, "--resume", b, "--set", "train.batch_size=8")
        check(rc == 1 and "train.batch_size = 16, this run has 8" in err,
              "%s: resume with another batch size: exit %d, %r" % (what, rc, err.strip()[-300:]))
        check("batch_size = 16\n" in (read_bytes(os.path.join(b, "config.ini")) or b"").decode(),
              "%s: the refused resume rewrote config.ini" % what)
        # mid-epoch: resume from the output directory; boundary: from the checkpoint itself
        src = b if stop == 5 else ckpt
        rc, _, err = qbert("train", cfg, "--set", "output.dir=" + b, "--resume", src)
        if check(rc == 0 and "resuming from" in err, "%s: resumed run exit %d: %s" % (what, rc, err[-2000:])):
            same_as_reference(a, b, what)
    # a resume that cannot match: another seed
    rc, _, err = qbert("train", cfg, "--set", "output.dir=" + os.path.join(tmp, "B5"), "--resume",
                       os.path.join(tmp, "B5"), "--set", "train.seed=7")
    check(rc == 1 and "seed" in err, "resume with another seed: exit %d: %s" % (rc, err[-500:]))


# ---- 3. Ctrl-C ----

def test_sigint(tmp, cfg, a):
    out = os.path.join(tmp, "S")
    log = os.path.join(out, "train_log.jsonl")
    p = subprocess.Popen([QBERT, "train", cfg, "--set", "output.dir=" + out],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    seen = 0
    while p.poll() is None and time.monotonic() < deadline:
        try:
            with open(log, encoding="utf-8") as f:
                seen = sum(1 for line in f if line.startswith('{"step"'))
        except OSError:
            seen = 0
        if seen >= 2:
            break
        time.sleep(0.01)
    if p.poll() is not None:
        p.communicate()
        check(False, "sigint: the run ended (exit %s) before 2 step lines were seen in train_log.jsonl (%d); "
                     "the signal could not be sent" % (p.returncode, seen))
        return
    if seen < 2:
        p.kill()
        p.communicate()
        check(False, "sigint: no 2 step lines in train_log.jsonl within %d s" % TIMEOUT)
        return
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        check(False, "sigint: still running %d s after SIGINT" % TIMEOUT)
        return
    err = err.decode("utf-8", "replace")
    sanitizer_clean(["train (SIGINT)"], err)
    total = read_json(os.path.join(a, "metrics.json")).get("steps", 0)
    if p.returncode == 0:
        check(False, "sigint: the run finished (exit 0) before SIGINT took effect; the test needs a longer run")
        return
    check(p.returncode == 130 and "resume" in err, "sigint: exit %d (want 130): %s" % (p.returncode, err[-1000:]))
    name, ckpt = latest_checkpoint(out)
    step = read_json(os.path.join(ckpt, "state.json")).get("step", -1) if ckpt else -1
    check(2 <= step < total, "sigint: checkpoint %s at step %s (want 2 <= step < %d)" % (name, step, total))
    print("sigint: stopped at step %s of %d" % (step, total))
    check(len(step_lines(out)) == step, "sigint: %d step lines, checkpoint at step %s" % (len(step_lines(out)), step))
    rc, _, err = qbert("train", cfg, "--set", "output.dir=" + out, "--resume", out)
    if check(rc == 0, "sigint: resumed run exit %d: %s" % (rc, err[-2000:])):
        same_as_reference(a, out, "sigint")


# ---- 4. non-finite values ----

WORDS = ("enak murah bagus suka senang puas ramah cepat bersih mantap buruk mahal lambat kotor kecewa "
         "rusak jelek marah biasa saja cukup lumayan harga makanan tempat pelayanan barang toko kamar "
         "hotel saya kami ini itu sangat tidak dan yang di ke").split()


def test_nan(tmp):
    d = os.path.join(tmp, "nan")
    os.makedirs(d)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [chr(c) for c in range(97, 123)] + \
            ["##" + chr(c) for c in range(97, 123)] + WORDS + ["zzqx"]
    vpath = write(os.path.join(d, "vocab.txt"), "\n".join(vocab) + "\n")
    mdir = os.path.join(d, "model")
    rc, _, err = qbert("init", "--preset", "bert-tiny", "--vocab", vpath, "--out", mdir, "--seed", "3")
    if not check(rc == 0, "nan: qbert init: exit %d: %s" % (rc, err)):
        return
    # deterministic little sentences; the training file has one line with "zzqx"
    state = [12345]

    def rand(n):
        state[0] = (state[0] * 1103515245 + 12345) % 2 ** 31
        return state[0] % n

    def rows(n):
        return ["%s\t%s" % (" ".join(WORDS[rand(len(WORDS))] for _ in range(3 + rand(6))), LABELS[i % 3])
                for i in range(n)]

    train = rows(48)
    train[20] = "makanan zzqx enak\tpositive"
    tr = write(os.path.join(d, "train.tsv"), "\n".join(train) + "\n")
    va = write(os.path.join(d, "valid.tsv"), "\n".join(rows(12)) + "\n")
    te = write(os.path.join(d, "test.tsv"), "\n".join(rows(12)) + "\n")
    # poison the embedding row of "zzqx"
    st = os.path.join(mdir, "model.safetensors")
    with open(st, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        t = header.get("bert.embeddings.word_embeddings.weight")
        if not check(t is not None and t["dtype"] == "F32", "nan: no F32 word embeddings in %s" % st):
            return
        hidden = t["shape"][1]
        f.seek(8 + n + t["data_offsets"][0] + vocab.index("zzqx") * hidden * 4)
        f.write(struct.pack("<f", float("nan")) * hidden)
    cfg = write(os.path.join(d, "nan.ini"), """[model]
path = %s
[data]
train = %s
valid = %s
test = %s
labels = positive, neutral, negative
max_length = 32
[train]
learning_rate = 1e-3
batch_size = 16
epochs = 1
[device]
threads = 2
""" % (mdir, tr, va, te))
    out = os.path.join(d, "stop")
    rc, _, err = qbert("train", cfg, "--set", "output.dir=" + out)
    check(rc == 1 and re.search(r"step \d+", err) and "nan" in err.lower() and "on_nan" in err,
          "nan (on_nan = stop): exit %d (want 1), stderr %r" % (rc, err[-1000:]))
    m = re.search(r"step (\d+) \(", err)
    if m:
        check(len(step_lines(out)) == int(m.group(1)) - 1,
              "nan (stop): %d step lines before the failing step %s" % (len(step_lines(out)), m.group(1)))
    check(not os.path.exists(os.path.join(out, "metrics.json")), "nan (stop): metrics.json written")
    out = os.path.join(d, "skip")
    rc, _, err = qbert("train", cfg, "--set", "output.dir=" + out, "--set", "train.on_nan=skip")
    if not check(rc == 0, "nan (on_nan = skip): exit %d: %s" % (rc, err[-1000:])):
        return
    metrics = read_json(os.path.join(out, "metrics.json"))
    skipped = metrics.get("skipped_steps", 0)
    check(skipped >= 1, "nan (skip): skipped_steps %r" % skipped)
    m = re.search(r"(\d+) batches", err)
    batches = int(m.group(1)) if m else -1
    n = len(step_lines(out))
    check(batches > 0 and n == batches - skipped and metrics.get("steps") == n,
          "nan (skip): %d step lines, %d batches, %s skipped, metrics steps %s" % (n, batches, skipped, metrics.get("steps")))
    check(all(x["loss"] == x["loss"] and x["grad_norm"] == x["grad_norm"] for x in step_lines(out)),
          "nan (skip): a logged step has a NaN loss or gradient norm")
    check("skipped" in err, "nan (skip): no warning on stderr: %r" % err[-500:])


# ---- 5. bad input: fails before the first step ----

def test_errors(tmp, train):
    d = os.path.join(tmp, "err")
    os.makedirs(d)
    count = [0]

    def expect(args, code, needles, what):
        count[0] += 1
        out = os.path.join(d, "out%d" % count[0])
        rc, _, err = qbert("train", *args, "--set", "output.dir=" + out) if code == 1 else qbert("train", *args)
        ok = rc == code and all(n in err for n in needles)
        check(ok, "%s: exit %d (want %d), stderr %r lacks %r" % (what, rc, code, err.strip()[-1000:], needles))
        check(not step_lines(out), "%s: train_log.jsonl has step lines" % what)

    def cfg(name, data="", train_extra="", model="preset = bert-tiny"):
        return write(os.path.join(d, name), """[model]
%s
[data]
train = %s
valid = embedded:valid.tsv
labels = positive, neutral, negative
max_length = 32
%s
[train]
learning_rate = 1e-3
batch_size = 16
epochs = 1
%s
[device]
threads = 2
""" % (model, train, data, train_extra))

    good = cfg("good.ini")
    # a label not in [data] labels, on line 3 of the training file
    bad = write(os.path.join(d, "badlabel.tsv"), "enak sekali\tpositive\nbiasa\tneutral\nmahal\tgreat\nburuk\tnegative\n")
    expect([good, "--set", "data.train=" + bad], 1,
           ["badlabel.tsv:3", "great"], "label not in labels")
    # no data.labels: the model's own names (its config.json id2label) are read, as eval reads them
    golden = os.path.join(HERE, "golden", "tiny")
    own = write(os.path.join(d, "own.ini"), "[model]\npath = %s\n[data]\ntrain = embedded:train.tsv\n"
                "max_length = 32\n[train]\nmax_steps = 1\n" % golden)
    rc, _, err = qbert("train", own, "--set", "output.dir=" + os.path.join(d, "own"))
    check(rc == 0, "label names from the model's id2label: exit %d, %r" % (rc, err.strip()[-500:]))
    skipped = os.path.join(d, "skipped")
    rc, _, err = qbert("train", good, "--set", "data.train=" + bad, "--set", "data.skip_bad_rows=true",
                       "--set", "output.dir=" + skipped, "--set", "train.max_steps=1")
    check(rc == 0 and "skipped 1 bad rows" in err and "badlabel.tsv:3" in err,
          "data.skip_bad_rows: exit %d, %r" % (rc, err.strip()[-500:]))
    empty = write(os.path.join(d, "empty.tsv"), "")
    expect([good, "--set", "data.valid=" + empty], 1, ["empty.tsv", "no rows"], "empty valid file")
    plain = write(os.path.join(d, "plainfile"), "x\n")
    rc, _, err = qbert("train", good, "--set", "output.dir=" + os.path.join(plain, "out"))
    check(rc == 1 and os.path.join(plain, "out") in err, "output.dir under a regular file: exit %d, %r" % (rc, err.strip()))
    unknown = cfg("unknown.ini", "", "colour = blue")
    line = next(i for i, l in enumerate(open(unknown).read().splitlines(), 1) if l.startswith("colour"))
    expect([unknown], 1, ["unknown.ini:%d" % line, "unknown key", "colour"], "unknown INI key")
    badval = cfg("badval.ini")
    text = open(badval).read().replace("batch_size = 16", "batch_size = lots")
    write(badval, text)
    line = next(i for i, l in enumerate(text.splitlines(), 1) if l.startswith("batch_size"))
    expect([badval], 1, ["badval.ini:%d" % line, "batch_size", "lots"], "bad value")
    expect([good, "--set", "train.nosuch=1"], 1, ["train.nosuch=1", "unknown key"], "--set unknown key")
    expect([good, "--set", "device.type=tpu"], 1, ["device.type", "tpu", "cpu cuda"], "unknown device")
    missing = os.path.join(d, "nosuch.ini")
    expect([missing], 1, ["nosuch.ini"], "missing CONFIG file")
    nomodel = os.path.join(d, "emptymodel")
    os.makedirs(nomodel)
    expect([cfg("nomodel.ini", model="path = " + nomodel)], 1, ["emptymodel", "config.json"],
           "model.path without config.json")
    # A start that fails on bad input leaves an earlier run in the same directory intact.
    kept = os.path.join(d, "kept")
    rc, _, err = qbert("train", good, "--set", "output.dir=" + kept)
    check(rc == 0, "kept: first run exit %d: %r" % (rc, err.strip()[-500:]))
    before = {f: read_bytes(os.path.join(kept, "model", f)) for f in ("vocab.txt", "model.safetensors")}
    latest = read_bytes(os.path.join(kept, "checkpoints", "latest"))
    rc, _, err = qbert("train", good, "--set", "output.dir=" + kept, "--set", "data.train=embedded:train.tsv",
                       "--set", "data.valid=" + empty)
    check(rc == 1 and "empty.tsv" in err, "kept: failing run exit %d: %r" % (rc, err.strip()[-500:]))
    for f, data in before.items():
        check(read_bytes(os.path.join(kept, "model", f)) == data, "kept: a failed start changed model/" + f)
    check(read_bytes(os.path.join(kept, "checkpoints", "latest")) == latest, "kept: a failed start changed checkpoints")
    # usage errors: exit 2
    expect([], 2, ["CONFIG"], "no config argument")
    expect([good, "--bogus"], 2, ["--bogus"], "unknown option")
    expect([good, "--stop-after", "zero"], 2, ["--stop-after"], "bad --stop-after")


# ---- 6. [device] type = cuda ----

def close_trajectory(la, lb):
    """Worst relative difference of loss and grad_norm per step (inf when the steps differ)."""
    if [x["step"] for x in la] != [x["step"] for x in lb] or not la:
        return float("inf")
    return max(max(abs(x[k] - y[k]) / max(abs(x[k]), 1e-30) for k in ("loss", "grad_norm")) for x, y in zip(la, lb))


def test_device(tmp, cfg, a):
    """On a machine without a usable GPU `type = cuda` is a clear error before anything
    is written. With one, the run follows the CPU's (run A) within FP32 rounding (the
    same dropout masks: tests/test_cuda_model.c checks single steps closely), and
    checkpoints cross over: a GPU run stopped and resumed on the CPU, and the reverse.
    Tolerance 1e-3 relative per step: FP32 sums in another order, over 14 Adam steps."""
    out = os.path.join(tmp, "cuda")
    rc, _, err = qbert("train", cfg, "--set", "output.dir=" + out, "--set", "device.type=cuda")
    if rc != 0:
        check(rc == 1 and "[device] type = cuda" in err and ("CUDA" in err or "sm_" in err),
              "cuda: exit %d without a usable GPU, stderr %r" % (rc, err.strip()[-500:]))
        check(not os.path.exists(out), "cuda: a run that cannot start wrote %s" % out)
        print("cuda: no usable GPU here (%s): the CPU/GPU comparison is skipped" % err.strip().splitlines()[-1][:120])
        return
    la = step_lines(a)
    worst = close_trajectory(la, step_lines(out))
    check(worst <= 1e-3, "cuda: per-step loss / grad_norm differ from the CPU run by %.3g relative" % worst)
    check(read_json(os.path.join(out, "metrics.json")).get("device") == "cuda", "cuda: metrics.json device")
    for first, then in (("cuda", "cpu"), ("cpu", "cuda")):
        b = os.path.join(tmp, "cross-%s-%s" % (first, then))
        rc, _, err = qbert("train", cfg, "--set", "output.dir=" + b, "--set", "device.type=" + first, "--stop-after", "5")
        if not check(rc == 0, "cross %s->%s: stop exit %d: %s" % (first, then, rc, err[-1000:])):
            continue
        rc, _, err = qbert("train", cfg, "--set", "output.dir=" + b, "--set", "device.type=" + then, "--resume", b)
        if check(rc == 0, "cross %s->%s: resumed run exit %d: %s" % (first, then, rc, err[-1000:])):
            worst = close_trajectory(la, step_lines(b))
            check(worst <= 1e-3, "cross %s->%s: differs from the CPU run by %.3g relative" % (first, then, worst))


# ---- 7. [train] precision: rounded GEMM inputs (the CPU's emulation of the GPU's) ----

def test_precision(tmp, cfg, a):
    """tf32 / fp16 (10 mantissa bits) and bf16 (7) runs follow the fp32 run A within
    the rounding's reach (measured 2e-4 and 2e-3; the bounds are 10x that; the exact
    rounding is tests/test_cpu_kernels.c's). fp16 with a first loss scale of 2^24
    overflows: those batches are dropped and the scale halved (step lines + backoffs
    = the batches), and a run stopped after 3 steps resumes with the scale it had,
    byte for byte the uninterrupted run."""
    la = step_lines(a)
    for prec, bound in (("tf32", 2e-3), ("fp16", 2e-3), ("bf16", 2e-2)):
        out = os.path.join(tmp, "prec-" + prec)
        rc, _, err = qbert("train", cfg, "--set", "output.dir=" + out, "--set", "train.precision=" + prec)
        if not check(rc == 0, "precision %s: exit %d: %s" % (prec, rc, err[-1000:])):
            continue
        worst = close_trajectory(la, step_lines(out))
        check(0 < worst <= bound, "precision %s: differs from fp32 by %.3g relative (want (0, %g])" % (prec, worst, bound))
        check(read_json(os.path.join(out, "metrics.json")).get("precision") == prec, "precision %s: metrics.json" % prec)
    big = ["--set", "train.precision=fp16", "--set", "train.loss_scale=16777216"]
    ref = os.path.join(tmp, "fp16-big")
    rc, _, err = qbert("train", cfg, "--set", "output.dir=" + ref, *big)
    if not check(rc == 0, "fp16 overflow: exit %d: %s" % (rc, err[-1000:])):
        return
    lines, m = step_lines(ref), read_json(os.path.join(ref, "metrics.json"))
    backoffs = m.get("loss_scale_backoffs", 0)
    scales = [x.get("loss_scale") for x in lines]
    check(backoffs >= 1 and len(lines) + backoffs == 14 and m.get("steps") == len(lines),
          "fp16 overflow: %d steps + %d backoffs (want 14 batches)" % (len(lines), backoffs))
    check(len(m.get("valid_history", [])) == 2 and len(m.get("epochs", [])) == 2,
          "fp16 overflow: an epoch whose last step was dropped must still end (evaluation, timing): %d, %d" %
          (len(m.get("valid_history", [])), len(m.get("epochs", []))))
    check(all(isinstance(x, (int, float)) and x > 0 for x in scales) and scales == sorted(scales, reverse=True) and
          scales[0] < 2 ** 24 and all(x == 2 ** round(math.log2(x)) for x in scales),
          "fp16 overflow: loss scales %s (powers of 2 below 2^24, never growing in 14 steps)" % scales)
    b = os.path.join(tmp, "fp16-big-resumed")
    rc, _, err = qbert("train", cfg, "--set", "output.dir=" + b, *big, "--stop-after", "3")
    if check(rc == 0, "fp16 resume: stop exit %d: %s" % (rc, err[-1000:])):
        rc, _, err = qbert("train", cfg, "--set", "output.dir=" + b, *big, "--resume", b)
        if check(rc == 0, "fp16 resume: exit %d: %s" % (rc, err[-1000:])):
            same_as_reference(ref, b, "fp16 resume")
            check([x.get("loss_scale") for x in step_lines(b)] == scales, "fp16 resume: loss scales differ")


# ---- 8. padding = max_length gives the losses of dynamic padding ----

def test_padding(tmp, cfg):
    outs = {}
    for pad in ("dynamic", "max_length"):
        out = os.path.join(tmp, "pad-" + pad)
        rc, _, err = qbert("train", cfg, "--set", "output.dir=" + out, "--set", "train.padding=" + pad,
                           "--set", "train.dropout=false", "--set", "train.epochs=1", "--set", "train.group_by_length=true",
                           "--set", "data.max_length=64")  # 64: most rows are shorter, so max_length pads
        if not check(rc == 0, "padding %s: exit %d: %s" % (pad, rc, err[-2000:])):
            return
        outs[pad] = step_lines(out)
        ini = read_bytes(os.path.join(out, "config.ini")) or b""
        check(("padding = %s" % pad).encode() in ini, "padding %s: config.ini does not say so" % pad)
    a, b = outs["dynamic"], outs["max_length"]
    check(len(a) == len(b) and len(a) > 0, "padding: %d vs %d steps" % (len(a), len(b)))
    worst = max((abs(x["loss"] - y["loss"]) / abs(x["loss"]) for x, y in zip(a, b)), default=1)
    check(worst < 1e-4, "padding: losses differ by %.3g relative (dynamic %s, max_length %s)" %
          (worst, [x["loss"] for x in a], [y["loss"] for y in b]))


# ---- 9. several seeds ----

def test_seeds(tmp, cfg):
    out = os.path.join(tmp, "seeds")
    rc, stdout, err = qbert("train", cfg, "--set", "output.dir=" + out, "--set", "train.seeds=1,2",
                            "--set", "train.epochs=1")
    if not check(rc == 0, "seeds: exit %d: %s" % (rc, err[-2000:])):
        return
    tests = []
    for s in (1, 2):
        m = read_json(os.path.join(out, "seed-%d" % s, "metrics.json"))
        check(m.get("seed") == s and "test" in m, "seeds: seed-%d/metrics.json %r" % (s, str(m)[:200]))
        tests.append(m.get("test", {}))
    summary = read_json(os.path.join(out, "summary.json"))
    for k in ("accuracy", "precision", "recall", "f1", "loss"):
        e = summary.get(k, {})
        per = e.get("per_seed", [])
        vals = [t.get(k) for t in tests]
        ok = isinstance(e.get("mean"), (int, float)) and isinstance(e.get("std"), (int, float)) and len(per) == 2
        check(ok, "seeds: summary.json %s = %r" % (k, e))
        if ok and None not in vals:
            check(abs(e["mean"] - sum(vals) / 2) < 1e-9 and all(abs(p - v) < 1e-9 for p, v in zip(per, vals)),
                  "seeds: %s mean %r / per_seed %r vs the runs' %r" % (k, e["mean"], per, vals))
            sd = abs(vals[0] - vals[1]) / 2 ** 0.5  # sample std of two values
            check(abs(e["std"] - sd) < 1e-9, "seeds: %s std %r, want %r" % (k, e["std"], sd))
    check(os.path.isfile(os.path.join(out, "summary.md")), "seeds: no summary.md")
    check("±" in stdout, "seeds: no mean ± std table on stdout")
    rc, _, err = qbert("train", cfg, "--set", "output.dir=" + out, "--set", "train.seeds=1,2", "--resume", out)
    check(rc == 1 and "seed" in err, "seeds: --resume with several seeds: exit %d %r" % (rc, err.strip()))


def main():
    if not QBERT:
        print("usage: train_test.py QBERT_BINARY (or QBERT_BIN=...)")
        return 2
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="qbert-train-") as tmp:
        train = write_data(tmp)
        cfg = base_config(tmp, train)

        def timed(name, fn, *args):
            t = time.monotonic()
            before = testutil.counts["failed"]
            fn(*args)
            print("%-8s %5.1f s%s" % (name, time.monotonic() - t, "  FAILED" if testutil.counts["failed"] > before else ""))
            sys.stdout.flush()

        timed("errors", test_errors, tmp, train)
        timed("demo", test_demo, tmp)
        t = time.monotonic()
        a = uninterrupted(tmp, cfg)
        print("%-8s %5.1f s" % ("run A", time.monotonic() - t))
        if a:
            timed("resume", test_resume, tmp, cfg, a)
            timed("sigint", test_sigint, tmp, cfg, a)
            timed("cuda", test_device, tmp, cfg, a)
            timed("precision", test_precision, tmp, cfg, a)
        timed("nan", test_nan, tmp)
        timed("padding", test_padding, tmp, cfg)
        timed("seeds", test_seeds, tmp, cfg)
    return testutil.summary("train_test", " (%.1f s)" % (time.monotonic() - t0))


if __name__ == "__main__":
    sys.exit(main())
