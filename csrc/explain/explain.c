/* Explaining one text (include/qbert/explain.h): LIME and occlusion through the
 * engine's classifications of perturbed texts, integrated gradients through the
 * model's backward pass on the CPU backend. */
#include "qbert/explain.h"

#include "backend/backend.h"
#include "qbert/model.h"
#include "qbert/quant.h"
#include "qbert/tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qb_explain_default_options(qb_explain_options *o)
{
    *o = (qb_explain_options){.method = QB_EXPLAIN_LIME, .samples = 1000, .top_k = 10, .steps = 64,
                              .kernel_width = 25.0, .seed = 42, .target = -1};
}

static const char *const METHOD[] = {"lime", "occlusion", "ig"};

const char *qb_explain_method_name(qb_explain_method m) { return METHOD[m]; }

int qb_explain_method_parse(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, METHOD[i]) == 0) return i;
    return -1;
}

void qb_explanation_free(qb_explanation *x)
{
    for (int k = 0; x->lime && k < x->num_labels; k++) free(x->lime[k].weights);
    free(x->lime);
    qb_text_words_free(&x->words);
    free(x->probs), free(x->weights);
    memset(x, 0, sizeof *x);
}

/* probs (n, K) of texts with all words kept but those masks[i] (n, W) clears. */
static qb_status classify_masks(qb_engine *e, const qb_text_words *w, const double *masks, int n, float *probs)
{
    char **texts = calloc((size_t)n, sizeof *texts);
    bool *keep = malloc((size_t)(w->n_words ? w->n_words : 1) * sizeof *keep);
    qb_status st = texts && keep ? QB_OK : qb_fail(QB_ENOMEM, "explain: out of memory");
    for (int i = 0; i < n && !st; i++) {
        for (int j = 0; j < w->n_words; j++) keep[j] = masks[(size_t)i * w->n_words + j] != 0;
        if (!(texts[i] = qb_text_words_join(w, keep))) st = qb_fail(QB_ENOMEM, "explain: out of memory");
    }
    if (!st) st = qb_engine_classify(e, (const char *const *)texts, n, probs, NULL, NULL);
    for (int i = 0; texts && i < n; i++) free(texts[i]);
    free(texts), free(keep);
    return st;
}

/* LimeTextExplainer's masks: row 0 keeps every word; row i > 0 removes a number of
 * words drawn from 1 .. W, then that many distinct words (a partial shuffle). */
static void lime_masks(double *data, int n, int W, uint64_t seed)
{
    qb_rng r;
    qb_rng_init(&r, seed);
    int *order = malloc((size_t)W * sizeof *order);
    for (size_t i = 0; i < (size_t)n * W; i++) data[i] = 1;
    for (int i = 1; order && i < n; i++) {
        const int size = 1 + (int)(qb_rng_u32(&r) % (uint32_t)W);
        for (int j = 0; j < W; j++) order[j] = j;
        for (int j = 0; j < size; j++) {
            const int k = j + (int)(qb_rng_u32(&r) % (uint32_t)(W - j)), t = order[j];
            order[j] = order[k], order[k] = t;
            data[(size_t)i * W + order[j]] = 0;
        }
    }
    free(order);
}

/* Class k's surrogate on the samples data (n, W) with distances dist and the
 * classifier's probs (n, K). y: (n) scratch. */
static qb_status lime_class(const double *data, const double *dist, const float *probs, int n, int W, int K, int k,
                            const qb_explain_options *o, double *y, qb_lime_class *out)
{
    for (int i = 0; i < n; i++) y[i] = probs[(size_t)i * K + k];
    qb_lime_fit fit = {0};
    out->weights = calloc((size_t)W, sizeof *out->weights);
    qb_status st = out->weights ? QB_OK : qb_fail(QB_ENOMEM, "explain: out of memory");
    if (!st) st = qb_lime_explain(data, y, dist, n, W, o->kernel_width, o->top_k, &fit);
    for (int j = 0; j < fit.n && !st; j++) out->weights[fit.features[j]] = fit.weights[j];
    out->intercept = fit.intercept, out->score = fit.score, out->local_pred = fit.local_pred;
    qb_lime_fit_free(&fit);
    return st;
}

