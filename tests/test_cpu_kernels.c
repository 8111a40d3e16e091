/* CPU kernel tests: every GEMM path the running CPU has (walked with qb_cpu_set_isa)
 * against the scalar reference over many shapes, the other kernels against naive
 * double-precision formulas written here, results independent of the thread count,
 * the QBERT_ISA selection, and the CPU op table.
 * Inputs are fresh random numbers each run; the seed is printed, and
 * QBERT_TEST_SEED=N replays a run. Tolerance: relative L2 error <= 1e-5 (f32). */
#include "check.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "backend/backend.h"
#include "cpu/cpu.h"
#include "qbert/core.h"

#define TOL 1e-5
#define GUARD 16          /* floats after an output that a kernel must not touch */
#define SENTINEL 12345.0f

static qb_rng rng;
static int n_isas;
static qb_isa isas[3];    /* the ISAs this CPU has */

/* Exact-size allocations (not qb_malloc's rounded ones), so that ASan sees any
 * read or write past the end. */
static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static float *rand_floats(size_t n, float lo, float hi)
{
    float *p = xmalloc(n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * qb_rng_uniform(&rng);
    return p;
}

/* ||got - ref|| / max(||ref||, floor); a zero ref with floor 0 gives the absolute error. */
static double rel_err_at_least(const float *got, const double *ref, size_t n, double floor)
{
    double e = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        e += d * d;
        r += ref[i] * ref[i];
    }
    r = fmax(sqrt(r), floor);
    return sqrt(e) / (r > 0.0 ? r : 1.0);
}

static double rel_err(const float *got, const double *ref, size_t n)
{
    return rel_err_at_least(got, ref, n, 0.0);
}

/* rel_err with the norm of ref floored at that of an all-ones vector: for short
 * outputs whose values can be tiny by chance (gelu(-7) is ~1e-11, computed from
 * 1 + erf(-4.9) where float has no digits left), a plain relative error would
 * measure that chance, not the kernel. */
static double rel_err_floor1(const float *got, const double *ref, size_t n)
{
    return rel_err_at_least(got, ref, n, sqrt((double)n));
}

/* ---- instruction set selection ---- */

static qb_isa best_available(void)
{
    return isas[n_isas - 1];
}

static void test_isa_selection(void)
{
    /* CPUID as the compiler's runtime sees it: an independent check of the detection. */
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    CHECK(qb_cpu_isa_available(QB_ISA_SCALAR));
    CHECKF(qb_cpu_isa_available(QB_ISA_AVX2) == avx2, "avx2: qbert %d, gcc %d",
           qb_cpu_isa_available(QB_ISA_AVX2), avx2);
    CHECKF(qb_cpu_isa_available(QB_ISA_AVX512) == avx512, "avx512: qbert %d, gcc %d",
           qb_cpu_isa_available(QB_ISA_AVX512), avx512);

    const char *names[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        qb_isa isa = QB_ISA_SCALAR;
        CHECK(qb_isa_parse(names[i], &isa) == QB_OK && isa == (qb_isa)i);
        CHECK(strcmp(qb_isa_name((qb_isa)i), names[i]) == 0);
    }
    qb_isa isa = QB_ISA_AVX2;
    CHECK(qb_isa_parse("avx9", &isa) == QB_EINVAL);
    CHECKF(strstr(qb_error(), "avx9") && strstr(qb_error(), "avx512"), "message: %s", qb_error());
    CHECK(qb_isa_parse("", &isa) == QB_EINVAL);

    const qb_isa best = best_available();
    qb_log_level level = qb_log_get_level();
    qb_log_set_level(QB_LOG_QUIET);  /* the errors below are expected */
    CHECK(qb_cpu_isa_resolve(NULL) == best);
    CHECK(qb_cpu_isa_resolve("") == best);
    CHECK(qb_cpu_isa_resolve("scalar") == QB_ISA_SCALAR);
    CHECK(qb_cpu_isa_resolve("avx2") == (avx2 ? QB_ISA_AVX2 : best));
    CHECK(qb_cpu_isa_resolve("avx512") == (avx512 ? QB_ISA_AVX512 : best));
    CHECK(qb_cpu_isa_resolve("AVX2 ") == best);
    CHECK(qb_cpu_isa_resolve("sse") == best);
    /* Forcing a path the CPU lacks falls back to the best one it has. */
    for (int i = 0; i < 3; i++) {
        if (qb_cpu_isa_available((qb_isa)i)) continue;
        qb_cpu_set_isa((qb_isa)i);
        CHECKF(qb_cpu_isa() == best, "set %s: got %s", names[i], qb_isa_name(qb_cpu_isa()));
    }
    qb_log_set_level(level);
    qb_cpu_set_isa(best);
    CHECK(qb_cpu_isa() == best);
}

/* ---- GEMM ---- */

