/* The BERT classifier graph, forward and backward, written once against the backend
 * op table (csrc/backend/backend.h). Shapes: B batch, T sequence, M = B*T tokens,
 * C hidden, I intermediate, H heads, D = C / H, K labels, L layers.
 *
 * Matches transformers' BertForSequenceClassification: post-LayerNorm blocks,
 * exact-erf GELU, tanh pooler over the first token, dropout (training only) after
 * the embedding LayerNorm, on the attention probabilities, on both dense outputs of
 * a block before their residual add, and on the pooled output.
 *
 * One forward serves inference and training; only the activation layout differs
 * (see plan()). Inference aliases every layer onto one set of buffers and keeps
 * nothing. Training gives each layer its own buffers and keeps what the backward
 * needs: each LayerNorm's input t and (mean, 1/std), the attention output and its
 * rows' log-sum-exp, the GELU input and output. Dropout masks are never stored: site s
 * of a step uses Philox stream (plan.stream + s) and the backward recomputes them.
 *
 * Storage: the encoder's activations (and their gradients) are stored in the pass's
 * type `act` (storage()): FP32, or on a backend with QB_CAN_HALF the BF16 / FP16 of
 * the math when the model has half weights of that type (qb_model_to_backend); its
 * Linears then read the half weights (wh, bh), refreshed from the FP32 masters before
 * each pass of a trainable model. LayerNorm statistics, the log-sum-exp, the head
 * (pooler, classifier, logits, loss) and every parameter gradient stay FP32: the
 * first tokens' rows are gathered into the FP32 head by one `rows` conversion, and
 * their gradients scattered back by another. */
#include "qbert/model.h"
#include "qbert/quant.h"

#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

/* Activations (void *: stored in the pass's act) and FP32 statistics of a layer. */
typedef struct {
    void *q, *k, *v, *ctx;   /* (M, C) */
    float *lse;              /* (B, H, T) attention's log-sum-exp per row; NULL in inference */
    void *t1;                /* (M, C) LayerNorm 1 input (dropout(dense(ctx)) + x) */
    float *st1;              /* (M, 2) */
    void *h1;                /* (M, C) LayerNorm 1 output */
    void *a, *g;             /* (M, I) GELU input and output */
    void *t2;                /* (M, C) LayerNorm 2 input */
    float *st2;              /* (M, 2) */
} layer_acts;

struct qb_activations {
    const qb_backend *be;
    qb_stream *stream;       /* what the passes run on (NULL: the backend's default) */
    bool train;
    bool quantized;          /* the model has quantized Linears */
    qb_math math;            /* of the products (qb_activations_set_math) */
    const float *loss_scale; /* backend memory: fp16's (qb_activations_set_loss_scale), or NULL */
    qb_dtype act;            /* the storage of the encoder's activations in the laid-out pass */
    bool fused;              /* query, key and value as one GEMM into one (M, 3C) buffer (fused_qkv) */
    void *mem;               /* one backend allocation, carved by plan() */
    size_t cap;              /* its size in bytes */
    int B, T, K;             /* the last batch's shape; K labels */
    /* Host staging for the copies (backend host memory: pinned on a GPU): ids, types,
     * mask (B, T) and labels (B) on the way in; logits (B, K) and losses (B) out.
     * Rewritten by the next pass only after this one has synced. */
    int32_t *host;
    size_t host_cap;         /* bytes */
    void *graphs;            /* the backend's recorded inference passes (replay), or NULL */
    void **x;                /* (L + 1) x (M, C): x[l] input of layer l, x[L] the output */
    void *t0;                /* (M, C) embedding sum (LayerNorm input) */
    float *st0;              /* (M, 2) */
    layer_acts *layer;       /* (L) */
    float *cls;              /* (B, C) first-token rows of x[L] */
    float *pooled, *pooled_d;/* (B, C) tanh output; after dropout (the classifier input) */
    float *logits, *dlogits, *losses;  /* (B, K), (B, K), (B) */
    int32_t *ids, *types, *mask, *labels;  /* (B, T), labels (B) */
    /* QAT: the fake-quantized input of each Linear (qb_config_linears order); training
     * keeps one per Linear for the backward pass, inference shares one scratch. NULL
     * without QAT. */
    float **xfq;
    /* Inference of a model with quantized Linears: a LayerNorm output quantized per
     * token once for the dynamic INT8 / W4A8 Linears that read it (q, k and v, or the
     * FFN's first), and the FFN's GELU output quantized by the Linear that makes it
     * for the one that reads it ((M, I)); u NULL otherwise. */
    qb_qinput xq, xqi;
    /* training only: gradient scratch, in act but dcls and dpool (FP32, the head's) */
    void *dx, *dh, *dtmp, *dctx, *dq, *dk, *dv;  /* (M, C) */
    void *da;                /* (M, I) */
    float *dcls, *dpool;     /* (B, C) */
    /* qb_activations_set_grads_hook */
    void (*grads_final)(void *ctx, const float *from);
    void *grads_ctx;
};

/* Walks the layout of one batch: with `base` NULL it only adds up the bytes; with a
 * base it sets every pointer (NULL while sizing). Buffers are 64-byte aligned. */
typedef struct {
    char *base;
    size_t off;
} carver;

static void *carve(carver *c, size_t bytes)
{
    void *p = c->base ? c->base + c->off : NULL;
    c->off += (bytes + 63) & ~(size_t)63;
    return p;
}

/* p + off bytes, or NULL while sizing. */
static void *at(void *p, size_t off) { return p ? (char *)p + off : NULL; }

/* Query, key and value of (M, C) each: three buffers, or the thirds of one (M, 3C)
 * one when they are one GEMM's output (a->fused). */
static void carve_qkv(const qb_activations *a, carver *cv, size_t MC, size_t rowbytes, void **q, void **k, void **v)
{
    if (a->fused) {
        *q = carve(cv, 3 * MC), *k = at(*q, rowbytes), *v = at(*q, 2 * rowbytes);
    } else {
        *q = carve(cv, MC), *k = carve(cv, MC), *v = carve(cv, MC);
    }
}

