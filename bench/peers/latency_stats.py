"""The latency statistics of `qbert-bench latency`, for the Python peers: timed-run
milliseconds -> mean, median, population std and p95 (the sorted run at 95 %)."""
import statistics


def stats(times_ms):
    s = sorted(times_ms)
    return {"mean_ms": statistics.fmean(s), "median_ms": statistics.median(s),
            "std_ms": statistics.pstdev(s), "p95_ms": s[min(len(s) - 1, int(0.95 * len(s)))]}
