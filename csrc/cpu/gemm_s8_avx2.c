/* AVX2 tile of the INT8 GEMM (contract and epilogue in gemm_s8.c).
 *
 * AVX2 has no 8-bit dot product that is both exact and fast: vpmaddubsw (u8 x s8)
 * saturates its 16-bit pair sums, which real weights and activations can reach, so
 * this path sign-extends both operands to 16 bits and uses vpmaddwd (s16 x s16 pair
 * sums into s32, exact). Weights are packed at load as k pairs per column
 * (qb_s8_pack: 16 columns x 2 k = 32 bytes per k pair), widened with vpmovsxbw as
 * they are loaded; activations are widened once per call into (M, K/2) int32 words,
 * each a pair of s16, so that a row's pair is one broadcast.
 * Tile 6 x 16: 12 ymm int32 accumulators, 2 for the widened weights, 1 for the
 * broadcast pair. Per k pair: 2 loads, 6 broadcasts, 12 vpmaddwd + 12 vpaddd for
 * 192 multiply-adds. Threads split the (row block, column panel) grid statically.
 * This path serves static (per-tensor, 8-bit) activation scales; per-token ones go
 * through the faster u8 tiles (gemm_u8.c), which share this file's epilogue.
 * Compiled with -mavx2 -mfma -ffp-contract=off; called only after a CPUID check. */
#include "cpu/cpu.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define MR 6
#define NR QB_S8_NR

/* acc (MR x NR int32) = xw (MR rows of kp pairs, row stride ldx words) . the panel. */
static void tile(int kp, const int32_t *xw, size_t ldx, const int8_t *wp, __m256i acc[MR][2])
{
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int kk = 0; kk < kp; kk++) {
        const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wp));
        const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wp + 16)));
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256i xb = _mm256_set1_epi32(xw[r * ldx + kk]);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(w0, xb));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(w1, xb));
        }
        wp += 2 * NR;
    }
}

void qb_q8_epilogue_avx2(float *y, int N, int m0, int rows, int n0, const int32_t acc[][16],
                         const int32_t *colsum, const int32_t *zp, const float *sx, const float *sw,
                         const float *b, int gelu)
{
    const int nn = N - n0 < 16 ? N - n0 : 16;
    float sw_pad[16] = {0}, b_pad[16] = {0};
    int32_t colsum_pad[16] = {0};
    memcpy(sw_pad, sw + n0, (size_t)nn * sizeof *sw);
    if (b) memcpy(b_pad, b + n0, (size_t)nn * sizeof *b);
    if (colsum) memcpy(colsum_pad, colsum, sizeof colsum_pad);
    for (int r = 0; r < rows; r++) {
        const __m256 s = _mm256_set1_ps(sx[m0 + r]);
        const __m256i z = _mm256_set1_epi32(zp ? zp[m0 + r] : 0);
        float out[16];
        for (int h = 0; h < 2; h++) {
            /* (float)(acc - z colsum) * (sx * sw) + b, as in the scalar reference */
            const __m256i zc = _mm256_mullo_epi32(z, _mm256_loadu_si256((const __m256i *)(colsum_pad + 8 * h)));
            const __m256i a = _mm256_sub_epi32(_mm256_loadu_si256((const __m256i *)(acc[r] + 8 * h)), zc);
            const __m256 scale = _mm256_mul_ps(s, _mm256_loadu_ps(sw_pad + 8 * h));
            const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(a), scale);
            _mm256_storeu_ps(out + 8 * h, _mm256_add_ps(v, _mm256_loadu_ps(b_pad + 8 * h)));
        }
        float *yr = y + (size_t)(m0 + r) * N + n0;
        memcpy(yr, out, (size_t)nn * sizeof *yr);
        if (gelu) qb_gelu_avx2(yr, yr, (size_t)nn);
    }
}

void qb_gemm_s8_avx2(float *y, const int8_t *xq, const float *sx, const qb_s8_packed *wp,
                     const float *sw, const float *b, int M, int N, int K, int gelu)
{
    if (M <= 0 || N <= 0) return;
    const int kp = wp->Kp / 2, row_blocks = (M + MR - 1) / MR, panels = (N + NR - 1) / NR;
    const size_t ldx = (size_t)kp;
    int32_t *xw = qb_widen_pairs_s8("int8 gemm", y, N, xq, M, K, row_blocks * MR);
    if (!xw) return;
    const long tiles = (long)row_blocks * panels;
#pragma omp parallel for schedule(static) if ((double)M * N * K >= 32768.0)
    for (long t = 0; t < tiles; t++) {
        int rb, pn;
        qb_tile_order(t, row_blocks, panels, &rb, &pn);
        const int m0 = rb * MR;
        __m256i acc[MR][2];
        int32_t sums[MR][NR];
        tile(kp, xw + m0 * ldx, ldx, wp->data + (size_t)pn * kp * 2 * NR, acc);
        for (int r = 0; r < MR; r++) {
            _mm256_storeu_si256((__m256i *)sums[r], acc[r][0]);
            _mm256_storeu_si256((__m256i *)(sums[r] + 8), acc[r][1]);
        }
        qb_q8_epilogue_avx2(y, N, m0, M - m0 < MR ? M - m0 : MR, pn * NR, sums, NULL, NULL, sx, sw, b, gelu);
    }
    qb_free(xw);
}
