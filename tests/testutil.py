"""Helpers shared by the end-to-end tests (cli_test.py, train_test.py): the qbert binary
($QBERT_BIN or argv[1]), pass/fail counting, running the binary (a sanitizer report in
its stderr fails a check even where the exit status was the expected one), writing
files. Standard library only."""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

QBERT = os.environ.get("QBERT_BIN") or (sys.argv[1] if len(sys.argv) > 1 else None)
TIMEOUT = 300  # per command: generous for the ASan build (about 5x slower)
counts = {"passed": 0, "failed": 0}


def check(cond, what):
    if cond:
        counts["passed"] += 1
    else:
        counts["failed"] += 1
        print("FAIL:", what)
    return cond


def sanitizer_clean(args, err):
    return check(not any(s in err for s in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")),
                 "%s: sanitizer report:\n%s" % (" ".join(args), err[-3000:]))


def qbert(*args, stdin=None):
    """(exit status, stdout, stderr) of QBERT args..., stdin bytes or None."""
    p = subprocess.run([QBERT, *args], input=stdin, capture_output=True, timeout=TIMEOUT)
    err = p.stderr.decode("utf-8", "replace")
    sanitizer_clean(args, err)
    return p.returncode, p.stdout.decode("utf-8", "replace"), err


def expect_error(args, code, needles, stdin=None, what=None):
    """QBERT args... must exit with `code` and a stderr holding every string of needles."""
    rc, out, err = qbert(*args, stdin=stdin)
    ok = rc == code and all(n in err for n in needles)
    check(ok, "%s: exit %d (want %d), stderr %r lacks %r" % (what or args, rc, code, err.strip(), needles))


def read_safetensors(path):
    """{name: (shape, values)} of an F32 / I32 safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        raw = data[8 + n + b:8 + n + e]
        fmt = {"F32": "f", "I32": "i"}[t["dtype"]]
        out[name] = (t["shape"], struct.unpack("<%d%s" % (len(raw) // 4, fmt), raw))
    return out


def write(path, data):
    """Writes str (as UTF-8) or bytes; returns path."""
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def summary(name, extra=""):
    """Prints "NAME: N passed, N failed" and returns the exit status."""
    print("%s: %d passed, %d failed%s" % (name, counts["passed"], counts["failed"], extra))
    return 1 if counts["failed"] else 0


def main_in_tempdir(name, run):
    """A test script's main: run(tmp) in a fresh temporary directory, then the summary."""
    if not QBERT:
        print("usage: %s.py QBERT_BINARY (or QBERT_BIN=...)" % name)
        return 2
    tmp = tempfile.mkdtemp(prefix="qbert-%s-" % name)
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp)
    return summary(name)