static void plan(qb_activations *a, const qb_config *c, int B, int T, carver *cv)
{
    const size_t M = (size_t)B * T, C = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    const size_t E = qb_store_bytes(a->act);  /* bytes of an activation */
    const size_t MC = M * C * E, MI = M * I * E, BC = (size_t)B * C * 4, ST = M * 2 * 4;
    const size_t BK = (size_t)B * c->num_labels * 4, BHT = (size_t)B * c->num_heads * T * 4;
    const int L = c->num_layers;
    if (a->train) {
        for (int l = 0; l <= L; l++) a->x[l] = carve(cv, MC);
        a->t0 = carve(cv, MC);
        a->st0 = carve(cv, ST);
        for (int l = 0; l < L; l++) {
            layer_acts *la = &a->layer[l];
            carve_qkv(a, cv, MC, C * E, &la->q, &la->k, &la->v);
            la->ctx = carve(cv, MC);
            la->lse = carve(cv, BHT);
            la->t1 = carve(cv, MC), la->st1 = carve(cv, ST), la->h1 = carve(cv, MC);
            la->a = carve(cv, MI), la->g = carve(cv, MI);
            la->t2 = carve(cv, MC), la->st2 = carve(cv, ST);
        }
        a->dx = carve(cv, MC), a->dh = carve(cv, MC), a->dtmp = carve(cv, MC), a->dctx = carve(cv, MC);
        carve_qkv(a, cv, MC, C * E, &a->dq, &a->dk, &a->dv);
        a->da = carve(cv, MI);
        a->dcls = carve(cv, BC), a->dpool = carve(cv, BC);
    } else {
        /* Every layer on the same buffers: the hidden state x and the LayerNorm 1
         * output h1 share one buffer (the layer input is dead once LayerNorm 1 has
         * added it), t1 and t2 share another, the GELU runs in place. */
        void *x = carve(cv, MC), *t = carve(cv, MC), *inter = carve(cv, MI), *q, *k, *v;
        carve_qkv(a, cv, MC, C * E, &q, &k, &v);
        void *ctx = carve(cv, MC);
        for (int l = 0; l <= L; l++) a->x[l] = x;
        a->t0 = x;
        a->st0 = NULL;
        for (int l = 0; l < L; l++)
            a->layer[l] = (layer_acts){.q = q, .k = k, .v = v, .ctx = ctx, .t1 = t, .h1 = x,
                                       .a = inter, .g = inter, .t2 = t};
    }
    a->cls = carve(cv, BC);
    a->pooled = carve(cv, BC);
    a->pooled_d = a->train ? carve(cv, BC) : a->pooled;
    a->logits = carve(cv, BK);
    a->dlogits = carve(cv, BK);
    a->losses = carve(cv, (size_t)B * 4);
    a->ids = carve(cv, M * 4), a->types = carve(cv, M * 4), a->mask = carve(cv, M * 4);
    a->labels = carve(cv, (size_t)B * 4);
    if (a->quantized && !a->train) {
        qb_qinput *qs[2] = {&a->xq, &a->xqi};
        const int widths[2] = {(int)C, (int)I};
        for (int i = 0; i < 2; i++) {
            *qs[i] = (qb_qinput){.M = (int)M, .K = widths[i], .ldu = qb_qinput_ldu(widths[i])};
            qs[i]->u = carve(cv, (size_t)qb_qinput_rows((int)M) * qs[i]->ldu);
            qs[i]->scale = carve(cv, M * 4);
            qs[i]->zp = carve(cv, M * 4);
        }
    }
    if (!a->xfq) return;  /* QAT: FP32 storage (storage()) */
    float *shared = a->train ? NULL : carve(cv, M * (C > I ? C : I) * 4);
    for (int i = 0; i < 6 * L + 2; i++) {
        const size_t bytes = i >= 6 * L ? BC : i % 6 == 5 ? MI : MC;  /* pooler, classifier: (B, C) */
        a->xfq[i] = shared ? shared : carve(cv, bytes);
    }
}

/* Whether a Linear of m is quantized (m's own, or borrowed by a backend copy); with
 * weight_only, quantized with FP32 inputs (act_f32), which keep FP32 storage. */
static bool has_qlinear_of(const qb_model *m, bool weight_only)
{
    const int n = qb_config_linears(&m->cfg, NULL);
    for (int i = 0; i < n; i++) {
        const qb_qlinear *q = qb_model_linear(m, i)->q;
        if (q && (!weight_only || q->act_f32)) return true;
    }
    return false;
}

static bool has_qlinear(const qb_model *m) { return has_qlinear_of(m, false); }

qb_status qb_activations_new(const qb_model *m, const qb_backend *be, bool train, qb_activations **out)
{
    qb_activations *a = calloc(1, sizeof *a);
    const int L = m->cfg.num_layers;
    if (a) {
        a->x = calloc((size_t)L + 1, sizeof *a->x);
        a->layer = calloc((size_t)L, sizeof *a->layer);
        if (m->qat) a->xfq = calloc((size_t)6 * L + 2, sizeof *a->xfq);
    }
    if (!a || !a->x || !a->layer || (m->qat && !a->xfq)) {
        if (a) free(a->x), free(a->layer), free(a->xfq);
        free(a);
        return qb_fail(QB_ENOMEM, "cannot allocate the activation table");
    }
    a->be = be;
    a->train = train;
    a->quantized = has_qlinear(m);
    *out = a;
    return QB_OK;
}

void qb_activations_free(qb_activations *a)
{
    if (!a) return;
    if (a->graphs) a->be->graphs_free(a->graphs);
    if (a->mem) a->be->free(a->mem);
    if (a->host) a->be->host_free(a->host);
    free(a->x);
    free(a->layer);
    free(a->xfq);
    free(a);
}

void qb_activations_set_math(qb_activations *a, qb_math math) { a->math = math; }

void qb_activations_set_loss_scale(qb_activations *a, const float *scale) { a->loss_scale = scale; }

void qb_activations_set_stream(qb_activations *a, qb_stream *s) { a->stream = s; }

/* Recorded passes go with the memory they were recorded on. */
static void drop_graphs(qb_activations *a)
{
    if (a->graphs) a->be->graphs_free(a->graphs);
    a->graphs = NULL;
}

/* Lays the activations out for a B x T batch, growing the allocations if needed
 * (a recorded training pass also copies its loss into the host staging). */
