/* AVX2 tile of the W4A8 GEMM (contract in gemm_s4.c). Weights stay packed two per
 * byte in memory (qb_s4_pack: per panel of 16 columns and per k pair, 16 bytes, the
 * pair's two nibbles of column j in byte j) and are unpacked in registers: 8 bytes
 * widen to 8 int32 lanes, the low and high nibble move to the two 16-bit halves of
 * each lane, and (v ^ 8) - 8 per 16 bits sign-extends them. The pair then meets the
 * row's activation pair in vpmaddwd, as in the INT8 tile (gemm_s8_avx2.c), whose
 * widened-activation layout this reuses. Per group the int32 sums become float and
 * are scaled and added in group order, exactly as the reference does.
 * Tile 4 x 16. Compiled with -mavx2 -mfma -ffp-contract=off. */
#include "cpu/cpu.h"

#include <immintrin.h>
#include <string.h>

#define MR 4
#define NR QB_S4_NR

/* 8 columns' nibble pairs (8 bytes) -> 8 lanes of two sign-extended s16. */
static inline __m256i unpack8(const uint8_t *p)
{
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    const __m256i f = _mm256_set1_epi32(0xF), eight = _mm256_set1_epi16(8);
    const __m256i lo = _mm256_and_si256(b, f), hi = _mm256_and_si256(_mm256_srli_epi32(b, 4), f);
    const __m256i pair = _mm256_or_si256(lo, _mm256_slli_epi32(hi, 16));
    return _mm256_sub_epi16(_mm256_xor_si256(pair, eight), eight);
}

void qb_gemm_s4_avx2(float *y, const int8_t *xq, const float *sx, const qb_s4_packed *wp,
                     const float *b, int M, int N, int K)
{
    if (M <= 0 || N <= 0) return;
    const int kp = K / 2, group = wp->group, groups = K / group;
    const int row_blocks = (M + MR - 1) / MR, panels = (N + NR - 1) / NR;
    int32_t *xw = qb_widen_pairs_s8("int4 gemm", y, N, xq, M, K, row_blocks * MR);
    if (!xw) return;
    const long tiles = (long)row_blocks * panels;
#pragma omp parallel for schedule(static) if ((double)M * N * K >= 32768.0)
    for (long t = 0; t < tiles; t++) {
        const int rb = (int)(t % row_blocks), pn = (int)(t / row_blocks);
        const int m0 = rb * MR, n0 = pn * NR, nn = N - n0 < NR ? N - n0 : NR;
        const uint8_t *wpan = wp->data + (size_t)pn * kp * NR;
        const float *span = wp->scales + (size_t)pn * groups * NR;
        const int32_t *xr = xw + (size_t)m0 * kp;
        __m256 f[MR][2];
        for (int r = 0; r < MR; r++) f[r][0] = f[r][1] = _mm256_setzero_ps();
        for (int g = 0; g < groups; g++) {
            __m256i acc[MR][2];
            for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
            for (int kk = g * group / 2; kk < (g + 1) * group / 2; kk++) {
                const __m256i w0 = unpack8(wpan + (size_t)kk * NR), w1 = unpack8(wpan + (size_t)kk * NR + 8);
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++) {
                    const __m256i xb = _mm256_set1_epi32(xr[(size_t)r * kp + kk]);
                    acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(w0, xb));
                    acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(w1, xb));
                }
            }
            const __m256 s0 = _mm256_loadu_ps(span + (size_t)g * NR), s1 = _mm256_loadu_ps(span + (size_t)g * NR + 8);
            for (int r = 0; r < MR; r++) {
                f[r][0] = _mm256_add_ps(f[r][0], _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][0]), s0));
                f[r][1] = _mm256_add_ps(f[r][1], _mm256_mul_ps(_mm256_cvtepi32_ps(acc[r][1]), s1));
            }
        }
        float b_pad[NR] = {0};
        if (b) memcpy(b_pad, b + n0, (size_t)nn * sizeof *b);
        for (int r = 0; r < MR && m0 + r < M; r++) {
            const __m256 s = _mm256_set1_ps(sx[m0 + r]);
            float out[NR];
            _mm256_storeu_ps(out, _mm256_add_ps(_mm256_mul_ps(f[r][0], s), _mm256_loadu_ps(b_pad)));
            _mm256_storeu_ps(out + 8, _mm256_add_ps(_mm256_mul_ps(f[r][1], s), _mm256_loadu_ps(b_pad + 8)));
            memcpy(y + (size_t)(m0 + r) * N + n0, out, (size_t)nn * sizeof *y);
        }
    }
    qb_free(xw);
}
