/* Fake quantization for quantization-aware training, the observers' statistic, and
 * the one per-group quantizer that both fake-quant weights and true INT8 / INT4
 * weights and activations come from (so a QAT model's weights are exactly the
 * integers its low-bit file stores).
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

void qb_cpu_quantize_groups(int8_t *q, float *y, float *scales, const float *w, int N, int K,
                            int group, int bits)
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
            /* An all-zero group has nothing to scale: it stays 0. Otherwise each value
             * is read before its output is written, so y may alias w. */
            const float inv = s > 0.0f ? 1.0f / s : 0.0f;
            for (int k = 0; k < group; k++) {
                const float v = s > 0.0f ? fminf(fmaxf(rintf(w[o + k] * inv), qmin), qmax) : 0.0f;
                if (q) q[o + k] = (int8_t)v;
                if (y) y[o + k] = v * s;
            }
        }
    }
}

void qb_cpu_fake_quant_weight(float *y, float *scales, const float *w, int N, int K, int group,
                              int bits)
{
    qb_cpu_quantize_groups(NULL, y, scales, w, N, K, group, bits);
}

void qb_cpu_fake_quant(float *y, const float *x, size_t n, float scale, int bits)
{
    const float qmax = qmax_of(bits), qmin = -qmax - 1.0f, inv = 1.0f / scale;
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = fminf(fmaxf(rintf(x[i] * inv), qmin), qmax) * scale;
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
