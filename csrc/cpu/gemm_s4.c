/* W4A8 GEMM: INT4 weights with one scale per group of `group` columns, INT8
 * activations with one scale per row (per token):
 *   y (M, N) = (sum over groups g, in order, of (float)S_g * sw[n, g]) * sx[m] + b[n]
 *   S_g = sum over k in group g of xq[m, k] * wq[n, k]   (exact int32)
 * The float sum over groups starts from 0 and adds in group order on every path,
 * and the files are compiled with -ffp-contract=off, so the SIMD path gives the
 * reference's bits. This file: the scalar reference, the packing done once at load,
 * and the dispatch; gemm_s4_avx2.c: the tile that unpacks nibbles in registers. */
#include "cpu/cpu.h"

#include <string.h>

#include "qbert/quant.h"

void qb_gemm_s4_scalar(float *y, const int8_t *xq, const float *sx, const int8_t *wq,
                       const float *sw, const float *b, int M, int N, int K, int group)
{
    const int groups = K / group;
#pragma omp parallel for schedule(static) if ((double)M * N * K >= 32768.0)
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            const int8_t *xr = xq + (size_t)m * K, *wr = wq + (size_t)n * K;
            float f = 0.0f;
            for (int g = 0; g < groups; g++) {
                int32_t s = 0;
                for (int k = g * group; k < (g + 1) * group; k++) s += (int32_t)xr[k] * wr[k];
                f += (float)s * sw[(size_t)n * groups + g];
            }
            y[(size_t)m * N + n] = f * sx[m] + (b ? b[n] : 0.0f);
        }
    }
}

qb_status qb_s4_pack(qb_s4_packed *p, const int8_t *wq, const float *sw, int N, int K, int group)
{
    memset(p, 0, sizeof *p);
    const qb_status st = qb_int4_check_group(group, K);
    if (st) return st;
    const int panels = (N + QB_S4_NR - 1) / QB_S4_NR, groups = K / group;
    p->N = N, p->K = K, p->group = group;
    p->data = qb_malloc((size_t)panels * (K / 2) * QB_S4_NR);
    p->scales = qb_malloc((size_t)panels * groups * QB_S4_NR * sizeof *p->scales);
    if (!p->data || !p->scales) {
        qb_s4_packed_free(p);
        return qb_fail(QB_ENOMEM, "packing INT4 weights (%d x %d): out of memory", N, K);
    }
    for (int pn = 0; pn < panels; pn++) {
        for (int j = 0; j < QB_S4_NR; j++) {
            const int n = pn * QB_S4_NR + j;
            for (int kk = 0; kk < K / 2; kk++) {
                const unsigned lo = n < N ? (unsigned)wq[(size_t)n * K + 2 * kk] & 0xFu : 0u;
                const unsigned hi = n < N ? (unsigned)wq[(size_t)n * K + 2 * kk + 1] & 0xFu : 0u;
                p->data[((size_t)pn * (K / 2) + kk) * QB_S4_NR + j] = (uint8_t)(lo | hi << 4);
            }
            for (int g = 0; g < groups; g++)
                p->scales[((size_t)pn * groups + g) * QB_S4_NR + j] = n < N ? sw[(size_t)n * groups + g] : 0.0f;
        }
    }
    return QB_OK;
}

void qb_s4_packed_free(qb_s4_packed *p)
{
    qb_free(p->data);
    qb_free(p->scales);
    memset(p, 0, sizeof *p);
}

void qb_cpu_gemm_s4(float *y, const int8_t *xq, const float *sx, const int8_t *wq,
                    const qb_s4_packed *wp, const float *sw, const float *b, int M, int N, int K,
                    int group)
{
    if (qb_cpu_isa() != QB_ISA_SCALAR && wp && wp->data) {
        qb_gemm_s4_avx2(y, xq, sx, wp, b, M, N, K);
        return;
    }
    qb_gemm_s4_scalar(y, xq, sx, wq, sw, b, M, N, K, group);
}
