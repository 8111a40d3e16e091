/* The machine's measured ceilings for the GEMM benchmark: one thread's rate of
 * independent AVX2 instructions with no memory traffic, for the instruction each
 * GEMM tile is built on:
 *   fp32: vfmadd231ps ymm, 8 multiply-adds each;
 *   int8 (s16 path): vpmaddwd ymm + vpaddd ymm, 16 multiply-adds per pair;
 *   int8 (u8 path): vpmaddubsw + vpmaddwd (by ones) + vpaddd, 32 per triple.
 * 12 accumulators hide the latencies, as in the tiles. The loops
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

/* The row operands of both integer loops: 6 per trip, all changing every trip (x
 * steps, and shuffles of it stand in for the tiles' broadcast loads), so no product
 * can be hoisted out of the loop and no accumulator feeds a multiply: the loops run
 * at the instructions' throughput, as the tiles do, not at their latency. */
#define ROW_OPERANDS(x)                                                                              \
    {x, _mm256_shuffle_epi32(x, 0x39), _mm256_shuffle_epi32(x, 0x4e), _mm256_shuffle_epi32(x, 0x93), \
     _mm256_shuffle_epi32(x, 0x1b), _mm256_shuffle_epi32(x, 0xb1)}

/* Both integer tiles' shape: 6 row operands x 2 weight vectors, 12 accumulators.
 * u8 = 0: the 16-bit tile, vpmaddwd + vpaddd (16 multiply-adds per vector);
 * u8 = 1: the u8 tile, vpmaddubsw + vpmaddwd by ones + vpaddd (32). Inlined into
 * one loop per kind, so u8 is a constant there. */
static inline __attribute__((always_inline)) int int_loop(long iters, int u8)
{
    __m256i acc[CHAINS];
    const __m256i w0 = u8 ? _mm256_set1_epi8(3) : _mm256_set1_epi16(3);
    const __m256i w1 = u8 ? _mm256_set1_epi8(-5) : _mm256_set1_epi16(-5);
    const __m256i ones = _mm256_set1_epi16(1), step = _mm256_set1_epi8(1);
    __m256i x = _mm256_set1_epi32(0x01020304);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_epi32(c);
    for (long i = 0; i < iters; i++) {
        x = _mm256_add_epi8(x, step);
        const __m256i xr[6] = ROW_OPERANDS(x);
#pragma GCC unroll 6
        for (int r = 0; r < 6; r++) {
            const __m256i p0 = u8 ? _mm256_madd_epi16(_mm256_maddubs_epi16(xr[r], w0), ones) : _mm256_madd_epi16(xr[r], w0);
            const __m256i p1 = u8 ? _mm256_madd_epi16(_mm256_maddubs_epi16(xr[r], w1), ones) : _mm256_madd_epi16(xr[r], w1);
            acc[2 * r] = _mm256_add_epi32(acc[2 * r], p0);
            acc[2 * r + 1] = _mm256_add_epi32(acc[2 * r + 1], p1);
        }
    }
    __m256i s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_epi32(s, acc[c]);
    return _mm256_cvtsi256_si32(s);
}

static __attribute__((noinline)) int madd_loop(long iters) { return int_loop(iters, 0); }
static __attribute__((noinline)) int maddubs_loop(long iters) { return int_loop(iters, 1); }

/* One thread's multiply-adds per second of an integer loop, macs per accumulator per trip. */
static double int_rate(int (*loop)(long), long iters, int macs)
{
    const double t0 = omp_get_wtime();
    volatile int sink = loop(iters);
    (void)sink;
    return (double)iters * CHAINS * macs / (omp_get_wtime() - t0);
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
