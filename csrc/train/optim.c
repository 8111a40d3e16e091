/* AdamW, the linear warm-up / decay schedule and global-norm clipping, matching
 * what transformers' Trainer builds by default (torch.optim.AdamW,
 * get_linear_schedule_with_warmup, clip_grad_norm_). The tensor arithmetic is the
 * backend's adamw op; this file holds the per-step scalars. */
#include "qbert/train.h"

#include "backend/backend.h"

#include <math.h>
#include <string.h>

void qb_optim_default_config(qb_optim_config *c)
{
    *c = (qb_optim_config){.lr = 5e-5f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                           .weight_decay = 0.0f, .max_grad_norm = 1.0f};
}

float qb_lr_at(const qb_optim_config *c, int64_t step)
{
    double f;
    if (step < c->warmup_steps)
        f = (double)step / (double)(c->warmup_steps > 1 ? c->warmup_steps : 1);
    else
        f = fmax(0.0, (double)(c->total_steps - step) /
                          (double)(c->total_steps - c->warmup_steps > 1 ? c->total_steps - c->warmup_steps : 1));
    return (float)(c->lr * f);
}

bool qb_param_decays(const char *name)
{
    /* Trainer: every parameter outside LayerNorm modules whose name lacks "bias". */
    return !strstr(name, "bias") && !strstr(name, "LayerNorm.");
}

qb_status qb_adamw_init(qb_adamw *o, const qb_model *model, const qb_optim_config *cfg)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    qb_status st = qb_model_zeros_like(model, &o->m);
    if (!st && (st = qb_model_zeros_like(model, &o->v))) qb_model_free(&o->m);
    return st;
}

void qb_adamw_free(qb_adamw *o)
{
    qb_model_free(&o->m);
    qb_model_free(&o->v);
    memset(o, 0, sizeof *o);
}

double qb_grad_norm(const qb_backend *be, const qb_model *grads)
{
    /* torch: the norm of the per-tensor norms, which is the square root of the sum of
     * all the squares: one backend call (one wait) per CHUNK tensors, one for BERT. */
    enum { CHUNK = 256 };
    const float *x[CHUNK];
    size_t n[CHUNK];
    double total = 0.0;
    for (int i = 0; i < grads->weights.count; i += CHUNK) {
        const int count = grads->weights.count - i < CHUNK ? grads->weights.count - i : CHUNK;
        for (int j = 0; j < count; j++) {
            const qb_tensor *t = &grads->weights.tensors[i + j];
            x[j] = t->data, n[j] = (size_t)qb_tensor_numel(t);
        }
        total += be->sumsq(NULL, count, x, n);
    }
    return sqrt(total);
}

qb_status qb_adamw_step(qb_adamw *o, const qb_backend *be, qb_model *model, const qb_model *grads,
                        double *grad_norm, float *lr)
{
    const qb_optim_config *c = &o->cfg;
    const double unscale = o->loss_scale > 0.0f ? 1.0 / o->loss_scale : 1.0;
    const double norm = qb_grad_norm(be, grads) * unscale;
    *grad_norm = norm;
    *lr = qb_lr_at(c, o->step);
    if (!isfinite(norm))
        return qb_fail(QB_ENUMERIC, "optimizer step %lld: gradient norm is %g", (long long)o->step + 1, norm);
    /* clip_grad_norm_: coef = max_norm / (norm + 1e-6), applied only when below 1. */
    float clip = 1.0f;
    if (c->max_grad_norm > 0.0f) {
        const float coef = (float)(c->max_grad_norm / (norm + 1e-6));
        if (coef < 1.0f) clip = coef;
    }
    const int64_t t = ++o->step;
    qb_adamw_args s = {
        .lr = *lr, .beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps, .grad_scale = (float)(clip * unscale),
        .bc1 = (float)(1.0 - pow(c->beta1, (double)t)),
        .bc2_sqrt = (float)sqrt(1.0 - pow(c->beta2, (double)t)),
    };
    for (int i = 0; i < model->weights.count; i++) {
        const char *name = model->weights.names[i];
        const int gi = qb_weights_find(&grads->weights, name), mi = qb_weights_find(&o->m.weights, name);
        if (gi < 0 || mi < 0) return qb_fail(QB_EINVAL, "optimizer: no gradient for %s", name);
        qb_tensor *w = &model->weights.tensors[i];
        s.weight_decay = qb_param_decays(name) ? c->weight_decay : 0.0f;
        be->adamw(NULL, w->data, o->m.weights.tensors[mi].data, o->v.weights.tensors[mi].data,
                  grads->weights.tensors[gi].data, (size_t)qb_tensor_numel(w), &s);
    }
    return QB_OK;
}
