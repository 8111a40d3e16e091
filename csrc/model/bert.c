/* The BERT classifier forward pass, written once against the backend op table
 * (csrc/backend/backend.h). Shapes: B batch, T sequence, C hidden, I intermediate,
 * H heads, D = C / H, K labels. Matches transformers' BertForSequenceClassification
 * in eval mode (dropout off): post-LayerNorm blocks, exact-erf GELU, tanh pooler
 * over the first token. */
#include "qbert/model.h"

#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

/* Scratch for one batch, on the backend's device. */
typedef struct {
    float *x;      /* (B*T, C) hidden state, updated in place layer by layer */
    float *q, *k, *v, *ctx, *tmp;  /* (B*T, C) */
    float *inter;  /* (B*T, I) */
    float *cls;    /* (B, C) first-token rows, then pooled */
    float *logits; /* (B, K) */
    int32_t *ids, *types, *mask;  /* (B, T) */
} workspace;

static void ws_free(const qb_backend *be, workspace *w)
{
    void *ptrs[] = {w->x, w->q, w->k, w->v, w->ctx, w->tmp, w->inter, w->cls, w->logits, w->ids, w->types, w->mask};
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) be->free(ptrs[i]);
}

static qb_status ws_alloc(const qb_backend *be, workspace *w, const qb_config *c, int B, int T)
{
    size_t bt = (size_t)B * T, C = (size_t)c->hidden_size;
    memset(w, 0, sizeof *w);
    struct { void **p; size_t bytes; } want[] = {
        {(void **)&w->x, bt * C * 4}, {(void **)&w->q, bt * C * 4}, {(void **)&w->k, bt * C * 4},
        {(void **)&w->v, bt * C * 4}, {(void **)&w->ctx, bt * C * 4}, {(void **)&w->tmp, bt * C * 4},
        {(void **)&w->inter, bt * (size_t)c->intermediate_size * 4}, {(void **)&w->cls, (size_t)B * C * 4},
        {(void **)&w->logits, (size_t)B * c->num_labels * 4}, {(void **)&w->ids, bt * 4},
        {(void **)&w->types, bt * 4}, {(void **)&w->mask, bt * 4},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        *want[i].p = be->alloc(want[i].bytes);
        total += want[i].bytes;
        if (!*want[i].p) {
            ws_free(be, w);
            return qb_fail(QB_ENOMEM, "%s backend: cannot allocate %zu bytes of activations for batch %d x %d",
                           be->name, total, B, T);
        }
    }
    return QB_OK;
}

/* Rejects ids the embedding tables do not have, before any kernel reads them. */
static qb_status check_inputs(const qb_config *c, const int32_t *ids, const int32_t *types,
                              const int32_t *mask, int B, int T)
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
    return QB_OK;
}

qb_status qb_model_forward(const qb_model *m, const qb_backend *be, const int32_t *ids,
                           const int32_t *types, const int32_t *mask, int B, int T, float *logits,
                           qb_forward_trace *trace)
{
    const qb_config *c = &m->cfg;
    qb_status st = check_inputs(c, ids, types, mask, B, T);
    if (st) return st;
    const int C = c->hidden_size, I = c->intermediate_size, H = c->num_heads, D = C / H, M = B * T;
    const size_t act = (size_t)M * C * sizeof(float);
    workspace w;
    if ((st = ws_alloc(be, &w, c, B, T))) return st;

    /* Absent types mean all zero; an absent mask means attend everywhere. */
    int32_t *defaults = NULL;  /* (2, M): zeros, then ones */
    if (!types || !mask) {
        if (!(defaults = malloc((size_t)M * 8))) {
            ws_free(be, &w);
            return qb_fail(QB_ENOMEM, "cannot allocate a %d x %d mask", B, T);
        }
        for (int i = 0; i < M; i++) defaults[i] = 0, defaults[M + i] = 1;
        if (!types) types = defaults;
        if (!mask) mask = defaults + M;
    }
    be->to_device(w.ids, ids, (size_t)M * 4);
    be->to_device(w.types, types, (size_t)M * 4);
    be->to_device(w.mask, mask, (size_t)M * 4);
    free(defaults);

    be->embedding(w.x, w.ids, w.types, m->word_emb, m->pos_emb, m->type_emb, B, T, C);
    be->layernorm(w.x, w.x, NULL, m->ln_emb.g, m->ln_emb.b, M, C, c->layer_norm_eps);
    if (trace && trace->hidden) be->to_host(trace->hidden[0], w.x, act);

    for (int l = 0; l < c->num_layers; l++) {
        const qb_layer_params *L = &m->layers[l];
        be->linear(w.q, w.x, L->q.w, L->q.b, M, C, C);
        be->linear(w.k, w.x, L->k.w, L->k.b, M, C, C);
        be->linear(w.v, w.x, L->v.w, L->v.b, M, C, C);
        be->attention(w.ctx, w.q, w.k, w.v, w.mask, B, T, H, D);
        be->linear(w.tmp, w.ctx, L->attn_out.w, L->attn_out.b, M, C, C);
        be->layernorm(w.x, w.tmp, w.x, L->ln_attn.g, L->ln_attn.b, M, C, c->layer_norm_eps);
        be->linear(w.inter, w.x, L->inter.w, L->inter.b, M, I, C);
        be->gelu(w.inter, (size_t)M * I);
        be->linear(w.tmp, w.inter, L->out.w, L->out.b, M, C, I);
        be->layernorm(w.x, w.tmp, w.x, L->ln_out.g, L->ln_out.b, M, C, c->layer_norm_eps);
        if (trace && trace->hidden) be->to_host(trace->hidden[l + 1], w.x, act);
    }

    /* Pooler: tanh(W h[:, 0] + b) over the first ([CLS]) token of each row. */
    for (int b = 0; b < B; b++) be->copy(w.q + (size_t)b * C, w.x + (size_t)b * T * C, (size_t)C * 4);
    be->linear(w.cls, w.q, m->pooler.w, m->pooler.b, B, C, C);
    be->tanh(w.cls, (size_t)B * C);
    if (trace && trace->pooled) be->to_host(trace->pooled, w.cls, (size_t)B * C * 4);
    be->linear(w.logits, w.cls, m->classifier.w, m->classifier.b, B, c->num_labels, C);
    be->to_host(logits, w.logits, (size_t)B * c->num_labels * 4);
    ws_free(be, &w);
    return QB_OK;
}
