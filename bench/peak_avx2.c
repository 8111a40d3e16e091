/* The machine's measured ceilings for the GEMM benchmark: one thread's rate of
 * independent AVX2 instructions with no memory traffic, for the instruction each
 * GEMM tile is built on:
 *   fp32: vfmadd231ps ymm, 8 multiply-adds each;
 *   int8 (s16 path): vpmaddwd ymm + vpaddd ymm, 16 multiply-adds per pair;
 *   int8 (u8 path): vpmaddubsw + vpmaddwd (by ones) + vpaddd, 32 per triple.
 * Enough accumulators hide the latencies, as in the tiles. The loops
 * live in their own functions without calls, so the chains stay in registers, and
 * their results are returned, so they cannot be dropped. The result is
 * multiply-adds per second of one thread; compiled with -mavx2 -mfma. */
#include "bench.h"

#include <immintrin.h>
#include <omp.h>

#define CHAINS 12

static __attribute__((noinline)) float fma_loop(long iters)
{
    __m256 acc[CHAINS];
    const __m256 a = _mm256_set1_ps(1.0000001f), b = _mm256_set1_ps(0.9999999f);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_ps((float)c);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
    __m256 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_ps(s, acc[c]);
    return _mm256_cvtss_f32(s);
}

/* The integer tiles' inner step: rows x 2 weight vectors, the rows broadcast from
 * memory (vpbroadcastd from L1, a load-port operation) and changing every trip, as in
 * the tiles, so no product can be hoisted out of the loop and no accumulator feeds a
 * multiply: the loops run at the instructions' throughput. 4 rows, 8 accumulators
 * (1-cycle vpaddd chains need few). Written in asm: from C, GCC stored some
 * accumulators to the stack every trip, which made the "ceiling" lower than the
 * tiles' own rate (the static INT8 GEMM measured 108-136 % of it). */
#define ROW_WORDS 1024  /* 4 KB of row operands, 4 per trip, cycled through */
#define IROWS 4
/* acc += the row's products with w: s16 (vpmaddwd) or u8 (vpmaddubsw, then vpmaddwd by ones) */
#define S16_ROW(off, a, b)                                                   \
    "vpbroadcastd " off "(%[x]), %%ymm12\n\t"                               \
    "vpmaddwd %[w0], %%ymm12, %%ymm13\n\t"                                  \
    "vpmaddwd %[w1], %%ymm12, %%ymm14\n\t"                                  \
    "vpaddd %%ymm13, %[" a "], %[" a "]\n\t"                                \
    "vpaddd %%ymm14, %[" b "], %[" b "]\n\t"
#define U8_ROW(off, a, b)                                                    \
    "vpbroadcastd " off "(%[x]), %%ymm12\n\t"                               \
    "vpmaddubsw %[w0], %%ymm12, %%ymm13\n\t"                                \
    "vpmaddubsw %[w1], %%ymm12, %%ymm14\n\t"                                \
    "vpmaddwd %[ones], %%ymm13, %%ymm13\n\t"                                \
    "vpmaddwd %[ones], %%ymm14, %%ymm14\n\t"                                \
    "vpaddd %%ymm13, %[" a "], %[" a "]\n\t"                                \
    "vpaddd %%ymm14, %[" b "], %[" b "]\n\t"
#define INT_LOOP(NAME, ROW)                                                                              \
    static __attribute__((noinline)) int NAME(long iters)                                                \
    {                                                                                                    \
        int32_t rows[ROW_WORDS];                                                                         \
        for (int i = 0; i < ROW_WORDS; i++) rows[i] = 0x01020304 + i;                                   \
        const __m256i w0 = _mm256_set1_epi8(3), w1 = _mm256_set1_epi8(-5), ones = _mm256_set1_epi16(1); \
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;  \
        for (long i = 0; i < iters; i++) {                                                               \
            const int32_t *x = rows + (i & (ROW_WORDS / 4 - 1)) * 4;                                     \
            __asm__(ROW("0", "a0", "a1") ROW("4", "a2", "a3") ROW("8", "a4", "a5") ROW("12", "a6", "a7")  \
                    : [a0] "+x"(a0), [a1] "+x"(a1), [a2] "+x"(a2), [a3] "+x"(a3), [a4] "+x"(a4),         \
                      [a5] "+x"(a5), [a6] "+x"(a6), [a7] "+x"(a7)                                        \
                    : [x] "r"(x), [w0] "x"(w0), [w1] "x"(w1), [ones] "x"(ones), "m"(*(const int32_t(*)[4])x) \
                    : "xmm12", "xmm13", "xmm14");                                                        \
        }                                                                                                \
        const __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)), \
                                           _mm256_add_epi32(_mm256_add_epi32(a4, a5), _mm256_add_epi32(a6, a7))); \
        return _mm256_cvtsi256_si32(s);                                                                  \
    }
INT_LOOP(madd_loop, S16_ROW)
INT_LOOP(maddubs_loop, U8_ROW)

/* One thread's multiply-adds per second of an integer loop, macs per accumulator per trip. */
static double int_rate(int (*loop)(long), long iters, int macs)
{
    const double t0 = omp_get_wtime();
    volatile int sink = loop(iters);
    (void)sink;
    return (double)iters * 2 * IROWS * macs / (omp_get_wtime() - t0);
}

double qb_bench_peak_fma(long iters)
{
    const double t0 = omp_get_wtime();
    volatile float sink = fma_loop(iters);
    (void)sink;
    return (double)iters * CHAINS * 8 / (omp_get_wtime() - t0);
}

double qb_bench_peak_madd16(long iters) { return int_rate(madd_loop, iters, 16); }

double qb_bench_peak_maddubs(long iters) { return int_rate(maddubs_loop, iters, 32); }
