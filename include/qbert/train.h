/* Training: AdamW with Hugging Face Trainer's defaults and schedule, and the
 * INI-driven trainer (csrc/train/). */
#ifndef QBERT_TRAIN_H
#define QBERT_TRAIN_H

#include "qbert/model.h"

struct qb_backend;

/* Optimizer and schedule, as Trainer sets them up by default: torch AdamW, weight
 * decay on every parameter except biases and LayerNorm weights, the learning rate
 * warmed up linearly from 0 over warmup_steps then decayed linearly to 0 at
 * total_steps, gradients clipped to a global L2 norm of max_grad_norm (0 = off). */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay, max_grad_norm;
    int64_t warmup_steps, total_steps;
} qb_optim_config;

/* Trainer's defaults: lr 5e-5, betas 0.9 / 0.999, eps 1e-8, no decay, norm 1.0. */
void qb_optim_default_config(qb_optim_config *c);

/* Learning rate of optimizer step `step` (0-based), as get_linear_schedule_with_warmup:
 * lr * step / warmup before warm-up ends, then lr * (total - step) / (total - warmup). */
float qb_lr_at(const qb_optim_config *c, int64_t step);

/* Whether Trainer decays a parameter of this name: not a bias, not a LayerNorm. */
bool qb_param_decays(const char *name);

typedef struct {
    qb_optim_config cfg;
    qb_model m, v;      /* first and second moments, zeros_like the model */
    int64_t step;       /* optimizer steps done */
} qb_adamw;

qb_status qb_adamw_init(qb_adamw *o, const qb_model *model, const qb_optim_config *cfg);
void qb_adamw_free(qb_adamw *o);

/* Global L2 norm of the gradients (in double, per tensor then over tensors). */
double qb_grad_norm(const struct qb_backend *be, const qb_model *grads);

/* One optimizer step: clip by the global norm (*grad_norm receives the norm before
 * clipping, *lr the rate used), update model and moments, advance the step. A
 * non-finite norm changes nothing and returns QB_ENUMERIC. Does not zero grads. */
qb_status qb_adamw_step(qb_adamw *o, const struct qb_backend *be, qb_model *model,
                        const qb_model *grads, double *grad_norm, float *lr);

#endif