/* The scalar reference in the nn.Linear layout. */
static void ref_linear(float *y, const float *x, const float *w, const float *b, int M, int N,
                       int K)
{
    const qb_gemm_f32 g = {.y = y, .x = x, .w = w, .b = b, .M = M, .N = N, .K = K,
                           .ldy = (size_t)N, .ldx = (size_t)K, .ldw = (size_t)K};
    qb_gemm_f32_scalar(&g);
}

/* The scalar reference itself against a double loop written here. */
static void test_scalar_reference(void)
{
    const int shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {13, 33, 257}, {4, 9, 0}};
    for (int s = 0; s < 4; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = rand_floats((size_t)M * K, -1, 1), *w = rand_floats((size_t)N * K, -1, 1);
        float *b = rand_floats(N, -1, 1), *y = xmalloc((size_t)M * N * sizeof *y);
        double *ref = xmalloc((size_t)M * N * sizeof *ref), typical = 0;
        for (int m = 0; m < M; m++) {
            for (int n = 0; n < N; n++) {
                double acc = b[n];
                typical += acc * acc;
                for (int k = 0; k < K; k++) {
                    const double t = (double)x[m * K + k] * w[n * K + k];
                    acc += t, typical += t * t;
                }
                ref[m * N + n] = acc;
            }
        }
        ref_linear(y, x, w, b, M, N, K);
        double e = rel_err_at_least(y, ref, (size_t)M * N, sqrt(typical));  /* see run_linear */
        CHECKF(e <= 1e-7, "scalar reference M=%d N=%d K=%d: rel err %.3g", M, N, K, e);
        free(x), free(w), free(b), free(y), free(ref);
    }
}

/* Runs qb_cpu_linear into a NaN-filled y followed by a guard band: every element
 * must be written, nothing after it. Returns the relative L2 error against ref,
 * measured against the larger of ||ref|| and `typical`, the norm y has on average
 * for these zero-mean inputs (sqrt of the summed squared terms). The two agree for
 * large outputs; with only one or two outputs, y can cancel to nearly 0 by chance
 * and a plain relative error would then measure that luck, not the kernel. */
static double run_linear(const float *x, const float *w, const float *b, const float *ref,
                         double typical, int M, int N, int K, int *guard_ok)
{
    size_t n = (size_t)M * N;
    float *y = xmalloc((n + GUARD) * sizeof *y);
    for (size_t i = 0; i < n; i++) y[i] = NAN;
    for (size_t i = n; i < n + GUARD; i++) y[i] = SENTINEL;
    qb_cpu_linear(y, x, w, b, M, N, K);
    *guard_ok = 1;
    for (size_t i = n; i < n + GUARD; i++) *guard_ok &= y[i] == SENTINEL;
    double e = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)y[i] - ref[i]) * ((double)y[i] - ref[i]);
        r += (double)ref[i] * ref[i];
    }
    free(y);
    r = fmax(sqrt(r), typical);
    return sqrt(e) / (r > 0.0 ? r : 1.0);
}

static void check_linear_shape(int M, int N, int K, double *worst)
{
    float *x = rand_floats((size_t)M * K, -1, 1), *w = rand_floats((size_t)N * K, -1, 1);
    float *b = rand_floats(N, -1, 1);
    float *ref_b = xmalloc((size_t)M * N * sizeof *ref_b), *ref = xmalloc((size_t)M * N * sizeof *ref);
    ref_linear(ref_b, x, w, b, M, N, K);
    ref_linear(ref, x, w, NULL, M, N, K);
    /* sum over m, n, k of (x[m,k] w[n,k])^2, and the same plus M * sum of b^2 */
    double sq = 0.0, sq_b = 0.0;
    for (int k = 0; k < K; k++) {
        double sx = 0.0, sw = 0.0;
        for (int m = 0; m < M; m++) sx += (double)x[(size_t)m * K + k] * x[(size_t)m * K + k];
        for (int n = 0; n < N; n++) sw += (double)w[(size_t)n * K + k] * w[(size_t)n * K + k];
        sq += sx * sw;
    }
    for (int n = 0; n < N; n++) sq_b += (double)M * b[n] * b[n];
    sq_b += sq;
    for (int i = 0; i < n_isas; i++) {
        qb_cpu_set_isa(isas[i]);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            int guard_ok;
            double e = run_linear(x, w, with_bias ? b : NULL, with_bias ? ref_b : ref,
                                  sqrt(with_bias ? sq_b : sq), M, N, K, &guard_ok);
            CHECKF(e <= TOL, "linear %s M=%d N=%d K=%d bias=%d: rel err %.3g",
                   qb_isa_name(isas[i]), M, N, K, with_bias, e);
            CHECKF(guard_ok, "linear %s M=%d N=%d K=%d bias=%d: wrote past y",
                   qb_isa_name(isas[i]), M, N, K, with_bias);
            if (e > worst[i]) worst[i] = e;
        }
    }
    free(x), free(w), free(b), free(ref_b), free(ref);
}

