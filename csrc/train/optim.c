/* AdamW, the linear warm-up / decay schedule and global-norm clipping, matching
 * what transformers' Trainer builds by default (torch.optim.AdamW,
 * get_linear_schedule_with_warmup, clip_grad_norm_). The tensor arithmetic is the
 * backend's adamw op; this file holds the per-step scalars. */
#include "qbert/train.h"

#include "backend/backend.h"

#include <math.h>
#include <stdlib.h>
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

/* What a step leaves on the device for the host: the squared norm, and fp16's loss
 * scale with its count of good steps (qb_adamw.state). */
struct qb_adamw_state {
    double sumsq;
    float scale;
    int32_t good;
};

/* What the host writes for the device and reads back (qb_adamw.host): the step's
 * arguments with decay and without, and the state. */
struct qb_adamw_host {
    qb_adamw_args args[2];
    struct qb_adamw_state state;
};

/* The decay mask of a model's arena: each tensor's blocks (it starts on one) say
 * whether Trainer decays it; the padding between tensors is zero everywhere. */
static qb_status decay_mask(qb_adamw *o, const qb_model *model)
{
    const size_t blocks = model->mem_floats / QB_DECAY_BLOCK;
    uint8_t *mask = calloc(blocks ? blocks : 1, 1);
    if (!mask) return qb_fail(QB_ENOMEM, "out of memory");
    for (int i = 0; i < model->weights.count; i++) {
        const qb_tensor *t = &model->weights.tensors[i];
        const size_t first = (size_t)((const float *)t->data - (const float *)model->mem) / QB_DECAY_BLOCK;
        const size_t count = ((size_t)qb_tensor_numel(t) + QB_DECAY_BLOCK - 1) / QB_DECAY_BLOCK;
        memset(mask + first, qb_param_decays(model->weights.names[i]), count);
    }
    qb_status st = QB_OK;
    if (!(o->decay = o->be->alloc(blocks ? blocks : 1)))
        st = qb_fail(QB_ENOMEM, "%s backend: cannot allocate the decay mask", o->be->name);
    else
        o->be->to_device(NULL, o->decay, mask, blocks);
    free(mask);
    return st ? st : o->be->sync(NULL);
}

qb_status qb_adamw_init(qb_adamw *o, const qb_model *model, const qb_optim_config *cfg)
{
    memset(o, 0, sizeof *o);
    o->cfg = *cfg;
    o->be = model->mem_be ? model->mem_be : qb_backend_cpu();
    if (model->copies == QB_WEIGHTS_HALF)
        return qb_fail(QB_EINVAL, "a model without FP32 weights cannot be trained (QB_WEIGHTS_HALF)");
    qb_status st = qb_model_zeros_like(model, &o->m);
    if (!st) st = qb_model_zeros_like(model, &o->v);
    if (!st && (!(o->state = o->be->alloc(sizeof *o->state)) || !(o->args = o->be->alloc(2 * sizeof *o->args))))
        st = qb_fail(QB_ENOMEM, "%s backend: out of memory", o->be->name);
    if (!st && !(o->host = o->be->host_alloc(sizeof *o->host))) st = qb_fail(QB_ENOMEM, "out of host memory");
    if (!st && model->mem) st = decay_mask(o, model);
    if (st) qb_adamw_free(o);
    return st;
}

void qb_adamw_free(qb_adamw *o)
{
    qb_model_free(&o->m);
    qb_model_free(&o->v);
    if (o->be) {
        o->be->free(o->decay);
        o->be->free(o->state);
        o->be->free(o->args);
        o->be->host_free(o->host);
    }
    memset(o, 0, sizeof *o);
}

