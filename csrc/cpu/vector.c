/* Whole-tensor vector ops of training: AdamW, sum of squares (gradient norm) and
 * y += x. */
#include "cpu/cpu.h"

#include <math.h>

/* Below this many elements a thread team costs more than it saves. */
#define PAR_MIN 16384

void qb_cpu_adamw(float *w, float *m, float *v, const float *g, const uint8_t *decay, size_t n,
                  const qb_adamw_args *s, double sumsq, double unscale)
{
    float grad_scale;
    if (!qb_adamw_grad_scale(s, sumsq, unscale, &grad_scale)) return;  /* a non-finite norm: the step is skipped */
    /* The same float operations, in the same order, as torch's single-tensor AdamW
     * (w * 1.0f where there is no decay is w itself). */
    const float with = 1.0f - s->lr * s->weight_decay, step_size = s->lr / s->bc1;
    const float b1 = s->beta1, b2 = s->beta2;
    const long blocks = (long)((n + QB_DECAY_BLOCK - 1) / QB_DECAY_BLOCK);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (long k = 0; k < blocks; k++) {
        const float factor = !decay || decay[k] ? with : 1.0f;
        const size_t lo = (size_t)k * QB_DECAY_BLOCK, hi = n - lo < QB_DECAY_BLOCK ? n : lo + QB_DECAY_BLOCK;
        for (size_t i = lo; i < hi; i++) {
            const float gi = g[i] * grad_scale;
            w[i] *= factor;
            m[i] = m[i] * b1 + gi * (1.0f - b1);
            v[i] = v[i] * b2 + gi * gi * (1.0f - b2);
            const float denom = sqrtf(v[i]) / s->bc2_sqrt + s->eps;
            w[i] += -step_size * (m[i] / denom);
        }
    }
}

void qb_cpu_loss_scale_update(float *scale, int32_t *good, double sumsq)
{
    if (!isfinite(sumsq)) {
        if (*scale >= 2.0f) *scale /= 2.0f;
        *good = 0;
    } else if (++*good == 2000) {
        *scale *= 2.0f;
        *good = 0;
    }
}

double qb_cpu_sumsq(const float *x, size_t n)
{
    /* Fixed chunks summed in order: the same result for any thread count. */
    const size_t chunk = 8192;
    const long chunks = (long)((n + chunk - 1) / chunk);
    double total = 0.0;
#pragma omp parallel for schedule(static) ordered if (n >= PAR_MIN)
    for (long c = 0; c < chunks; c++) {
        const size_t lo = (size_t)c * chunk, hi = n - lo < chunk ? n : lo + chunk;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)x[i] * x[i];
#pragma omp ordered
        total += s;
    }
    return total;
}

void qb_cpu_add(float *y, const float *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