static qb_status activations_fit(qb_activations *a, const qb_config *c, int B, int T)
{
    const size_t host = ((size_t)B * T * 3 + B) * 4 + (size_t)B * (c->num_labels + 1) * 4;
    if (host > a->host_cap) {
        drop_graphs(a);
        if (a->host) a->be->host_free(a->host);
        a->host_cap = 0;
        if (!(a->host = a->be->host_alloc(host)))
            return qb_fail(QB_ENOMEM, "%s backend: cannot allocate %zu bytes of host staging for batch %d x %d",
                           a->be->name, host, B, T);
        a->host_cap = host;
    }
    carver cv = {NULL, 0};
    plan(a, c, B, T, &cv);
    if (cv.off > a->cap) {
        drop_graphs(a);
        if (a->mem) a->be->free(a->mem);
        a->cap = 0;
        if (!(a->mem = a->be->alloc(cv.off)))
            return qb_fail(QB_ENOMEM, "%s backend: cannot allocate %zu bytes of %s activations for "
                           "batch %d x %d", a->be->name, cv.off, a->train ? "training" : "inference", B, T);
        a->cap = cv.off;
    }
    cv = (carver){a->mem, 0};
    plan(a, c, B, T, &cv);
    a->B = B, a->T = T, a->K = c->num_labels;
    return QB_OK;
}

/* Rejects ids the embedding tables do not have, before any kernel reads them. */
static qb_status check_inputs(const qb_config *c, const int32_t *ids, const int32_t *types,
                              const int32_t *mask, const int32_t *labels, int B, int T)
{
    if (B < 1 || T < 1) return qb_fail(QB_EINVAL, "empty batch (%d x %d)", B, T);
    if (T > c->max_position)
        return qb_fail(QB_EINVAL, "sequence length %d exceeds max_position_embeddings %d", T, c->max_position);
    for (size_t i = 0; i < (size_t)B * T; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return qb_fail(QB_EINVAL, "token id %d at (%zu, %zu) is outside the vocabulary [0, %d)",
                           ids[i], i / T, i % T, c->vocab_size);
        if (types && (types[i] < 0 || types[i] >= c->type_vocab_size))
            return qb_fail(QB_EINVAL, "token type %d at (%zu, %zu) is outside [0, %d)",
                           types[i], i / T, i % T, c->type_vocab_size);
        if (mask && mask[i] != 0 && mask[i] != 1)
            return qb_fail(QB_EINVAL, "attention mask value %d at (%zu, %zu) is not 0 or 1", mask[i], i / T, i % T);
    }
    for (int b = 0; labels && b < B; b++)
        if (labels[b] < 0 || labels[b] >= c->num_labels)
            return qb_fail(QB_EINVAL, "label %d of batch row %d is outside [0, %d)", labels[b], b, c->num_labels);
    return QB_OK;
}

/* Copies the batch to the device; absent types mean all zero, an absent mask means
 * attend everywhere. */
static void upload(qb_activations *a, const int32_t *ids, const int32_t *types, const int32_t *mask,
                   const int32_t *labels, int B, int T)
{
    const qb_backend *be = a->be;
    const size_t M = (size_t)B * T;
    int32_t *h = a->host;  /* ids, types, mask, labels: one copy each from staging */
    memcpy(h, ids, M * 4);
    for (size_t i = 0; i < M; i++) h[M + i] = types ? types[i] : 0, h[2 * M + i] = mask ? mask[i] : 1;
    be->to_device(a->stream, a->ids, h, M * 4);
    be->to_device(a->stream, a->types, h + M, M * 4);
    be->to_device(a->stream, a->mask, h + 2 * M, M * 4);
    if (labels) {
        memcpy(h + 3 * M, labels, (size_t)B * 4);
        be->to_device(a->stream, a->labels, h + 3 * M, (size_t)B * 4);
    }
}

/* The staging area for what comes back: (B, K) logits, then (B) losses. */
static float *host_out(const qb_activations *a) { return (float *)(a->host + (size_t)a->B * a->T * 3 + a->B); }

/* Dropout sites of one step, in graph order: the embeddings, three per layer, the
 * pooled output (qb_dropout_sites of them). */
enum { SITE_EMB = 0 };
static qb_dropout site(const qb_dropout_plan *d, bool attention, uint64_t s)
{
    qb_dropout r = {0};
    if (d) r = (qb_dropout){attention ? d->attention : d->hidden, d->seed, d->stream + s, d->offset};
    return r;
}
static uint64_t site_attn(int l) { return 1 + 3 * (uint64_t)l; }
static uint64_t site_attn_out(int l) { return 2 + 3 * (uint64_t)l; }
static uint64_t site_ffn_out(int l) { return 3 + 3 * (uint64_t)l; }
static uint64_t site_pooled(int L) { return 1 + 3 * (uint64_t)L; }
uint64_t qb_dropout_sites(const qb_config *c) { return site_pooled(c->num_layers) + 1; }

/* Linear `index` (qb_config_linears order) of the graph, FP32 or quantized; with
 * gelu the exact GELU follows (fused into the quantized GEMM's epilogue). x and y are
 * stored in t: the pass's act in the encoder, FP32 in the head; with half storage the
 * half weights are read. xq: x already quantized (shared_input), or NULL; yq: where a
 * quantized Linear also writes y quantized per token (gelu_output), or NULL. Under
 * QAT (FP32 storage) the input is fake-quantized with its observer's scale (the
 * observer first sees it in training) and the weight is the fake-quantized copy. */
static void linear(const qb_model *m, qb_activations *a, qb_forward_trace *trace, int index, void *y,
                   qb_qinput *yq, const void *x, const qb_qinput *xq, const qb_linear_params *p, int M, int N, int K,
                   bool gelu, qb_dtype t)
{
    const qb_backend *be = a->be;
    qb_stream *s = a->stream;
    qb_qat *q = m->qat;
    if (trace && trace->linear_input) trace->linear_input(trace->ctx, index, x, M, K);
    if (p->q) {
        be->linear_q(s, y, yq, x, xq, p->q, p->b, M, gelu, t);
        return;
    }
    const void *w = t == QB_F32 ? p->w : p->wh, *b = t == QB_F32 ? p->b : p->bh;
    if (q) {
        const size_t n = (size_t)M * K;
        float *scale = q->dev_scale + index;
        if (a->train && q->observe) {  /* on the device: the host waits for nothing */
            float *batch = q->dev_batch + 2 * index;
            if (q->set.observer == QB_OBS_PERCENTILE) be->abs_percentile(s, batch, x, n, q->set.percentile);
            else be->minmax(s, batch, x, n);
            if (q->combine) q->combine(q->combine_ctx, batch, s);
            be->observe(s, q->dev_range + 2 * index, scale, batch,
                        q->set.observer == QB_OBS_MINMAX ? 0.0f : q->set.ema, q->set.act_bits);
        }
        be->fake_quant(s, a->xfq[index], x, n, scale, q->set.act_bits);
        x = a->xfq[index];
        w = q->wfq[index];
    }
    be->linear(s, y, x, w, b, M, N, K, a->math, t);
    if (gelu) be->gelu(s, y, y, (size_t)M * N, t);
}