static void test_linear(void)
{
    static const int Ms[] = {1, 2, 3, 5, 7, 13, 64, 100};
    static const int Ns[] = {1, 3, 8, 15, 16, 17, 33, 100, 768};
    static const int Ks[] = {1, 2, 7, 16, 31, 64, 257, 768};
    /* Shapes that cross the blocking: several row blocks and K slices, a column block
     * boundary (for one thread), exact tiles, BERT-like sizes, K = 0. */
    static const int extra[][3] = {{145, 40, 513},  {300, 1100, 600}, {6, 16, 256},
                                   {8, 32, 256},    {1, 3072, 768},   {128, 768, 768},
                                   {3, 5, 0},       {289, 97, 1030}};
    double worst[3] = {0};
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++)
            for (size_t d = 0; d < sizeof Ks / sizeof Ks[0]; d++)
                check_linear_shape(Ms[a], Ns[c], Ks[d], worst);
    for (size_t s = 0; s < sizeof extra / sizeof extra[0]; s++)
        check_linear_shape(extra[s][0], extra[s][1], extra[s][2], worst);
    for (int i = 0; i < n_isas; i++)
        printf("linear %-6s: worst relative L2 error %.3g\n", qb_isa_name(isas[i]), worst[i]);
    qb_cpu_set_isa(best_available());
}

/* Same bits with 1 and 2 threads (the k reduction order is fixed). */
static void test_linear_threads(void)
{
    static const int shapes[][3] = {{1, 768, 768}, {5, 100, 33}, {600, 64, 100},
                                    {300, 1100, 600}, {129, 770, 300}};
    int max_threads = omp_get_max_threads();
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *x = rand_floats((size_t)M * K, -1, 1), *w = rand_floats((size_t)N * K, -1, 1);
        float *b = rand_floats(N, -1, 1);
        float *y1 = xmalloc((size_t)M * N * sizeof *y1), *y2 = xmalloc((size_t)M * N * sizeof *y2);
        for (int i = 0; i < n_isas; i++) {
            qb_cpu_set_isa(isas[i]);
            omp_set_num_threads(1);
            qb_cpu_linear(y1, x, w, b, M, N, K);
            omp_set_num_threads(2);
            qb_cpu_linear(y2, x, w, b, M, N, K);
            CHECKF(memcmp(y1, y2, (size_t)M * N * sizeof *y1) == 0,
                   "linear %s M=%d N=%d K=%d: 1 and 2 threads differ", qb_isa_name(isas[i]), M,
                   N, K);
        }
        free(x), free(w), free(b), free(y1), free(y2);
    }
    omp_set_num_threads(max_threads);
    qb_cpu_set_isa(best_available());
}

/* Every operand layout of qb_cpu_gemm (x and/or w stored transposed, leading
 * dimensions wider than the matrix, accumulation into y), on every ISA including the
 * scalar reference, against a double loop over the logical matrices written here.
 * The padding columns of y must keep their sentinel. */
static void check_gemm_layout(int M, int N, int K, int x_t, int w_t, int acc, double *worst)
{
    const int PAD = 3;
    float *X = rand_floats((size_t)M * K, -1, 1), *W = rand_floats((size_t)N * K, -1, 1);
    float *b = rand_floats(N, -1, 1), *y0 = rand_floats((size_t)M * N, -1, 1);
    const size_t ldx = (size_t)(x_t ? M : K) + PAD, ldw = (size_t)(w_t ? N : K) + PAD;
    const size_t ldy = (size_t)N + PAD;
    float *x = rand_floats((size_t)(x_t ? K : M) * ldx, -1, 1);
    float *w = rand_floats((size_t)(w_t ? K : N) * ldw, -1, 1);
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++)
            x[x_t ? (size_t)k * ldx + m : (size_t)m * ldx + k] = X[(size_t)m * K + k];
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++)
            w[w_t ? (size_t)k * ldw + n : (size_t)n * ldw + k] = W[(size_t)n * K + k];
    double *ref = xmalloc((size_t)M * N * sizeof *ref), typical = 0;
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            double s = acc ? y0[(size_t)m * N + n] : b[n];
            typical += s * s;
            for (int k = 0; k < K; k++) {
                const double t = (double)X[(size_t)m * K + k] * W[(size_t)n * K + k];
                s += t, typical += t * t;
            }
            ref[(size_t)m * N + n] = s;
        }
    }
    typical = sqrt(typical);  /* the norm of y for these zero-mean terms: see run_linear */
    float *y = xmalloc((size_t)M * ldy * sizeof *y), *got = xmalloc((size_t)M * N * sizeof *got);
    for (int i = -1; i < n_isas; i++) {  /* -1: the scalar reference, called directly */
        for (int m = 0; m < M; m++)
            for (size_t n = 0; n < ldy; n++)
                y[m * ldy + n] = (int)n < N && acc ? y0[(size_t)m * N + n] : SENTINEL;
        const qb_gemm_f32 g = {.y = y, .x = x, .w = w, .b = acc ? NULL : b, .M = M, .N = N,
                               .K = K, .ldy = ldy, .ldx = ldx, .ldw = ldw, .x_t = x_t,
                               .w_t = w_t, .accumulate = acc};
        if (i < 0) {
            qb_gemm_f32_scalar(&g);
        } else {
            qb_cpu_set_isa(isas[i]);
            qb_cpu_gemm(&g);
        }
        int pad_ok = 1;
        for (int m = 0; m < M; m++) {
            memcpy(got + (size_t)m * N, y + m * ldy, (size_t)N * sizeof *got);
            for (size_t n = (size_t)N; n < ldy; n++) pad_ok &= y[m * ldy + n] == SENTINEL;
        }
        const char *name = i < 0 ? "reference" : qb_isa_name(isas[i]);
        double e = rel_err_at_least(got, ref, (size_t)M * N, typical);
        CHECKF(e <= TOL, "gemm %s M=%d N=%d K=%d x_t=%d w_t=%d acc=%d: rel err %.3g", name, M,
               N, K, x_t, w_t, acc, e);
        CHECKF(pad_ok, "gemm %s M=%d N=%d K=%d x_t=%d w_t=%d acc=%d: wrote into padding", name,
               M, N, K, x_t, w_t, acc);
        if (i >= 0 && e > worst[i]) worst[i] = e;
    }
    free(X), free(W), free(b), free(y0), free(x), free(w), free(ref), free(y), free(got);
}

