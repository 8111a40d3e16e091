/* qbert experiment and qbert bench (cmd_experiment.c runs them, experiment_report.c
 * writes their reports): the types they share. */
#ifndef QBERT_CLI_EXPERIMENT_H
#define QBERT_CLI_EXPERIMENT_H

#include "qbert/data.h"
#include "qbert/metrics.h"
#include "qbert/tensor.h"

#include <stdint.h>

enum { MAX_VARIANTS = 32, MAX_BATCHES = 8, MAX_DEVICES = 2, MAX_SEEDS = 16, PATH_CAP = 1024 };

typedef struct {
    char name[64];
    int line;               /* of its [variant NAME] header */
    char scheme[32], model[PATH_CAP], act[8], calib_method[16];
    char math[8];           /* of FP32 Linears on a GPU; "": by the scheme */
    int group;
    double percentile;
} variant;

typedef struct {
    char model[PATH_CAP], test[PATH_CAP], out[PATH_CAP], calib[PATH_CAP];
    int max_length, batch, threads, calib_samples;
    int warmup, runs, batches[MAX_BATCHES], n_batches;
    char devices[MAX_DEVICES][8];
    int n_devices;
    /* [experiment] seeds: one run of every row per seed, "{seed}" in a model path
     * replaced by it; none (0): one run, the paths as they are */
    uint64_t seeds[MAX_SEEDS];
    int n_seeds;
    int resamples;          /* [significance] resamples of the paired bootstrap */
    uint64_t bootstrap_seed;
    variant v[MAX_VARIANTS];
    int n;
} experiment;

/* What one row (a variant on a device, in one run) measured. A run's rows are
 * variant-major: row i is variant i / n_devices on device i % n_devices; row 0 is the
 * baseline. All rows: rows[run * n_rows + i]. Latency is measured in the first run. */
typedef struct {
    char label[80];         /* the variant's name, and its device when there are several */
    const char *device;
    qb_math math;
    char dir[PATH_CAP];
    int64_t bytes;          /* the weights file on disk */
    qb_metrics m;
    int *pred;              /* (n_test) */
    double agreement;       /* share of test texts predicted as the baseline predicts them */
    qb_paired_comparison vs;  /* against the run's baseline row (zero for row 0) */
    qb_latency_stats lat[MAX_BATCHES];
} row;

static inline int experiment_runs(const experiment *x) { return x->n_seeds ? x->n_seeds : 1; }
static inline int experiment_rows(const experiment *x) { return x->n * x->n_devices; }
static inline const variant *row_variant(const experiment *x, int i) { return &x->v[i / x->n_devices]; }

/* results.json, results.md (also printed) and results.svg in x->out; source names the
 * experiment (its INI file, or the bench command line); labels: the label names. */
qb_status experiment_write_reports(const char *source, const experiment *x, const qb_dataset *test, const row *rows,
                                   const char *const *labels);

#endif
