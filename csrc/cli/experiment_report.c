/* The reports of qbert experiment / qbert bench: results.json (everything),
 * results.md (the tables, also printed) and results.svg (accuracy, size, latency).
 *
 * "Is the difference real?": every row against the baseline row of its run on the
 * same test texts (McNemar's exact test, paired bootstrap intervals), and with several
 * seeds the mean, sample std and t-interval of each score and difference over them. */
#include "cli/cli.h"
#include "cli/experiment.h"

#include "qbert/io.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first variant's row on row i's device: what "on the device" speedups divide. */
static const row *device_baseline(const experiment *x, const row *rows, int i) { return &rows[i % x->n_devices]; }

static cJSON *latency_json(const qb_latency_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", s->n);
    cJSON_AddNumberToObject(o, "mean", s->mean);
    cJSON_AddNumberToObject(o, "median", s->median);
    cJSON_AddNumberToObject(o, "std", s->std);
    cJSON_AddNumberToObject(o, "p95", s->p95);
    cJSON_AddNumberToObject(o, "min", s->min);
    cJSON_AddNumberToObject(o, "max", s->max);
    return o;
}

static cJSON *pair(double lo, double hi)
{
    const double v[2] = {lo, hi};
    return cJSON_CreateDoubleArray(v, 2);
}

/* Row r against its run's baseline (null for the baseline itself). */
static cJSON *comparison_json(const row *r, bool baseline)
{
    if (baseline) return cJSON_CreateNull();
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "only_baseline_right", r->vs.b);
    cJSON_AddNumberToObject(o, "only_variant_right", r->vs.c);
    cJSON_AddNumberToObject(o, "mcnemar_p", r->vs.mcnemar_p);
    cJSON_AddNumberToObject(o, "accuracy_diff", r->vs.acc_diff);
    cJSON_AddItemToObject(o, "accuracy_diff_interval", pair(r->vs.acc_lo, r->vs.acc_hi));
    cJSON_AddNumberToObject(o, "f1_weighted_diff", r->vs.f1_diff);
    cJSON_AddItemToObject(o, "f1_weighted_diff_interval", pair(r->vs.f1_lo, r->vs.f1_hi));
    return o;
}

/* The four scores of row i over the seeds (runs): accuracy, weighted F1, and their
 * differences to the baseline. */
typedef struct {
    qb_seed_stats acc, f1, acc_diff, f1_diff;
    int significant;        /* runs whose McNemar p < 0.05 */
} across_seeds;

static void across(const experiment *x, const row *rows, int i, across_seeds *a)
{
    const int n = experiment_runs(x), n_rows = experiment_rows(x);
    double v[4][MAX_SEEDS];
    a->significant = 0;
    for (int run = 0; run < n; run++) {
        const row *r = &rows[run * n_rows + i], *b = &rows[run * n_rows];
        v[0][run] = r->m.accuracy, v[1][run] = r->m.weighted_f1;
        v[2][run] = r->m.accuracy - b->m.accuracy, v[3][run] = r->m.weighted_f1 - b->m.weighted_f1;
        a->significant += i > 0 && r->vs.mcnemar_p < 0.05;
    }
    qb_seed_stats_compute(v[0], n, &a->acc);
    qb_seed_stats_compute(v[1], n, &a->f1);
    qb_seed_stats_compute(v[2], n, &a->acc_diff);
    qb_seed_stats_compute(v[3], n, &a->f1_diff);
}

static cJSON *stats_json(const qb_seed_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "mean", s->mean);
    cJSON_AddNumberToObject(o, "std", s->std);
    cJSON_AddItemToObject(o, "t_interval_95", pair(s->lo, s->hi));
    return o;
}

/* Row i in every run, and its scores across them. */
static void seeds_json(cJSON *o, const experiment *x, const row *rows, int i, const char *const *labels)
{
    const int n_rows = experiment_rows(x);
    cJSON *per = cJSON_AddArrayToObject(o, "per_seed");
    for (int run = 0; run < x->n_seeds; run++) {
        const row *r = &rows[run * n_rows + i];
        cJSON *e = cJSON_CreateObject();
        cJSON_AddItemToArray(per, e);
        cJSON_AddNumberToObject(e, "seed", (double)x->seeds[run]);  /* exact: at most 2^53 */
        cJSON_AddStringToObject(e, "model", r->dir);
        cJSON_AddItemToObject(e, "metrics", qb_metrics_to_json(&r->m, labels));
        cJSON_AddNumberToObject(e, "agreement_with_baseline", r->agreement);
        cJSON_AddItemToObject(e, "significance", comparison_json(r, i == 0));
    }
    across_seeds a;
    across(x, rows, i, &a);
    cJSON *s = cJSON_AddObjectToObject(o, "across_seeds");
    cJSON_AddItemToObject(s, "accuracy", stats_json(&a.acc));
    cJSON_AddItemToObject(s, "f1_weighted", stats_json(&a.f1));
    cJSON_AddItemToObject(s, "accuracy_diff", stats_json(&a.acc_diff));
    cJSON_AddItemToObject(s, "f1_weighted_diff", stats_json(&a.f1_diff));
    cJSON_AddNumberToObject(s, "seeds_with_mcnemar_p_below_0.05", a.significant);
}