void qb_adamw_prepare(qb_adamw *o, qb_stream *s, float *lr)
{
    const qb_optim_config *c = &o->cfg;
    *lr = qb_lr_at(c, o->step);
    const int64_t t = ++o->step;  /* undone by qb_adamw_done if the device skips it */
    qb_adamw_args *a = o->host->args;
    a[0] = (qb_adamw_args){
        .lr = *lr, .beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps, .weight_decay = c->weight_decay,
        .max_norm = c->max_grad_norm, .bc1 = (float)(1.0 - pow(c->beta1, (double)t)),
        .bc2_sqrt = (float)sqrt(1.0 - pow(c->beta2, (double)t)),
    };
    a[1] = a[0];
    a[1].weight_decay = 0.0f;  /* a host model's biases and LayerNorms */
    o->be->to_device(s, o->args, a, 2 * sizeof *a);
}

void qb_adamw_update(qb_adamw *o, qb_stream *s, qb_model *model, const qb_model *grads)
{
    const qb_backend *be = o->be;
    double *sumsq = &o->state->sumsq;
    const float *scale = o->loss_scale > 0.0f ? &o->state->scale : NULL;
    be->zero(s, sumsq, sizeof *sumsq);
    if (o->decay) {  /* the arenas: one reduction, one update */
        be->sumsq(s, sumsq, grads->mem, grads->mem_floats);
        be->adamw(s, model->mem, o->m.mem, o->v.mem, grads->mem, o->decay, model->mem_floats, o->args, sumsq, scale);
    } else {  /* a host model: tensor by tensor (the same names, in the same order) */
        for (int i = 0; i < grads->weights.count; i++) {
            const qb_tensor *g = &grads->weights.tensors[i];
            be->sumsq(s, sumsq, g->data, (size_t)qb_tensor_numel(g));
        }
        for (int i = 0; i < model->weights.count; i++)
            be->adamw(s, model->weights.tensors[i].data, o->m.weights.tensors[i].data, o->v.weights.tensors[i].data,
                      grads->weights.tensors[i].data, NULL, (size_t)qb_tensor_numel(&model->weights.tensors[i]),
                      o->args + !qb_param_decays(model->weights.names[i]), sumsq, scale);
    }
    if (scale) be->loss_scale_update(s, &o->state->scale, &o->state->good, sumsq);
    be->to_host_async(s, &o->host->state, o->state, sizeof *o->state);
}

void qb_adamw_queue(qb_adamw *o, qb_stream *s, qb_model *model, const qb_model *grads, float *lr)
{
    qb_adamw_prepare(o, s, lr);
    qb_adamw_update(o, s, model, grads);
}

qb_status qb_adamw_done(qb_adamw *o, double *grad_norm)
{
    const struct qb_adamw_state *d = &o->host->state;
    const double norm = sqrt(d->sumsq) * (o->loss_scale > 0.0f ? 1.0 / o->loss_scale : 1.0);  /* the step's scale */
    *grad_norm = norm;
    if (o->loss_scale > 0.0f) o->loss_scale = d->scale, o->good_steps = d->good;  /* the device's decision */
    if (isfinite(norm)) return QB_OK;
    o->step--;
    return qb_fail(QB_ENUMERIC, "optimizer step %lld: gradient norm is %g", (long long)o->step + 1, norm);
}

qb_status qb_adamw_set_loss_scale(qb_adamw *o, float scale, int32_t good_steps)
{
    o->loss_scale = scale, o->good_steps = good_steps;
    o->host->state = (struct qb_adamw_state){.scale = scale, .good = good_steps};
    o->be->to_device(NULL, o->state, &o->host->state, sizeof o->host->state);
    return o->be->sync(NULL);  /* at the start or a resume, not per step */
}

const float *qb_adamw_loss_scale(const qb_adamw *o) { return o->loss_scale > 0.0f ? &o->state->scale : NULL; }

qb_status qb_adamw_step(qb_adamw *o, const qb_backend *be, qb_model *model, const qb_model *grads,
                        double *grad_norm, float *lr)
{
    qb_adamw_queue(o, NULL, model, grads, lr);
    const qb_status st = be->sync(NULL);
    return st ? st : qb_adamw_done(o, grad_norm);
}
