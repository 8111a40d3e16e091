/* LayerNorm over the last dimension, forward and backward, with the residual add
 * fused in front of the forward:
 * out (M, C) = (t - mean) / sqrt(var + eps) * g + b, t = x + res, biased variance.
 *
 * Two passes in FP32 (mean, then the variance of t - mean), as accurate as
 * PyTorch's and never negative. Sums use 8 independent float partial sums, which
 * the compiler keeps in SIMD lanes without reassociating anything (so the result
 * does not depend on flags), combined in double at the end.
 * The quantized output (for the INT8 Linears that read it) is made from each row
 * while the row is still in L1: no second pass over memory. */
#include "cpu/cpu.h"

#include <math.h>
#include <string.h>

#define LANES 8
#define COLS 16  /* columns per block of the backward's parameter sums */

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

void qb_cpu_layernorm(float *out, float *t_out, float *stats, qb_qinput *outq, const float *x, const float *res,
                      const float *g, const float *b, int M, int C, float eps)
{
#pragma omp parallel for schedule(static) if ((double)M * C >= 65536.0)
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * C;
        float *o = out + (size_t)m * C;
        /* t = x + res goes to out first: element by element, so out may alias x or res. */
        if (res) {
            const float *rr = res + (size_t)m * C;
            for (int c = 0; c < C; c++) o[c] = xr[c] + rr[c];
        } else if (o != xr) {
            memcpy(o, xr, (size_t)C * sizeof *o);
        }
        if (t_out && t_out + (size_t)m * C != o) memcpy(t_out + (size_t)m * C, o, (size_t)C * sizeof *o);
        const float mean = (float)(sum(o, C) / C);
        const float var = (float)(sum_sq_dev(o, C, mean) / C);
        const float rstd = 1.0f / sqrtf(var + eps);
        if (stats) stats[2 * (size_t)m] = mean, stats[2 * (size_t)m + 1] = rstd;
        for (int c = 0; c < C; c++) o[c] = (o[c] - mean) * rstd * g[c] + b[c];
        if (outq) qb_quantize_row_u7(outq->u + (size_t)m * outq->ldu, outq->ldu, &outq->scale[m], &outq->zp[m], o, C);
    }
    if (outq) qb_qinput_pad(outq);
}

/* Backward, with xhat = (t - mean) * rstd and e = dout * g:
 *   dt = rstd * (e - mean(e) - xhat * mean(e * xhat)),
 *   dg += sum over rows of dout * xhat,  db += sum over rows of dout.
 * The row pass runs over rows; the parameter sums run over columns (each thread a
 * block of columns, rows in order), so no thread shares an accumulator and the
 * result does not depend on the thread count. */
void qb_cpu_layernorm_backward(float *dt, float *dg, float *db, const float *dout, const float *t,
                               const float *stats, const float *g, int M, int C)
{
    const int par = (double)M * C >= 65536.0;
    const int blocks = (C + COLS - 1) / COLS;
#pragma omp parallel for schedule(static) if (par)
    for (int blk = 0; blk < blocks; blk++) {
        const int c0 = blk * COLS, nc = C - c0 < COLS ? C - c0 : COLS;
        double sg[COLS] = {0}, sb[COLS] = {0};
        for (int m = 0; m < M; m++) {
            const float mean = stats[2 * (size_t)m], rstd = stats[2 * (size_t)m + 1];
            const float *dr = dout + (size_t)m * C + c0, *tr = t + (size_t)m * C + c0;
            for (int j = 0; j < nc; j++) {
                sg[j] += (double)dr[j] * ((tr[j] - mean) * rstd);
                sb[j] += dr[j];
            }
        }
        for (int j = 0; j < nc; j++) dg[c0 + j] += (float)sg[j], db[c0 + j] += (float)sb[j];
    }
#pragma omp parallel for schedule(static) if (par)
    for (int m = 0; m < M; m++) {
        const float *dr = dout + (size_t)m * C, *tr = t + (size_t)m * C;
        const float mean = stats[2 * (size_t)m], rstd = stats[2 * (size_t)m + 1];
        double se = 0.0, sex = 0.0;
        for (int c = 0; c < C; c++) {
            const float e = dr[c] * g[c];
            se += e;
            sex += (double)e * ((tr[c] - mean) * rstd);
        }
        const float me = (float)(se / C), mex = (float)(sex / C);
        float *o = dt + (size_t)m * C;
        for (int c = 0; c < C; c++) o[c] = rstd * (dr[c] * g[c] - me - (tr[c] - mean) * rstd * mex);
    }
}