static qb_status explain_lime(qb_engine *e, const qb_explain_options *o, qb_explanation *x)
{
    const int W = x->words.n_words, n = o->samples, K = x->num_labels;
    double *data = malloc((size_t)n * W * sizeof *data), *dist = malloc((size_t)n * sizeof *dist);
    double *y = malloc((size_t)n * sizeof *y);
    float *probs = malloc((size_t)n * K * sizeof *probs);
    x->lime = calloc((size_t)K, sizeof *x->lime);
    qb_status st = data && dist && y && probs && x->lime ? QB_OK : qb_fail(QB_ENOMEM, "explain: out of memory");
    if (!st) {
        lime_masks(data, n, W, o->seed);
        qb_lime_distances(data, n, W, dist);
        st = classify_masks(e, &x->words, data, n, probs);
    }
    for (int k = 0; k < K && !st; k++) st = lime_class(data, dist, probs, n, W, K, k, o, y, &x->lime[k]);
    if (!st) memcpy(x->weights, x->lime[x->target].weights, (size_t)W * sizeof *x->weights);
    free(data), free(dist), free(y), free(probs);
    return st;
}

/* Each word removed in turn: p(target | text) - p(target | text without it). */
static qb_status explain_occlusion(qb_engine *e, qb_explanation *x)
{
    const int W = x->words.n_words, K = x->num_labels;
    double *masks = malloc((size_t)W * W * sizeof *masks);
    float *probs = malloc((size_t)W * K * sizeof *probs);
    qb_status st = masks && probs ? QB_OK : qb_fail(QB_ENOMEM, "explain: out of memory");
    for (int i = 0; i < W * W && !st; i++) masks[i] = i / W != i % W;
    if (!st) st = classify_masks(e, &x->words, masks, W, probs);
    for (int j = 0; j < W && !st; j++) x->weights[j] = x->probs[x->target] - probs[(size_t)j * K + x->target];
    free(masks), free(probs);
    return st;
}

/* ---- integrated gradients ---- */

/* The ids of [CLS] + each segment's word pieces + [SEP] (at most max_length), and the
 * word of each position (-1: a special token or a separator's piece). */
static qb_status piece_ids(const qb_tokenizer *tok, const qb_text_words *w, int max_length, int32_t *ids, int *word,
                           int *T)
{
    int n = 0;
    ids[n] = qb_tokenizer_cls_id(tok), word[n++] = -1;
    for (int s = 0; s < w->n_segments && n < max_length - 1; s++) {
        int32_t *p;
        int np;
        qb_status st = qb_tokenize(tok, w->segments[s], strlen(w->segments[s]), &p, &np, NULL);
        if (st) return st;
        for (int k = 0; k < np && n < max_length - 1; k++) ids[n] = p[k], word[n++] = w->word_of[s];
        free(p);
    }
    ids[n] = qb_tokenizer_sep_id(tok), word[n++] = -1;
    *T = n;
    return QB_OK;
}

/* FP32 copies of Linear i's weights as m computes with them: a quantized Linear's
 * dequantized (integer x its group's scale), a QAT one's fake-quantized; NULL when it
 * is plain FP32 (or out of memory: *st says). */