static cJSON *results_json(const char *source, const experiment *x, const qb_dataset *test, const row *rows,
                           const char *const *labels)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "experiment", source);
    cJSON_AddStringToObject(root, "test", x->test);
    cJSON_AddNumberToObject(root, "test_texts", test->count);
    cJSON_AddStringToObject(root, "baseline", x->v[0].name);
    cJSON *devices = cJSON_AddArrayToObject(root, "devices");
    for (int d = 0; d < x->n_devices; d++) cJSON_AddItemToArray(devices, cJSON_CreateString(x->devices[d]));
    cJSON *lat = cJSON_AddObjectToObject(root, "latency_protocol");
    cJSON_AddStringToObject(lat, "timed", "one qb_engine_classify call on the first B test texts: tokenisation, "
                                          "forward, softmax");
    cJSON_AddNumberToObject(lat, "warmup", x->warmup);
    cJSON_AddNumberToObject(lat, "runs", x->runs);
    cJSON_AddNumberToObject(lat, "threads", x->threads);
    cJSON_AddNumberToObject(lat, "max_length", x->max_length);
    cJSON *sig = cJSON_AddObjectToObject(root, "significance_protocol");
    cJSON_AddStringToObject(sig, "paired", "every row against the baseline row of its seed, on the same test texts");
    cJSON_AddStringToObject(sig, "mcnemar", "exact (binomial), two-sided");
    cJSON_AddNumberToObject(sig, "bootstrap_resamples", x->resamples);
    cJSON_AddNumberToObject(sig, "bootstrap_seed", (double)x->bootstrap_seed);
    cJSON_AddStringToObject(sig, "interval", "2.5th and 97.5th percentiles of the resampled differences");
    if (x->n_seeds) {
        cJSON *seeds = cJSON_AddArrayToObject(root, "seeds");
        for (int k = 0; k < x->n_seeds; k++) cJSON_AddItemToArray(seeds, cJSON_CreateNumber((double)x->seeds[k]));
        cJSON_AddStringToObject(root, "seed_note", "a variant's metrics, agreement and vs_baseline are of the first "
                                                   "seed; per_seed has every seed, across_seeds their summary");
    }
    cJSON *variants = cJSON_AddArrayToObject(root, "variants");
    const row *b = &rows[0];
    for (int i = 0; i < experiment_rows(x); i++) {
        const row *r = &rows[i], *bd = device_baseline(x, rows, i);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(variants, o);
        cJSON_AddStringToObject(o, "name", row_variant(x, i)->name);
        cJSON_AddStringToObject(o, "device", r->device);
        cJSON_AddStringToObject(o, "math", qb_math_name(r->math));
        cJSON_AddStringToObject(o, "scheme", row_variant(x, i)->scheme);
        cJSON_AddStringToObject(o, "model", r->dir);
        cJSON_AddNumberToObject(o, "size_bytes", (double)r->bytes);
        cJSON_AddItemToObject(o, "metrics", qb_metrics_to_json(&r->m, labels));
        cJSON_AddNumberToObject(o, "agreement_with_baseline", r->agreement);
        cJSON *l = cJSON_AddObjectToObject(o, "latency_ms");
        char key[16];
        for (int k = 0; k < x->n_batches; k++) {
            snprintf(key, sizeof key, "batch_%d", x->batches[k]);
            cJSON_AddItemToObject(l, key, latency_json(&r->lat[k]));
        }
        /* Differences to the baseline: metric deltas, ratios for size and speed; speed
         * also against the first variant on the same device. */
        cJSON *d = cJSON_AddObjectToObject(o, "vs_baseline");
        cJSON_AddNumberToObject(d, "accuracy", r->m.accuracy - b->m.accuracy);
        cJSON_AddNumberToObject(d, "precision_weighted", r->m.weighted_p - b->m.weighted_p);
        cJSON_AddNumberToObject(d, "recall_weighted", r->m.weighted_r - b->m.weighted_r);
        cJSON_AddNumberToObject(d, "f1_weighted", r->m.weighted_f1 - b->m.weighted_f1);
        cJSON_AddNumberToObject(d, "avg_confidence", r->m.avg_confidence - b->m.avg_confidence);
        cJSON_AddNumberToObject(d, "size_bytes", (double)(r->bytes - b->bytes));
        cJSON_AddNumberToObject(d, "size_ratio", (double)r->bytes / (double)b->bytes);
        for (int k = 0; k < x->n_batches; k++) {
            snprintf(key, sizeof key, "batch_%d", x->batches[k]);
            cJSON *s = cJSON_AddObjectToObject(d, key);
            cJSON_AddNumberToObject(s, "mean_ms", r->lat[k].mean - b->lat[k].mean);
            cJSON_AddNumberToObject(s, "median_ms", r->lat[k].median - b->lat[k].median);
            cJSON_AddNumberToObject(s, "p95_ms", r->lat[k].p95 - b->lat[k].p95);
            cJSON_AddNumberToObject(s, "speedup_median", b->lat[k].median / r->lat[k].median);
            cJSON_AddNumberToObject(s, "speedup_median_same_device", bd->lat[k].median / r->lat[k].median);
        }
        cJSON_AddItemToObject(d, "significance", comparison_json(r, i == 0));
        if (x->n_seeds) seeds_json(o, x, rows, i, labels);
    }
    return root;
}

