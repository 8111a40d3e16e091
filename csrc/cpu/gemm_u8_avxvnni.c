/* AVX-VNNI tile of the dynamic INT8 GEMM (contract and layout in gemm_u8.c, driver in
 * gemm_u8_avx2.c): vpdpbusd (VEX, 256-bit) multiplies a row's 4 broadcast u8 by each
 * column's 4 s8 and adds the four products to the column's s32 accumulator, exactly,
 * in one instruction: 32 multiply-adds, 3x the AVX2 tile's density.
 * Tile 6 x 16: 12 ymm accumulators, 2 weight vectors, the broadcast.
 * Compiled with -mavx2 -mavxvnni; called only on CPUs with AVX-VNNI. */
#include "cpu/cpu.h"

#include <immintrin.h>
#include <string.h>

#define MR QB_U8_MR_AVXVNNI
#define NR QB_U8_NR

void qb_u8_tile_avxvnni(int kq, const int8_t *u, size_t ldu, const int8_t *wp, int32_t acc_out[][QB_U8_NR])
{
    __m256i acc[MR][2];
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int k = 0; k < kq; k++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)wp);
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + 32));
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            int32_t quad;
            memcpy(&quad, u + r * ldu + 4 * (size_t)k, 4);
            const __m256i xb = _mm256_set1_epi32(quad);
            acc[r][0] = _mm256_dpbusd_avx_epi32(acc[r][0], xb, w0);
            acc[r][1] = _mm256_dpbusd_avx_epi32(acc[r][1], xb, w1);
        }
        wp += 4 * NR;
    }
    for (int r = 0; r < MR; r++) {
        _mm256_storeu_si256((__m256i *)acc_out[r], acc[r][0]);
        _mm256_storeu_si256((__m256i *)(acc_out[r] + 8), acc[r][1]);
    }
}
