/* LayerNorm over the last dimension, with the residual add fused in front:
 * out (M, C) = (t - mean) / sqrt(var + eps) * g + b, t = x + res, biased variance.
 *
 * Two passes in FP32 (mean, then the variance of t - mean), as accurate as
 * PyTorch's and never negative. Sums use 8 independent float partial sums, which
 * the compiler keeps in SIMD lanes without reassociating anything (so the result
 * does not depend on flags), combined in double at the end. */
#include "cpu/cpu.h"

#include <math.h>
#include <string.h>

#define LANES 8

static double lanes_total(const float acc[LANES])
{
    double s = 0.0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

static double sum(const float *v, int n)
{
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += v[i + l];
    for (; i < n; i++) acc[0] += v[i];
    return lanes_total(acc);
}

/* sum of (v - mean)^2 */
static double sum_sq_dev(const float *v, int n, float mean)
{
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES) {
        for (int l = 0; l < LANES; l++) {
            float d = v[i + l] - mean;
            acc[l] += d * d;
        }
    }
    for (; i < n; i++) {
        float d = v[i] - mean;
        acc[0] += d * d;
    }
    return lanes_total(acc);
}

void qb_cpu_layernorm(float *out, const float *x, const float *res, const float *g,
                      const float *b, int M, int C, float eps)
{
#pragma omp parallel for schedule(static) if ((double)M * C >= 65536.0)
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * C;
        float *o = out + (size_t)m * C;
        /* t = x + res goes to out first: element by element, so out may alias x. */
        if (res) {
            const float *rr = res + (size_t)m * C;
            for (int c = 0; c < C; c++) o[c] = xr[c] + rr[c];
        } else if (o != xr) {
            memcpy(o, xr, (size_t)C * sizeof *o);
        }
        const float mean = (float)(sum(o, C) / C);
        const float var = (float)(sum_sq_dev(o, C, mean) / C);
        const float rstd = 1.0f / sqrtf(var + eps);
        for (int c = 0; c < C; c++) o[c] = (o[c] - mean) * rstd * g[c] + b[c];
    }
}