/* The backward of Linear `index`: dx (NULL: not needed), dW, db (FP32) from dy and the
 * forward's input x, stored in t. Under QAT the product used the fake-quantized input
 * and weight; the weight gradient passes straight through, the input gradient is
 * clipped where the input fell outside the representable range. */
static void linear_backward(const qb_model *m, qb_activations *a, int index, void *dx, qb_linear_params *g,
                            const void *dy, const void *x, const qb_linear_params *p, int M, int N, int K, qb_dtype t)
{
    const qb_backend *be = a->be;
    const qb_qat *q = m->qat;
    const void *w = q ? q->wfq[index] : t == QB_F32 ? p->w : p->wh;
    be->linear_backward(a->stream, dx, g->w, g->b, dy, q ? a->xfq[index] : x, w, M, N, K, a->math, t);
    if (q && dx)
        be->fake_quant_backward(a->stream, dx, dx, x, (size_t)M * K, q->dev_scale + index, q->set.act_bits);
}

/* QAT: ranges set on the host (new, loaded) and their scales into backend memory. */
static qb_status qat_upload_ranges(qb_qat *q)
{
    const qb_backend *be = q->be;
    float *scale = malloc((size_t)q->n * sizeof *scale);
    if (!scale) return qb_fail(QB_ENOMEM, "out of memory");
    for (int i = 0; i < q->n; i++) scale[i] = qb_qat_act_scale(q, i);
    if (q->dev_range != q->range) be->to_device(NULL, q->dev_range, q->range, (size_t)q->n * 2 * sizeof(float));
    be->to_device(NULL, q->dev_scale, scale, (size_t)q->n * sizeof *scale);
    const qb_status st = be->sync(NULL);  /* scale is freed next; once per load, not per step */
    free(scale);
    if (!st) q->host_newer = false;
    return st;
}

/* QAT: the backend buffers (first use), the ranges the host set, and the
 * fake-quantized weights and tables (after the weights changed). */
static qb_status qat_refresh(const qb_model *m, const qb_backend *be)
{
    qb_qat *q = m->qat;
    if (!q || (!q->stale && q->be == be)) return QB_OK;
    if (q->be && q->be != be) return qb_fail(QB_EINVAL, "a QAT model runs on one backend (%s)", q->be->name);
    const qb_config *c = &m->cfg;
    const int rows[3] = {c->vocab_size, c->max_position, c->type_vocab_size}, C = c->hidden_size, n = q->n;
    const float *tables[3] = {m->word_emb, m->pos_emb, m->type_emb};
    qb_linear_info *lin = malloc((size_t)n * sizeof *lin);
    if (!lin) return qb_fail(QB_ENOMEM, "out of memory");
    qb_config_linears(c, lin);
    qb_status st = QB_OK;
    if (!q->be) {
        q->be = be;
        size_t most = (size_t)rows[0] * C;  /* the largest tensor bounds the scales' scratch */
        if (!(q->wfq = calloc((size_t)n, sizeof *q->wfq))) st = qb_fail(QB_ENOMEM, "out of memory");
        for (int i = 0; i < n && !st; i++) {
            const size_t bytes = (size_t)lin[i].N * lin[i].K * 4;
            if (bytes / 4 > most) most = bytes / 4;
            if (!(q->wfq[i] = be->alloc(bytes))) st = qb_fail(QB_ENOMEM, "%s backend: cannot allocate %zu bytes of "
                                                              "fake-quantized %s weights", be->name, bytes, lin[i].name);
        }
        for (int t = 0; t < 3 && !st && q->set.embeddings; t++)
            if (!(q->efq[t] = be->alloc((size_t)rows[t] * C * 4)))
                st = qb_fail(QB_ENOMEM, "%s backend: cannot allocate the fake-quantized embedding tables", be->name);
        if (!st && !(q->scales = be->alloc(most * 4)))
            st = qb_fail(QB_ENOMEM, "%s backend: cannot allocate the QAT weight scales", be->name);
        /* the observers: on the CPU the host's ranges are the backend's */
        const size_t bytes = (size_t)n * 2 * sizeof(float);
        if (!st && !(q->dev_range = be->device == QB_DEV_CPU ? q->range : be->alloc(bytes)))
            st = qb_fail(QB_ENOMEM, "%s backend: cannot allocate the QAT ranges", be->name);
        if (!st && (!(q->dev_scale = be->alloc(bytes / 2)) || !(q->dev_batch = be->alloc(bytes))))
            st = qb_fail(QB_ENOMEM, "%s backend: cannot allocate the QAT scales", be->name);
    }
    if (!st && q->host_newer) st = qat_upload_ranges(q);
    for (int i = 0; i < n && !st; i++)
        be->fake_quant_weight(NULL, q->wfq[i], q->scales, qb_model_linear(m, i)->w, lin[i].N, lin[i].K,
                              q->set.group ? q->set.group : lin[i].K, q->set.weight_bits);
    for (int t = 0; t < 3 && !st && q->set.embeddings; t++)
        be->fake_quant_weight(NULL, q->efq[t], q->scales, tables[t], rows[t], C, q->set.group ? q->set.group : C,
                              q->set.weight_bits);
    free(lin);
    if (!st) q->stale = false;
    return st;
}

qb_status qb_model_prepare(qb_model *m, const qb_backend *be, qb_stream *s)
{
    qb_status st = QB_OK;
    for (int i = 0; i < m->n_qlinear && !st; i++) st = be->qlinear_prepare(s, &m->qlinear[i]);
    for (int l = 0; m->qkv && l < m->cfg.num_layers && !st; l++)
        if (m->qkv[l].wq) st = be->qlinear_prepare(s, &m->qkv[l]);
    return st;
}

