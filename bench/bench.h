/* qbert-bench subcommands. */
#ifndef QBERT_BENCH_H
#define QBERT_BENCH_H

#include <stddef.h>

int qb_bench_latency(int argc, char **argv);
int qb_bench_gemm(int argc, char **argv);

/* util.c: "1,2,3" -> out (each 1..100000; returns the count, -1 if malformed);
 * an integer >= lo (returns 0 if malformed); the CPU's model name. */
int qb_bench_parse_list(const char *s, int *out, int cap);
int qb_bench_parse_int(const char *s, int lo, int *out);
void qb_bench_cpu_name(char *buf, size_t cap);
/* The options every subcommand takes: --json FILE, --warmup N, --runs N, --threads N. */
typedef struct {
    int warmup, runs, threads;
    const char *json;
} qb_bench_common;
/* 1 if `name` is one of them (then *ok says whether its value was good), else 0. */
int qb_bench_common_option(const char *name, const char *value, qb_bench_common *c, int *ok);

/* peak_avx2.c: one thread's multiply-adds per second over `iters` loop trips of
 * independent AVX2 FMAs (fp32), vpmaddwd + vpaddd pairs (int8 via s16) or
 * vpmaddubsw + vpmaddwd + vpaddd triples (int8 via u8). */
double qb_bench_peak_fma(long iters);
double qb_bench_peak_madd16(long iters);
double qb_bench_peak_maddubs(long iters);

#endif