/* "0.7030 (+0.30)": a value and its difference to the baseline, in points for shares. */
static void cell(FILE *f, double v, double base, bool first)
{
    if (first) fprintf(f, " %.4f |", v);
    else fprintf(f, " %.4f (%+.2f) |", v, 100.0 * (v - base));
}

/* The seeds as "42, 123, 456". */
static void seed_list(FILE *f, const experiment *x)
{
    for (int k = 0; k < x->n_seeds; k++) fprintf(f, "%s%llu", k ? ", " : "", (unsigned long long)x->seeds[k]);
}

/* The scores, size and latency tables; rows: one run's rows (with several seeds the
 * first run's, its scores replaced by their means over the seeds). */
static void write_tables(FILE *f, const experiment *x, const qb_dataset *test, const row *rows)
{
    const row *b = &rows[0];
    const int n_rows = experiment_rows(x);
    fprintf(f, "Test set: %s (%d texts). Differences to %s on %s in parentheses, in points.", x->test, test->count,
            x->v[0].name, rows[0].device);
    if (x->n_seeds > 1) {
        fprintf(f, " Scores and agreement are means over the seeds (");
        seed_list(f, x);
        fprintf(f, "); size and latency are of seed %llu's models.", (unsigned long long)x->seeds[0]);
    }
    fprintf(f, "\n\n");
    fprintf(f, "| variant | device | scheme | accuracy | F1 (weighted) | precision (w) | recall (w) | avg confidence | "
               "agreement | size MB | size vs %s |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
            x->v[0].name);
    for (int i = 0; i < n_rows; i++) {
        const row *r = &rows[i];
        fprintf(f, "| %s | %s | %s |", row_variant(x, i)->name, r->device, row_variant(x, i)->scheme);
        cell(f, r->m.accuracy, b->m.accuracy, i == 0);
        cell(f, r->m.weighted_f1, b->m.weighted_f1, i == 0);
        cell(f, r->m.weighted_p, b->m.weighted_p, i == 0);
        cell(f, r->m.weighted_r, b->m.weighted_r, i == 0);
        cell(f, r->m.avg_confidence, b->m.avg_confidence, i == 0);
        fprintf(f, " %.4f | %.4g | %.1f%% |\n", r->agreement, r->bytes / 1e6, 100.0 * r->bytes / b->bytes);
    }
    for (int k = 0; k < x->n_batches; k++) {
        char threads[32] = "all cores";
        if (x->threads) snprintf(threads, sizeof threads, "%d threads", x->threads);
        fprintf(f, "\nLatency, batch %d (ms; warm-up %d, %d runs; CPU: %s):\n\n", x->batches[k], x->warmup, x->runs,
                threads);
        fprintf(f, "| variant | device | math | mean | std | median | p95 | speedup (median) | vs %s on the device | "
                   "texts/s |\n|---|---|---|---|---|---|---|---|---|---|\n", x->v[0].name);
        for (int i = 0; i < n_rows; i++) {
            const qb_latency_stats *s = &rows[i].lat[k];
            fprintf(f, "| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx | %.1f |\n", row_variant(x, i)->name,
                    rows[i].device, qb_math_name(rows[i].math), s->mean, s->std, s->median, s->p95,
                    b->lat[k].median / s->median, device_baseline(x, rows, i)->lat[k].median / s->median,
                    x->batches[k] * 1e3 / s->median);
        }
    }
}