static void test_gemm_layouts(void)
{
    static const int shapes[][3] = {{1, 1, 1},    {5, 7, 3},     {13, 33, 257}, {64, 100, 31},
                                    {145, 40, 513}, {96, 384, 64}, {7, 17, 0},    {300, 130, 600}};
    double worst[3] = {0};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int layout = 0; layout < 8; layout++)
            check_gemm_layout(shapes[s][0], shapes[s][1], shapes[s][2], layout & 1, layout >> 1 & 1,
                              layout >> 2, worst);
    for (int i = 0; i < n_isas; i++)
        printf("gemm layouts %-6s: worst relative L2 error %.3g\n", qb_isa_name(isas[i]), worst[i]);
    qb_cpu_set_isa(best_available());
}

/* ---- dropout ---- */

/* The AVX2 Philox mask equals the scalar one bit for bit: random seeds, streams and
 * rates, starting indices that are not block-aligned, lengths that are not multiples
 * of the 32 elements the vector code draws at once, and a block counter whose low
 * word wraps inside a vector (the carry into the high word). */
static void test_dropout(void)
{
    if (!qb_cpu_isa_available(QB_ISA_AVX2)) {
        printf("dropout: no AVX2 on this CPU, skipped\n");
        return;
    }
    const uint64_t firsts[] = {0, 1, 3, 4, 4 * (uint64_t)UINT32_MAX - 9, 12345678901ull};
    const size_t lens[] = {0, 1, 5, 31, 32, 33, 100, 4099};
    for (size_t fi = 0; fi < sizeof firsts / sizeof firsts[0]; fi++) {
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const size_t n = lens[li];
            const qb_dropout d = {0.05f + 0.9f * qb_rng_uniform(&rng),
                                  (uint64_t)qb_rng_u32(&rng) << 32 | qb_rng_u32(&rng),
                                  (uint64_t)qb_rng_u32(&rng) << 20 | qb_rng_u32(&rng), NULL};
            float *a = rand_floats(n, -1, 1), *b = xmalloc((n ? n : 1) * sizeof *b);
            memcpy(b, a, n * sizeof *b);
            qb_dropout_scalar(a, n, firsts[fi], &d);
            qb_dropout_avx2(b, n, firsts[fi], &d);
            CHECKF(memcmp(a, b, n * sizeof *a) == 0, "dropout avx2 first=%llu n=%zu p=%g differs",
                   (unsigned long long)firsts[fi], n, d.p);
            free(a), free(b);
        }
    }
}

/* ---- LayerNorm, GELU, tanh, softmax ---- */

