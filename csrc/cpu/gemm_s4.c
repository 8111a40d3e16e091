/* W4A8 GEMM: INT4 weights with one scale per group of `group` columns, INT8
 * activations with one scale per row (per token):
 *   y (M, N) = (sum over groups g, in order, of (float)S_g * sw[n, g]) * sx[m] + b[n]
 *   S_g = sum over k in group g of xq[m, k] * wq[n, k]   (exact int32)
 * The activations come as a qb_qinput, q = u - zp: the dynamic 7-bit grid, or a static
 * 8-bit scale shifted by 128. The tile (gemm_s4_avx2.c) sums u w with vpmaddubsw,
 * which is exact here for ANY u8 (2 x 255 x 8 < 32767, the weights have 4 bits), and
 * takes the zero point off per group in integers: S_g = sum u w - zp colsum_g. The
 * float sum over groups starts from 0 and adds in group order on every path, and the
 * files are compiled with -ffp-contract=off, so the SIMD path gives the reference's
 * bits. This file: the scalar reference (on q), the packing done once at load. */
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
    if (group % 4 != 0)
        return qb_fail(QB_EINVAL, "the W4A8 tile needs a group size that is a multiple of 4 (got %d)", group);
    const int panels = (N + QB_S4_NR - 1) / QB_S4_NR, groups = K / group, kq = K / 4;
    const size_t per_group = (size_t)panels * groups * QB_S4_NR;
    p->N = N, p->K = K, p->group = group;
    p->data = qb_malloc((size_t)panels * kq * 32);
    p->colsum = qb_malloc(per_group * sizeof *p->colsum);
    p->scales = qb_malloc(per_group * sizeof *p->scales);
    if (!p->data || !p->colsum || !p->scales) {
        qb_s4_packed_free(p);
        return qb_fail(QB_ENOMEM, "packing INT4 weights (%d x %d): out of memory", N, K);
    }
    memset(p->data, 0, (size_t)panels * kq * 32);
    for (int pn = 0; pn < panels; pn++) {
        for (int j = 0; j < QB_S4_NR; j++) {
            const int n = pn * QB_S4_NR + j;
            const int8_t *wr = wq + (size_t)n * K;
            /* columns 0-7 in the low nibbles, 8-15 in the high ones, 4 k per 32-bit lane */
            const int shift = j < 8 ? 0 : 4, lane = j % 8;
            for (int k = 0; n < N && k < K; k++)
                p->data[((size_t)pn * kq + k / 4) * 32 + lane * 4 + k % 4] |= (uint8_t)(((unsigned)wr[k] & 0xFu) << shift);
            for (int g = 0; g < groups; g++) {
                int32_t sum = 0;
                for (int k = g * group; n < N && k < (g + 1) * group; k++) sum += wr[k];
                const size_t at = ((size_t)pn * groups + g) * QB_S4_NR + j;
                p->colsum[at] = sum;
                p->scales[at] = n < N ? sw[(size_t)n * groups + g] : 0.0f;
            }
        }
    }
    return QB_OK;
}

void qb_s4_packed_free(qb_s4_packed *p)
{
    qb_free(p->data);
    qb_free(p->colsum);
    qb_free(p->scales);
    memset(p, 0, sizeof *p);
}
