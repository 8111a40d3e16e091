/* Softmax: row-wise in place (attention), and softmax cross-entropy (the loss).
 * Row-wise softmax of x (M, N) in FP32: subtract the row maximum (so exp
 * never overflows and a row of equal values, even -FLT_MAX, comes out uniform),
 * exponentiate, divide by the sum (accumulated in double). With AVX2 a row runs
 * 8 lanes at a time through libmvec's expf (vmath_avx2.c). */
#include "cpu/cpu.h"

#include <math.h>

static void softmax_row(float *r, int N)
{
    float mx = r[0];
    for (int n = 1; n < N; n++) mx = r[n] > mx ? r[n] : mx;
    double s = 0.0;
    for (int n = 0; n < N; n++) {
        /* expf rounds to exactly 0 below -104, but gets there through libm's slow
         * underflow (errno) path: every masked attention score would take it. */
        const float d = r[n] - mx;
        r[n] = d < -104.0f ? 0.0f : expf(d);
        s += r[n];
    }
    const float sf = (float)s;
    for (int n = 0; n < N; n++) r[n] /= sf;
}

void qb_cpu_softmax(float *x, int M, int N)
{
    if (N <= 0) return;
    const int avx2 = qb_cpu_isa() != QB_ISA_SCALAR;
#pragma omp parallel for schedule(static) if ((double)M * N >= 16384.0)
    for (int m = 0; m < M; m++) {
        if (avx2)
            qb_softmax_row_avx2(x + (size_t)m * N, N);
        else
            softmax_row(x + (size_t)m * N, N);
    }
}

/* Softmax cross-entropy per row: loss = logsumexp(z) - z[label] (max-subtracted, sum
 * in double), dlogits = (softmax(z) - onehot(label)) * grad_scale. The mean over the
 * batch and the 1/grad_accum of Trainer are in grad_scale; the caller averages losses. */
void qb_cpu_xent(float *losses, float *dlogits, const float *logits, const int32_t *labels,
                 int B, int K, float grad_scale)
{
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        float *d = dlogits + (size_t)b * K;
        float mx = z[0];
        for (int k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp((double)z[k] - mx);
        const double lse = mx + log(s);
        losses[b] = (float)(lse - z[labels[b]]);
        for (int k = 0; k < K; k++) {
            const float p = (float)exp((double)z[k] - lse);
            d[k] = (p - (k == labels[b] ? 1.0f : 0.0f)) * grad_scale;
        }
    }
}