static void test_layernorm(void)
{
    static const int Cs[] = {1, 7, 768, 1000};
    const int M = 5;
    for (size_t ci = 0; ci < sizeof Cs / sizeof Cs[0]; ci++) {
        int C = Cs[ci];
        size_t n = (size_t)M * C;
        /* An offset mean makes a one-pass variance lose digits; two passes must not. */
        float *x = rand_floats(n, 2, 6), *res = rand_floats(n, -1, 1);
        float *g = rand_floats(C, 0.5f, 1.5f), *b = rand_floats(C, -0.5f, 0.5f);
        float *out = xmalloc(n * sizeof *out), *alias = xmalloc(n * sizeof *alias);
        double *ref = xmalloc(n * sizeof *ref), *ref_nores = xmalloc(n * sizeof *ref_nores);
        const float eps = 1e-12f;
        for (int with_res = 0; with_res < 2; with_res++) {
            double *r = with_res ? ref : ref_nores;
            for (int m = 0; m < M; m++) {
                double mean = 0.0, var = 0.0;
                for (int c = 0; c < C; c++)
                    mean += (double)x[m * C + c] + (with_res ? (double)res[m * C + c] : 0.0);
                mean /= C;
                for (int c = 0; c < C; c++) {
                    double t = (double)x[m * C + c] + (with_res ? (double)res[m * C + c] : 0.0);
                    var += (t - mean) * (t - mean);
                }
                var /= C;
                for (int c = 0; c < C; c++) {
                    double t = (double)x[m * C + c] + (with_res ? (double)res[m * C + c] : 0.0);
                    r[m * C + c] = (t - mean) / sqrt(var + eps) * g[c] + b[c];
                }
            }
        }
        qb_cpu_layernorm(out, NULL, NULL, NULL, x, res, g, b, M, C, eps);
        double e = rel_err(out, ref, n);
        CHECKF(e <= TOL, "layernorm C=%d with residual: rel err %.3g", C, e);
        qb_cpu_layernorm(out, NULL, NULL, NULL, x, NULL, g, b, M, C, eps);
        e = rel_err(out, ref_nores, n);
        CHECKF(e <= TOL, "layernorm C=%d: rel err %.3g", C, e);
        memcpy(alias, x, n * sizeof *alias);
        qb_cpu_layernorm(alias, NULL, NULL, NULL, alias, res, g, b, M, C, eps);
        e = rel_err(alias, ref, n);
        CHECKF(e <= TOL, "layernorm C=%d in place: rel err %.3g", C, e);
        if (C == 768) printf("layernorm C=768: relative L2 error %.3g\n", e);
        free(x), free(res), free(g), free(b), free(out), free(alias), free(ref), free(ref_nores);
    }
}

/* GELU forward and backward and tanh on every ISA (the AVX2 path runs libmvec),
 * against double formulas; sizes that are not a multiple of the vector width. */
static void test_activations(void)
{
    static const size_t sizes[] = {1, 7, 9, 10007, 40003};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        const size_t n = sizes[si];
        float *x = rand_floats(n, -8, 8), *dy = rand_floats(n, -1, 1), *y = xmalloc(n * sizeof *y);
        double *ref = xmalloc(n * sizeof *ref), *dref = xmalloc(n * sizeof *dref);
        if (n > 4) x[0] = 0.0f, x[1] = -30.0f, x[2] = 30.0f, x[3] = -200.0f;
        for (size_t i = 0; i < n; i++) {
            const double a = x[i], cdf = 0.5 * (1.0 + erf(a / sqrt(2.0)));
            ref[i] = a * cdf;
            dref[i] = dy[i] * (cdf + a * exp(-0.5 * a * a) / sqrt(2.0 * M_PI));
        }
        for (int i = 0; i < n_isas; i++) {
            qb_cpu_set_isa(isas[i]);
            const char *name = qb_isa_name(isas[i]);
            memcpy(y, x, n * sizeof *y);
            qb_cpu_gelu(y, y, n);
            double e = rel_err_floor1(y, ref, n);
            CHECKF(e <= TOL, "gelu %s n=%zu: rel err %.3g", name, n, e);
            if (n > 4)
                CHECKF(y[0] == 0.0f && y[1] == 0.0f && y[2] == 30.0f && y[3] == 0.0f,
                       "gelu %s: %g %g %g %g", name, y[0], y[1], y[2], y[3]);
            /* Exact erf, not the tanh approximation (they differ by ~1e-4 near x = -2). */
            float at = -2.0f;
            qb_cpu_gelu(&at, &at, 1);
            CHECKF(fabs(at - (-0.0455002638963584)) < 1e-6, "gelu %s (-2) = %.9g", name, at);
            qb_cpu_gelu_backward(y, dy, x, n);
            e = rel_err_floor1(y, dref, n);
            CHECKF(e <= TOL, "gelu backward %s n=%zu: rel err %.3g", name, n, e);
        }
        memcpy(y, x, n * sizeof *y);
        for (size_t i = 0; i < n; i++) ref[i] = tanh((double)x[i]);
        qb_cpu_tanh(y, n);
        double e = rel_err_floor1(y, ref, n);
        CHECKF(e <= TOL, "tanh: rel err %.3g", e);
        free(x), free(dy), free(y), free(ref), free(dref);
    }
    qb_cpu_set_isa(best_available());
}

/* Row softmax on every ISA: rows not a multiple of the vector width, a fully masked
 * row (uniform), a row whose exp would overflow without the max shift, and scores
 * far below the maximum (exactly 0). */
