/* Element-wise activations and their backward passes: exact GELU (the erf form BERT
 * uses, not the tanh approximation) and tanh (the pooler). libm's erff/expf/tanhf
 * are accurate to about an ulp; the loops are split across threads. */
#include "cpu/cpu.h"

#include <math.h>

/* Below this many elements a thread team costs more than it saves. */
#define PAR_MIN 16384

void qb_cpu_gelu(float *y, const float *x, size_t n)
{
    const float inv_sqrt2 = (float)M_SQRT1_2;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * inv_sqrt2));
}

/* gelu'(x) = Phi(x) + x phi(x): the normal CDF plus x times the normal density. */
void qb_cpu_gelu_backward(float *dx, const float *dy, const float *x, size_t n)
{
    const float inv_sqrt2 = (float)M_SQRT1_2, inv_sqrt_2pi = 0.3989422804014327f;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float a = x[i];
        const float cdf = 0.5f * (1.0f + erff(a * inv_sqrt2));
        const float pdf = inv_sqrt_2pi * expf(-0.5f * a * a);
        dx[i] = dy[i] * (cdf + a * pdf);
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