/* The quantized input buf (a->xq or a->xqi) that the n Linears ps read, when each of
 * them quantizes its input per token (then the op before fills it once for all);
 * NULL otherwise. */
static qb_qinput *shared_input(qb_qinput *buf, const qb_linear_params *const *ps, int n)
{
    if (!buf->u) return NULL;
    for (int i = 0; i < n; i++)
        if (!qb_qlinear_dynamic(ps[i]->q)) return NULL;
    return buf;
}

static qb_qinput *qkv_input(const qb_model *m, qb_activations *a, int l)
{
    if (l >= m->cfg.num_layers) return NULL;
    const qb_layer_params *P = &m->layers[l];
    return shared_input(&a->xq, (const qb_linear_params *const[]){&P->q, &P->k, &P->v}, 3);
}

/* The FFN's GELU output quantized for its output Linear (a->xqi), when the
 * intermediate Linear is a quantized one (it writes it) and the output Linear is
 * per token; NULL otherwise. */
static qb_qinput *gelu_output(qb_activations *a, const qb_layer_params *P)
{
    return P->inter.q ? shared_input(&a->xqi, (const qb_linear_params *const[]){&P->out}, 1) : NULL;
}

/* Layer P's query, key and value as one Linear of 3C outputs (fused_qkv): the query's
 * pointers, which the key's and value's follow, or the joined quantized Linear. */
static qb_linear_params joined_qkv(const qb_layer_params *P)
{
    return (qb_linear_params){.w = P->q.w, .b = P->q.b, .q = P->qkv, .wh = P->q.wh, .bh = P->q.bh};
}

/* The hidden state x (M, C; stored in act) to host memory in FP32 (a trace). */
static void trace_hidden(qb_activations *a, float *host, const void *x, size_t n)
{
    if (a->act == QB_F32) {
        a->be->to_host(a->stream, host, x, n * 4);
        return;
    }
    uint16_t *h = qb_malloc(n * 2);  /* the halves, converted here */
    if (!h) {
        qb_log(QB_LOG_ERROR, "trace: out of memory for %zu hidden values; left unset", n);
        return;
    }
    a->be->to_host(a->stream, h, x, n * 2);
    qb_backend_cpu()->rows(NULL, host, QB_F32, n, h, a->act, n, 1, (int)n);
    qb_free(h);
}

/* The forward pass over a batch already uploaded to a; drop NULL = no dropout. */
static void forward(const qb_model *m, qb_activations *a, const qb_dropout_plan *drop,
                    qb_forward_trace *trace)
{
    const qb_backend *be = a->be;
    qb_stream *s = a->stream;
    const qb_dtype t = a->act;
    const qb_config *c = &m->cfg;
    const int B = a->B, T = a->T, C = c->hidden_size, I = c->intermediate_size, H = c->num_heads;
    const int D = C / H, M = B * T, K = c->num_labels, L = c->num_layers;
    const float eps = c->layer_norm_eps;
    const size_t MC = (size_t)M * C;

    const qb_qat *q = m->qat;
    if (q && q->set.embeddings)
        be->embedding(s, a->t0, a->ids, a->types, q->efq[0], q->efq[1], q->efq[2], B, T, C, t, QB_F32);
    else if (m->word_emb)
        be->embedding(s, a->t0, a->ids, a->types, m->word_emb, m->pos_emb, m->type_emb, B, T, C, t, QB_F32);
    else  /* the tables in half only (QB_WEIGHTS_HALF) */
        be->embedding(s, a->t0, a->ids, a->types, m->emb_h[0], m->emb_h[1], m->emb_h[2], B, T, C, t, m->half);
    qb_qinput *xq = qkv_input(m, a, 0);
    be->layernorm(s, a->x[0], NULL, a->st0, xq, a->t0, NULL, m->ln_emb.g, m->ln_emb.b, M, C, eps, t);
    qb_dropout d = site(drop, false, SITE_EMB);
    be->dropout(s, a->x[0], MC, &d, t);
    if (trace && trace->hidden) trace_hidden(a, trace->hidden[0], a->x[0], MC);

    for (int l = 0; l < L; l++) {
        const qb_layer_params *P = &m->layers[l];
        layer_acts *la = &a->layer[l];
        const void *x = a->x[l];
        const int li = 6 * l;  /* this layer's first Linear */
        if (a->fused) {  /* one GEMM, N = 3C, over the three back-to-back (or joined) weights */
            const qb_linear_params qkv = joined_qkv(P);
            linear(m, a, trace, li + 0, la->q, NULL, x, xq, &qkv, M, 3 * C, C, false, t);
        } else {
            linear(m, a, trace, li + 0, la->q, NULL, x, xq, &P->q, M, C, C, false, t);
            linear(m, a, trace, li + 1, la->k, NULL, x, xq, &P->k, M, C, C, false, t);
            linear(m, a, trace, li + 2, la->v, NULL, x, xq, &P->v, M, C, C, false, t);
        }
        d = site(drop, true, site_attn(l));
        be->attention(s, la->ctx, la->lse, la->q, la->k, la->v, a->fused ? 3 * C : C, a->mask, &d, B, T, H, D, a->math,
                      t);
        linear(m, a, trace, li + 3, la->t1, NULL, la->ctx, NULL, &P->attn_out, M, C, C, false, t);
        d = site(drop, false, site_attn_out(l));
        be->dropout(s, la->t1, MC, &d, t);
        xq = shared_input(&a->xq, (const qb_linear_params *const[]){&P->inter}, 1);
        be->layernorm(s, la->h1, la->t1, la->st1, xq, la->t1, x, P->ln_attn.g, P->ln_attn.b, M, C, eps, t);
        qb_qinput *gq = gelu_output(a, P);
        if (la->a == la->g) {  /* inference: GELU in place, fused where the GEMM can */
            linear(m, a, trace, li + 4, la->g, gq, la->h1, xq, &P->inter, M, I, C, true, t);
        } else {               /* training keeps the GELU input for the backward */
            linear(m, a, trace, li + 4, la->a, NULL, la->h1, xq, &P->inter, M, I, C, false, t);
            be->gelu(s, la->g, la->a, (size_t)M * I, t);
        }
        linear(m, a, trace, li + 5, la->t2, NULL, la->g, gq, &P->out, M, C, I, false, t);
        d = site(drop, false, site_ffn_out(l));
        be->dropout(s, la->t2, MC, &d, t);
        xq = qkv_input(m, a, l + 1);
        be->layernorm(s, a->x[l + 1], la->t2, la->st2, xq, la->t2, la->h1, P->ln_out.g, P->ln_out.b, M, C, eps, t);
        if (trace && trace->hidden) trace_hidden(a, trace->hidden[l + 1], a->x[l + 1], MC);
    }

    /* Pooler: tanh(W h[:, 0] + b) over the first ([CLS]) token of each row, in FP32. */
    be->rows(s, a->cls, QB_F32, (size_t)C, a->x[L], t, (size_t)T * C, B, C);
    linear(m, a, trace, 6 * L, a->pooled, NULL, a->cls, NULL, &m->pooler, B, C, C, false, QB_F32);
    be->tanh(s, a->pooled, (size_t)B * C);
    if (trace && trace->pooled) be->to_host(s, trace->pooled, a->pooled, (size_t)B * C * 4);
    if (a->pooled_d != a->pooled) {
        be->copy(s, a->pooled_d, a->pooled, (size_t)B * C * 4);
        d = site(drop, false, site_pooled(L));
        be->dropout(s, a->pooled_d, (size_t)B * C, &d, QB_F32);
    }
    linear(m, a, trace, 6 * L + 1, a->logits, NULL, a->pooled_d, NULL, &m->classifier, B, K, C, false, QB_F32);
}

