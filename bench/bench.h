/* qbert-bench subcommands. */
#ifndef QBERT_BENCH_H
#define QBERT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

int qb_bench_latency(int argc, char **argv);
int qb_bench_gemm(int argc, char **argv);
int qb_bench_train(int argc, char **argv);
/* kernels.c, in CUDA builds only */
int qb_bench_kernels(int argc, char **argv);

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
/* A subcommand's own options: 1 if `name` is one (then *ok says whether its value,
 * NULL when missing, was good), else 0. */
typedef int (*qb_bench_own_option)(const char *name, const char *value, void *ctx, int *ok);
/* Reads argv (every option takes a value; --help prints usage to stdout): the common
 * ones into c, the others through own(ctx). Returns -1 to go on, or the exit status:
 * 0 after --help, 2 for an unknown option or a bad or missing value (said on stderr,
 * naming qbert-bench cmd). own may be NULL (no options of its own). */
int qb_bench_options(const char *cmd, int argc, char **argv, qb_bench_common *c, void (*usage)(FILE *),
                     qb_bench_own_option own, void *ctx);

struct cJSON;
/* The end of a run: root written to json_path (when given and rc is 0), then freed;
 * returns rc, or 1 when the write failed (said on stderr, naming qbert-bench cmd). */
int qb_bench_finish(const char *cmd, int rc, const char *json_path, struct cJSON *root);

/* peak_avx2.c: one thread's multiply-adds per second over `iters` loop trips of
 * independent AVX2 FMAs (fp32), vpmaddwd + vpaddd pairs (int8 via s16) or
 * vpmaddubsw + vpmaddwd + vpaddd triples (int8 via u8). */
double qb_bench_peak_fma(long iters);
double qb_bench_peak_madd16(long iters);
double qb_bench_peak_maddubs(long iters);
/* peak_avx512.c, the same for the AVX-512 FP32 GEMM (vfmadd231ps zmm) and the VNNI
 * u8 tiles (vpdpbusd: zmm for AVX-512 VNNI, ymm for AVX-VNNI); only on CPUs with them. */
double qb_bench_peak_fma512(long iters);
double qb_bench_peak_dpbusd(long iters, bool zmm);

#endif
