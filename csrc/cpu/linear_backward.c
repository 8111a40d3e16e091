/* Backward of the nn.Linear product y (M, N) = x (M, K) . w (N, K)^T + b:
 *   dx (M, K) = dy (M, N) . w (N, K)   -> GEMM with w stored transposed ((N, K) holds
 *                                         the (K, N) operand's transpose)
 *   dw (N, K) += dy^T (N, M) . x (M, K) -> GEMM with both operands stored transposed,
 *                                         accumulating into dw
 *   db (N) += column sums of dy.
 * The GEMM packs transposed operands directly (gemm.c), so nothing is copied or
 * allocated here. Every step is deterministic for any thread count (the GEMM is;
 * db sums each column in row order). */
#include "cpu/cpu.h"

#define DB_COLS 64  /* columns of dy summed together by one thread, in double */

void qb_cpu_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int M, int N, int K)
{
    if (dx) {
        const qb_gemm_f32 g = {.y = dx, .x = dy, .w = w, .M = M, .N = K, .K = N,
                               .ldy = (size_t)K, .ldx = (size_t)N, .ldw = (size_t)K, .w_t = 1};
        qb_cpu_gemm(&g);
    }
    const qb_gemm_f32 g = {.y = dw, .x = dy, .w = x, .M = N, .N = K, .K = M, .ldy = (size_t)K,
                           .ldx = (size_t)N, .ldw = (size_t)K, .x_t = 1, .w_t = 1, .accumulate = 1};
    qb_cpu_gemm(&g);
    if (db) {
#pragma omp parallel for schedule(static) if ((double)M * N >= 65536.0)
        for (int n0 = 0; n0 < N; n0 += DB_COLS) {
            const int nn = N - n0 < DB_COLS ? N - n0 : DB_COLS;
            double s[DB_COLS] = {0};
            for (int m = 0; m < M; m++)
                for (int j = 0; j < nn; j++) s[j] += dy[(size_t)m * N + n0 + j];
            for (int j = 0; j < nn; j++) db[n0 + j] += (float)s[j];
        }
    }
}
