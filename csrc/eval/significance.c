/* Whether a difference between two models on the same texts is real: McNemar's exact
 * test on the paired right / wrong predictions, a paired bootstrap interval of the
 * accuracy and weighted-F1 differences, and t-intervals across seeds
 * (include/qbert/metrics.h). */
#include "qbert/metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double qb_mcnemar_exact(int b, int c)
{
    const int n = b + c, k = b < c ? b : c;
    if (n == 0) return 1.0;
    /* 2 P[X <= k] for X ~ Binomial(n, 1/2), each term from logs (n may be thousands) */
    double p = 0.0;
    for (int i = 0; i <= k; i++)
        p += exp(lgamma(n + 1.0) - lgamma(i + 1.0) - lgamma(n - i + 1.0) - n * log(2.0));
    return fmin(1.0, 2.0 * p);
}

/* Accuracy and weighted F1 (sklearn's f1_score average="weighted", zero_division=0)
 * of pred against gold over the texts idx[0..n); counts: 3 * K ints of scratch. */
static void scores(const int *gold, const int *pred, const int32_t *idx, int n, int K, int *counts, double *acc,
                   double *f1)
{
    int *tp = counts, *fp = counts + K, *fn = counts + 2 * K, right = 0;
    memset(counts, 0, 3 * (size_t)K * sizeof *counts);
    for (int i = 0; i < n; i++) {
        const int g = gold[idx[i]], p = pred[idx[i]];
        if (g == p) tp[g]++, right++;
        else fp[p]++, fn[g]++;
    }
    double sum = 0.0;
    for (int k = 0; k < K; k++) {
        const int denominator = 2 * tp[k] + fp[k] + fn[k];
        if (denominator) sum += (double)(tp[k] + fn[k]) * 2.0 * tp[k] / denominator;
    }
    *acc = (double)right / n;
    *f1 = sum / n;  /* the supports add up to n */
}

qb_status qb_paired_compare(const int *gold, const int *base, const int *variant, int n, int num_labels,
                            int resamples, uint64_t seed, const int32_t *indices, qb_paired_comparison *out)
{
    memset(out, 0, sizeof *out);
    if (n < 1 || num_labels < 1 || resamples < 2)
        return qb_fail(QB_EINVAL, "paired comparison: %d texts, %d labels, %d resamples", n, num_labels, resamples);
    for (int i = 0; i < n; i++)
        if (gold[i] < 0 || gold[i] >= num_labels || base[i] < 0 || base[i] >= num_labels || variant[i] < 0 ||
            variant[i] >= num_labels)
            return qb_fail(QB_EINVAL, "paired comparison: text %d has a label outside [0, %d)", i, num_labels);
    int32_t *idx = malloc((size_t)n * sizeof *idx);
    int *counts = malloc(3 * (size_t)num_labels * sizeof *counts);
    double *d = malloc(2 * (size_t)resamples * sizeof *d), *df1 = d + resamples;
    if (!idx || !counts || !d) {
        free(idx), free(counts), free(d);
        return qb_fail(QB_ENOMEM, "paired comparison: out of memory");
    }
    for (int i = 0; i < n; i++) {
        out->b += base[i] == gold[i] && variant[i] != gold[i];
        out->c += base[i] != gold[i] && variant[i] == gold[i];
    }
    out->mcnemar_p = qb_mcnemar_exact(out->b, out->c);
    double a0, f0, a1, f1;
    for (int i = 0; i < n; i++) idx[i] = i;
    scores(gold, base, idx, n, num_labels, counts, &a0, &f0);
    scores(gold, variant, idx, n, num_labels, counts, &a1, &f1);
    out->acc_diff = a1 - a0, out->f1_diff = f1 - f0;
    qb_rng rng;
    qb_rng_init(&rng, seed);
    for (int r = 0; r < resamples; r++) {
        const int32_t *ix = indices ? indices + (size_t)r * n : idx;
        if (!indices)  /* n texts drawn with replacement, the same for both models (paired) */
            for (int i = 0; i < n; i++) idx[i] = (int32_t)(qb_rng_u32(&rng) % (uint32_t)n);
        scores(gold, base, ix, n, num_labels, counts, &a0, &f0);
        scores(gold, variant, ix, n, num_labels, counts, &a1, &f1);
        d[r] = a1 - a0, df1[r] = f1 - f0;
    }
    qb_sort_doubles(d, resamples);
    qb_sort_doubles(df1, resamples);
    out->acc_lo = qb_percentile_sorted(d, resamples, 2.5), out->acc_hi = qb_percentile_sorted(d, resamples, 97.5);
    out->f1_lo = qb_percentile_sorted(df1, resamples, 2.5), out->f1_hi = qb_percentile_sorted(df1, resamples, 97.5);
    free(idx), free(counts), free(d);
    return QB_OK;
}

/* The regularized incomplete beta function I_x(a, b) by its continued fraction
 * (modified Lentz), on the side of x where the fraction converges fast. */
static double incomplete_beta(double a, double b, double x)
{
    if (x <= 0.0) return 0.0;
    if (x >= 1.0) return 1.0;
    if (x > (a + 1.0) / (a + b + 2.0)) return 1.0 - incomplete_beta(b, a, 1.0 - x);
    const double front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x)) / a;
    const double tiny = 1e-300;
    double f = 1.0, c = 1.0, d = 0.0;
    for (int i = 0; i <= 400; i++) {
        const int m = i / 2;
        double numerator;
        if (i == 0) numerator = 1.0;
        else if (i % 2 == 0) numerator = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        else numerator = -((a + m) * (a + b + m) * x) / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 + numerator * d;
        d = 1.0 / (fabs(d) < tiny ? tiny : d);
        c = 1.0 + numerator / (fabs(c) < tiny ? tiny : c);
        f *= c * d;
        if (fabs(1.0 - c * d) < 1e-16) break;
    }
    return front * (f - 1.0);
}

/* P[T <= t] for t >= 0, T ~ Student's t with df degrees of freedom. */
static double t_cdf_upper_half(double t, int df)
{
    return 1.0 - 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
}

double qb_t_quantile(double q, int df)
{
    if (!(q > 0.0 && q < 1.0) || df < 1) return NAN;
    if (q < 0.5) return -qb_t_quantile(1.0 - q, df);
    double lo = 0.0, hi = 1.0;
    while (t_cdf_upper_half(hi, df) < q && hi < 1e300) lo = hi, hi *= 2.0;
    for (int i = 0; i < 200 && hi - lo > 1e-15 * hi; i++) {  /* bisection: the CDF is monotone */
        const double mid = 0.5 * (lo + hi);
        if (t_cdf_upper_half(mid, df) < q) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

void qb_seed_stats_compute(const double *v, int n, qb_seed_stats *out)
{
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++) sum += v[i];
    const double mean = n ? sum / n : NAN;
    for (int i = 0; i < n; i++) sq += (v[i] - mean) * (v[i] - mean);
    out->n = n, out->mean = mean;
    out->std = n > 1 ? sqrt(sq / (n - 1)) : 0.0;
    const double half = n > 1 ? qb_t_quantile(0.975, n - 1) * out->std / sqrt(n) : NAN;
    out->lo = mean - half, out->hi = mean + half;
}
