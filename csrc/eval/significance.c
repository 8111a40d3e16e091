/* Whether a difference between two models on the same texts is real: McNemar's exact
 * test on the paired right / wrong predictions, and a paired bootstrap interval of the
 * accuracy and weighted-F1 differences (include/qbert/metrics.h). */
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

static int compare_doubles(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

qb_status qb_paired_bootstrap(const int *gold, const int *base, const int *variant, int n, int num_labels,
                              int resamples, uint64_t seed, const int32_t *indices, qb_paired_diff *out)
{
    memset(out, 0, sizeof *out);
    if (n < 1 || num_labels < 1 || resamples < 2)
        return qb_fail(QB_EINVAL, "paired bootstrap: %d texts, %d labels, %d resamples", n, num_labels, resamples);
    for (int i = 0; i < n; i++)
        if (gold[i] < 0 || gold[i] >= num_labels || base[i] < 0 || base[i] >= num_labels || variant[i] < 0 ||
            variant[i] >= num_labels)
            return qb_fail(QB_EINVAL, "paired bootstrap: text %d has a label outside [0, %d)", i, num_labels);
    int32_t *idx = malloc((size_t)n * sizeof *idx);
    int *counts = malloc(3 * (size_t)num_labels * sizeof *counts);
    double *d = malloc(2 * (size_t)resamples * sizeof *d), *df1 = d + resamples;
    if (!idx || !counts || !d) {
        free(idx), free(counts), free(d);
        return qb_fail(QB_ENOMEM, "paired bootstrap: out of memory");
    }
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
    qsort(d, (size_t)resamples, sizeof *d, compare_doubles);
    qsort(df1, (size_t)resamples, sizeof *df1, compare_doubles);
    out->acc_lo = qb_percentile_sorted(d, resamples, 2.5), out->acc_hi = qb_percentile_sorted(d, resamples, 97.5);
    out->f1_lo = qb_percentile_sorted(df1, resamples, 2.5), out->f1_hi = qb_percentile_sorted(df1, resamples, 97.5);
    free(idx), free(counts), free(d);
    return QB_OK;
}
