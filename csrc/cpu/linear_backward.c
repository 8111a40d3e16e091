/* Backward of the nn.Linear product y (M, N) = x (M, K) . w (N, K)^T + b:
 *   dx (M, K) = dy (M, N) . w (N, K)        -> qb_cpu_linear(dx, dy, w^T (K, N))
 *   dw (N, K) += dy^T (N, M) . x (M, K)      -> qb_cpu_linear(tmp, dy^T, x^T (K, M)), then +=
 *   db (N) += column sums of dy.
 * Both products reuse the forward's blocked GEMM, which wants its operands in the
 * nn.Linear layout, so the transposed operands are first copied: O(MN + NK + MK)
 * extra memory traffic against O(MNK) arithmetic. dw accumulates (gradient
 * accumulation over micro-batches), hence the product goes to scratch first. Every
 * step is deterministic for any thread count (the GEMM is; db sums columns in
 * row order). If scratch cannot be allocated the error is logged and the outputs
 * are set to NaN, which the trainer's non-finite gradient check then reports. */
#include "cpu/cpu.h"

#include <math.h>

static void fill_nan(float *p, size_t n)
{
    if (p)
        for (size_t i = 0; i < n; i++) p[i] = NAN;
}

void qb_cpu_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int M, int N, int K)
{
    const size_t mn = (size_t)M * N, nk = (size_t)N * K, mk = (size_t)M * K;
    float *scratch = qb_malloc(sizeof(float) * (mn + nk + mk + nk));
    if (!scratch) {
        qb_log(QB_LOG_ERROR, "linear backward M=%d N=%d K=%d: out of memory; gradients set to NaN", M, N, K);
        fill_nan(dx, mk);
        fill_nan(dw, nk);
        fill_nan(db, (size_t)N);
        return;
    }
    float *dyt = scratch, *wt = dyt + mn, *xt = wt + nk, *tmp = xt + mk;
    if (dx) {
        qb_cpu_transpose(wt, w, N, K);   /* (K, N) */
        qb_cpu_linear(dx, dy, wt, NULL, M, K, N);
    }
    qb_cpu_transpose(dyt, dy, M, N);     /* (N, M) */
    qb_cpu_transpose(xt, x, M, K);       /* (K, M) */
    qb_cpu_linear(tmp, dyt, xt, NULL, N, K, M);
    qb_cpu_add(dw, tmp, nk);
    if (db) {
        /* dy^T is (N, M): each bias gradient is a contiguous row sum, in order. */
#pragma omp parallel for schedule(static) if (mn >= 65536)
        for (int n = 0; n < N; n++) {
            const float *r = dyt + (size_t)n * M;
            double s = 0.0;
            for (int m = 0; m < M; m++) s += r[m];
            db[n] += (float)s;
        }
    }
    qb_free(scratch);
}