/* "+0.20 [-0.60, +1.00]*": a difference and its interval in points, starred when the
 * interval excludes 0; "n/a" without an interval. */
static void diff_cell(FILE *f, double d, double lo, double hi)
{
    if (!isfinite(lo) || !isfinite(hi)) {
        fprintf(f, " %+.2f (n/a) |", 100.0 * d);
        return;
    }
    fprintf(f, " %+.2f [%+.2f, %+.2f]%s |", 100.0 * d, 100.0 * lo, 100.0 * hi, lo > 0 || hi < 0 ? " *" : "");
}

/* Every row against its run's baseline: the discordant counts, McNemar's p and the
 * bootstrap intervals. */
static void write_significance(FILE *f, const experiment *x, const qb_dataset *test, const row *rows)
{
    const int n_rows = experiment_rows(x), n_runs = experiment_runs(x);
    const char *base = x->v[0].name;
    fprintf(f, "\nIs the difference real? Each row against %s on %s on the same %d texts%s: b = texts only %s "
               "got right, c = texts only the row got right, McNemar's exact p (two-sided); the accuracy and weighted-F1 "
               "differences in points with their paired bootstrap 95%% interval (%d resamples, seed %llu). * = the "
               "interval excludes 0.\n\n", base, rows[0].device, test->count, x->n_seeds ? " (and the same seed)" : "",
            base, x->resamples, (unsigned long long)x->bootstrap_seed);
    fprintf(f, "| variant | device |%s b | c | McNemar p | accuracy diff [95%% CI] | F1 (w) diff [95%% CI] |\n"
               "|---|---|%s---|---|---|---|---|\n", x->n_seeds ? " seed |" : "", x->n_seeds ? "---|" : "");
    for (int i = 1; i < n_rows; i++)
        for (int run = 0; run < n_runs; run++) {
            const row *r = &rows[run * n_rows + i];
            fprintf(f, "| %s | %s |", row_variant(x, i)->name, r->device);
            if (x->n_seeds) fprintf(f, " %llu |", (unsigned long long)x->seeds[run]);
            fprintf(f, " %d | %d | %.3g |", r->vs.b, r->vs.c, r->vs.mcnemar_p);
            diff_cell(f, r->vs.acc_diff, r->vs.acc_lo, r->vs.acc_hi);
            diff_cell(f, r->vs.f1_diff, r->vs.f1_lo, r->vs.f1_hi);
            fprintf(f, "\n");
        }
}

/* With several seeds: each row's scores and differences over them. */
static void write_across_seeds(FILE *f, const experiment *x, const row *rows)
{
    fprintf(f, "\nAcross the %d seeds (", x->n_seeds);
    seed_list(f, x);
    fprintf(f, "): mean +- sample std of each score; the differences to %s (paired by seed) in points with the 95%% "
               "t-interval of their mean (t with %d degrees of freedom). * = the interval excludes 0.\n\n",
            x->v[0].name, x->n_seeds - 1);
    fprintf(f, "| variant | device | accuracy | F1 (w) | accuracy diff [95%% t] | F1 (w) diff [95%% t] | seeds with "
               "McNemar p < 0.05 |\n|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < experiment_rows(x); i++) {
        across_seeds a;
        across(x, rows, i, &a);
        fprintf(f, "| %s | %s | %.4f +- %.4f | %.4f +- %.4f |", row_variant(x, i)->name, rows[i].device, a.acc.mean,
                a.acc.std, a.f1.mean, a.f1.std);
        if (i == 0) {
            fprintf(f, " (baseline) | | |\n");
            continue;
        }
        diff_cell(f, a.acc_diff.mean, a.acc_diff.lo, a.acc_diff.hi);
        diff_cell(f, a.f1_diff.mean, a.f1_diff.lo, a.f1_diff.hi);
        fprintf(f, " %d of %d |\n", a.significant, x->n_seeds);
    }
}

/* The first run's rows with their scores (accuracy, P / R / F1, confidence,
 * agreement) replaced by their means over the runs; the copies share the first run's
 * allocations. NULL when out of memory. */