static float *effective_weight(const qb_model *m, int i, const qb_linear_info *info, qb_status *st)
{
    const qb_linear_params *p = qb_model_linear(m, i);
    const qb_qlinear *q = p->q;
    if (!q && !m->qat) return NULL;
    const int N = info->N, K = info->K;
    float *w = malloc((size_t)N * K * sizeof *w), *scales = malloc((size_t)N * K * sizeof *scales);
    if (!w || !scales) {
        free(w), free(scales);
        *st = qb_fail(QB_ENOMEM, "explain: out of memory");
        return NULL;
    }
    if (q) {
        for (size_t r = 0; r < (size_t)N; r++)
            for (int c = 0; c < K; c++) w[r * K + c] = q->wq[r * K + c] * q->scales[r * (K / q->group) + c / q->group];
    } else {
        const qb_qat_settings *set = &m->qat->set;
        qb_backend_cpu()->fake_quant_weight(NULL, w, scales, p->w, N, K, set->group ? set->group : K, set->weight_bits);
    }
    free(scales);
    return w;
}

/* m as a plain FP32 model with the weights it computes with (effective_weight) and
 * no fake quantization of activations; *owned holds the copies made (free each).
 * (QAT embedding tables stay as they are.) */
static qb_status effective_model(const qb_model *m, qb_model *d, float ***owned, int *n_owned)
{
    *d = *m;
    d->qat = NULL;
    const int L = m->cfg.num_layers, n = qb_config_linears(&m->cfg, NULL);
    qb_linear_info *info = malloc((size_t)n * sizeof *info);
    *owned = calloc((size_t)n, sizeof **owned), *n_owned = 0;
    d->layers = malloc((size_t)L * sizeof *d->layers);
    if (!info || !*owned || !d->layers) {
        free(info);
        return qb_fail(QB_ENOMEM, "explain: out of memory");
    }
    qb_config_linears(&m->cfg, info);
    memcpy(d->layers, m->layers, (size_t)L * sizeof *d->layers);
    for (int l = 0; l < L; l++) d->layers[l].qkv = NULL;
    qb_status st = QB_OK;
    for (int i = 0; i < n && !st; i++) {
        float *w = effective_weight(m, i, &info[i], &st);
        if (!w) continue;
        qb_linear_params *p = (qb_linear_params *)qb_model_linear(d, i);  /* in d's own layers (or d itself) */
        (*owned)[(*n_owned)++] = w;
        p->w = w, p->q = NULL;
    }
    free(info);
    return st;
}

/* Integrated gradients state: the model (dequantized), its training activations and
 * gradients on the CPU, and the positions' embeddings. */
typedef struct {
    qb_model m, g;
    qb_activations *a;
    int T, C, rows;         /* rows: interpolation points per pass */
    int32_t *ids, *word;    /* (T) */
    float *table;           /* (first + rows * T, C): the interpolated word embeddings */
    int first;              /* the first id of the table's rows (after the padding id) */
} ig_state;

/* One pass over alphas[0..n): adds each point's gradient of p(target) to grad (T, C)
 * and returns p(target) at each point in p. */
static qb_status ig_pass(ig_state *s, const float *base, const float *input, const double *alphas, int n, int target,
                         double *grad, double *p)
{
    const int T = s->T, C = s->C, K = s->m.cfg.num_labels;
    int32_t *ids = malloc((size_t)n * T * sizeof *ids), *labels = malloc((size_t)n * sizeof *labels);
    float *logits = malloc((size_t)n * K * sizeof *logits), loss;
    if (!ids || !labels || !logits) {
        free(ids), free(labels), free(logits);
        return qb_fail(QB_ENOMEM, "explain: out of memory");
    }
    for (int r = 0; r < n; r++) {
        labels[r] = target;
        for (int t = 0; t < T; t++) {
            const int id = s->first + r * T + t;  /* one table row per (point, position) */
            ids[(size_t)r * T + t] = id;
            for (int c = 0; c < C; c++)
                s->table[(size_t)id * C + c] =
                    base[(size_t)t * C + c] + (float)alphas[r] * (input[(size_t)t * C + c] - base[(size_t)t * C + c]);
        }
    }
    qb_model_zero(&s->g, qb_backend_cpu());
    const qb_batch b = {ids, NULL, NULL, labels, n, T};
    qb_status st = qb_model_forward_backward(&s->m, s->a, &b, NULL, 1.0f, &s->g, &loss, logits);
    for (int r = 0; r < n && !st; r++) {
        double mx = logits[(size_t)r * K], z = 0;
        for (int k = 1; k < K; k++) mx = fmax(mx, logits[(size_t)r * K + k]);
        for (int k = 0; k < K; k++) z += exp(logits[(size_t)r * K + k] - mx);
        p[r] = exp(logits[(size_t)r * K + target] - mx) / z;
        /* the backward gives d(-log p)/dx; dp/dx = -p d(-log p)/dx */
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++)
                grad[(size_t)t * C + c] -= p[r] * s->g.word_emb[(size_t)(s->first + r * T + t) * C + c];
    }
    free(ids), free(labels), free(logits);
    return st;
}

