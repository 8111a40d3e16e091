#!/usr/bin/env python3
"""Data-parallel training on the CPU backend (csrc/dist, csrc/train/trainer.c) under
Open MPI's mpirun ($QBERT_MPIEXEC):

- `mpirun -np 2 qbert train cfg --set train.batch_size=8` writes the weights of
  `qbert train cfg --set train.batch_size=16` (relative L2 <= 1e-5 per tensor: only the
  order of the sums differs), logs the same loss and gradient norm per step, and only
  process 0 writes (one log line per step): plain fine-tuning with dynamic padding and
  gradient buckets small enough to be several; with grad_accum; QAT (EMA observer) with
  padding = max_length (QAT's rounding turns the last-bit differences of shards padded to
  other lengths into whole quantization steps, so those runs would differ by more).
  The attention key biases are the exception test_train.c makes too: their gradient is
  zero in exact arithmetic (softmax ignores a per-row constant), so Adam turns rounding
  noise into lr-sized steps on each side; they are held to |delta| <= 3 * sum(lr).
- a checkpoint of 2 processes resumes with 2 (the same bytes as the uninterrupted run)
  and is refused by 1, naming both world sizes;
- a process killed with SIGKILL ends the whole job with an error status (no hang);
- on a GPU, the NCCL path with one process (test_nccl).

Dropout is off: with it each process draws its own masks. bert-tiny, the sample data,
max_length 32, one thread per process. Standard library only."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import testutil
from testutil import QBERT, TIMEOUT, check, read_safetensors, sanitizer_clean, write

MPIEXEC = os.environ.get("QBERT_MPIEXEC", "mpirun")
TOL = 1e-5
os.environ.update({
    "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
    # CI runs as root, which mpirun refuses unless told
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
})


def mpi_env():
    """The environment of processes under mpirun: in the sanitizer build without leak
    detection, since Open MPI's plugins keep allocations they never free and their
    frames cannot be named for a suppression. qbert's own allocations are checked by
    the same code run as one process (here and in train_test.py)."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    return env


def mpirun(n, *args):
    cmd = [MPIEXEC, "--oversubscribe", "--bind-to", "none", "-np", str(n), QBERT, *args]
    p = subprocess.run(cmd, capture_output=True, timeout=TIMEOUT, env=mpi_env())
    err = p.stderr.decode("utf-8", "replace")
    sanitizer_clean(args, err)
    return p.returncode, p.stdout.decode("utf-8", "replace"), err


def config(tmp, name, extra=""):
    return write(os.path.join(tmp, name), """[model]
preset = bert-tiny
[data]
train = embedded:train.tsv
valid = embedded:valid.tsv
test = embedded:test.tsv
labels = positive, neutral, negative
max_length = 32
[train]
learning_rate = 1e-3
max_steps = 6
warmup_ratio = 0.1
log_every = 2
dropout = false
bucket_mb = 0.1
%s
[device]
threads = 1
""" % extra)


def step_lines(out):
    with open(os.path.join(out, "train_log.jsonl"), encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip() and '"eval"' not in x]


def rel_l2(a, b):
    num = math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))
    den = math.sqrt(sum(x * x for x in a))
    return num / den if den else num


def same_training(one, two, what):
    """The model of `two` (2 processes) against `one` (1 process, twice the batch)."""
    a = read_safetensors(os.path.join(one, "model", "model.safetensors"))
    b = read_safetensors(os.path.join(two, "model", "model.safetensors"))
    check(sorted(a) == sorted(b), "%s: tensor names differ" % what)
    la, lb = step_lines(one), step_lines(two)
    check([x["step"] for x in lb] == list(range(1, len(la) + 1)),
          "%s: step lines %s (one per step: only process 0 logs)" % (what, [x["step"] for x in lb]))
    lr_sum = sum(x["lr"] for x in la)
    worst = 0.0
    for name in sorted(set(a) & set(b)):
        x, y = a[name][1], b[name][1]
        if "attention.self.key.bias" in name:
            diff = max(abs(p - q) for p, q in zip(x, y))
            check(diff <= 3 * lr_sum, "%s: %s max |diff| %.3g > 3 * sum(lr)" % (what, name, diff))
            continue
        e = rel_l2(x, y)
        worst = max(worst, e)
        check(e <= TOL, "%s: %s relative L2 %.3g > %g" % (what, name, e, TOL))
    for p, q in zip(la, lb):
        for k in ("loss", "grad_norm", "lr"):
            check(abs(p[k] - q[k]) <= TOL * max(abs(p[k]), 1e-6),
                  "%s: step %d %s %r (2 processes) vs %r" % (what, p["step"], k, q[k], p[k]))
    print("%s: worst relative L2 %.3g over %d tensors" % (what, worst, len(a)))


def compare(tmp, what, extra, sets_one, sets_two):
    cfg = config(tmp, what + ".ini", extra)
    one, two = os.path.join(tmp, what + "-1"), os.path.join(tmp, what + "-2")
    rc, _, err = testutil.qbert("train", cfg, "--set", "output.dir=" + one, *sets_one)
    if not check(rc == 0, "%s, 1 process: exit %d: %s" % (what, rc, err[-2000:])):
        return
    rc, _, err = mpirun(2, "train", cfg, "--set", "output.dir=" + two, *sets_two)
    if not check(rc == 0, "%s, 2 processes: exit %d: %s" % (what, rc, err[-2000:])):
        return
    check("data parallel: 2 processes x batch" in err, "%s: no data-parallel line in %r" % (what, err[-500:]))
    same_training(one, two, what)