static void test_softmax(void)
{
    static const int Ns[] = {1, 2, 7, 17, 128, 1000};
    const int M = 4;
    for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
        int N = Ns[ni];
        size_t n = (size_t)M * N;
        float *x0 = rand_floats(n, -10, 10), *x = xmalloc(n * sizeof *x);
        for (int i = 0; i < N; i++) x0[3 * N + i] = -FLT_MAX;  /* a fully masked row */
        x0[2 * N] = 80.0f;                                      /* exp(80) overflows float */
        if (N > 1) x0[N + 1] = -FLT_MAX;                        /* one masked key */
        double *ref = xmalloc(n * sizeof *ref);
        for (int m = 0; m < M; m++) {
            double mx = -INFINITY, s = 0.0;
            for (int i = 0; i < N; i++) mx = fmax(mx, x0[m * N + i]);
            for (int i = 0; i < N; i++) s += exp(x0[m * N + i] - mx);
            for (int i = 0; i < N; i++) ref[m * N + i] = exp(x0[m * N + i] - mx) / s;
        }
        for (int i = 0; i < n_isas; i++) {
            qb_cpu_set_isa(isas[i]);
            memcpy(x, x0, n * sizeof *x);
            qb_cpu_softmax(x, M, N);
            double e = rel_err(x, ref, n);
            CHECKF(e <= TOL, "softmax %s N=%d: rel err %.3g", qb_isa_name(isas[i]), N, e);
            for (int j = 0; j < N; j++) CHECK(fabs(x[3 * N + j] - 1.0 / N) <= 1e-6 / N);
            if (N > 1) CHECK(x[N + 1] == 0.0f);
        }
        free(x0), free(x), free(ref);
    }
    qb_cpu_set_isa(best_available());
}

/* ---- attention ---- */

/* Double reference written from the meaning, not from HF's formula: a query attends
 * to its unmasked keys only; with no unmasked key at all it attends uniformly to all
 * T keys (what HF's additive finfo.min bias produces). */
static void attention_reference(double *out, const float *q, const float *k, const float *v,
                                const int32_t *mask, int B, int T, int H, int D)
{
    const size_t C = (size_t)H * D;
    double *p = xmalloc((size_t)T * sizeof *p);
    for (int b = 0; b < B; b++) {
        int any = 0;
        for (int j = 0; j < T; j++) any |= mask[b * T + j] != 0;
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < T; i++) {
                const float *qi = q + (b * T + i) * C + h * D;
                if (any) {
                    double mx = -INFINITY, s = 0.0;
                    for (int j = 0; j < T; j++) {
                        if (!mask[b * T + j]) continue;
                        const float *kj = k + (b * T + j) * C + h * D;
                        double dot = 0.0;
                        for (int d = 0; d < D; d++) dot += (double)qi[d] * kj[d];
                        p[j] = dot / sqrt((double)D);
                        mx = fmax(mx, p[j]);
                    }
                    for (int j = 0; j < T; j++) {
                        p[j] = mask[b * T + j] ? exp(p[j] - mx) : 0.0;
                        s += p[j];
                    }
                    for (int j = 0; j < T; j++) p[j] /= s;
                } else {
                    for (int j = 0; j < T; j++) p[j] = 1.0 / T;
                }
                double *o = out + (b * T + i) * C + h * D;
                for (int d = 0; d < D; d++) {
                    double acc = 0.0;
                    for (int j = 0; j < T; j++) acc += p[j] * v[(b * T + j) * C + h * D + d];
                    o[d] = acc;
                }
            }
        }
    }
    free(p);
}

static void check_attention(int B, int T, int H, int D)
{
    const size_t n = (size_t)B * T * H * D;
    float *q = rand_floats(n, -2, 2), *k = rand_floats(n, -2, 2), *v = rand_floats(n, -1, 1);
    float *out = xmalloc(n * sizeof *out), *out2 = xmalloc(n * sizeof *out2);
    double *ref = xmalloc(n * sizeof *ref);
    int32_t *mask = xmalloc((size_t)B * T * sizeof *mask);
    /* Batch 0 attends everywhere, batch 1 has a padded tail, the last batch (when
     * B >= 3) is fully padded. */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            mask[b * T + t] = b == 0 ? 1 : (b == B - 1 && B >= 3) ? 0 : t < T - T / 3 - 1;
    attention_reference(ref, q, k, v, mask, B, T, H, D);
    for (int i = 0; i < n_isas; i++) {
        qb_cpu_set_isa(isas[i]);
        qb_cpu_attention(out, NULL, q, k, v, H * D, mask, NULL, B, T, H, D, QB_MATH_FP32);
        double e = rel_err(out, ref, n);
        CHECKF(e <= TOL, "attention %s B=%d T=%d H=%d D=%d: rel err %.3g", qb_isa_name(isas[i]),
               B, T, H, D, e);
        if (T == 128) printf("attention %-6s T=128: relative L2 error %.3g\n", qb_isa_name(isas[i]), e);
        omp_set_num_threads(1);
        qb_cpu_attention(out2, NULL, q, k, v, H * D, mask, NULL, B, T, H, D, QB_MATH_FP32);
        omp_set_num_threads(2);
        qb_cpu_attention(out, NULL, q, k, v, H * D, mask, NULL, B, T, H, D, QB_MATH_FP32);
        CHECKF(memcmp(out, out2, n * sizeof *out) == 0,
               "attention %s B=%d T=%d: 1 and 2 threads differ", qb_isa_name(isas[i]), B, T);
    }
    /* A fully padded sequence: every output is the plain mean of v over all T keys. */
    if (B >= 3) {
        const int b = B - 1, C = H * D;
        double *mean = xmalloc((size_t)T * C * sizeof *mean);
        for (int t = 0; t < T; t++) {
            for (int c = 0; c < C; c++) {
                double s = 0.0;
                for (int j = 0; j < T; j++) s += v[((size_t)b * T + j) * C + c];
                mean[(size_t)t * C + c] = s / T;
            }
        }
        double e = rel_err(out + (size_t)b * T * C, mean, (size_t)T * C);
        CHECKF(e <= TOL, "attention fully padded row T=%d: rel err %.3g vs mean of v", T, e);
        free(mean);
    }
    free(q), free(k), free(v), free(out), free(out2), free(ref), free(mask);
}

