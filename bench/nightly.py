#!/usr/bin/env python3
"""The nightly kernel benchmark's history (bench/nightly.sh): records, comparison, trend chart.

  nightly.py record HISTORY --machine M --device D --commit C [--date D] JSON...
      appends one record: each kernel's time in microseconds, from qbert-bench gemm
      (--json) and / or qbert-bench kernels (--json) files
  nightly.py compare HISTORY --machine M --device D [--window 10] [--threshold 0.10]
                     [--svg FILE]
      the newest record of that machine and device against the median of up to `window`
      records before it: a table of changes, exit status 1 when a kernel is slower by more
      than the threshold AND by more than 3 robust standard deviations of its history
      (1.4826 x the median absolute deviation), so noise within the spread is not
      flagged; kernels with fewer than 3 earlier records are only listed. --svg draws
      the history of every kernel (time / its median, the threshold shaded).

HISTORY is JSON lines, one record a line: {"date", "commit", "machine", "device",
"kernels": {NAME: microseconds}}. Standard library only."""
import argparse
import datetime
import json
import statistics
import sys

GEMM_PATHS = (("fp32", "fp32_ms"), ("int8-dynamic", "int8_dynamic_ms"), ("int8-static", "int8_static_ms"),
              ("int4", "int4_ms"), ("quantize-x", "quantize_x_u8_ms"))


def kernel_times(doc):
    """{name: microseconds} of one qbert-bench JSON document (gemm or kernels)."""
    out = {}
    for r in doc.get("results", []):
        if "M" in r:  # qbert-bench gemm
            for name, key in GEMM_PATHS:
                if isinstance(r.get(key), (int, float)):
                    out["gemm %s %dx%dx%d" % (name, r["M"], r["N"], r["K"])] = r[key] * 1e3
        elif isinstance(r.get("us"), (int, float)):  # qbert-bench kernels
            out["%s %s" % (r["kernel"], r.get("shape", ""))] = r["us"]
    return out


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def record(a):
    kernels = {}
    for p in a.json:
        with open(p, encoding="utf-8") as f:
            kernels.update(kernel_times(json.load(f)))
    if not kernels:
        sys.exit("nightly.py record: no kernel figures in %s" % ", ".join(a.json))
    rec = {"date": a.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "commit": a.commit, "machine": a.machine, "device": a.device, "kernels": kernels}
    with open(a.history, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec, sort_keys=True) + "\n")
    print("recorded %d kernels for %s / %s at %s" % (len(kernels), a.machine, a.device, a.commit))


def verdict(history, latest, threshold):
    """(median, robust sigma, change, verdict) of one kernel's latest time."""
    if len(history) < 3:
        return None, None, None, "new" if not history else "too few records"
    med = statistics.median(history)
    sigma = 1.4826 * statistics.median(abs(x - med) for x in history)
    change = latest / med - 1
    if change > threshold and latest - med > 3 * sigma:
        return med, sigma, change, "SLOWER"
    if -change > threshold and med - latest > 3 * sigma:
        return med, sigma, change, "faster"
    return med, sigma, change, "ok"