/* The input and baseline word embeddings of the positions: the baseline is [PAD]'s
 * embedding for every word piece, the input's own for [CLS] and [SEP]. */
static void ig_endpoints(const ig_state *s, const float *words, float *input, float *base)
{
    const int C = s->C, pad = s->m.cfg.pad_token_id;
    for (int t = 0; t < s->T; t++) {
        memcpy(input + (size_t)t * C, words + (size_t)s->ids[t] * C, (size_t)C * sizeof *input);
        const bool special = t == 0 || t == s->T - 1;
        memcpy(base + (size_t)t * C, words + (size_t)(special ? s->ids[t] : pad) * C, (size_t)C * sizeof *base);
    }
}

/* words: the model's word embedding table (V, C). */
static qb_status ig_run(ig_state *s, const float *words, const qb_explain_options *o, qb_explanation *x)
{
    const int T = s->T, C = s->C, steps = o->steps;
    float *input = malloc((size_t)2 * T * C * sizeof *input), *base = input ? input + (size_t)T * C : NULL;
    double *grad = calloc((size_t)T * C, sizeof *grad), *alphas = malloc((size_t)(steps + 2) * sizeof *alphas);
    double *p = malloc((size_t)(steps + 2) * sizeof *p);
    qb_status st = input && grad && alphas && p ? QB_OK : qb_fail(QB_ENOMEM, "explain: out of memory");
    if (!st) ig_endpoints(s, words, input, base);
    for (int k = 0; k < steps; k++) alphas[k] = (k + 0.5) / steps;  /* midpoints */
    for (int k = 0; k < steps && !st; k += s->rows) {
        const int n = steps - k < s->rows ? steps - k : s->rows;
        st = ig_pass(s, base, input, alphas + k, n, x->target, grad, p + k);
    }
    /* p at the two ends (their gradients go to scratch, unused) */
    double ends[2], zero_one[2] = {0, 1};
    double *scratch = calloc((size_t)T * C, sizeof *scratch);
    if (!st && !scratch) st = qb_fail(QB_ENOMEM, "explain: out of memory");
    if (!st) st = ig_pass(s, base, input, zero_one, 2, x->target, scratch, ends);
    double sum = 0;
    for (int t = 0; t < T && !st; t++) {
        double a = 0;
        for (int c = 0; c < C; c++)
            a += (input[(size_t)t * C + c] - base[(size_t)t * C + c]) * grad[(size_t)t * C + c] / steps;
        if (s->word[t] >= 0) x->weights[s->word[t]] += a;
        else x->outside_words += a;  /* [CLS] / [SEP] have none: baseline = input */
        sum += a;
    }
    x->f_baseline = ends[0], x->f_text = ends[1];
    const double delta = ends[1] - ends[0];
    x->completeness = fabs(sum - delta) / fmax(fabs(delta), 1e-12);
    free(input), free(grad), free(alphas), free(p), free(scratch);
    return st;
}

