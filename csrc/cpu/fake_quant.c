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

/* The symmetric quantizer of one group of n values: its scale, and the integers
 * (q) and/or dequantized values (y). Each value is read before its output is
 * written, so y may alias w. */
static float quantize_group(int8_t *q, float *y, const float *w, int n, float qmax)
{
    float amax = 0.0f;
    for (int k = 0; k < n; k++) amax = qb_maxf(fabsf(w[k]), amax);
    const float s = amax / qmax;
    /* An all-zero group has nothing to scale: it stays 0. */
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int k = 0; k < n; k++) {
        const float v = s > 0.0f ? qb_minf(qb_maxf(rintf(w[k] * inv), -qmax - 1.0f), qmax) : 0.0f;
        if (q) q[k] = (int8_t)v;
        if (y) y[k] = v * s;
    }
    return s;
}

void qb_cpu_quantize_groups(int8_t *q, float *y, float *scales, const float *w, int N, int K,
                            int group, int bits)
{
    const float qmax = qmax_of(bits);
    const int groups = K / group;
#pragma omp parallel for schedule(static) if ((size_t)N * K >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        for (int gi = 0; gi < groups; gi++) {
            const size_t o = (size_t)n * K + (size_t)gi * group;
            scales[(size_t)n * groups + gi] = quantize_group(q ? q + o : NULL, y ? y + o : NULL, w + o, group, qmax);
        }
    }
}

void qb_cpu_dequantize_groups(float *w, const int8_t *q, const float *scales, int N, int K, int group)
{
    const int groups = K / group;
#pragma omp parallel for schedule(static) if ((size_t)N * K >= PAR_MIN)
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            w[(size_t)n * K + k] = (float)q[(size_t)n * K + k] * scales[(size_t)n * groups + k / group];
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
    for (size_t i = 0; i < n; i++) y[i] = qb_minf(qb_maxf(rintf(x[i] * inv), qmin), qmax) * scale;
}

void qb_quantize_s8(int8_t *q, const float *x, size_t n, float inv)
{
    if (qb_cpu_isa() != QB_ISA_SCALAR) {
        qb_quantize_s8_avx2(q, x, n, inv);
        return;
    }
    for (size_t i = 0; i < n; i++) q[i] = (int8_t)qb_minf(qb_maxf(rintf(x[i] * inv), -128.0f), 127.0f);
}

/* In chunks of PAR_MIN over the threads: the static INT8 Linear quantizes its input
 * on every call. */
void qb_quantize_tensor_s8(int8_t *q, const float *x, size_t n, float scale)
{
    const float inv = 1.0f / scale;
    const size_t chunks = (n + PAR_MIN - 1) / PAR_MIN;
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (size_t c = 0; c < chunks; c++) {
        const size_t i0 = c * PAR_MIN;
        qb_quantize_s8(q + i0, x + i0, n - i0 < PAR_MIN ? n - i0 : PAR_MIN, inv);
    }
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

float qb_cpu_abs_percentile(const float *x, size_t n, double p)
{
    enum { BINS = 2048 };
    float amax = 0.0f;
#pragma omp parallel for schedule(static) reduction(max : amax) if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) amax = qb_maxf(fabsf(x[i]), amax);
    if (!(amax > 0.0f) || !isfinite(amax)) return amax > 0.0f ? amax : 0.0f;
    double hist[BINS] = {0};
    const float inv = BINS / amax;
    for (size_t i = 0; i < n; i++) {
        const float v = fabsf(x[i]) * inv;
        hist[v < BINS ? (int)v : BINS - 1] += 1.0;  /* the max itself, and NaN, go to the last bin */
    }
    const double want = (double)n * p / 100.0;
    double seen = 0.0;
    for (int b = 0; b < BINS; b++)
        if ((seen += hist[b]) >= want) return amax * (float)(b + 1) / BINS;
    return amax;
}

void qb_cpu_observe(float range[2], float *scale, const float batch[2], float ema, int bits)
{
    if (isfinite(batch[0]) && isfinite(batch[1])) {  /* a non-finite batch is the trainer's to report */
        if (isnan(range[0])) {
            range[0] = batch[0], range[1] = batch[1];
        } else if (ema == 0.0f) {
            range[0] = fminf(range[0], batch[0]), range[1] = fmaxf(range[1], batch[1]);
        } else {
            range[0] += ema * (batch[0] - range[0]);
            range[1] += ema * (batch[1] - range[1]);
        }
    }
    const float amax = fmaxf(fabsf(range[0]), fabsf(range[1]));
    const float s = amax / qmax_of(bits);
    *scale = isfinite(s) && s > 0.0f ? s : 1.0f;
}