def compare(a):
    recs = [r for r in load(a.history) if r.get("machine") == a.machine and r.get("device") == a.device]
    if not recs:
        sys.exit("nightly.py compare: no records of %s / %s in %s" % (a.machine, a.device, a.history))
    latest, before = recs[-1], recs[:-1][-a.window:]
    print("%s / %s: %s (%s) against the median of %d earlier records (threshold %.0f%%, and 3 robust sigma)\n" %
          (a.machine, a.device, latest["commit"], latest["date"], len(before), 100 * a.threshold))
    print("| kernel | median us | now us | change | spread (sigma) | verdict |")
    print("|---|---|---|---|---|---|")
    slower = []
    for name, now in sorted(latest["kernels"].items()):
        hist = [r["kernels"][name] for r in before if name in r["kernels"]]
        med, sigma, change, v = verdict(hist, now, a.threshold)
        if v == "SLOWER":
            slower.append(name)
        fmt = (lambda x, f: f % x if x is not None else "")
        print("| %s | %s | %.3f | %s | %s | %s |" % (name, fmt(med, "%.3f"), now, fmt(change and 100 * change, "%+.1f%%"),
                                                  fmt(sigma and 100 * sigma / med, "%.1f%%"), v))
    if a.svg:
        with open(a.svg, "w", encoding="utf-8") as f:
            f.write(trend_svg(recs[-(a.window + 1):], a.machine, a.device, a.threshold))
        print("\ntrend chart: %s" % a.svg)
    if slower:
        print("\n%d kernel(s) slower than their history: %s" % (len(slower), ", ".join(slower)))
        return 1
    return 0


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def trend_svg(recs, machine, device, threshold):
    """Small multiples: per kernel, time / median of the shown records, record by record."""
    names = sorted({k for r in recs for k in r["kernels"]})
    cols, w, h, pad = 4, 230, 120, 34
    rows = (len(names) + cols - 1) // cols
    width, height = cols * w + 20, rows * h + 60
    out = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="10">'
           % (width, height), '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="20" font-size="14">Kernel time / its median, last %d runs: %s, %s</text>' %
           (len(recs), esc(machine[:60]), esc(device[:40])),
           '<text x="10" y="36" fill="#666">oldest to newest, left to right; shaded: within %.0f%% of the median; '
           'the dot and the figure: the newest run (red: slower than that); lower is faster</text>' %
           (100 * threshold)]
    lo_y, hi_y = 0.5, 1.5  # the plotted range of time / median
    for i, name in enumerate(names):
        x0, y0 = 10 + (i % cols) * w, 50 + (i // cols) * h
        pts = [(j, r["kernels"][name]) for j, r in enumerate(recs) if name in r["kernels"]]
        med = statistics.median(v for _, v in pts)
        sx = lambda j: x0 + pad + (w - pad - 10) * (j / max(1, len(recs) - 1))
        sy = lambda v: y0 + 26 + (h - 44) * (1 - (min(max(v / med, lo_y), hi_y) - lo_y) / (hi_y - lo_y))
        out.append('<text x="%d" y="%d">%s</text>' % (x0 + 2, y0 + 12, esc(name[:40])))
        out.append('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#e8f0fe"/>' %
                   (sx(0), sy(med * (1 + threshold)), sx(len(recs) - 1) - sx(0),
                    sy(med * (1 - threshold)) - sy(med * (1 + threshold))))
        for v, label in ((lo_y, "%.1f" % lo_y), (1.0, "1"), (hi_y, "%.1f" % hi_y)):
            out.append('<text x="%d" y="%.1f" fill="#666">%s</text>' % (x0 + 4, sy(med * v) + 3, label))
        out.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="2,2"/>' %
                   (sx(0), sy(med), sx(len(recs) - 1), sy(med)))
        out.append('<polyline fill="none" stroke="#1a73e8" stroke-width="1.5" points="%s"/>' %
                   " ".join("%.1f,%.1f" % (sx(j), sy(v)) for j, v in pts))
        j, v = pts[-1]
        color = "#d93025" if v / med - 1 > threshold else "#1a73e8"  # red: slower than the band
        out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (sx(j), sy(v), color))
        out.append('<text x="%.1f" y="%.1f" fill="%s" text-anchor="end">%+.0f%%</text>' %
                   (x0 + w - 8, y0 + 12, color, 100 * (v / med - 1)))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("history")
    r.add_argument("json", nargs="+")
    c = sub.add_parser("compare")
    c.add_argument("history")
    c.add_argument("--window", type=int, default=10)
    c.add_argument("--threshold", type=float, default=0.10)
    c.add_argument("--svg")
    for s in (r, c):
        s.add_argument("--machine", required=True)
        s.add_argument("--device", required=True)
    r.add_argument("--commit", required=True)
    r.add_argument("--date")
    a = p.parse_args()
    if a.cmd == "record":
        record(a)
        return 0
    return compare(a)


if __name__ == "__main__":
    sys.exit(main())
