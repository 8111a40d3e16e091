/* AVX2 + FMA register tile for the blocked FP32 GEMM (driver and design in gemm.c),
 * and the transposing packers that the AVX-512 path shares.
 *
 * Tile 6 x 16: 12 ymm accumulators (6 rows x 2 vectors of 8 columns), 2 registers
 * for the w row and 1 for the broadcast x value, 15 of the 16. Per k: 2 loads, 6
 * broadcasts, 12 independent FMAs, more than the 2 FMA ports x 4 cycles of latency
 * need to stay busy. Compiled with -mavx2 -mfma; called only after a CPUID check. */
#include "cpu/cpu.h"

#include <immintrin.h>

#define MR 6
#define NR 16

static void tile_6x16(int kc, const float *xp, const float *wp, float *c, size_t ldc)
{
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        /* c is read only after the k loop: fetch its lines meanwhile. */
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
    }
    for (int k = 0; k < kc; k++) {
        const __m256 w0 = _mm256_loadu_ps(wp), w1 = _mm256_loadu_ps(wp + 8);
#pragma GCC unroll 6
        for (int r = 0; r < MR; r++) {
            const __m256 xr = _mm256_broadcast_ss(xp + r);
            acc[r][0] = _mm256_fmadd_ps(xr, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xr, w1, acc[r][1]);
        }
        xp += MR;
        wp += NR;
    }
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
        _mm256_storeu_ps(c + r * ldc, _mm256_add_ps(_mm256_loadu_ps(c + r * ldc), acc[r][0]));
        _mm256_storeu_ps(c + r * ldc + 8, _mm256_add_ps(_mm256_loadu_ps(c + r * ldc + 8), acc[r][1]));
    }
}

/* r[i] <- column i of the 8 x 8 block held in r (rows r[0..7]), in registers. */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8])
{
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);     /* a0 b0 a1 b1 | a4 b4 a5 b5 */
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]); /* a2 b2 a3 b3 | a6 b6 a7 b7 */
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);     /* a0 b0 c0 d0 | a4 .. d4 */
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee); /* column 1 | column 5 */
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

void qb_gemm_f32_pack_w_avx2(float *wp, const float *w, size_t ldw, int n, int kc, int nr)
{
    int k = 0;
    if (n == nr) {
        for (; k + 8 <= kc; k += 8) {
            for (int j = 0; j < nr; j += 8) {
                __m256 r[8];
                for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(w + (j + i) * ldw + k);
                transpose8(r);
                for (int i = 0; i < 8; i++) _mm256_storeu_ps(wp + (size_t)(k + i) * nr + j, r[i]);
            }
        }
    }
    /* A short panel at the end of N, or the last kc % 8 columns: element by element. */
    for (; k < kc; k++) {
        for (int j = 0; j < n; j++) wp[(size_t)k * nr + j] = w[j * ldw + k];
        for (int j = n; j < nr; j++) wp[(size_t)k * nr + j] = 0.0f;
    }
}

void qb_gemm_f32_pack_x_avx2(float *xp, const float *x, size_t ldx, int m, int kc, int mr)
{
    int k = 0;
    /* 8 k at a time: the m <= 8 rows (zero rows below) transposed in registers; row k
     * of the panel is the first mr lanes of vector k. Each 8-lane store also writes
     * 8 - mr zeros past its row, which the next store (k + 1) overwrites; the last
     * one's spill lands in the caller's slack (QB_GEMM_PACK_X_SLACK). */
    for (; k + 8 <= kc; k += 8) {
        __m256 r[8];
        for (int i = 0; i < 8; i++) r[i] = i < m ? _mm256_loadu_ps(x + i * ldx + k) : _mm256_setzero_ps();
        transpose8(r);
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(xp + (size_t)(k + i) * mr, r[i]);
    }
    for (; k < kc; k++) {
        for (int i = 0; i < m; i++) xp[(size_t)k * mr + i] = x[i * ldx + k];
        for (int i = m; i < mr; i++) xp[(size_t)k * mr + i] = 0.0f;
    }
}

static const qb_gemm_f32_kernel avx2_kernel = {MR, NR, tile_6x16, qb_gemm_f32_pack_w_avx2,
                                             qb_gemm_f32_pack_x_avx2};

void qb_gemm_f32_avx2(const qb_gemm_f32 *g) { qb_gemm_f32_blocked(&avx2_kernel, g); }
