#!/usr/bin/env python3
"""bench/nightly.py on synthetic histories (no benchmark runs): a planted regression is
caught and named (exit 1); a change within the history's spread is not, nor one under
the threshold; a faster kernel is reported, not failed; qbert-bench gemm and kernels JSON
both read; the trend chart is well-formed SVG with a panel per kernel; records of other
machines and devices are not compared. Standard library only."""
import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
NIGHTLY = os.path.join(HERE, "..", "bench", "nightly.py")
failed = passed = 0


def check(cond, what):
    global failed, passed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what)


def gemm_doc(ms):
    """A qbert-bench gemm JSON with one shape; ms: {path: milliseconds}."""
    row = {"M": 128, "N": 768, "K": 768}
    row.update({k + "_ms": v for k, v in ms.items()})
    return {"results": [row]}


def kernels_doc(us):
    return {"results": [{"kernel": k, "shape": "B32", "us": v} for k, v in us.items()]}


def nightly(*args):
    p = subprocess.run([sys.executable, NIGHTLY, *args], capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def history(tmp, name, runs, machine="m1", device="cpu"):
    """Records runs (a list of docs) into tmp/name; returns the path."""
    path = os.path.join(tmp, name)
    for i, doc in enumerate(runs):
        js = os.path.join(tmp, "%s-%d.json" % (name, i))
        with open(js, "w") as f:
            json.dump(doc, f)
        rc, out = nightly("record", path, js, "--machine", machine, "--device", device, "--commit", "c%d" % i,
                          "--date", "2026-12-%02d" % (i + 1))
        check(rc == 0, "record %s %d: %s" % (name, i, out))
    return path


def compare(path, *extra, machine="m1", device="cpu"):
    return nightly("compare", path, "--machine", machine, "--device", device, *extra)


def run(tmp):
    quiet = [1.0, 0.99, 1.02, 1.01, 0.98, 1.0, 1.01, 0.99, 1.02, 1.0]     # +-2%
    loud = [0.85, 1.15, 0.9, 1.1, 1.0, 0.88, 1.12, 0.95, 1.05, 1.0]       # +-15%: sigma about 15%
    # 1. a quiet history, then fp32 25% slower: caught and named, the rest ok
    runs = [gemm_doc({"fp32": q, "int8_dynamic": 0.2 * q}) for q in quiet]
    runs.append(gemm_doc({"fp32": 1.25, "int8_dynamic": 0.201}))
    path = history(tmp, "h1.jsonl", runs)
    svg = os.path.join(tmp, "trend.svg")
    rc, out = compare(path, "--svg", svg)
    check(rc == 1 and "SLOWER" in out and "gemm fp32 128x768x768" in out.split("slower than their history:")[-1],
          "planted regression: exit %d\n%s" % (rc, out))
    check("gemm int8-dynamic 128x768x768" not in out.split("slower than their history:")[-1],
          "a steady kernel flagged:\n%s" % out)
    try:
        root = ET.parse(svg).getroot()
        panels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text") if t.text and t.text.startswith("gemm")]
        check(len(panels) == 2, "trend chart panels: %r" % panels)
    except (ET.ParseError, OSError) as e:
        check(False, "trend chart: %s" % e)
    # 2. noisy history (+-15%): 12% slower is within its spread, not flagged
    runs = [gemm_doc({"fp32": x}) for x in loud] + [gemm_doc({"fp32": 1.12})]
    rc, out = compare(history(tmp, "h2.jsonl", runs))
    check(rc == 0 and "SLOWER" not in out, "noise within the spread flagged: exit %d\n%s" % (rc, out))
    # 3. no noise: 12% slower is over the threshold; 8% is not; 30% faster is reported, not failed
    steady = [kernels_doc({"attention": 10.0, "gelu": 5.0, "adamw": 40.0}) for _ in range(6)]
    rc, out = compare(history(tmp, "h3.jsonl", steady + [kernels_doc({"attention": 11.2, "gelu": 5.4, "adamw": 28.0})]))
    lines = {l.split("|")[1].strip(): l for l in out.splitlines() if l.startswith("| ") and "kernel" not in l}
    check(rc == 1 and "SLOWER" in lines.get("attention B32", ""), "12%% over a steady history: exit %d\n%s" % (rc, out))
    check("ok" in lines.get("gelu B32", "") and "faster" in lines.get("adamw B32", ""),
          "8%% slower / 30%% faster:\n%s" % out)
    # 4. other machines and devices are kept apart; too short a history only lists
    path = history(tmp, "h4.jsonl", [kernels_doc({"k": 1.0})] * 5, machine="m2")
    history(tmp, "h4.jsonl", [kernels_doc({"k": 9.0})], machine="m1")
    rc, out = compare(path, machine="m1")
    check(rc == 0 and "new" in out, "one record of m1, four of m2: exit %d\n%s" % (rc, out))
    rc, out = compare(path, machine="m3")
    check(rc != 0 and "no records" in out, "unknown machine: exit %d %s" % (rc, out))


def main():
    with tempfile.TemporaryDirectory(prefix="qbert-nightly-") as tmp:
        run(tmp)
    print("nightly_test: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
