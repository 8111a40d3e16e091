"""Summary of run_interleaved.sh: per point, each round's median latency for ONNX
Runtime INT8 and qbert INT8 and their ratio (ORT / qbert: > 1 means qbert is faster),
then the median, min and max ratio over the rounds. Prints a Markdown table and writes
OUT/summary.json.

usage: python3 interleave_summary.py OUT ROUNDS   (stdlib only)
"""
import json
import statistics
import sys


def medians(path, key):
    with open(path) as f:
        rows = json.load(f)["results"]
    return {(r["batch"], r["seq"]): r["median_ms"] for r in rows if key(r)}


def main():
    out, rounds = sys.argv[1], int(sys.argv[2])
    per_point = {}
    for r in range(1, rounds + 1):
        ort = medians(f"{out}/ort-int8-r{r}.json", lambda row: row["precision"] == "int8-dynamic")
        qb = medians(f"{out}/qbert-int8-r{r}.json", lambda row: True)
        for p in sorted(ort):
            per_point.setdefault(p, []).append((ort[p], qb[p], ort[p] / qb[p]))
    summary = []
    print("| batch x seq | ORT INT8 ms per round | qbert INT8 ms per round | ratio per round | "
          "median ratio | min | max |")
    print("|---|---|---|---|---:|---:|---:|")
    for (b, s), rows in sorted(per_point.items()):
        ratios = [x[2] for x in rows]
        row = {"batch": b, "seq": s, "ort_ms": [x[0] for x in rows], "qbert_ms": [x[1] for x in rows],
               "ratios": ratios, "median_ratio": statistics.median(ratios),
               "min_ratio": min(ratios), "max_ratio": max(ratios)}
        summary.append(row)
        fmt = lambda v: " ".join(f"{x:.1f}" for x in v)
        print(f"| {b}x{s} | {fmt(row['ort_ms'])} | {fmt(row['qbert_ms'])} | "
              f"{' '.join(f'{x:.2f}' for x in ratios)} | {row['median_ratio']:.2f} | "
              f"{row['min_ratio']:.2f} | {row['max_ratio']:.2f} |")
    with open(f"{out}/summary.json", "w") as f:
        json.dump({"rounds": rounds, "points": summary}, f, indent=1)


if __name__ == "__main__":
    main()
