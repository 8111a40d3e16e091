/* From labelled texts to training batches: tokenization of whole splits, the
 * per-epoch order (seeded shuffle, optional length grouping), padding, and the
 * evaluation pass. */
#include "train/internal.h"

#include "backend/backend.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

qb_status qb_split_build(const qb_tokenizer *tok, const qb_dataset *d, int max_length, int num_labels,
                         qb_split *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", d->path ? d->path : "data");
    if (d->count < 1) return qb_fail(QB_EINVAL, "%s: no examples", out->name);
    for (int i = 0; i < d->count; i++)
        if (d->labels[i] < 0 || d->labels[i] >= num_labels)
            return qb_fail(QB_EINVAL, "%s:%d: label %d is outside [0, %d) of the model", out->name,
                           d->lines ? d->lines[i] : i + 1, d->labels[i], num_labels);
    if (!(out->ex = calloc((size_t)d->count, sizeof *out->ex)))
        return qb_fail(QB_ENOMEM, "%s: cannot allocate %d examples", out->name, d->count);
    out->n = d->count;
    const int cls = qb_tokenizer_cls_id(tok), sep = qb_tokenizer_sep_id(tok);
    int failed = -1;
#pragma omp parallel for schedule(dynamic, 64)
    for (int i = 0; i < d->count; i++) {
        int32_t *pieces = NULL;
        int n = 0;
        if (qb_tokenize(tok, d->texts[i], strlen(d->texts[i]), &pieces, &n, NULL)) {
#pragma omp critical
            failed = failed < 0 ? i : failed;
            continue;
        }
        if (n > max_length - 2) n = max_length - 2;
        qb_example *e = &out->ex[i];
        e->ids = malloc(sizeof(int32_t) * (size_t)(n + 2));
        if (e->ids) {
            e->ids[0] = cls;
            memcpy(e->ids + 1, pieces, sizeof(int32_t) * (size_t)n);
            e->ids[n + 1] = sep;
            e->len = n + 2;
        } else {
#pragma omp critical
            failed = failed < 0 ? i : failed;
        }
        e->label = d->labels[i];
        free(pieces);
    }
    if (failed >= 0) {
        qb_split_free(out);
        return qb_fail(QB_ENOMEM, "%s: tokenizing example %d failed (out of memory)", d->path, failed + 1);
    }
    return QB_OK;
}

void qb_split_free(qb_split *s)
{
    for (int i = 0; s->ex && i < s->n; i++) free(s->ex[i].ids);
    free(s->ex);
    memset(s, 0, sizeof *s);
}

static void shuffle(int32_t *a, int n, qb_rng *r)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(qb_rng_u32(r) % (uint32_t)(i + 1));
        int32_t t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

static const qb_split *sort_split;  /* qsort has no context argument (callers are single-threaded) */
static int by_length_desc(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    const int lx = sort_split->ex[x].len, ly = sort_split->ex[y].len;
    return lx != ly ? (lx < ly) - (lx > ly) : (x > y) - (x < y);  /* ties by index: a total order */
}

qb_status qb_epoch_plan_make(const qb_split *s, int batch_size, bool group, uint64_t seed, int epoch,
                             qb_epoch_plan *p)
{
    memset(p, 0, sizeof *p);
    const int n = s->n, nb_max = (n + batch_size - 1) / batch_size + n / (50 * batch_size) + 1;
    p->order = malloc(sizeof(int32_t) * (size_t)n);
    p->starts = malloc(sizeof(int32_t) * (size_t)(nb_max + 1));
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)nb_max);
    if (!p->order || !p->starts || !perm) {
        free(perm);
        qb_epoch_plan_free(p);
        return qb_fail(QB_ENOMEM, "cannot allocate the order of %d examples", n);
    }
    qb_rng r;
    qb_rng_init(&r, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)));
    for (int i = 0; i < n; i++) p->order[i] = i;
    shuffle(p->order, n, &r);
    p->n = n;
    if (!group) {
        for (int b = 0; b * batch_size < n; b++) p->starts[p->n_batches++] = b * batch_size;
        p->starts[p->n_batches] = n;
        free(perm);
        return QB_OK;
    }
    /* Cut each sorted mega-batch into batches, then shuffle the batch order. */
    int32_t *cuts = malloc(sizeof(int32_t) * (size_t)(nb_max + 1)), *sorted = malloc(sizeof(int32_t) * (size_t)n);
    if (!cuts || !sorted) {
        free(cuts), free(sorted), free(perm);
        qb_epoch_plan_free(p);
        return qb_fail(QB_ENOMEM, "cannot allocate the order of %d examples", n);
    }
    const int mega = 50 * batch_size;
    int nb = 0;
    sort_split = s;
    for (int m0 = 0; m0 < n; m0 += mega) {
        const int m1 = m0 + mega < n ? m0 + mega : n;
        qsort(p->order + m0, (size_t)(m1 - m0), sizeof(int32_t), by_length_desc);
        for (int b0 = m0; b0 < m1; b0 += batch_size) cuts[nb++] = b0;
    }
    cuts[nb] = n;
    for (int b = 0; b < nb; b++) perm[b] = b;
    shuffle(perm, nb, &r);
    int pos = 0;
    for (int b = 0; b < nb; b++) {
        const int lo = cuts[perm[b]], hi = cuts[perm[b] + 1];
        p->starts[b] = pos;
        memcpy(sorted + pos, p->order + lo, sizeof(int32_t) * (size_t)(hi - lo));
        pos += hi - lo;
    }
    p->starts[nb] = n;
    p->n_batches = nb;
    memcpy(p->order, sorted, sizeof(int32_t) * (size_t)n);
    free(cuts), free(sorted), free(perm);
    return QB_OK;
}

