/* Quantization-aware training state (include/qbert/quant.h): observers of every
 * Linear's input range, and how the state travels in model files.
 *
 * Observers follow torch.ao.quantization: EMA (MovingAverageMinMaxObserver) starts
 * at the first batch's min / max and then moves by `ema` of the difference each
 * batch; MINMAX keeps the running extremes; PERCENTILE feeds the batch's
 * +-percentile of |x| into the EMA. The scale is symmetric, max(|min|, |max|) /
 * qmax, the same formula as the weights and static calibration. */
#include "qbert/quant.h"

#include "backend/backend.h"
#include "cpu/cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const observer_names[] = {"ema", "minmax", "percentile"};

qb_status qb_qat_new(const qb_config *c, const qb_qat_settings *s, qb_qat **out)
{
    *out = NULL;
    if ((s->weight_bits != 4 && s->weight_bits != 8) || s->act_bits != 8)
        return qb_fail(QB_EINVAL, "QAT weight_bits must be 4 or 8 and act_bits 8 (got %d and %d)", s->weight_bits,
                       s->act_bits);
    const int n = qb_config_linears(c, NULL);
    qb_linear_info *lin = malloc((size_t)n * sizeof *lin);
    if (!lin) return qb_fail(QB_ENOMEM, "out of memory");
    qb_config_linears(c, lin);
    qb_status st = QB_OK;
    /* Per-group scales need the group to divide every row (INT4 also needs it even). */
    for (int i = 0; i < n && !st && s->group; i++)
        if (lin[i].K % s->group || s->group % 2)
            st = qb_fail(QB_EINVAL, "QAT group_size %d must be even and divide the row length %d of %s", s->group,
                         lin[i].K, lin[i].name);
    if (!st && s->group && s->embeddings && c->hidden_size % s->group)
        st = qb_fail(QB_EINVAL, "QAT group_size %d must divide the embedding width %d", s->group, c->hidden_size);
    free(lin);
    if (st) return st;
    qb_qat *q = calloc(1, sizeof *q);
    if (q) q->range = malloc((size_t)n * 2 * sizeof *q->range);
    if (!q || !q->range) {
        free(q);
        return qb_fail(QB_ENOMEM, "cannot allocate the QAT state");
    }
    q->set = *s;
    q->n = n;
    for (int i = 0; i < 2 * n; i++) q->range[i] = NAN;
    q->observe = q->stale = q->host_newer = true;
    *out = q;
    return QB_OK;
}

void qb_qat_free(qb_qat *q)
{
    if (!q) return;
    if (q->be) {
        for (int i = 0; q->wfq && i < q->n; i++) q->be->free(q->wfq[i]);
        for (int t = 0; t < 3; t++) q->be->free(q->efq[t]);
        q->be->free(q->scales);
        if (q->dev_range != q->range) q->be->free(q->dev_range);
        q->be->free(q->dev_scale);
        q->be->free(q->dev_batch);
    }
    free(q->wfq);
    free(q->range);
    free(q);
}

bool qb_qat_settings_equal(const qb_qat_settings *a, const qb_qat_settings *b)
{
    return a->weight_bits == b->weight_bits && a->act_bits == b->act_bits && a->group == b->group &&
           a->observer == b->observer && a->ema == b->ema && a->percentile == b->percentile &&
           a->embeddings == b->embeddings;
}

float qb_qat_act_scale(const qb_qat *q, int i)
{
    float range[2] = {q->range[2 * i], q->range[2 * i + 1]}, scale;
    const float none[2] = {NAN, NAN};  /* folds nothing: only the scale of the range */
    qb_cpu_observe(range, &scale, none, 0.0f, q->set.act_bits);
    return scale;
}

qb_status qb_qat_pull(qb_qat *q)
{
    if (!q->be || !q->dev_range || q->dev_range == q->range) return QB_OK;
    q->be->to_host(NULL, q->range, q->dev_range, (size_t)q->n * 2 * sizeof *q->range);
    return q->be->sync(NULL);
}

/* ---- in model files ---- */

/* "X.input_range" of every Linear X, in order (n of them). malloc'ed; NULL when out of memory. */
static char (*range_names(const qb_config *c, int n))[128]
{
    qb_linear_info *lin = malloc((size_t)n * sizeof *lin);
    char (*names)[128] = lin ? malloc((size_t)n * sizeof *names) : NULL;
    if (names) qb_config_linears(c, lin);
    for (int i = 0; names && i < n; i++) snprintf(names[i], sizeof names[i], "%s.input_range", lin[i].name);
    free(lin);
    return names;
}

qb_status qb_qat_write(const qb_qat *q, const qb_config *c, qb_weights *w, qb_meta *meta)
{
    char (*name)[128] = range_names(c, q->n);
    if (!name) return qb_fail(QB_ENOMEM, "out of memory");
    qb_status st = QB_OK;
    for (int i = 0; i < q->n && !st; i++) {
        qb_tensor t = {.dtype = QB_F32, .device = QB_DEV_CPU, .ndim = 1, .shape = {2}, .data = q->range + 2 * i};
        st = qb_weights_add(w, name[i], t);
    }
    free(name);
    char v[7][32];
    snprintf(v[0], sizeof v[0], "%d", q->set.weight_bits);
    snprintf(v[1], sizeof v[1], "%d", q->set.act_bits);
    snprintf(v[2], sizeof v[2], "%d", q->set.group);
    snprintf(v[3], sizeof v[3], "%s", observer_names[q->set.observer]);
    snprintf(v[4], sizeof v[4], "%s", q->set.embeddings ? "true" : "false");
    snprintf(v[5], sizeof v[5], "%.9g", q->set.ema);
    snprintf(v[6], sizeof v[6], "%.9g", q->set.percentile);
    static const char *const keys[7] = {"qbert.qat.weight_bits", "qbert.qat.act_bits", "qbert.qat.group_size",
                                        "qbert.qat.observer", "qbert.qat.embeddings", "qbert.qat.ema_constant",
                                        "qbert.qat.percentile"};
    for (int i = 0; i < 7 && !st; i++) st = qb_meta_set(meta, keys[i], v[i]);
    return st;
}

