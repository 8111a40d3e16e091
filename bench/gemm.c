/* qbert-bench gemm: the CPU GEMM kernels at BERT shapes, FP32 (qb_cpu_linear), INT8
 * with per-token activations (qb_gemm_u8, the fastest u8 tile of this CPU), INT8 with
 * a static activation scale (qb_cpu_gemm_s8, the exact 16-bit tile) and W4A8
 * (qb_gemm_s4_avx2, group 64, on the same per-token activations), the low-bit ones
 * with weights packed once beforehand, each as multiply-adds per second and as a
 * fraction of the machine's measured ceiling (peak_avx2.c, peak_avx512.c: the rate of
 * the multiplies of the tile each path runs, with no memory traffic, summed over the
 * threads: an upper bound; W4A8 against the AVX2 u8 one, whose instructions it runs,
 * plus its unpacking). The per-token quantization of
 * x into a qb_qinput (allocation included, as a Linear without a shared input does
 * it) is timed on its own.
 * Inputs are random; each point is the median of `runs` timed calls after `warmup`
 * untimed ones. */
#include "bench.h"
#include "cpu/cpu.h"
#include "qbert/metrics.h"
#include "qbert/quant.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert-bench gemm [options]\n"
            "  --m LIST       rows M (tokens = batch x sequence; default 128,4096)\n"
            "  --warmup N     untimed calls per point (default 3)\n"
            "  --runs N       timed calls per point (default 10)\n"
            "  --threads N    OpenMP threads (default: all cores)\n"
            "  --json FILE    write the table as JSON\n"
            "shapes: (N, K) = (768, 768), (3072, 768), (768, 3072): BERT-base's Linear layers\n");
}

#define GROUP 64  /* INT4 group size */

typedef struct {
    float *y, *x, *w, *b, *sx, *sw;
    int8_t *xq, *wq, *w4;
    qb_qinput xu;
    float *sw4;
    const qb_u8_kernel *kern;
    qb_u8_packed wu;
    qb_s8_packed wp;
    qb_s4_packed wp4;
    int M, N, K;
} problem;

/* What a Linear does with an input no LayerNorm quantized: allocate, quantize, free. */
static void quantize_x(const problem *p)
{
    qb_qinput a;
    if (qb_qinput_alloc(&a, p->M, p->K)) return;
    qb_qinput_quantize(&a, p->x);
    qb_qinput_free(&a);
}

static double median_ms(int warmup, int runs, int kind, problem *p)
{
    double *t = malloc((size_t)runs * sizeof *t);
    if (!t) return -1.0;
    for (int r = -warmup; r < runs; r++) {
        const double t0 = omp_get_wtime();
        if (kind == 0)
            qb_cpu_linear(p->y, p->x, p->w, p->b, p->M, p->N, p->K);
        else if (kind == 1)
            qb_gemm_u8(p->kern, p->y, &p->xu, &p->wu, p->sw, p->b, p->N, 0);
        else if (kind == 2)
            qb_cpu_gemm_s8(p->y, p->xq, p->sx, p->wq, &p->wp, p->sw, p->b, p->M, p->N, p->K, 0);
        else if (kind == 3)
            qb_gemm_s4_avx2(p->y, &p->xu, &p->wp4, p->b, p->N);
        else
            quantize_x(p);
        if (r >= 0) t[r] = 1e3 * (omp_get_wtime() - t0);
    }
    qb_latency_stats s;
    const qb_status st = qb_latency_compute(t, runs, &s);
    free(t);
    return st ? -1.0 : s.median;
}

typedef struct {
    int ms[16], n_m;
} gemm_options;

static int own_option(const char *name, const char *value, void *ctx, int *ok)
{
    gemm_options *g = ctx;
    if (strcmp(name, "--m") != 0) return 0;
    *ok = value && (g->n_m = qb_bench_parse_list(value, g->ms, 16)) > 0;
    return 1;
}