/* The backward pass from a->dlogits; parameter gradients are ADDED to g. */
/* Tells the hook that the gradients from `from` to the end of the arena are final:
 * the backward pass finishes the arena back to front (head, last layer .. first,
 * embeddings; csrc/model/weights.c lays it out front to back). */
static void grads_final(const qb_activations *a, const float *from)
{
    if (a->grads_final) a->grads_final(a->grads_ctx, from);
}

void qb_activations_set_grads_hook(qb_activations *a, void (*fn)(void *ctx, const float *from), void *ctx)
{
    a->grads_final = fn, a->grads_ctx = ctx;
}

static void backward(const qb_model *m, qb_activations *a, const qb_dropout_plan *drop, qb_model *g)
{
    const qb_backend *be = a->be;
    qb_stream *s = a->stream;
    const qb_dtype t = a->act;
    const qb_config *c = &m->cfg;
    const int B = a->B, T = a->T, C = c->hidden_size, I = c->intermediate_size, H = c->num_heads;
    const int D = C / H, M = B * T, K = c->num_labels, L = c->num_layers;
    const size_t MC = (size_t)M * C, BC = (size_t)B * C;

    /* Head (FP32): classifier, pooled dropout, tanh, pooler; the pooler's input
     * gradient goes to the first token of each row of dx, every other row is zero. */
    linear_backward(m, a, 6 * L + 1, a->dpool, &g->classifier, a->dlogits, a->pooled_d, &m->classifier, B, K, C,
                    QB_F32);
    qb_dropout d = site(drop, false, site_pooled(L));
    be->dropout(s, a->dpool, BC, &d, QB_F32);
    be->tanh_backward(s, a->dpool, a->dpool, a->pooled, BC);
    linear_backward(m, a, 6 * L, a->dcls, &g->pooler, a->dpool, a->cls, &m->pooler, B, C, C, QB_F32);
    grads_final(a, g->pooler.w);
    be->zero(s, a->dx, MC * qb_store_bytes(t));
    be->rows(s, a->dx, t, (size_t)T * C, a->dcls, QB_F32, (size_t)C, B, C);

    /* Layers, last first. dx holds the gradient of the layer's output on entry and of
     * its input on exit. */
    for (int l = L - 1; l >= 0; l--) {
        const int li = 6 * l;  /* this layer's first Linear */
        const qb_layer_params *P = &m->layers[l];
        qb_layer_params *G = &g->layers[l];
        layer_acts *la = &a->layer[l];
        /* LayerNorm 2: its input t2 = dropout(out(g)) + h1, so dt2 goes to both. */
        be->layernorm_backward(s, a->dh, G->ln_out.g, G->ln_out.b, a->dx, la->t2, la->st2, P->ln_out.g, M, C, t);
        be->copy(s, a->dtmp, a->dh, MC * qb_store_bytes(t));
        d = site(drop, false, site_ffn_out(l));
        be->dropout(s, a->dtmp, MC, &d, t);
        linear_backward(m, a, li + 5, a->da, &G->out, a->dtmp, la->g, &P->out, M, C, I, t);
        be->gelu_backward(s, a->da, a->da, la->a, (size_t)M * I, t);
        linear_backward(m, a, li + 4, a->dtmp, &G->inter, a->da, la->h1, &P->inter, M, I, C, t);
        be->add(s, a->dh, a->dtmp, MC, t);
        /* LayerNorm 1: t1 = dropout(attn_out(ctx)) + x. */
        be->layernorm_backward(s, a->dx, G->ln_attn.g, G->ln_attn.b, a->dh, la->t1, la->st1, P->ln_attn.g, M, C, t);
        be->copy(s, a->dtmp, a->dx, MC * qb_store_bytes(t));
        d = site(drop, false, site_attn_out(l));
        be->dropout(s, a->dtmp, MC, &d, t);
        linear_backward(m, a, li + 3, a->dctx, &G->attn_out, a->dtmp, la->ctx, &P->attn_out, M, C, C, t);
        d = site(drop, true, site_attn(l));
        be->attention_backward(s, a->dq, a->dk, a->dv, a->dctx, la->q, la->k, la->v, a->fused ? 3 * C : C, la->ctx,
                               la->lse, a->mask, &d, B, T, H, D, a->math, t);
        const void *x = a->x[l];
        if (a->fused) {  /* the gradients lie back to back too (fused_qkv) */
            qb_linear_params gqkv = {.w = G->q.w, .b = G->q.b};
            const qb_linear_params qkv = joined_qkv(P);
            linear_backward(m, a, li + 0, a->dtmp, &gqkv, a->dq, x, &qkv, M, 3 * C, C, t);
            be->add(s, a->dx, a->dtmp, MC, t);
        } else {
            linear_backward(m, a, li + 0, a->dtmp, &G->q, a->dq, x, &P->q, M, C, C, t);
            be->add(s, a->dx, a->dtmp, MC, t);
            linear_backward(m, a, li + 1, a->dtmp, &G->k, a->dk, x, &P->k, M, C, C, t);
            be->add(s, a->dx, a->dtmp, MC, t);
            linear_backward(m, a, li + 2, a->dtmp, &G->v, a->dv, x, &P->v, M, C, C, t);
            be->add(s, a->dx, a->dtmp, MC, t);
        }
        grads_final(a, G->q.w);
    }

    /* Embeddings: dropout, LayerNorm, then the scatter into the three tables. */
    d = site(drop, false, SITE_EMB);
    be->dropout(s, a->dx, MC, &d, t);
    be->layernorm_backward(s, a->dx, g->ln_emb.g, g->ln_emb.b, a->dx, a->t0, a->st0, m->ln_emb.g, M, C, t);
    be->embedding_backward(s, g->word_emb, g->pos_emb, g->type_emb, a->dx, a->ids, a->types, c->pad_token_id, B, T,
                           C, t);
    grads_final(a, g->word_emb);
}