static row *mean_rows(const experiment *x, const row *rows)
{
    const int n_rows = experiment_rows(x), n_runs = experiment_runs(x);
    row *m = malloc((size_t)n_rows * sizeof *m);
    if (!m) return NULL;
    memcpy(m, rows, (size_t)n_rows * sizeof *m);
    for (int i = 0; i < n_rows; i++) {
        qb_metrics *s = &m[i].m;
        for (int run = 1; run < n_runs; run++) {
            const row *r = &rows[run * n_rows + i];
            s->accuracy += r->m.accuracy, s->weighted_p += r->m.weighted_p, s->weighted_r += r->m.weighted_r;
            s->weighted_f1 += r->m.weighted_f1, s->avg_confidence += r->m.avg_confidence;
            m[i].agreement += r->agreement;
        }
        s->accuracy /= n_runs, s->weighted_p /= n_runs, s->weighted_r /= n_runs;
        s->weighted_f1 /= n_runs, s->avg_confidence /= n_runs, m[i].agreement /= n_runs;
    }
    return m;
}

static void write_markdown(FILE *f, const experiment *x, const qb_dataset *test, const row *rows, const row *means)
{
    write_tables(f, x, test, means);
    if (experiment_rows(x) > 1) write_significance(f, x, test, rows);
    if (x->n_seeds > 1) write_across_seeds(f, x, rows);
}

/* results.svg of one run's rows (means: scores averaged over the seeds). Panels:
 * accuracy (its axis zoomed: variants differ by tenths of a point), size, then the
 * median latency of each batch size with a whisker to its p95. */
static qb_status write_chart(const experiment *x, const qb_dataset *test, const row *rows)
{
    const int n_panels = 2 + x->n_batches, n_rows = experiment_rows(x);
    const char *names[MAX_VARIANTS * MAX_DEVICES];
    char titles[2 + MAX_BATCHES][48];
    qb_bar_panel panels[2 + MAX_BATCHES];
    double *v = malloc((size_t)(n_panels + x->n_batches) * n_rows * sizeof *v), *p95 = v + (size_t)n_panels * n_rows;
    if (!v) return qb_fail(QB_ENOMEM, "out of memory for the chart");
    if (x->n_seeds > 1) snprintf(titles[0], sizeof titles[0], "accuracy (mean of %d seeds)", x->n_seeds);
    else snprintf(titles[0], sizeof titles[0], "accuracy");
    snprintf(titles[1], sizeof titles[1], "size on disk (MB)");
    for (int k = 0; k < x->n_batches; k++)
        snprintf(titles[2 + k], sizeof titles[2 + k], "ms, batch %d (median, p95)", x->batches[k]);
    for (int p = 0; p < n_panels; p++)
        panels[p] = (qb_bar_panel){titles[p], v + (size_t)p * n_rows, p >= 2 ? p95 + (size_t)(p - 2) * n_rows : NULL,
                                   p == 0, p == 0};
    for (int i = 0; i < n_rows; i++) {
        names[i] = rows[i].label;
        v[i] = rows[i].m.accuracy;
        v[n_rows + i] = rows[i].bytes / 1e6;
        for (int k = 0; k < x->n_batches; k++) {
            v[(size_t)(2 + k) * n_rows + i] = rows[i].lat[k].median;
            p95[(size_t)k * n_rows + i] = rows[i].lat[k].p95;
        }
    }
    /* a title that fits: the model's directory name (its whole path when that is only
     * "model", as the trainer writes it) and the test file, not the whole command line */
    const char *model = strrchr(x->model, '/'), *data = strrchr(x->test, '/');
    if (!model || !model[1] || strcmp(model, "/model") == 0) model = x->model;
    else model++;
    char title[2 * PATH_CAP + 64];
    snprintf(title, sizeof title, "%s on %s: %d texts", model, data ? data + 1 : x->test, test->count);
    char *svg = qb_bars_svg(title, names, n_rows, panels, n_panels);
    free(v);
    if (!svg) return qb_fail(QB_ENOMEM, "out of memory drawing the chart");
    char file[PATH_CAP + 32];
    snprintf(file, sizeof file, "%s/results.svg", x->out);
    const qb_status st = qb_svg_write(file, svg);
    free(svg);
    return st;
}

qb_status experiment_write_reports(const char *source, const experiment *x, const qb_dataset *test, const row *rows,
                                   const char *const *labels)
{
    row *means = mean_rows(x, rows);
    if (!means) return qb_fail(QB_ENOMEM, "out of memory for the reports");
    char *md = NULL;
    size_t md_len = 0;
    FILE *f = open_memstream(&md, &md_len);
    if (f) {
        write_markdown(f, x, test, rows, means);
        fclose(f);
    }
    if (md) printf("\n%s", md);
    qb_status st = qb_cli_write_reports(x->out, "results", results_json(source, x, test, rows, labels), md, md_len);
    if (!st) st = write_chart(x, test, means);
    free(means);
    if (!st) printf("wrote %s/results.json, results.md and results.svg\n", x->out);
    return st;
}

