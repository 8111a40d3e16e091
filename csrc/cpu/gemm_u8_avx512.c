/* AVX-512 VNNI tile of the dynamic INT8 GEMM (contract and layout in gemm_u8.c,
 * driver in gemm_u8_avx2.c): one zmm holds a panel's 16 columns x 4 k, and vpdpbusd
 * adds a row's 4 broadcast u8 times each column's 4 s8 to its s32 lane, exactly: 64
 * multiply-adds per instruction.
 * Tile 8 x 16: 8 zmm accumulators; 8 rows match BERT's M = B*T, a multiple of 8.
 * Compiled with -mavx512f -mavx512bw -mavx512vnni; called only on CPUs with them. */
#include "cpu/cpu.h"

#include <immintrin.h>
#include <string.h>

#define MR QB_U8_MR_AVX512
#define NR QB_U8_NR

void qb_u8_tile_avx512vnni(int kq, const uint8_t *u, size_t ldu, const int8_t *wp, int32_t acc_out[][QB_U8_NR])
{
    __m512i acc[MR];
    for (int r = 0; r < MR; r++) acc[r] = _mm512_setzero_si512();
    for (int k = 0; k < kq; k++) {
        const __m512i w = _mm512_loadu_si512(wp);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            int32_t quad;
            memcpy(&quad, u + r * ldu + 4 * (size_t)k, 4);
            acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(quad), w);
        }
        wp += 4 * NR;
    }
    for (int r = 0; r < MR; r++) _mm512_storeu_si512(acc_out[r], acc[r]);
}