qb_dtype qb_model_half_type(const qb_model *m, const qb_backend *be, qb_math math)
{
    const qb_config *c = &m->cfg;
    if (!(be->caps & QB_CAN_HALF) || m->qat || has_qlinear_of(m, true) || !qb_half_heads(c->hidden_size / c->num_heads))
        return QB_F32;
    return math == QB_MATH_BF16 ? QB_BF16 : math == QB_MATH_FP16 ? QB_F16 : QB_F32;
}

/* The storage of a pass's activations: the half type of the math (BF16, FP16) when
 * the backend stores halves and the model has half weights of that type; else FP32. */
static qb_dtype storage(const qb_model *m, const qb_activations *a)
{
    const qb_dtype want = a->math == QB_MATH_BF16 ? QB_BF16 : a->math == QB_MATH_FP16 ? QB_F16 : QB_F32;
    return (a->be->caps & QB_CAN_HALF) && want != QB_F32 && m->half == want ? want : QB_F32;
}

/* Whether a and b + n elements of e bytes are the same place (b follows a). */
static bool follows(const void *a, const void *b, size_t n, size_t e)
{
    return a && b && (const char *)a + n * e == (const char *)b;
}

/* Whether layer P's query, key and value weights and biases in storage t (the half
 * copies in half storage) lie back to back. */
static bool qkv_adjacent(const qb_layer_params *P, qb_dtype t, size_t C)
{
    const size_t e = qb_store_bytes(t);
    const bool f = t == QB_F32;
    const void *w[3] = {f ? (void *)P->q.w : P->q.wh, f ? (void *)P->k.w : P->k.wh, f ? (void *)P->v.w : P->v.wh};
    const void *b[3] = {f ? (void *)P->q.b : P->q.bh, f ? (void *)P->k.b : P->k.bh, f ? (void *)P->v.b : P->v.bh};
    return follows(w[0], w[1], C * C, e) && follows(w[1], w[2], C * C, e) && follows(b[0], b[1], C, e) &&
           follows(b[1], b[2], C, e);
}

/* Whether every layer's query, key and value Linears can run as one GEMM in storage
 * t: their weights and biases lie back to back, as a backend copy of the model keeps
 * them (csrc/model/weights.c), and so do the gradients' (grads, NULL for inference);
 * quantized ones are joined (qb_model_join_qkv) and their FP32 biases back to back.
 * And nothing needs them apart: QAT (its fake-quantized weights and observers per
 * Linear), a trace of each Linear's input. */
static bool fused_qkv(const qb_model *m, const qb_model *grads, qb_dtype t, const qb_forward_trace *trace)
{
    if (m->qat || (trace && trace->linear_input)) return false;
    const size_t C = (size_t)m->cfg.hidden_size;
    for (int l = 0; l < m->cfg.num_layers; l++) {
        const qb_layer_params *P = &m->layers[l];
        const bool joined = P->qkv && follows(P->q.b, P->k.b, C, 4) && follows(P->k.b, P->v.b, C, 4);
        if (P->q.q || P->k.q || P->v.q ? !joined : !qkv_adjacent(P, t, C)) return false;
        if (grads && !qkv_adjacent(&grads->layers[l], QB_F32, C)) return false;
    }
    return true;
}

/* What a pass over a batch needs first: checked inputs, the storage decided, the QAT
 * weights remade if stale, the half weights remade from their masters, activations
 * fitting B x T, and the batch in backend memory. */
static qb_status stage(const qb_model *m, const qb_model *grads, qb_activations *a, const int32_t *ids,
                       const int32_t *types, const int32_t *mask, const int32_t *labels, int B, int T,
                       const qb_forward_trace *trace)
{
    qb_status st = check_inputs(&m->cfg, ids, types, mask, labels, B, T);
    if (st) return st;
    const qb_dtype act = storage(m, a);
    if (m->copies == QB_WEIGHTS_HALF && act != m->half)
        return qb_fail(QB_EINVAL, "the model's weights are %s only on the %s backend: run it with math %s",
                       qb_dtype_name(m->half), a->be->name, m->half == QB_BF16 ? "bf16" : "fp16");
    if (act != QB_F32 && (m->qat || has_qlinear_of(m, true) || (trace && trace->linear_input)))
        return qb_fail(QB_EINVAL, "QAT, weight-only quantized Linears and calibration traces run with FP32 "
                       "activations: copy the model to the backend without half weights");
    const bool fused = fused_qkv(m, grads, act, trace);
    if (act != a->act || fused != a->fused) {  /* another layout: the records go with the old one */
        drop_graphs(a);
        a->act = act, a->fused = fused;
    }
    if ((st = qat_refresh(m, a->be)) || (st = activations_fit(a, &m->cfg, B, T))) return st;
    if (act != QB_F32) qb_model_refresh_half(m, a->stream);
    upload(a, ids, types, mask, labels, B, T);
    return QB_OK;
}

typedef struct {
    const qb_model *m;
    qb_activations *a;
} infer_pass;

static void queue_infer(void *ctx)
{
    const infer_pass *p = ctx;
    forward(p->m, p->a, NULL, NULL);
}

