/* Element-wise activations, in place: exact GELU (the erf form BERT uses, not the
 * tanh approximation) and tanh (the pooler). libm's erff/tanhf are accurate to
 * about an ulp; the loops are split across threads. */
#include "cpu/cpu.h"

#include <math.h>

/* Below this many elements a thread team costs more than it saves. */
#define PAR_MIN 16384

void qb_cpu_gelu(float *x, size_t n)
{
    const float inv_sqrt2 = (float)M_SQRT1_2;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * inv_sqrt2));
}

void qb_cpu_tanh(float *x, size_t n)
{
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = tanhf(x[i]);
}