static void test_attention(void)
{
    int max_threads = omp_get_max_threads();
    check_attention(3, 128, 12, 64);
    check_attention(3, 5, 2, 3);
    check_attention(2, 17, 3, 8);
    check_attention(1, 1, 1, 1);
    omp_set_num_threads(max_threads);
    qb_cpu_set_isa(best_available());
}

/* ---- embedding ---- */

static void test_embedding(void)
{
    const int B = 2, T = 9, C = 33, V = 50, P = 16, NT = 2;
    float *word = rand_floats((size_t)V * C, -1, 1), *pos = rand_floats((size_t)P * C, -1, 1);
    float *type = rand_floats((size_t)NT * C, -1, 1);
    int32_t ids[2 * 9], types[2 * 9];
    for (int i = 0; i < B * T; i++) {
        ids[i] = (int32_t)(qb_rng_u32(&rng) % V);
        types[i] = (int32_t)(qb_rng_u32(&rng) % NT);
    }
    ids[0] = 0, ids[1] = V - 1;  /* both ends of the table */
    float *out = xmalloc((size_t)B * T * C * sizeof *out);
    double *ref = xmalloc((size_t)B * T * C * sizeof *ref);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < C; c++) {
                int i = b * T + t;
                ref[i * C + c] = (double)word[ids[i] * C + c] + pos[t * C + c] + type[types[i] * C + c];
            }
    qb_cpu_embedding(out, ids, types, word, pos, type, B, T, C);
    double e = rel_err(out, ref, (size_t)B * T * C);
    CHECKF(e <= TOL, "embedding: rel err %.3g", e);
    free(word), free(pos), free(type), free(out), free(ref);
}

/* ---- rounded arithmetic (qb_math) ---- */

/* qb_math_round at the edges of each format, then the op table's linear and
 * linear_backward: FP32 math is the kernel's bits; TF32 / BF16 / FP16 math is the
 * kernel run on x, w and dy rounded (the bias and the accumulated dW / db not). */
