/* Element-wise activations and their backward passes: exact GELU (the erf form BERT
 * uses, not the tanh approximation) and tanh (the pooler). The scalar loops use
 * libm's erff/expf/tanhf (about an ulp); with AVX2 the GELU loops run 8 lanes at a
 * time through libmvec (vmath_avx2.c). Work is split across threads in chunks. */
#include "cpu/cpu.h"

#include <math.h>

/* Below this many elements a thread team costs more than it saves. */
#define PAR_MIN 16384
#define CHUNK 4096  /* elements per parallel work item */

void qb_gelu_scalar(float *y, const float *x, size_t n)
{
    const float inv_sqrt2 = (float)M_SQRT1_2;
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * inv_sqrt2));
}

/* gelu'(x) = Phi(x) + x phi(x): the normal CDF plus x times the normal density. */
static void gelu_backward_scalar(float *dx, const float *dy, const float *x, size_t n)
{
    const float inv_sqrt2 = (float)M_SQRT1_2, inv_sqrt_2pi = 0.3989422804014327f;
    for (size_t i = 0; i < n; i++) {
        const float a = x[i];
        const float cdf = 0.5f * (1.0f + erff(a * inv_sqrt2));
        const float pdf = inv_sqrt_2pi * expf(-0.5f * a * a);
        dx[i] = dy[i] * (cdf + a * pdf);
    }
}

void qb_cpu_gelu(float *y, const float *x, size_t n)
{
    const int avx2 = qb_cpu_isa() != QB_ISA_SCALAR;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i += CHUNK) {
        const size_t len = n - i < CHUNK ? n - i : CHUNK;
        if (avx2)
            qb_gelu_avx2(y + i, x + i, len);
        else
            qb_gelu_scalar(y + i, x + i, len);
    }
}

void qb_cpu_gelu_backward(float *dx, const float *dy, const float *x, size_t n)
{
    const int avx2 = qb_cpu_isa() != QB_ISA_SCALAR;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i += CHUNK) {
        const size_t len = n - i < CHUNK ? n - i : CHUNK;
        if (avx2)
            qb_gelu_backward_avx2(dx + i, dy + i, x + i, len);
        else
            gelu_backward_scalar(dx + i, dy + i, x + i, len);
    }
}

void qb_cpu_tanh(float *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}

void qb_cpu_tanh_backward(float *dx, const float *dy, const float *y, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}