int qb_bench_gemm(int argc, char **argv)
{
    gemm_options g = {{128, 4096}, 2};
    qb_bench_common o = {.warmup = 3, .runs = 10};
    const int parsed = qb_bench_options("gemm", argc, argv, &o, usage, own_option, &g);
    if (parsed >= 0) return parsed;
    const int *ms = g.ms, n_m = g.n_m;
    const int warmup = o.warmup, runs = o.runs;
    const char *json_path = o.json;
    if (o.threads > 0) omp_set_num_threads(o.threads);
    if (qb_cpu_isa() == QB_ISA_SCALAR) {
        fprintf(stderr, "qbert-bench gemm: needs the AVX2 path (this CPU lacks it, or QBERT_ISA=scalar)\n");
        return 1;
    }
    const int nt = omp_get_max_threads();
    const qb_u8_kernel *kern = qb_u8_kernel_best();
    /* each path against the instructions of the tile it runs (peak_avx2.c, peak_avx512.c) */
    const bool fma512 = qb_cpu_isa() == QB_ISA_AVX512, vnni512 = strcmp(kern->name, "avx512-vnni") == 0;
    const bool vnni = vnni512 || strcmp(kern->name, "avx-vnni") == 0;
    double peak_f32 = 0, peak_s8 = 0, peak_u8 = 0, peak_s4 = 0;
    const long iters = 20000000;
    for (int rep = 0; rep < 3; rep++) {  /* the best of three: a busy machine only lowers a rate */
        double f32 = 0, s8 = 0, u8 = 0, s4 = 0;
#pragma omp parallel reduction(+ : f32, s8, u8, s4)
        {
            f32 += fma512 ? qb_bench_peak_fma512(iters) : qb_bench_peak_fma(iters);
            s8 += qb_bench_peak_madd16(iters);
            s4 += qb_bench_peak_maddubs(iters);  /* the W4A8 tile is AVX2 u8 */
            u8 += vnni ? qb_bench_peak_dpbusd(iters, vnni512) : 0;
        }
        peak_f32 = fmax(peak_f32, f32), peak_s8 = fmax(peak_s8, s8), peak_u8 = fmax(peak_u8, u8);
        peak_s4 = fmax(peak_s4, s4);
    }
    if (!vnni) peak_u8 = peak_s4;
    char cpu[256];
    qb_bench_cpu_name(cpu, sizeof cpu);
    printf("qbert-bench gemm: %s | %d threads | GEMM %s | dynamic INT8 tile %s\n", cpu, nt,
           qb_isa_name(qb_cpu_isa()), kern->name);
    printf("measured ceilings, each tile's multiplies with no memory traffic (G multiply-adds/s): fp32 %s %.1f, "
           "int8 dynamic %s %.1f, int8 static vpmaddwd %.1f, int4 vpmaddubsw %.1f\n\n",
           fma512 ? "vfmadd zmm" : "vfmadd ymm", peak_f32 / 1e9, vnni512 ? "vpdpbusd zmm" : vnni ? "vpdpbusd ymm"
           : "vpmaddubsw", peak_u8 / 1e9, peak_s8 / 1e9, peak_s4 / 1e9);
    printf("%5s %5s %5s | %8s %7s %5s | %8s %7s %5s %6s | %8s %7s %5s %6s | %8s %7s %5s %6s | %8s\n", "M", "N", "K",
           "fp32 ms", "GMAC/s", "%peak", "dyn ms", "GMAC/s", "%peak", "x fp32", "stat ms", "GMAC/s", "%peak",
           "x fp32", "int4 ms", "GMAC/s", "%peak", "x fp32", "quant ms");
    cJSON *root = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(root, "results");
    cJSON_AddStringToObject(root, "cpu", cpu);
    cJSON_AddStringToObject(root, "isa", qb_isa_name(qb_cpu_isa()));
    cJSON_AddNumberToObject(root, "threads", nt);
    cJSON_AddNumberToObject(root, "peak_fp32_macs_per_s", peak_f32);
    cJSON_AddStringToObject(root, "int8_dynamic_tile", kern->name);
    cJSON_AddNumberToObject(root, "peak_int8_u8_macs_per_s", peak_u8);
    cJSON_AddNumberToObject(root, "peak_int8_s16_macs_per_s", peak_s8);
    cJSON_AddNumberToObject(root, "peak_int4_u8_avx2_macs_per_s", peak_s4);
    static const int shapes[][2] = {{768, 768}, {3072, 768}, {768, 3072}};
    qb_rng rng;
    qb_rng_init(&rng, 42);
    int rc = 0;
    for (int mi = 0; mi < n_m && !rc; mi++) {
        for (int si = 0; si < 3 && !rc; si++) {
            problem p = {.M = ms[mi], .N = shapes[si][0], .K = shapes[si][1]};
            const size_t mk = (size_t)p.M * p.K, nk = (size_t)p.N * p.K;
            p.y = qb_malloc((size_t)p.M * p.N * sizeof *p.y), p.x = qb_malloc(mk * sizeof *p.x);
            p.w = qb_malloc(nk * sizeof *p.w), p.b = qb_malloc((size_t)p.N * sizeof *p.b);
            p.sx = qb_malloc((size_t)p.M * sizeof *p.sx), p.sw = qb_malloc((size_t)p.N * sizeof *p.sw);
            p.xq = qb_malloc(mk), p.wq = qb_malloc(nk), p.w4 = qb_malloc(nk);
            p.sw4 = qb_malloc(nk / GROUP * sizeof *p.sw4);
            if (!p.y || !p.x || !p.w || !p.b || !p.sx || !p.sw || !p.xq || !p.wq || !p.w4 || !p.sw4) {
                fprintf(stderr, "qbert-bench gemm: out of memory\n");
                rc = 1;
            } else {
                for (size_t i = 0; i < mk; i++) p.x[i] = qb_rng_normal(&rng, 0, 1);
                for (size_t i = 0; i < nk; i++) p.w[i] = qb_rng_normal(&rng, 0, 0.02f);
                for (int n = 0; n < p.N; n++) p.b[n] = 0.01f;
                p.kern = kern;
                qb_cpu_quantize_groups(p.wq, NULL, p.sw, p.w, p.N, p.K, p.K, 8);  /* per output channel */
                qb_cpu_quantize_groups(p.xq, NULL, p.sx, p.x, p.M, p.K, p.K, 8);  /* per token, 8 bits */
                if (qb_s8_pack(&p.wp, p.wq, p.N, p.K) || qb_u8_pack(&p.wu, p.wq, p.N, p.K) || qb_quantize_groups_s4(p.w4, p.sw4, p.w, p.N, p.K, GROUP) ||
                    qb_s4_pack(&p.wp4, p.w4, p.sw4, p.N, p.K, GROUP)) {
                    fprintf(stderr, "qbert-bench gemm: %s\n", qb_error());
                    rc = 1;
                } else if (qb_qinput_alloc(&p.xu, p.M, p.K)) {
                    fprintf(stderr, "qbert-bench gemm: %s\n", qb_error());
                    rc = 1;
                } else {
                    qb_qinput_quantize(&p.xu, p.x);
                }
            }
            if (!rc) {
                const double macs = (double)p.M * p.N * p.K;
                const double f = median_ms(warmup, runs, 0, &p), q = median_ms(warmup, runs, 1, &p);
                const double qs = median_ms(warmup, runs, 2, &p), q4 = median_ms(warmup, runs, 3, &p);
                const double qt = median_ms(warmup, runs, 4, &p);
                const double rf = macs / f * 1e3, rq = macs / q * 1e3, rs = macs / qs * 1e3, r4 = macs / q4 * 1e3;
                printf("%5d %5d %5d | %8.3f %7.1f %4.0f%% | %8.3f %7.1f %4.0f%% %5.2fx | %8.3f %7.1f %4.0f%% %5.2fx | "
                       "%8.3f %7.1f %4.0f%% %5.2fx | %8.3f\n",
                       p.M, p.N, p.K, f, rf / 1e9, 100 * rf / peak_f32, q, rq / 1e9, 100 * rq / peak_u8, f / q, qs,
                       rs / 1e9, 100 * rs / peak_s8, f / qs, q4, r4 / 1e9, 100 * r4 / peak_s4, f / q4, qt);
                cJSON *row = cJSON_CreateObject();
                cJSON_AddNumberToObject(row, "M", p.M);
                cJSON_AddNumberToObject(row, "N", p.N);
                cJSON_AddNumberToObject(row, "K", p.K);
                cJSON_AddNumberToObject(row, "fp32_ms", f);
                cJSON_AddNumberToObject(row, "fp32_macs_per_s", rf);
                cJSON_AddNumberToObject(row, "fp32_fraction_of_peak", rf / peak_f32);
                cJSON_AddNumberToObject(row, "int8_dynamic_ms", q);
                cJSON_AddNumberToObject(row, "int8_dynamic_macs_per_s", rq);
                cJSON_AddNumberToObject(row, "int8_dynamic_fraction_of_peak", rq / peak_u8);
                cJSON_AddNumberToObject(row, "int8_static_ms", qs);
                cJSON_AddNumberToObject(row, "int8_static_macs_per_s", rs);
                cJSON_AddNumberToObject(row, "int8_static_fraction_of_peak", rs / peak_s8);
                cJSON_AddNumberToObject(row, "int4_ms", q4);
                cJSON_AddNumberToObject(row, "int4_macs_per_s", r4);
                cJSON_AddNumberToObject(row, "int4_fraction_of_peak", r4 / peak_s4);
                cJSON_AddNumberToObject(row, "int4_group", GROUP);
                cJSON_AddNumberToObject(row, "quantize_x_u8_ms", qt);
                cJSON_AddItemToArray(rows, row);
            }
            qb_free(p.y), qb_free(p.x), qb_free(p.w), qb_free(p.b), qb_free(p.sx), qb_free(p.sw);
            qb_free(p.xq), qb_free(p.wq), qb_free(p.w4), qb_free(p.sw4);
            qb_qinput_free(&p.xu);
            qb_u8_packed_free(&p.wu);
            qb_s8_packed_free(&p.wp);
            qb_s4_packed_free(&p.wp4);
        }
    }
    return qb_bench_finish("gemm", rc, json_path, root);
}
