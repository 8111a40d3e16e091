/* The 256-bit tiles of the dynamic INT8 GEMM (AVX2 and AVX-VNNI), the driver every u8
 * tile runs under (contract and layout in gemm_u8.c), and the AVX2 activation
 * quantizers (7-bit per token, and static 8-bit).
 *
 * One tile loop, two dot steps for 8 columns x one k quad:
 *   AVX2     vpmaddubsw multiplies the row's 4 broadcast u8 by the columns' s8 and
 *            sums pairs into s16 (exact for 7-bit u, see gemm_u8.c), vpmaddwd with
 *            ones sums the two pairs into s32, vpaddd accumulates: 3 instructions for
 *            32 multiply-adds, where the 16-bit path (gemm_s8_avx2.c) needs 4 for 16;
 *   AVX-VNNI vpdpbusd (VEX) does the same exactly in one instruction.
 * Tiles MR x 16: AVX2 4 x 16, 8 accumulators (with 6 rows the two products' temporaries
 * and the ones push GCC to keep accumulators on the stack, objdump showed 9 spilled
 * per k quad); AVX-VNNI 6 x 16, 12 accumulators, 2 weight vectors and the broadcast.
 * Threads split the (row block, column panel) grid statically, in groups of row
 * blocks (qb_tile_order).
 * Compiled with -mavx2 -mfma -ffp-contract=off, the VNNI tile with
 * target("avxvnni") on top; each called only after a CPUID check. */
#include "cpu/cpu.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define NR QB_U8_NR

/* The MR x 16 tile around a dot step DOT(acc, xb, w): acc += per s32 lane, the four
 * products of xb's u8 and w's s8 in that lane. */
#define TILE_X16(NAME, MR, DOT)                                                                            \
    void NAME(int kq, const uint8_t *u, size_t ldu, const int8_t *wp, int32_t acc_out[][QB_U8_NR])          \
    {                                                                                                      \
        __m256i acc[MR][2];                                                                                \
        for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();                      \
        for (int k = 0; k < kq; k++) {                                                                     \
            const __m256i w0 = _mm256_loadu_si256((const __m256i *)wp);                                    \
            const __m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + 32));                             \
            _Pragma("GCC unroll 8") for (int r = 0; r < MR; r++)                                           \
            {                                                                                              \
                int32_t quad;                                                                              \
                memcpy(&quad, u + r * ldu + 4 * (size_t)k, 4);                                             \
                const __m256i xb = _mm256_set1_epi32(quad);                                                \
                acc[r][0] = DOT(acc[r][0], xb, w0);                                                        \
                acc[r][1] = DOT(acc[r][1], xb, w1);                                                        \
            }                                                                                              \
            wp += 4 * NR;                                                                                  \
        }                                                                                                  \
        for (int r = 0; r < MR; r++) {                                                                     \
            _mm256_storeu_si256((__m256i *)acc_out[r], acc[r][0]);                                         \
            _mm256_storeu_si256((__m256i *)(acc_out[r] + 8), acc[r][1]);                                   \
        }                                                                                                  \
    }

static inline __m256i dot_avx2(__m256i acc, __m256i xb, __m256i w)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(xb, w), _mm256_set1_epi16(1)));
}

__attribute__((target("avxvnni"))) static inline __m256i dot_avxvnni(__m256i acc, __m256i xb, __m256i w)
{
    return _mm256_dpbusd_avx_epi32(acc, xb, w);
}

TILE_X16(qb_u8_tile_avx2, QB_U8_MR_AVX2, dot_avx2)
__attribute__((target("avxvnni"))) TILE_X16(qb_u8_tile_avxvnni, QB_U8_MR_AVXVNNI, dot_avxvnni)