static qb_status explain_ig(qb_engine *e, const qb_explain_options *o, qb_explanation *x)
{
    const qb_model *m = qb_engine_model(e);
    ig_state s = {.C = m->cfg.hidden_size};
    const int max_len = qb_engine_max_length(e);
    float **owned = NULL;
    int n_owned = 0;
    s.ids = malloc((size_t)max_len * sizeof *s.ids), s.word = malloc((size_t)max_len * sizeof *s.word);
    qb_status st = s.ids && s.word ? QB_OK : qb_fail(QB_ENOMEM, "explain: out of memory");
    if (!st) st = piece_ids(qb_engine_tokenizer(e), &x->words, max_len, s.ids, s.word, &s.T);
    if (!st) st = effective_model(m, &s.m, &owned, &n_owned);
    /* the table's ids start after the padding id (its gradient is dropped) and stay
     * within the vocabulary the model checks ids against */
    s.first = m->cfg.pad_token_id + 1;
    s.rows = (m->cfg.vocab_size - s.first) / s.T;
    if (s.rows > 16) s.rows = 16;
    if (!st && s.rows < 2) st = qb_fail(QB_EINVAL, "explain: a vocabulary of %d is too small for %d positions", m->cfg.vocab_size, s.T);
    if (!st && !(s.table = malloc((size_t)(s.first + s.rows * s.T) * s.C * sizeof *s.table)))
        st = qb_fail(QB_ENOMEM, "explain: out of memory");
    s.m.word_emb = s.table;  /* the interpolation points; the endpoints come from m's table */
    if (!st) st = qb_model_zeros_like(&s.m, &s.g);
    if (!st) st = qb_activations_new(&s.m, qb_backend_cpu(), true, &s.a);
    if (!st) st = ig_run(&s, m->word_emb, o, x);
    qb_activations_free(s.a);
    if (s.g.layers) qb_model_free(&s.g);
    for (int i = 0; i < n_owned; i++) free(owned[i]);
    free(owned), free(s.m.layers), free(s.table), free(s.ids), free(s.word);
    return st;
}

qb_status qb_explain_text(qb_engine *e, const char *text, const qb_explain_options *o, qb_explanation *out)
{
    memset(out, 0, sizeof *out);
    qb_explain_options def;
    if (!o) qb_explain_default_options(&def), o = &def;
    if (o->samples < 2 || o->top_k < 1 || o->steps < 1 || !(o->kernel_width > 0))
        return qb_fail(QB_EINVAL, "explain: samples %d (>= 2), top_k %d, steps %d (>= 1), kernel width %g (> 0)",
                       o->samples, o->top_k, o->steps, o->kernel_width);
    qb_status st = qb_text_words_split(text, &out->words);
    if (st) return st;
    if (out->words.n_words == 0) {
        qb_explanation_free(out);
        return qb_fail(QB_EINVAL, "explain: \"%.60s\" has no words", text);
    }
    const int K = out->num_labels = qb_engine_model(e)->cfg.num_labels;
    if (o->target >= K) {
        qb_explanation_free(out);
        return qb_fail(QB_EINVAL, "explain: target class %d, but the model has %d classes", o->target, K);
    }
    out->probs = malloc((size_t)K * sizeof *out->probs);
    out->weights = calloc((size_t)out->words.n_words, sizeof *out->weights);
    if (!out->probs || !out->weights) st = qb_fail(QB_ENOMEM, "explain: out of memory");
    if (!st) st = qb_engine_classify(e, &text, 1, out->probs, NULL, NULL);
    for (int k = 1; k < K && !st; k++)
        if (out->probs[k] > out->probs[out->predicted]) out->predicted = k;
    out->target = o->target >= 0 ? o->target : out->predicted;
    if (!st && o->method == QB_EXPLAIN_LIME) st = explain_lime(e, o, out);
    if (!st && o->method == QB_EXPLAIN_OCCLUSION) st = explain_occlusion(e, out);
    if (!st && o->method == QB_EXPLAIN_IG) st = explain_ig(e, o, out);
    if (st) qb_explanation_free(out);
    return st;
}