static void test_math(void)
{
    const float one = 1.0f;
    CHECK(qb_math_round(one + 0x1p-11f, QB_MATH_TF32) == one);                 /* tie: to even */
    CHECK(qb_math_round(one + 3 * 0x1p-11f, QB_MATH_TF32) == one + 0x1p-9f);   /* tie: to even, up */
    CHECK(qb_math_round(one + 0x1p-11f + 0x1p-20f, QB_MATH_TF32) == one + 0x1p-10f);
    CHECK(qb_math_round(-(one + 0x1p-9f), QB_MATH_BF16) == -one);
    CHECK(qb_math_round(one + 3 * 0x1p-8f, QB_MATH_BF16) == one + 0x1p-6f);
    CHECK(qb_math_round(65504.0f, QB_MATH_FP16) == 65504.0f && isinf(qb_math_round(70000.0f, QB_MATH_FP16)));
    CHECK(qb_math_round(0x1p-30f, QB_MATH_FP16) == 0.0f && qb_math_round(0x1p-30f, QB_MATH_BF16) == 0x1p-30f);
    CHECK(isnan(qb_math_round(NAN, QB_MATH_TF32)) && isinf(qb_math_round(INFINITY, QB_MATH_TF32)));
    CHECK(qb_math_round(0.1f, QB_MATH_FP32) == 0.1f);

    const qb_backend *be = qb_backend_cpu();
    enum { M = 9, N = 7, K = 13 };
    float xr[M * K], wr[N * K], dyr[M * N];
    for (int m = QB_MATH_FP32; m <= QB_MATH_FP16; m++) {
        float *x = rand_floats(M * K, -3, 3), *w = rand_floats(N * K, -3, 3), *b = rand_floats(N, -1, 1);
        float *dy = rand_floats(M * N, -1, 1);
        for (int i = 0; i < M * K; i++) xr[i] = qb_math_round(x[i], (qb_math)m);
        for (int i = 0; i < N * K; i++) wr[i] = qb_math_round(w[i], (qb_math)m);
        for (int i = 0; i < M * N; i++) dyr[i] = qb_math_round(dy[i], (qb_math)m);
        float y[M * N], y_ref[M * N], dx[M * K], dx_ref[M * K], dw[N * K], dw_ref[N * K], db[N], db_ref[N];
        be->linear(NULL, y, x, w, b, M, N, K, (qb_math)m, QB_F32);
        qb_cpu_linear(y_ref, xr, wr, b, M, N, K);
        CHECKF(memcmp(y, y_ref, sizeof y) == 0, "linear %s: not the kernel on rounded inputs", qb_math_name(m));
        for (int i = 0; i < N * K; i++) dw[i] = dw_ref[i] = 0.25f;  /* accumulated onto, unrounded */
        for (int i = 0; i < N; i++) db[i] = db_ref[i] = 0.125f;
        be->linear_backward(NULL, dx, dw, db, dy, x, w, M, N, K, (qb_math)m, QB_F32);
        qb_cpu_linear_backward(dx_ref, dw_ref, db_ref, dyr, xr, wr, M, N, K);
        CHECKF(memcmp(dx, dx_ref, sizeof dx) == 0 && memcmp(dw, dw_ref, sizeof dw) == 0 &&
                   memcmp(db, db_ref, sizeof db) == 0,
               "linear_backward %s: not the kernel on rounded inputs", qb_math_name(m));
        free(x), free(w), free(b), free(dy);
    }
}

/* ---- the op table ---- */

static void test_backend(void)
{
    const qb_backend *be = qb_backend_cpu();
    CHECK(be && strcmp(be->name, "cpu") == 0);
    CHECK(be->caps == 0);  /* no graphs, streams or half activations: FP32, each op at once */
    float host[37], back[37];
    /* the table's adapters reach the kernels */
    float gx[37], g1[37], g2[37];
    for (int i = 0; i < 37; i++) gx[i] = (float)i / 9.0f - 2.0f;
    be->gelu(NULL, g1, gx, 37, QB_F32);
    qb_cpu_gelu(g2, gx, 37);
    CHECK(memcmp(g1, g2, sizeof g1) == 0);
    /* rows: 3 rows of 4 gathered from a row stride of 5, to each half type (rounded to
     * nearest) and back */
    const qb_dtype halves[2] = {QB_BF16, QB_F16};
    const qb_math maths[2] = {QB_MATH_BF16, QB_MATH_FP16};
    for (int h = 0; h < 2; h++) {
        float src[15], wide[12];
        uint16_t half[12];
        for (int i = 0; i < 15; i++) src[i] = (float)i * 1.37f - 9.1f;
        be->rows(NULL, half, halves[h], 4, src, QB_F32, 5, 3, 4);
        be->rows(NULL, wide, QB_F32, 4, half, halves[h], 4, 3, 4);
        int same = 1;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++) same &= wide[r * 4 + c] == qb_math_round(src[r * 5 + c], maths[h]);
        CHECKF(same, "rows %s: not the gathered values rounded to nearest", qb_dtype_name(halves[h]));
    }
    for (int i = 0; i < 37; i++) host[i] = (float)i * 0.5f;
    float *dev = be->alloc(sizeof host);
    CHECK(dev != NULL && ((uintptr_t)dev & 63) == 0);
    if (dev) {
        be->to_device(NULL, dev, host, sizeof host);
        be->to_host(NULL, back, dev, sizeof host);
        CHECK(memcmp(host, back, sizeof host) == 0);
        be->to_host(NULL, back, dev, 0);
    }
    be->free(dev);
}

int main(void)
{
    /* First use of the ISA reads QBERT_ISA from the environment. */
    setenv("QBERT_ISA", "scalar", 1);
    CHECK(qb_cpu_isa() == QB_ISA_SCALAR);

    qb_rng_init(&rng, check_seed());

    for (int i = QB_ISA_SCALAR; i <= QB_ISA_AVX512; i++)
        if (qb_cpu_isa_available((qb_isa)i)) isas[n_isas++] = (qb_isa)i;
    printf("ISAs on this CPU:");
    for (int i = 0; i < n_isas; i++) printf(" %s", qb_isa_name(isas[i]));
    printf("\n");

    test_isa_selection();
    test_scalar_reference();
    test_linear();
    test_math();
    test_linear_threads();
    test_gemm_layouts();
    test_dropout();
    test_layernorm();
    test_activations();
    test_softmax();
    test_attention();
    test_embedding();
    test_backend();
    return check_summary("test_cpu_kernels");
}
