/* Calibration of static INT8 input scales (include/qbert/quant.h): the model runs
 * over the calibration texts with a hook on every Linear's input. Pass 1 finds each
 * input's largest |x|; percentile and MSE need pass 2, a histogram of |x| over
 * [0, max] per Linear, from which the clip is chosen. Padding rows are left out:
 * they are not text, and short texts would otherwise pull the statistics. */
#include "qbert/quant.h"

#include "backend/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BINS 2048
#define QMAX 127.0

static const char *const method_names[] = {"minmax", "percentile", "mse"};

int qb_calib_method_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, method_names[i]) == 0) return i;
    return -1;
}

const char *qb_calib_method_name(qb_calib_method m) { return method_names[m]; }

typedef struct {
    int pass;              /* 1: max, 2: histogram */
    const int32_t *mask;   /* (B, T) of the batch */
    int B, T;
    double *amax;          /* (n_lin) */
    double *hist;          /* (n_lin, BINS) counts of |x| over [0, amax] */
} stats;

/* Whether row r of an (M, K) Linear input is a real token: rows are tokens (M = B T)
 * or, for the pooler and the classifier, texts (M = B). */
static bool real_row(const stats *s, int M, int r)
{
    return M != s->B * s->T || s->mask[r];
}

static void observe(void *ctx, int index, const float *x, int M, int K)
{
    stats *s = ctx;
    if (s->pass == 1) {
        double a = s->amax[index];
        for (int r = 0; r < M; r++)
            for (int k = 0; real_row(s, M, r) && k < K; k++) a = fmax(a, fabsf(x[(size_t)r * K + k]));
        s->amax[index] = a;
        return;
    }
    double *h = s->hist + (size_t)index * BINS;
    const double width = s->amax[index] / BINS;
    if (width <= 0) return;
    for (int r = 0; r < M; r++) {
        for (int k = 0; real_row(s, M, r) && k < K; k++) {
            const double v = fabsf(x[(size_t)r * K + k]) / width;
            h[v < BINS ? (int)v : BINS - 1] += 1.0;  /* the max itself, and NaN, go to the last bin */
        }
    }
}

/* The clip of one histogram h (BINS bins of `width`). */
static double choose_clip(const double *h, double width, const qb_calib_options *o)
{
    double total = 0;
    for (int b = 0; b < BINS; b++) total += h[b];
    if (o->method == QB_CALIB_PERCENTILE) {
        double want = total * o->percentile / 100.0, seen = 0;
        for (int b = 0; b < BINS; b++)
            if ((seen += h[b]) >= want) return (b + 1) * width;
        return BINS * width;
    }
    /* MSE: clip at the upper edge of bin c; values in bins above it are clipped. */
    double best = INFINITY, best_clip = BINS * width, inside = 0;
    for (int c = 0; c < BINS; c++) {
        inside += h[c];
        const double clip = (c + 1) * width, s = clip / QMAX;
        double err = inside * s * s / 12.0;
        for (int b = c + 1; b < BINS; b++) {
            const double d = (b + 0.5) * width - clip;
            err += h[b] * d * d;
        }
        if (err < best) best = err, best_clip = clip;
    }
    return best_clip;
}

/* One pass over the texts with the hook. */
static qb_status run_pass(const qb_model *m, const qb_tokenizer *tok, const char *const *texts, int n,
                          const qb_calib_options *o, stats *s, float *logits)
{
    qb_forward_trace tr = {.linear_input = observe, .ctx = s};
    for (int start = 0; start < n; start += o->batch_size) {
        const int b = n - start < o->batch_size ? n - start : o->batch_size;
        qb_encoding enc;
        qb_status st = qb_encode_batch(tok, texts + start, b, o->max_length, 1, &enc);
        if (st) return st;
        s->mask = enc.attention_mask, s->B = enc.batch, s->T = enc.seq;
        st = qb_model_forward(m, qb_backend_cpu(), enc.input_ids, enc.token_type_ids, enc.attention_mask,
                              enc.batch, enc.seq, logits, &tr);
        qb_encoding_free(&enc);
        if (st) return st;
        if (o->progress) o->progress(o->ctx, s->pass, start + b, n);
    }
    return QB_OK;
}

qb_status qb_calibrate(const qb_model *m, const qb_tokenizer *tok, const char *const *texts, int n,
                       const qb_calib_options *o, float *scales)
{
    if (n < 1) return qb_fail(QB_EINVAL, "calibration needs at least one text");
    if (m->n_qlinear) return qb_fail(QB_EINVAL, "calibration needs the FP32 model (this one is %s)", m->scheme);
    const int n_lin = qb_config_linears(&m->cfg, NULL);
    stats s = {.pass = 1};
    s.amax = calloc((size_t)n_lin, sizeof *s.amax);
    float *logits = malloc((size_t)o->batch_size * m->cfg.num_labels * sizeof *logits);
    const bool hist = o->method != QB_CALIB_MINMAX;
    if (hist) s.hist = calloc((size_t)n_lin * BINS, sizeof *s.hist);
    qb_status st = !s.amax || !logits || (hist && !s.hist) ? qb_fail(QB_ENOMEM, "cannot allocate calibration statistics")
                                                           : run_pass(m, tok, texts, n, o, &s, logits);
    if (!st && hist) {
        s.pass = 2;
        st = run_pass(m, tok, texts, n, o, &s, logits);
    }
    for (int i = 0; i < n_lin && !st; i++) {
        const double clip = hist ? choose_clip(s.hist + (size_t)i * BINS, s.amax[i] / BINS, o) : s.amax[i];
        scales[i] = clip > 0 ? (float)(clip / QMAX) : 1.0f;
    }
    free(s.amax);
    free(s.hist);
    free(logits);
    return st;
}
