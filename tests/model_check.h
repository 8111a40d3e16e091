/* What the model-level tests that run a pass on two backends share: the comparison
 * of two models' gradients (tests/test_cuda_model.c, tests/test_half_model.c). */
#ifndef QBERT_TEST_MODEL_CHECK_H
#define QBERT_TEST_MODEL_CHECK_H

#include "check.h"

#include "qbert/model.h"

/* Largest |x| over every tensor of a host model. */
static inline double max_abs_model(const qb_model *g)
{
    double m = 0.0;
    for (int i = 0; i < g->weights.count; i++) {
        const qb_tensor *t = &g->weights.tensors[i];
        const float *d = t->data;
        for (int64_t j = 0; j < qb_tensor_numel(t); j++) m = fmax(m, fabs(d[j]));
    }
    return m;
}

/* Gradients of the host model got (a copy of the other backend's) against ref. A
 * tensor whose reference is at rounding-noise level (max below `noise` times the
 * model's largest value: the attention key bias, zero but for rounding; noise is
 * 1e-6 with FP32 products, about the half format's epsilon with BF16 / FP16 ones) is
 * checked for staying within ten times that and marked in noisy. */
static inline void compare_grads(const qb_model *got, const qb_model *ref, bool *noisy, double tol, double noise)
{
    const double scale = max_abs_model(ref);
    for (int i = 0; i < ref->weights.count; i++) {
        const qb_tensor *r = &ref->weights.tensors[i], *g = &got->weights.tensors[i];
        const size_t n = (size_t)qb_tensor_numel(r);
        double rmax = 0.0, gmax = 0.0;
        for (size_t j = 0; j < n; j++)
            rmax = fmax(rmax, fabs(((float *)r->data)[j])), gmax = fmax(gmax, fabs(((float *)g->data)[j]));
        if ((noisy[i] = rmax < noise * scale)) {
            CHECKF(gmax < 10 * noise * scale, "gradient %s: %.3g where the CPU has rounding noise (%.3g)",
                   ref->weights.names[i], gmax, rmax);
            continue;
        }
        const double e = rel_l2(g->data, r->data, n);
        CHECKF(e <= tol, "gradient %s: relative L2 error %.3g > %.1g", ref->weights.names[i], e, tol);
    }
}

#endif
