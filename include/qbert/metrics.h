/* Evaluation: classification metrics (the numbers the research notes report),
 * their reports (a text table, JSON, an SVG confusion-matrix heat map) and latency
 * statistics for the benchmark harness.
 *
 * Definitions match scikit-learn: accuracy_score, confusion_matrix(labels=range(K)),
 * precision_recall_fscore_support(labels=range(K), average=None|'macro'|'weighted')
 * and classification_report, with sklearn's default zero_division ("warn" -> 0):
 * a class with no predictions has precision 0, a class with no gold samples has
 * recall 0, and F1 is 0 when precision + recall is 0.
 *
 * Macro averages are over all K classes, as sklearn computes them when given
 * labels=range(K). (Without labels= sklearn averages only the classes present in
 * gold or predictions; the two agree whenever every class occurs.) */
#ifndef QBERT_METRICS_H
#define QBERT_METRICS_H

#include <stdio.h>
#include <cjson/cJSON.h>

#include "qbert/core.h"

typedef struct {
    int num_labels;         /* K */
    int n;                  /* number of samples */
    int64_t *confusion;     /* (K, K) row-major: [gold * K + pred] */
    double accuracy;
    double *precision;      /* (K,) */
    double *recall;         /* (K,) */
    double *f1;             /* (K,) */
    int64_t *support;       /* (K,) gold samples per class */
    double macro_p, macro_r, macro_f1;
    double weighted_p, weighted_r, weighted_f1;  /* weighted by support */
    double avg_confidence;  /* mean probability of the predicted class; NaN when not given */
} qb_metrics;

/* gold, pred: (n,) label ids in [0, num_labels). confidence: (n,) probabilities of
 * the predicted class in [0, 1], or NULL. n >= 1. On failure *m is left zeroed
 * (qb_metrics_free on it is harmless). */
qb_status qb_metrics_compute(const int *gold, const int *pred, const float *confidence, int n,
                             int num_labels, qb_metrics *m);
void qb_metrics_free(qb_metrics *m);

/* label_names: (K,) names, or NULL for the decimal ids "0", "1", ...
 *
 * qb_metrics_print writes a classification_report-style table, the confusion
 * matrix with label names, and a summary line (accuracy, weighted P/R/F1, average
 * confidence). */
void qb_metrics_print(FILE *f, const qb_metrics *m, const char *const *label_names);

/* {accuracy, precision_weighted, recall_weighted, f1_weighted, precision_macro,
 *  recall_macro, f1_macro, avg_confidence (null when not given), n,
 *  per_class: {name: {precision, recall, f1, support}},
 *  confusion_matrix: {labels: [...], matrix: [[...]] (rows = gold)}}.
 * Returns NULL (with the message in qb_error()) when out of memory or when two
 * label names are equal (they are object keys). Free with cJSON_Delete. */
cJSON *qb_metrics_to_json(const qb_metrics *m, const char *const *label_names);
/* Writes pretty-printed JSON plus a final newline, atomically. */
qb_status qb_json_write_file(const char *path, const cJSON *json);

/* A standalone SVG heat map of the confusion matrix: rows = gold, columns =
 * predicted, each cell showing its count and its share of the row; colour by the
 * row share (white -> blue). title may be NULL. Returns a malloc'ed string (free
 * with free()), or NULL when out of memory (message in qb_error()). */
char *qb_confusion_svg(const qb_metrics *m, const char *const *label_names, const char *title);
/* One panel of qb_bars_svg: a series of n_rows values (a non-finite one is drawn as
 * "n/a"); high, when not NULL, a whisker from each bar's end to that value (the p95 of
 * a median); zoom: the axis starts just below the smallest value instead of at 0, and
 * says so (accuracies a few tenths of a point apart); percent: values in [0, 1] printed
 * as percentages. Every value of a panel is printed with the same number of decimals. */
typedef struct {
    const char *name;
    const double *values, *high;
    bool zoom, percent;
} qb_bar_panel;
/* A standalone SVG of horizontal bar charts side by side, one panel per series, one
 * bar per row (rows, n_rows; the first, the baseline, drawn darker). The title is
 * cut with an ellipsis where it would run off the image. Returns a malloc'ed string,
 * or NULL when out of memory. */
