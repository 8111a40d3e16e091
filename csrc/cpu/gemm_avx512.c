/* AVX-512 register tile for the blocked FP32 GEMM (driver and design in gemm.c).
 *
 * Tile 8 x 32: 16 zmm accumulators (8 rows x 2 vectors of 16 columns) of the 32
 * registers. Per k: 2 loads, 8 broadcasts, 16 independent FMAs, enough for 2 FMA
 * ports x 4 cycles of latency.
 * 8 rows rather than 12-14: BERT's M = B*T is a multiple of 8, so no rows of the
 * tile are wasted there. x and w are packed by the AVX2 packers. Compiled with
 * -mavx512f -mavx512bw -mavx512vl -mfma; called only after a CPUID check. */
#include "cpu/cpu.h"

#include <immintrin.h>

#define MR 8
#define NR 32

static void tile_8x32(int kc, const float *xp, const float *wp, float *c, size_t ldc)
{
    __m512 acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (int k = 0; k < kc; k++) {
        const __m512 w0 = _mm512_loadu_ps(wp), w1 = _mm512_loadu_ps(wp + 16);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512 xr = _mm512_set1_ps(xp[r]);
            acc[r][0] = _mm512_fmadd_ps(xr, w0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(xr, w1, acc[r][1]);
        }
        xp += MR;
        wp += NR;
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        _mm512_storeu_ps(c + r * ldc, _mm512_add_ps(_mm512_loadu_ps(c + r * ldc), acc[r][0]));
        _mm512_storeu_ps(c + r * ldc + 16, _mm512_add_ps(_mm512_loadu_ps(c + r * ldc + 16), acc[r][1]));
    }
}

static const qb_gemm_f32_kernel avx512_kernel = {MR, NR, tile_8x32, qb_gemm_f32_pack_w_avx2,
                                               qb_gemm_f32_pack_x_avx2};

void qb_gemm_f32_avx512(const qb_gemm_f32 *g) { qb_gemm_f32_blocked(&avx512_kernel, g); }