void qb_epoch_plan_free(qb_epoch_plan *p)
{
    free(p->order);
    free(p->starts);
    memset(p, 0, sizeof *p);
}

qb_status qb_batch_fill(qb_batch_buf *bb, const qb_split *s, const int32_t *idx, int n, int fixed_len,
                        int pad_id)
{
    int T = fixed_len;
    for (int i = 0; i < n && !fixed_len; i++) T = s->ex[idx[i]].len > T ? s->ex[idx[i]].len : T;
    if (n * T > bb->cap_tokens || n > bb->cap_rows) {
        free(bb->ids), free(bb->types), free(bb->mask), free(bb->labels);
        bb->ids = malloc(sizeof(int32_t) * (size_t)n * T);
        bb->types = calloc((size_t)n * T, sizeof(int32_t));
        bb->mask = malloc(sizeof(int32_t) * (size_t)n * T);
        bb->labels = malloc(sizeof(int32_t) * (size_t)n);
        bb->cap_tokens = n * T, bb->cap_rows = n;
        if (!bb->ids || !bb->types || !bb->mask || !bb->labels) {
            qb_batch_buf_free(bb);
            return qb_fail(QB_ENOMEM, "cannot allocate a %d x %d batch", n, T);
        }
    }
    for (int i = 0; i < n; i++) {
        const qb_example *e = &s->ex[idx[i]];
        for (int t = 0; t < T; t++) {
            const bool real = t < e->len;
            bb->ids[(size_t)i * T + t] = real ? e->ids[t] : pad_id;
            bb->mask[(size_t)i * T + t] = real;
        }
        bb->labels[i] = e->label;
    }
    bb->b = (qb_batch){bb->ids, bb->types, bb->mask, bb->labels, n, T};
    return QB_OK;
}

void qb_batch_buf_free(qb_batch_buf *bb)
{
    free(bb->ids), free(bb->types), free(bb->mask), free(bb->labels);
    memset(bb, 0, sizeof *bb);
}

qb_status qb_evaluate_split(const qb_model *m, const qb_backend *be, const qb_split *s, int batch_size,
                            int pad_id, qb_metrics *metrics, double *loss)
{
    const int K = m->cfg.num_labels, n = s->n;
    int32_t *order = malloc(sizeof(int32_t) * (size_t)n);
    int *gold = malloc(sizeof(int) * (size_t)n), *pred = malloc(sizeof(int) * (size_t)n);
    float *conf = malloc(sizeof(float) * (size_t)n), *logits = malloc(sizeof(float) * (size_t)batch_size * K);
    qb_batch_buf bb = {0};
    qb_activations *a = NULL;  /* one set for the whole split (FP32 products), grown by the longest batch */
    qb_status st = QB_OK;
    if (!order || !gold || !pred || !conf || !logits) {
        st = qb_fail(QB_ENOMEM, "%s: cannot allocate evaluation buffers", s->name);
        goto done;
    }
    if ((st = qb_activations_new(m, be, false, &a))) goto done;
    /* Longest first: padding per batch is as small as it gets. */
    for (int i = 0; i < n; i++) order[i] = i;
    sort_split = s;
    qsort(order, (size_t)n, sizeof *order, by_length_desc);
    double loss_sum = 0.0;
    for (int b0 = 0; b0 < n && !st; b0 += batch_size) {
        const int nb = n - b0 < batch_size ? n - b0 : batch_size;
        if ((st = qb_batch_fill(&bb, s, order + b0, nb, 0, pad_id))) break;
        if ((st = qb_model_infer(m, a, bb.b.ids, bb.b.types, bb.b.mask, nb, bb.b.T, logits, NULL))) break;
        for (int i = 0; i < nb; i++) {
            const float *z = logits + (size_t)i * K;
            int best = 0;
            for (int k = 1; k < K; k++) best = z[k] > z[best] ? k : best;
            double se = 0.0;
            for (int k = 0; k < K; k++) se += exp((double)z[k] - z[best]);
            const int ex = order[b0 + i], y = s->ex[ex].label;
            loss_sum += log(se) - ((double)z[y] - z[best]);  /* cross-entropy, max-shifted */
            gold[ex] = y, pred[ex] = best, conf[ex] = (float)(1.0 / se);
        }
    }
    if (!st) st = qb_metrics_compute(gold, pred, conf, n, K, metrics);
    if (!st) *loss = loss_sum / n;
    if (st) st = qb_fail_context(st, "evaluating %s", s->name);
done:
    qb_activations_free(a);
    qb_batch_buf_free(&bb);
    free(order), free(gold), free(pred), free(conf), free(logits);
    return st;
}
