/* Fake quantization for quantization-aware training, and the observers' statistic.
 * Symmetric, b bits: qmin = -2^(b-1), qmax = 2^(b-1) - 1, and
 *   q(x) = clamp(rint(x * (1 / s)), qmin, qmax) * s
 * with rint rounding half to even, as torch.fake_quantize_per_tensor_affine does
 * (it also multiplies by the float inverse of the scale rather than dividing).
 * Weights take one scale per group of columns of a row (group = K: per output
 * channel), s = absmax / qmax, so every weight lies inside [qmin s, qmax s] and the
 * clipped straight-through estimator passes the weight gradient unchanged: there is
 * no weight backward op. Activations take one scale per tensor from an observer;
 * values beyond the clip range get no gradient (fake_quant_backward). As in torch,
 * "beyond" is decided on the rounded value: the gradient passes where
 * qmin <= rint(x / s) <= qmax, i.e. up to half a step past the end values. */
#include "cpu/cpu.h"

#include <math.h>

#define PAR_MIN 16384

static float qmax_of(int bits) { return (float)((1 << (bits - 1)) - 1); }

static float quant(float x, float s, float inv, float qmin, float qmax)
{
    return fminf(fmaxf(rintf(x * inv), qmin), qmax) * s;
}

void qb_cpu_fake_quant_weight(float *y, float *scales, const float *w, int N, int K, int group,
                              int bits)
{
    const float qmax = qmax_of(bits), qmin = -qmax - 1.0f;
    const int groups = K / group;
#pragma omp parallel for schedule(static) if ((size_t)N * K >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        for (int gi = 0; gi < groups; gi++) {
            const size_t o = (size_t)n * K + (size_t)gi * group;
            float amax = 0.0f;
            for (int k = 0; k < group; k++) amax = fmaxf(amax, fabsf(w[o + k]));
            const float s = amax / qmax;
            scales[(size_t)n * groups + gi] = s;
            if (s == 0.0f) {  /* an all-zero group: nothing to scale, stays 0 */
                for (int k = 0; k < group; k++) y[o + k] = 0.0f;
                continue;
            }
            const float inv = 1.0f / s;
            for (int k = 0; k < group; k++) y[o + k] = quant(w[o + k], s, inv, qmin, qmax);
        }
    }
}

void qb_cpu_fake_quant(float *y, const float *x, size_t n, float scale, int bits)
{
    const float qmax = qmax_of(bits), qmin = -qmax - 1.0f, inv = 1.0f / scale;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = quant(x[i], scale, inv, qmin, qmax);
}

void qb_cpu_fake_quant_backward(float *dx, const float *dy, const float *x, size_t n, float scale,
                                int bits)
{
    const float qmax = qmax_of(bits), qmin = -qmax - 1.0f, inv = 1.0f / scale;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float q = rintf(x[i] * inv);
        dx[i] = q >= qmin && q <= qmax ? dy[i] : 0.0f;
    }
}

void qb_cpu_minmax(float out[2], const float *x, size_t n)
{
    float lo = INFINITY, hi = -INFINITY;
    /* min/max are exact and order-free, so a reduction gives the same bits anywhere. */
#pragma omp parallel for schedule(static) reduction(min : lo) reduction(max : hi) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        lo = fminf(lo, x[i]);
        hi = fmaxf(hi, x[i]);
    }
    out[0] = lo;
    out[1] = hi;
}
