/* Latency statistics for the benchmark harness: mean, median, sample std, p95,
 * min, max. Percentiles use numpy.percentile's default ("linear") definition so
 * the numbers agree with the Python peer scripts in bench/peers/. */
#include "qbert/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void qb_sort_doubles(double *v, int n) { qsort(v, (size_t)n, sizeof *v, compare_doubles); }

double qb_percentile_sorted(const double *sorted, int n, double q)
{
    double pos = (double)(n - 1) * q / 100.0;
    int lo = (int)floor(pos);
    if (lo >= n - 1) return sorted[n - 1];
    double frac = pos - lo;
    return sorted[lo] + (sorted[lo + 1] - sorted[lo]) * frac;
}

qb_status qb_latency_compute(const double *samples_ms, int n, qb_latency_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!samples_ms || n < 1)
        return qb_fail(QB_EINVAL, "latency: %d samples, expected at least 1", n);
    for (int i = 0; i < n; i++)
        if (!isfinite(samples_ms[i]) || samples_ms[i] < 0)
            return qb_fail(QB_EINVAL, "latency: sample %d = %g ms, expected a finite value >= 0", i,
                           samples_ms[i]);

    /* sort a copy: the caller's samples stay in measurement order */
    double *s = qb_malloc((size_t)n * sizeof *s);
    if (!s) return qb_fail(QB_ENOMEM, "latency: cannot allocate %d samples", n);
    memcpy(s, samples_ms, (size_t)n * sizeof *s);
    qb_sort_doubles(s, n);

    double sum = 0;
    for (int i = 0; i < n; i++) sum += s[i];
    double mean = sum / n;
    /* two passes (mean first, then squared deviations) avoid the cancellation of
     * the sum-of-squares formula when the spread is small next to the mean */
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (s[i] - mean) * (s[i] - mean);

    out->n = n;
    out->mean = mean;
    out->std = n > 1 ? sqrt(ss / (n - 1)) : 0.0;
    out->median = qb_percentile_sorted(s, n, 50.0);
    out->p95 = qb_percentile_sorted(s, n, 95.0);
    out->min = s[0];
    out->max = s[n - 1];
    qb_free(s);
    return QB_OK;
}