void qb_gemm_u8(const qb_u8_kernel *kern, float *y, const qb_qinput *x, const qb_u8_packed *wp, const float *sw,
                const float *b, int N, int gelu)
{
    const int M = x->M;
    if (M <= 0 || N <= 0) return;
    const int mr = kern->mr, kq = wp->Kq / 4;
    const int row_blocks = (M + mr - 1) / mr, panels = (N + NR - 1) / NR;
    const size_t ldu = (size_t)x->ldu;
    const long tiles = (long)row_blocks * panels;
#pragma omp parallel for schedule(static) if ((double)M * N * wp->K >= 32768.0)
    for (long t = 0; t < tiles; t++) {
        int rb, pn;
        qb_tile_order(t, row_blocks, panels, &rb, &pn);
        const int m0 = rb * mr, n0 = pn * NR;
        int32_t acc[QB_U8_MR_MAX][NR];
        kern->tile(kq, x->u + m0 * ldu, ldu, wp->data + (size_t)pn * kq * 4 * NR, acc);
        qb_q8_epilogue_avx2(y, N, m0, M - m0 < mr ? M - m0 : mr, n0, acc, wp->colsum + (size_t)pn * NR, x->zp,
                            x->scale, sw, b, gelu);
    }
}

/* 16 int32 lanes in [-128, 127] (two vectors) -> 16 bytes in order: the packs work
 * per 128-bit lane, the permute restores the order. */
static inline __m128i pack16(__m256i a, __m256i b)
{
    const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
    return _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
}

/* The static 8-bit quantizer of fake_quant.c (qb_quantize_tensor_s8), the same way. */
void qb_quantize_s8_avx2(int8_t *q, const float *x, size_t n, float inv)
{
    const __m256 inv8 = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i v[2];
        for (int h = 0; h < 2; h++) {
            const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * h), inv8),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v[h] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi));
        }
        _mm_storeu_si128((__m128i *)(q + i), pack16(v[0], v[1]));
    }
    for (; i < n; i++) q[i] = (int8_t)qb_minf(qb_maxf(rintf(x[i] * inv), -128.0f), 127.0f);
}

/* The 7-bit quantizer of gemm_u8.c, 8 lanes at a time: the row's min and max (exact in
 * any order), then the scalar code's operations lane by lane (vroundps to nearest
 * even is rintf; maxps / minps take the second operand on NaN as qb_maxf / qb_minf
 * do). */
void qb_quantize_row_u7_avx2(uint8_t *u, int ldu, float *scale, int32_t *zp, const float *x, int K)
{
    __m256 lo8 = _mm256_setzero_ps(), hi8 = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        const __m256 v = _mm256_loadu_ps(x + k);
        lo8 = _mm256_min_ps(v, lo8), hi8 = _mm256_max_ps(v, hi8);
    }
    float los[8], his[8], lo = 0.0f, hi = 0.0f, inv;
    _mm256_storeu_ps(los, lo8), _mm256_storeu_ps(his, hi8);
    for (int i = 0; i < 8; i++) lo = qb_minf(los[i], lo), hi = qb_maxf(his[i], hi);
    for (; k < K; k++) lo = qb_minf(x[k], lo), hi = qb_maxf(x[k], hi);
    *scale = qb_u7_row_params(lo, hi, &inv, zp);
    const float zf = (float)*zp;
    const __m256 inv8 = _mm256_set1_ps(inv), z8 = _mm256_set1_ps(zf);
    const __m256 zero = _mm256_setzero_ps(), top = _mm256_set1_ps(127.0f);
    for (k = 0; k + 16 <= K; k += 16) {
        __m256i v[2];
        for (int h = 0; h < 2; h++) {
            const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * h), inv8),
                                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            v[h] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(r, z8), zero), top));
        }
        _mm_storeu_si128((__m128i *)(u + k), pack16(v[0], v[1]));
    }
    for (; k < K; k++) u[k] = (uint8_t)qb_minf(qb_maxf(rintf(x[k] * inv) + zf, 0.0f), 127.0f);
    memset(u + K, *zp, (size_t)(ldu - K));
}
