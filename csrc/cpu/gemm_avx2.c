/* AVX2 + FMA register tile for the blocked FP32 GEMM (driver and design in gemm.c),
 * and the transposing w packer that the AVX-512 path shares.
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

/* dst rows i = 0..7 (stride ldd) <- column i of the 8 x 8 block at src (row stride lds). */
static void transpose_8x8(float *dst, size_t ldd, const float *src, size_t lds)
{
    __m256 r[8], t[8], s[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + i * lds);
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
        _mm256_storeu_ps(dst + i * ldd, _mm256_permute2f128_ps(s[i], s[i + 4], 0x20));
        _mm256_storeu_ps(dst + (i + 4) * ldd, _mm256_permute2f128_ps(s[i], s[i + 4], 0x31));
    }
}

void qb_gemm_f32_pack_w_avx2(float *wp, const float *w, size_t ldw, int n, int kc, int nr)
{
    int k = 0;
    if (n == nr) {
        for (; k + 8 <= kc; k += 8)
            for (int j = 0; j < nr; j += 8)
                transpose_8x8(wp + (size_t)k * nr + j, (size_t)nr, w + j * ldw + k, ldw);
    }
    /* A short panel at the end of N, or the last kc % 8 columns: element by element. */
    for (; k < kc; k++) {
        for (int j = 0; j < n; j++) wp[(size_t)k * nr + j] = w[j * ldw + k];
        for (int j = n; j < nr; j++) wp[(size_t)k * nr + j] = 0.0f;
    }
}

static const qb_gemm_f32_kernel avx2_kernel = {MR, NR, tile_6x16, qb_gemm_f32_pack_w_avx2};

void qb_linear_f32_avx2(float *y, const float *x, const float *w, const float *b, int M, int N,
                        int K)
{
    qb_gemm_f32_blocked(&avx2_kernel, y, x, w, b, M, N, K);
}
