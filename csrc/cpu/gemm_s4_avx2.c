/* AVX2 tile of the W4A8 GEMM (contract in gemm_s4.c). Weights stay packed two per
 * byte in memory (qb_s4_pack: per panel of 16 columns and per k quad, 32 bytes; byte
 * 4c + k%4 holds column c's nibble low and column c + 8's high) and are unpacked in
 * registers: one load, two masks, and vpshufb through a 16-entry table from nibble to
 * its signed value gives the s8 weights of columns 0-7 and 8-15 in the layout of the
 * INT8 u8 tile (4 k per 32-bit lane). The dot step is that tile's: vpmaddubsw (u8 x
 * s8, pairs summed to s16, exact for 4-bit weights) + vpmaddwd by ones + vpaddd.
 * Per group the int32 sums lose the zero point (zp x the group's column sums), become
 * float and are scaled and added in group order, exactly as the reference does.
 * Tile 6 x 16: 12 ymm accumulators; the per-group float sums live in memory.
 * Compiled with -mavx2 -mfma -ffp-contract=off; called only after a CPUID check. */
#include "cpu/cpu.h"

#include <immintrin.h>
#include <string.h>

#define MR 4
#define NR QB_S4_NR
_Static_assert(QB_QINPUT_ROW_PAD % MR == 0, "the tile's row blocks must divide the activation row padding");

/* rows m0 .. m0 + MR - 1 of u against panel wpan over k quads kq0 .. kq1 - 1:
 * acc[r][h] = the int32 sums of row r with columns 8h .. 8h + 7. */
static inline void group_sums(__m256i acc[MR][2], const uint8_t *u, size_t ldu, const uint8_t *wpan, int kq0, int kq1)
{
    const __m256i mask = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256i lut = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1,
                                         0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1);
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int k = kq0; k < kq1; k++) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(wpan + (size_t)k * 32));
        const __m256i w0 = _mm256_shuffle_epi8(lut, _mm256_and_si256(raw, mask));
        const __m256i w1 = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask));
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            int32_t quad;
            memcpy(&quad, u + r * ldu + 4 * (size_t)k, 4);
            const __m256i xb = _mm256_set1_epi32(quad);
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w0), ones));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w1), ones));
        }
    }
}

void qb_gemm_s4_avx2(float *y, const qb_qinput *x, const qb_s4_packed *wp, const float *b, int N)
{
    const int M = x->M;
    if (M <= 0 || N <= 0) return;
    const int kq = wp->K / 4, gq = wp->group / 4, groups = wp->K / wp->group;
    const int row_blocks = (M + MR - 1) / MR, panels = (N + NR - 1) / NR;
    const size_t ldu = (size_t)x->ldu;
    const long tiles = (long)row_blocks * panels;
#pragma omp parallel for schedule(static) if ((double)M * N * wp->K >= 32768.0)
    for (long t = 0; t < tiles; t++) {
        int rb, pn;
        qb_tile_order(t, row_blocks, panels, &rb, &pn);
        const int m0 = rb * MR, n0 = pn * NR, rows = M - m0 < MR ? M - m0 : MR, nn = N - n0 < NR ? N - n0 : NR;
        const uint8_t *wpan = wp->data + (size_t)pn * kq * 32;
        const int32_t *cpan = wp->colsum + (size_t)pn * groups * NR;
        const float *span = wp->scales + (size_t)pn * groups * NR;
        __m256i zp[MR];
        for (int r = 0; r < MR; r++) zp[r] = _mm256_set1_epi32(r < rows ? x->zp[m0 + r] : 0);
        __m256 f[MR][2];
        for (int r = 0; r < MR; r++) f[r][0] = f[r][1] = _mm256_setzero_ps();
        for (int g = 0; g < groups; g++) {
            __m256i acc[MR][2];
            group_sums(acc, x->u + (size_t)m0 * ldu, ldu, wpan, g * gq, (g + 1) * gq);
            const __m256i c0 = _mm256_loadu_si256((const __m256i *)(cpan + (size_t)g * NR));
            const __m256i c1 = _mm256_loadu_si256((const __m256i *)(cpan + (size_t)g * NR + 8));
            const __m256 s0 = _mm256_loadu_ps(span + (size_t)g * NR), s1 = _mm256_loadu_ps(span + (size_t)g * NR + 8);
            for (int r = 0; r < MR; r++) {
                const __m256i q0 = _mm256_sub_epi32(acc[r][0], _mm256_mullo_epi32(zp[r], c0));
                const __m256i q1 = _mm256_sub_epi32(acc[r][1], _mm256_mullo_epi32(zp[r], c1));
                f[r][0] = _mm256_add_ps(f[r][0], _mm256_mul_ps(_mm256_cvtepi32_ps(q0), s0));
                f[r][1] = _mm256_add_ps(f[r][1], _mm256_mul_ps(_mm256_cvtepi32_ps(q1), s1));
            }
        }
        float b_pad[NR] = {0};
        if (b) memcpy(b_pad, b + n0, (size_t)nn * sizeof *b);
        for (int r = 0; r < rows; r++) {
            const __m256 s = _mm256_set1_ps(x->scale[m0 + r]);
            float out[NR];
            _mm256_storeu_ps(out, _mm256_add_ps(_mm256_mul_ps(f[r][0], s), _mm256_loadu_ps(b_pad)));
            _mm256_storeu_ps(out + 8, _mm256_add_ps(_mm256_mul_ps(f[r][1], s), _mm256_loadu_ps(b_pad + 8)));
            memcpy(y + (size_t)(m0 + r) * N + n0, out, (size_t)nn * sizeof *y);
        }
    }
}