def test_resume(tmp):
    cfg = config(tmp, "resume.ini", "batch_size = 8")
    full, part = os.path.join(tmp, "full"), os.path.join(tmp, "part")
    rc, _, err = mpirun(2, "train", cfg, "--set", "output.dir=" + full)
    check(rc == 0, "resume reference: exit %d: %s" % (rc, err[-2000:]))
    rc, _, err = mpirun(2, "train", cfg, "--set", "output.dir=" + part, "--stop-after", "3")
    check(rc == 0, "--stop-after 3 under mpirun: exit %d (want 0): %s" % (rc, err[-2000:]))
    rc, _, err = testutil.qbert("train", cfg, "--set", "output.dir=" + part, "--resume", part)
    check(rc != 0 and "written by 2 processes, this run has 1" in err,
          "resume by 1 process of a 2-process checkpoint: exit %d, %r" % (rc, err[-600:]))
    rc, _, err = mpirun(2, "train", cfg, "--set", "output.dir=" + part, "--resume", part)
    check(rc == 0, "resume with 2 processes: exit %d: %s" % (rc, err[-2000:]))

    def model(d):
        with open(os.path.join(d, "model", "model.safetensors"), "rb") as f:
            return f.read()
    check(rc == 0 and model(full) == model(part), "2 processes: the resumed model differs from the uninterrupted one")


def test_killed_rank(tmp):
    """SIGKILL one process mid-run: mpirun must end the job with an error status."""
    cfg = config(tmp, "long.ini", "batch_size = 8")
    out = os.path.join(tmp, "killed")
    cmd = [MPIEXEC, "--oversubscribe", "--bind-to", "none", "-np", "2", QBERT, "train", cfg,
           "--set", "output.dir=" + out, "--set", "train.max_steps=1000000"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=mpi_env())
    log = os.path.join(out, "train_log.jsonl")
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and p.poll() is None and not (os.path.exists(log) and os.path.getsize(log) > 0):
        time.sleep(0.1)
    victims = []
    for pid in os.listdir("/proc"):  # the training processes: qbert with this run's output dir
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"qbert" and ("output.dir=" + out).encode() in argv:
            victims.append(int(pid))
    if not check(p.poll() is None and len(victims) == 2, "killed rank: %d training processes running (want 2)" %
                 len(victims)):
        p.kill()
        p.communicate()
        return
    os.kill(max(victims), signal.SIGKILL)
    try:
        _, err = p.communicate(timeout=120)
        check(p.returncode != 0, "killed rank: mpirun exited %d (want an error)" % p.returncode)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        check(False, "killed rank: the job still ran 120 s after one process was killed (hang)")
    for pid in victims:
        check(not os.path.exists("/proc/%d" % pid) or open("/proc/%d/stat" % pid).read().split()[2] == "Z",
              "killed rank: process %d still alive" % pid)


def test_nccl(tmp):
    """On a GPU: the NCCL path with one process under mpirun (NCCL allows one process
    per GPU) computes what the run without a launcher does, bit for bit (a sum over
    one process), and follows the CPU run (per-step loss and norm within 1e-3, as
    train_test.py holds the CUDA run to the CPU's). Skipped without a usable GPU."""
    cfg = config(tmp, "gpu.ini", "batch_size = 8\n[device]\ntype = cuda")
    plain, nccl, cpu = (os.path.join(tmp, d) for d in ("gpu-plain", "gpu-nccl", "gpu-cpu"))
    rc, _, err = testutil.qbert("train", cfg, "--set", "output.dir=" + plain)
    if rc != 0 and "[device] type = cuda" in err:
        print("nccl: no usable GPU here: skipped")
        return
    check(rc == 0, "cuda, no launcher: exit %d: %s" % (rc, err[-1500:]))
    rc, _, err = mpirun(1, "train", cfg, "--set", "output.dir=" + nccl)
    check(rc == 0, "cuda under mpirun -np 1 (NCCL): exit %d: %s" % (rc, err[-1500:]))
    rc, _, err = testutil.qbert("train", cfg, "--set", "output.dir=" + cpu, "--set", "device.type=cpu")
    check(rc == 0, "cpu reference: exit %d: %s" % (rc, err[-1500:]))
    if not all(os.path.exists(os.path.join(d, "model", "model.safetensors")) for d in (plain, nccl, cpu)):
        return

    def model(d):
        with open(os.path.join(d, "model", "model.safetensors"), "rb") as f:
            return f.read()
    check(model(plain) == model(nccl), "cuda: the NCCL run's model differs from the run without a launcher")
    for p, q in zip(step_lines(cpu), step_lines(nccl)):
        for k in ("loss", "grad_norm"):
            check(abs(p[k] - q[k]) <= 1e-3 * abs(p[k]), "nccl: step %d %s %r vs the CPU's %r" % (p["step"], k, q[k], p[k]))


def run(tmp):
    compare(tmp, "finetune", "", ["--set", "train.batch_size=16"], ["--set", "train.batch_size=8"])
    compare(tmp, "accum", "grad_accum = 2", ["--set", "train.batch_size=8"], ["--set", "train.batch_size=4"])
    compare(tmp, "qat", "padding = max_length\n[qat]\nenabled = true\nobserver = ema",
            ["--set", "train.batch_size=16"], ["--set", "train.batch_size=8"])
    test_resume(tmp)
    test_killed_rank(tmp)
    test_nccl(tmp)


if __name__ == "__main__":
    sys.exit(testutil.main_in_tempdir("dist_test", run))