/* An integer metadata value in [lo, hi]. */
static qb_status meta_int(const qb_meta *meta, const char *path, const char *key, int lo, int hi, int *out)
{
    const char *v = qb_meta_get(meta, key);
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi)
        return qb_fail(QB_EFORMAT, "%s: __metadata__ %s is \"%.32s\"; expected an integer in [%d, %d]", path, key,
                       v ? v : "(missing)", lo, hi);
    *out = (int)x;
    return QB_OK;
}

qb_status qb_qat_read_settings(const qb_meta *meta, const char *path, qb_qat_settings *s, bool *found)
{
    *found = qb_meta_get(meta, "qbert.qat.weight_bits") != NULL;
    if (!*found) return QB_OK;
    memset(s, 0, sizeof *s);
    qb_status st = meta_int(meta, path, "qbert.qat.weight_bits", 4, 8, &s->weight_bits);
    if (!st) st = meta_int(meta, path, "qbert.qat.act_bits", 8, 8, &s->act_bits);
    if (!st) st = meta_int(meta, path, "qbert.qat.group_size", 0, 1 << 20, &s->group);
    const char *obs = qb_meta_get(meta, "qbert.qat.observer"), *emb = qb_meta_get(meta, "qbert.qat.embeddings");
    int o = -1;
    for (int i = 0; obs && i < 3; i++)
        if (strcmp(obs, observer_names[i]) == 0) o = i;
    if (!st && o < 0)
        st = qb_fail(QB_EFORMAT, "%s: __metadata__ qbert.qat.observer is \"%.32s\" (expected ema, minmax or percentile)",
                     path, obs ? obs : "(missing)");
    if (!st && (!emb || (strcmp(emb, "true") && strcmp(emb, "false"))))
        st = qb_fail(QB_EFORMAT, "%s: __metadata__ qbert.qat.embeddings must be true or false", path);
    if (st) return st;
    s->observer = (qb_observer)o;
    s->embeddings = strcmp(emb, "true") == 0;
    const char *num[2] = {qb_meta_get(meta, "qbert.qat.ema_constant"), qb_meta_get(meta, "qbert.qat.percentile")};
    float *dst[2] = {&s->ema, &s->percentile};
    for (int i = 0; i < 2; i++) {
        char *end;
        const double x = num[i] ? strtod(num[i], &end) : 0;
        if (!num[i] || !*num[i] || *end || !(x > 0 && x <= 100))
            return qb_fail(QB_EFORMAT, "%s: __metadata__ %s is \"%.32s\"; expected a number in (0, 100]", path,
                           i ? "qbert.qat.percentile" : "qbert.qat.ema_constant", num[i] ? num[i] : "(missing)");
        *dst[i] = (float)x;
    }
    return QB_OK;
}

qb_status qb_qat_read_ranges(qb_qat *q, const qb_config *c, qb_weights *w, const char *path)
{
    char (*name)[128] = range_names(c, q->n);
    if (!name) return qb_fail(QB_ENOMEM, "out of memory");
    qb_status st = QB_OK;
    for (int i = 0; i < q->n && !st; i++) {
        const int k = qb_weights_find(w, name[i]);
        const qb_tensor *t = k >= 0 ? &w->tensors[k] : NULL;
        if (!t || t->dtype != QB_F32 || qb_tensor_numel(t) != 2)
            st = qb_fail(QB_EFORMAT, "%s: a QAT model needs %s, two F32 values (min, max)", path, name[i]);
        if (st) break;
        memcpy(q->range + 2 * i, t->data, 2 * sizeof(float));
        qb_tensor taken;
        qb_weights_take(w, k, &taken);
        qb_tensor_free(&taken);
    }
    free(name);
    q->stale = q->host_newer = true;
    return st;
}

qb_status qb_qat_plan(const qb_model *m, qb_qplan *plan, float *act_scale)
{
    const qb_qat *q = m->qat;
    if (!q) return qb_fail(QB_EINVAL, "the model has no QAT state (train it with [qat] enabled = true)");
    const bool int4 = q->set.weight_bits == 4;
    if (int4 != (q->set.group > 0))
        return qb_fail(QB_EINVAL, "QAT with INT%d weights per %s has no file layout (INT8 files are per output "
                       "channel, INT4 per group): train with [qat] granularity = %s", q->set.weight_bits,
                       int4 ? "output channel" : "group", int4 ? "group" : "channel");
    qb_status st = qb_qscheme_get(int4 ? "qat-int4" : "qat-int8", int4 ? q->set.group : 0, &plan->scheme);
    if (st) return st;
    for (int i = 0; i < q->n; i++) act_scale[i] = qb_qat_act_scale(q, i);
    plan->act_scale = act_scale;
    plan->linear = NULL;
    plan->calibration = "the scales learned by quantization-aware training";
    return QB_OK;
}
