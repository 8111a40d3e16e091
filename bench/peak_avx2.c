/* The machine's ceilings for the GEMM benchmark: one thread's rate of independent
 * AVX2 instructions with no memory traffic, for the instructions each GEMM tile is
 * built on, as multiply-adds per second (an upper bound of the tile: it also loads,
 * adds and stores):
 *   fp32: vfmadd231ps ymm, 8 multiply-adds each;
 *   int8 (s16 path): vpmaddwd ymm, 16;
 *   int8 (u8 path): vpmaddubsw + vpmaddwd per 32, bounded by the slower of the two.
 * Twelve chains hide the latencies; each feeds itself, so nothing can be hoisted out
 * of the loop; the FMA's result is returned and the integer loops are volatile asm,
 * so nothing can be dropped. Compiled with -mavx2 -mfma. */
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

/* The integer tiles' multiplies, vpmaddwd and vpmaddubsw, as twelve chains that feed
 * themselves (a multiply whose operands never change could be hoisted out of the
 * loop): their throughput, the bound of any tile built on them. In asm: from C, GCC
 * keeps some of the twelve accumulators on the stack. */
#define CHAIN12(ins)                                                                              \
    ins " %[w], %%ymm0, %%ymm0\n\t" ins " %[w], %%ymm1, %%ymm1\n\t" ins " %[w], %%ymm2, %%ymm2\n\t"       \
    ins " %[w], %%ymm3, %%ymm3\n\t" ins " %[w], %%ymm4, %%ymm4\n\t" ins " %[w], %%ymm5, %%ymm5\n\t"       \
    ins " %[w], %%ymm6, %%ymm6\n\t" ins " %[w], %%ymm7, %%ymm7\n\t" ins " %[w], %%ymm8, %%ymm8\n\t"       \
    ins " %[w], %%ymm9, %%ymm9\n\t" ins " %[w], %%ymm10, %%ymm10\n\t" ins " %[w], %%ymm11, %%ymm11\n\t"
#define INT_CHAIN(NAME, INS)                                                                      \
    static __attribute__((noinline)) int NAME(long iters)                                        \
    {                                                                                            \
        const __m256i w = _mm256_set1_epi8(3);                                                   \
        for (long i = 0; i < iters; i++)                                                         \
            __asm__ volatile(CHAIN12(INS)::[w] "x"(w)                                             \
                             : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",   \
                               "xmm8", "xmm9", "xmm10", "xmm11");                                 \
        return 0;                                                                                \
    }
INT_CHAIN(madd_chain, "vpmaddwd")
INT_CHAIN(maddubs_chain, "vpmaddubsw")

/* One thread's instructions per second of a chain loop. */
static double rate(int (*loop)(long), long iters)
{
    const double t0 = omp_get_wtime();
    loop(iters);
    return (double)iters * CHAINS / (omp_get_wtime() - t0);
}

double qb_bench_peak_fma(long iters)
{
    const double t0 = omp_get_wtime();
    volatile float sink = fma_loop(iters);
    (void)sink;
    return (double)iters * CHAINS * 8 / (omp_get_wtime() - t0);
}

/* The static INT8 tile: one vpmaddwd per 16 multiply-adds. */
double qb_bench_peak_madd16(long iters) { return 16 * rate(madd_chain, iters); }

/* The u8 tile: a vpmaddubsw and a vpmaddwd per 32 multiply-adds; the slower of the
 * two bounds it (were they to share ports, the tile would reach less). */
double qb_bench_peak_maddubs(long iters)
{
    const double a = rate(maddubs_chain, iters), b = rate(madd_chain, iters);
    return 32 * (a < b ? a : b);
}