char *qb_bars_svg(const char *title, const char *const *rows, int n_rows, const qb_bar_panel *panels, int n_panels);
/* A group of numbers for the distribution charts (a split's text lengths, say). */
typedef struct {
    const char *name;
    const double *values;   /* (n), >= 0 */
    int n;
} qb_series;
/* Histograms of the series, one panel under another on shared bins (about `bins` of
 * equal width from 0 to the largest value; whole numbers when the width is >= 1), each
 * bar the share of its series (so splits of different sizes compare), with n and the
 * median beside. Returns a malloc'ed SVG, or NULL when out of memory. */
char *qb_histogram_svg(const char *title, const char *x_label, const qb_series *s, int n_series, int bins);
/* Box plots, one row per series on a shared axis from 0: the box from the 25th to the
 * 75th percentile (numpy's linear interpolation), a line at the median, a dot at the
 * mean, whiskers to the furthest values within 1.5 IQR of the box and circles beyond. */
char *qb_boxplot_svg(const char *title, const char *x_label, const qb_series *s, int n_series);
/* Horizontal bars either side of zero, one per name (positive green to the right,
 * negative red to the left), scaled to the largest |value|: word attributions. */
char *qb_diverging_svg(const char *title, const char *const *names, const double *values, int n);
/* Writes an SVG string atomically. */
qb_status qb_svg_write(const char *path, const char *svg);

/* Latency statistics in milliseconds. std is the sample standard deviation
 * (n - 1 in the denominator; 0 when n == 1); median and p95 interpolate linearly
 * between order statistics like numpy.percentile's default. */
typedef struct {
    int n;
    double mean, median, std, p95, min, max;
} qb_latency_stats;

/* samples_ms: (n,) finite, non-negative; not modified. n >= 1. */
qb_status qb_latency_compute(const double *samples_ms, int n, qb_latency_stats *out);
/* v (n) in ascending order. */
void qb_sort_doubles(double *v, int n);
/* The q-th percentile (0 <= q <= 100) of sorted (ascending) values, n >= 1:
 * position (n - 1) * q / 100, linear interpolation between its neighbours. */
double qb_percentile_sorted(const double *sorted, int n, double q);

/* ---- Is a difference real? (significance.c) ---- */

/* McNemar's exact test of two models on the same texts: b texts the first got right
 * and the second wrong, c the reverse; the two-sided p = min(1, 2 P[X <= min(b, c)]),
 * X ~ Binomial(b + c, 1/2), as statsmodels' mcnemar(exact=True). 1 when b + c = 0. */
double qb_mcnemar_exact(int b, int c);

/* A variant against a baseline on the same n texts. */
typedef struct {
    int b, c;               /* texts only the baseline got right; only the variant */
    double mcnemar_p;       /* qb_mcnemar_exact(b, c) */
    /* variant - baseline, and the paired bootstrap 95% interval: the 2.5th and 97.5th
     * percentiles (numpy's linear interpolation) of `resamples` differences over n
     * texts drawn with replacement, the same draw for both models */
    double acc_diff, acc_lo, acc_hi;
    double f1_diff, f1_lo, f1_hi;  /* weighted F1 */
} qb_paired_comparison;

/* gold, base, variant (n) labels in [0, num_labels). indices: (resamples, n) draws to
 * use (a test's), or NULL: drawn from seed (Philox). */
qb_status qb_paired_compare(const int *gold, const int *base, const int *variant, int n, int num_labels,
                            int resamples, uint64_t seed, const int32_t *indices, qb_paired_comparison *out);

/* The q-quantile (0 < q < 1) of Student's t distribution with df >= 1 degrees of
 * freedom (scipy.stats.t.ppf). */
double qb_t_quantile(double q, int df);

/* A score over n runs (seeds): mean, sample std (ddof 1) and the two-sided 95%
 * t-interval of the mean, mean -+ t(0.975, n - 1) std / sqrt(n) (scipy.stats.t.interval);
 * with n = 1 std is 0 and the interval NaN (one run says nothing about the spread). */
typedef struct {
    int n;
    double mean, std, lo, hi;
} qb_seed_stats;

void qb_seed_stats_compute(const double *v, int n, qb_seed_stats *out);

#endif
