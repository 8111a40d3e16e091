/* INT8 GEMM for quantized inference: the nn.Linear product with both operands
 * quantized symmetrically,
 *   y (M, N) = (sum_k xq[m,k] wq[n,k]) * (sx[m] * sw[n]) + b[n]   [then GELU]
 * xq (M, K) s8 with one scale per row (a static per-tensor scale, or per token at
 * run time: gemm_u8.c), wq (N, K) s8 with one scale per output channel. The sum is
 * exact in int32 (|x|, |w| <= 128 and K < 2^16 cannot overflow it), so every path
 * gives the same integers; the epilogue is the same float operations in the same
 * order everywhere (the SIMD file is compiled with -ffp-contract=off, so no FMA
 * fuses its multiply and add), so outputs are bit-identical across paths too,
 * GELU aside (libmvec's erf in the SIMD path, libm's in the scalar one).
 *
 * Weights are packed once, when a model is loaded, into the layout of the tile
 * (qb_s8_pack); this file holds the scalar reference, the packing and the
 * dispatch. */
#include "cpu/cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PAR_MIN_MACS 32768.0

void qb_gemm_s8_scalar(float *y, const int8_t *xq, const float *sx, const int8_t *wq,
                       const float *sw, const float *b, int M, int N, int K, int gelu)
{
#pragma omp parallel for schedule(static) if ((double)M * N * K >= PAR_MIN_MACS)
    for (int m = 0; m < M; m++) {
        float *yr = y + (size_t)m * N;
        for (int n = 0; n < N; n++) {
            const int8_t *xr = xq + (size_t)m * K, *wr = wq + (size_t)n * K;
            int32_t acc = 0;
            for (int k = 0; k < K; k++) acc += (int32_t)xr[k] * wr[k];
            yr[n] = (float)acc * (sx[m] * sw[n]) + (b ? b[n] : 0.0f);
        }
        if (gelu) qb_gelu_scalar(yr, yr, (size_t)N);
    }
}

int32_t *qb_widen_pairs_s8(const char *what, float *y, int N, const int8_t *xq, int M, int K, int rows)
{
    const size_t kp = (size_t)(K + 1) / 2;
    int32_t *xw = qb_malloc((size_t)rows * kp * sizeof *xw);
    if (!xw) {
        qb_log(QB_LOG_ERROR, "%s %dx%dx%d: cannot allocate the widened activations; output set to NaN",
               what, M, N, K);
        for (size_t i = 0; i < (size_t)M * N; i++) y[i] = NAN;
        return NULL;
    }
    for (int m = 0; m < rows; m++) {
        for (size_t kk = 0; kk < kp; kk++) {
            const size_t k = 2 * kk;
            const int16_t lo = m < M ? xq[(size_t)m * K + k] : 0;
            const int16_t hi = m < M && k + 1 < (size_t)K ? xq[(size_t)m * K + k + 1] : 0;
            xw[m * kp + kk] = (int32_t)((uint32_t)(uint16_t)lo | (uint32_t)(uint16_t)hi << 16);
        }
    }
    return xw;
}

qb_status qb_s8_pack(qb_s8_packed *p, const int8_t *wq, int N, int K)
{
    memset(p, 0, sizeof *p);
    p->N = N, p->K = K, p->Kp = (K + 1) / 2 * 2;
    const int panels = (N + QB_S8_NR - 1) / QB_S8_NR;
    const size_t bytes = (size_t)panels * QB_S8_NR * p->Kp;
    p->data = qb_malloc(bytes);
    if (!p->data)
        return qb_fail(QB_ENOMEM, "packing INT8 weights (%d x %d): cannot allocate %zu bytes", N, K, bytes);
    /* panel, k pair, column, k within the pair; zero past N and K */
    for (int pn = 0; pn < panels; pn++)
        for (int kk = 0; kk < p->Kp / 2; kk++)
            for (int j = 0; j < QB_S8_NR; j++)
                for (int t = 0; t < 2; t++) {
                    const int n = pn * QB_S8_NR + j, k = 2 * kk + t;
                    p->data[(((size_t)pn * (p->Kp / 2) + kk) * QB_S8_NR + j) * 2 + t] =
                        n < N && k < K ? wq[(size_t)n * K + k] : 0;
                }
    return QB_OK;
}

void qb_s8_packed_free(qb_s8_packed *p)
{
    qb_free(p->data);
    memset(p, 0, sizeof *p);
}

void qb_cpu_gemm_s8(float *y, const int8_t *xq, const float *sx, const int8_t *wq,
                    const qb_s8_packed *wp, const float *sw, const float *b, int M, int N, int K,
                    int gelu)
{
    if (qb_cpu_isa() != QB_ISA_SCALAR && wp && wp->data) {
        qb_gemm_s8_avx2(y, xq, sx, wp, sw, b, M, N, K, gelu);
        return;
    }
    qb_gemm_s8_scalar(y, xq, sx, wq, sw, b, M, N, K, gelu);
}