qb_status qb_model_infer(const qb_model *m, qb_activations *a, const int32_t *ids, const int32_t *types,
                         const int32_t *mask, int B, int T, float *logits, qb_forward_trace *trace)
{
    const size_t bytes = (size_t)B * m->cfg.num_labels * 4;
    qb_status st = stage(m, NULL, a, ids, types, mask, NULL, B, T, trace);
    if (st) return st;
    if ((a->be->caps & QB_CAN_GRAPHS) && !trace) {  /* a trace copies to the host mid-pass: never recorded */
        const uint64_t key[4] = {(uintptr_t)m, (uint64_t)B, (uint64_t)T, (uint64_t)a->math};
        if ((st = a->be->replay(a->stream, &a->graphs, key, queue_infer, &(infer_pass){m, a}))) return st;
    } else {
        forward(m, a, NULL, trace);
    }
    float *out = host_out(a);
    a->be->to_host(a->stream, out, a->logits, bytes);
    if (!(st = a->be->sync(a->stream))) memcpy(logits, out, bytes);
    return st;
}

qb_status qb_model_forward(const qb_model *m, const qb_backend *be, const int32_t *ids,
                           const int32_t *types, const int32_t *mask, int B, int T, float *logits,
                           qb_forward_trace *trace)
{
    qb_activations *a;
    qb_status st = qb_activations_new(m, be, false, &a);
    if (!st) st = qb_model_infer(m, a, ids, types, mask, B, T, logits, trace);
    qb_activations_free(a);
    return st;
}

/* A training pass: forward, loss, the loss (and logits) copied to the staging
 * area, backward, then `after` (the optimizer's ops), queued only. */
typedef struct {
    const qb_model *m;
    qb_activations *a;
    const qb_dropout_plan *drop;
    float grad_scale;
    qb_model *grads;
    bool logits;
    void (*after)(void *ctx);
    void *ctx;
} train_pass;

static void queue_train(void *ctx)
{
    const train_pass *p = ctx;
    qb_activations *a = p->a;
    qb_stream *s = a->stream;
    const int B = a->B, K = a->K;
    forward(p->m, a, p->drop, NULL);
    a->be->xent(s, a->losses, a->dlogits, a->logits, a->labels, B, K, p->grad_scale, a->loss_scale);
    float *out = host_out(a);
    a->be->to_host_async(s, out + (size_t)B * K, a->losses, (size_t)B * 4);
    if (p->logits) a->be->to_host_async(s, out, a->logits, (size_t)B * K * 4);
    backward(p->m, a, p->drop, p->grads);  /* queued behind the forward: no wait between them */
    if (p->after) p->after(p->ctx);
}

/* The checks and the staging of a training pass. */
static qb_status stage_train(const qb_model *m, qb_activations *a, const qb_batch *batch, qb_model *grads)
{
    if (!a->train) return qb_fail(QB_EINVAL, "forward_backward needs training activations");
    if (has_qlinear(m))
        return qb_fail(QB_EINVAL, "a quantized (%s) model cannot be trained: train the FP32 model (with [qat] "
                       "for quantization-aware training), then quantize it", m->scheme);
    if (m->copies == QB_WEIGHTS_HALF)
        return qb_fail(QB_EINVAL, "a model without FP32 weights cannot be trained: copy it to the backend with "
                       "QB_WEIGHTS_FP32 or QB_WEIGHTS_FP32_AND_HALF");
    return stage(m, grads, a, batch->ids, batch->types, batch->mask, batch->labels, batch->B, batch->T, NULL);
}

qb_status qb_model_forward_backward(const qb_model *m, qb_activations *a, const qb_batch *batch,
                                    const qb_dropout_plan *drop, float grad_scale, qb_model *grads,
                                    float *loss, float *logits)
{
    qb_status st = stage_train(m, a, batch, grads);
    if (st) return st;
    queue_train(&(train_pass){m, a, drop, grad_scale, grads, logits != NULL, NULL, NULL});
    if (!loss && !logits) return QB_OK;
    if ((st = a->be->sync(a->stream))) return st;
    if (loss) *loss = qb_activations_loss(a);
    if (logits) memcpy(logits, host_out(a), (size_t)a->B * a->K * 4);
    return QB_OK;
}

/* FNV-1a over n bytes, folded into h. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
    return h;
}

qb_status qb_model_train_step(const qb_model *m, qb_activations *a, const qb_batch *batch,
                              const qb_dropout_plan *drop, float grad_scale, qb_model *grads,
                              void (*after)(void *ctx), void *ctx, uint64_t after_key, bool record)
{
    qb_status st = stage_train(m, a, batch, grads);
    if (st) return st;
    train_pass pass = {m, a, drop, grad_scale, grads, false, after, ctx};
    /* A hook runs host code in the pass (data parallel): such a pass is never recorded. */
    if (!record || !(a->be->caps & QB_CAN_GRAPHS) || a->grads_final) {
        queue_train(&pass);
        return QB_OK;
    }
    /* Everything a record fixes: buffers, shapes, values passed by value to the ops
     * (the loss's gradient scale, the dropout rates, seed and base stream: the
     * per-step part of the streams must come through drop->offset) and after's. */
    uint64_t h = fnv(0xcbf29ce484222325ull, &grad_scale, sizeof grad_scale);
    const bool observe = m->qat && m->qat->observe;
    h = fnv(h, &observe, sizeof observe);
    h = fnv(h, &after_key, sizeof after_key);
    if (drop) {
        h = fnv(h, &drop->hidden, sizeof drop->hidden), h = fnv(h, &drop->attention, sizeof drop->attention);
        h = fnv(h, &drop->seed, sizeof drop->seed), h = fnv(h, &drop->stream, sizeof drop->stream);
        h = fnv(h, &drop->offset, sizeof drop->offset);
    }
    const uint64_t key[4] = {(uintptr_t)m, (uintptr_t)grads,
                             (uint64_t)batch->B | (uint64_t)batch->T << 24 | (uint64_t)a->math << 48 | 1ull << 63, h};
    return a->be->replay(a->stream, &a->graphs, key, queue_train, &pass);
}

float qb_activations_loss(const qb_activations *a)
{
    const float *losses = host_out(a) + (size_t)a->B * a->K;
    double sum = 0.0;
    for (int b = 0; b < a->B; b++) sum += losses[b];
    return a->B ? (float)(sum / a->B) : 0.0f;
}
