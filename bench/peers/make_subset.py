#!/usr/bin/env python3
"""make_subset.py SRC DST N [--seed 42]

Write a deterministic random subset of N lines of a TSV (text<TAB>label).
Line indices are shuffled with random.Random(seed) and the first N are kept, in
their original file order. A uniform random sample is stratified only in
expectation ("-ish"); print the label counts so the caller can check.
Standard library only, so the qbert side can use it without numpy.
"""
import argparse
import collections
import random

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("src")
ap.add_argument("dst")
ap.add_argument("n", type=int)
ap.add_argument("--seed", type=int, default=42)
a = ap.parse_args()

with open(a.src, encoding="utf-8") as f:
    lines = [l for l in f if l.strip()]  # skip blank lines (e.g. a trailing one)
if not 0 < a.n <= len(lines):
    ap.error(f"N must be in 1..{len(lines)}")

idx = list(range(len(lines)))
random.Random(a.seed).shuffle(idx)  # Mersenne Twister: same result on every CPython 3
keep = sorted(idx[: a.n])

with open(a.dst, "w", encoding="utf-8", newline="\n") as f:
    for i in keep:
        f.write(lines[i] if lines[i].endswith("\n") else lines[i] + "\n")

counts = collections.Counter(lines[i].rstrip("\n").rsplit("\t", 1)[-1] for i in keep)
print(f"{a.dst}: {a.n} of {len(lines)} lines, labels {dict(sorted(counts.items()))}")
