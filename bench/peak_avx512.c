/* The ceilings of the AVX-512 and VNNI tiles, as peak_avx2.c measures the AVX2 ones:
 * one thread's rate of independent instructions with no memory traffic, enough
 * accumulator chains to hide the latencies, the result returned so nothing is dropped:
 *   fp32 on AVX-512:     vfmadd231ps zmm, 16 multiply-adds each;
 *   int8 u8 x s8, VNNI:  vpdpbusd zmm (AVX-512 VNNI), 64 each, or ymm (AVX-VNNI), 32.
 * Each function is compiled for its instructions (target attributes) and only called
 * when the CPU has them (bench/gemm.c picks the ceiling of the tile it runs). */
#include "bench.h"

#include <immintrin.h>
#include <omp.h>

#define CHAINS 12

__attribute__((target("avx512f"), noinline)) static float fma512_loop(long iters)
{
    __m512 acc[CHAINS];
    const __m512 a = _mm512_set1_ps(1.0000001f), b = _mm512_set1_ps(0.9999999f);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps((float)c);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
    __m512 s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, acc[c]);
    return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx512f,avx512vnni"), noinline)) static int dpbusd512_loop(long iters)
{
    __m512i acc[CHAINS];
    const __m512i u = _mm512_set1_epi8(3), w = _mm512_set1_epi8(-5);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_epi32(c);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_dpbusd_epi32(acc[c], u, w);
    }
    __m512i s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_epi32(s, acc[c]);
    return _mm512_reduce_add_epi32(s);
}

__attribute__((target("avx2,avxvnni"), noinline)) static int dpbusd256_loop(long iters)
{
    __m256i acc[CHAINS];
    const __m256i u = _mm256_set1_epi8(3), w = _mm256_set1_epi8(-5);
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_set1_epi32(c);
    for (long i = 0; i < iters; i++) {
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm256_dpbusd_avx_epi32(acc[c], u, w);
    }
    __m256i s = acc[0];
    for (int c = 1; c < CHAINS; c++) s = _mm256_add_epi32(s, acc[c]);
    return _mm256_extract_epi32(s, 0);
}

double qb_bench_peak_fma512(long iters)
{
    const double t0 = omp_get_wtime();
    volatile float sink = fma512_loop(iters);
    (void)sink;
    return (double)iters * CHAINS * 16 / (omp_get_wtime() - t0);
}

double qb_bench_peak_dpbusd(long iters, bool zmm)
{
    const double t0 = omp_get_wtime();
    volatile int sink = zmm ? dpbusd512_loop(iters) : dpbusd256_loop(iters);
    (void)sink;
    return (double)iters * CHAINS * (zmm ? 64 : 32) / (omp_get_wtime() - t0);
}
