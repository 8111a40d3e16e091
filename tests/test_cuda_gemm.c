/* The CUDA Linear (cuBLASLt) on fresh random inputs, in every arithmetic (qb_math):
 * forward with and without bias, backward with and without dx / db, the gradients
 * added onto non-zero starting values, shapes that are not multiples of any tile.
 *
 * FP32: against the CPU backend, relative L2 <= 1e-5 (shared/DESIGN.md).
 * TF32 / BF16 / FP16: against what the arithmetic guarantees, element by element.
 * The H200 showed that the tensor cores do not round their inputs as the CPU's
 * emulation assumed (to nearest: relative L2 up to 2e-3 in BF16 against it), so the
 * bound allows any rounding of the inputs and truncating FP32 additions: each
 * output is a sum of K products (plus an addend: the bias, or the gradient it is
 * added onto), and with inputs rounded to a format of machine epsilon e (spacing at
 * 1: TF32 / FP16 2^-10, BF16 2^-7) and sums in FP32,
 *   |got - exact| <= (2 e + e^2 + (K + 1) 2^-23) (sum of |products| + |addend|),
 * exact computed in double from the unrounded inputs. A wrong operand, layout or
 * format coarser than the one asked for misses it by orders of magnitude. */
#include "cuda_check.h"

static double epsilon(qb_math m)
{
    switch (m) {
    case QB_MATH_TF32:
    case QB_MATH_FP16: return 0x1p-10;
    case QB_MATH_BF16: return 0x1p-7;
    case QB_MATH_FP32: break;
    }
    return 0x1p-23;
}

/* A sum's exact value and its magnitude (sum of |terms| + |addend|), built term
 * by term. */
typedef struct {
    double sum, mag;
} exact_sum;

static void add_term(exact_sum *s, double t) { s->sum += t, s->mag += fabs(t); }

/* Every element of the device result against its exact sum: within the bound above
 * for a sum of K terms in math m (the CPU backend's result within 1e-5 in FP32). */
static void check_sums(const char *what, const float *dev, const float *cpu_ref, const exact_sum *ex, size_t n,
                       int K, qb_math m)
{
    if (m == QB_MATH_FP32) {
        check_close(what, dev, cpu_ref, n, CUDA_TOL);
        return;
    }
    const double e = epsilon(m), rel = 2 * e + e * e + (K + 1) * 0x1p-23;
    float *got = host_from(dev, n * sizeof *got, what);
    size_t bad = 0, worst = 0;
    double worst_ratio = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - ex[i].sum), bound = rel * ex[i].mag + 1e-30;
        if (!(err <= bound)) bad++;  /* NaN counts */
        if (!(err / bound <= worst_ratio)) worst_ratio = err / bound, worst = i;
    }
    CHECKF(bad == 0, "%s: %zu of %zu elements past the %s bound; worst %zu: %.7g, exact %.7g (%.3g x the bound)",
           what, bad, n, qb_math_name(m), worst, got[worst], ex[worst].sum, worst_ratio);
    free(got);
}

static void check_linear(int M, int N, int K, int bias, qb_math m)
{
    char what[96];
    snprintf(what, sizeof what, "linear %s M=%d N=%d K=%d bias=%d", qb_math_name(m), M, N, K, bias);
    float *x = rand_host((size_t)M * K, -1, 1), *w = rand_host((size_t)N * K, -1, 1);
    float *b = bias ? rand_host((size_t)N, -1, 1) : NULL, *y = host_alloc((size_t)M * N * sizeof *y);
    float *dx = dev_from(x, (size_t)M * K * 4), *dw = dev_from(w, (size_t)N * K * 4);
    float *db = b ? dev_from(b, (size_t)N * 4) : NULL, *dy = dev_from(NULL, (size_t)M * N * 4);
    exact_sum *ex = calloc((size_t)M * N, sizeof *ex);
    for (int i = 0; i < M && m != QB_MATH_FP32; i++)
        for (int j = 0; j < N; j++) {
            exact_sum *s = &ex[(size_t)i * N + j];
            if (b) add_term(s, b[j]);
            for (int k = 0; k < K; k++) add_term(s, (double)x[(size_t)i * K + k] * w[(size_t)j * K + k]);
        }
    cpu->linear(NULL, y, x, w, b, M, N, K, m, QB_F32);
    gpu->linear(NULL, dy, dx, dw, db, M, N, K, m, QB_F32);
    check_sums(what, dy, y, ex, (size_t)M * N, K, m);
    free(x), free(w), free(b), free(y), free(ex);
    gpu->free(dx), gpu->free(dw), gpu->free(db), gpu->free(dy);
}

static void check_linear_backward(int M, int N, int K, int want_dx, int want_db, qb_math m)
{
    char what[128], part[160];
    snprintf(what, sizeof what, "linear_backward %s M=%d N=%d K=%d dx=%d db=%d", qb_math_name(m), M, N, K, want_dx,
             want_db);
    const size_t MN = (size_t)M * N, MK = (size_t)M * K, NK = (size_t)N * K;
    float *dy = rand_host(MN, -1, 1), *x = rand_host(MK, -1, 1), *w = rand_host(NK, -1, 1);
    float *dw = rand_host(NK, -1, 1), *db = rand_host((size_t)N, -1, 1);  /* accumulated onto */
    float *dx = want_dx ? host_alloc(MK * sizeof *dx) : NULL;
    float *g_dy = dev_from(dy, MN * 4), *g_x = dev_from(x, MK * 4), *g_w = dev_from(w, NK * 4);
    float *g_dw = dev_from(dw, NK * 4), *g_db = dev_from(db, (size_t)N * 4);
    float *g_dx = want_dx ? dev_from(NULL, MK * 4) : NULL;
    /* The exact sums (not needed in FP32): dx (M, K) = dy w over N; dW (N, K) = dW + dy^T x over M; db (N)
     * = db + column sums of dy over M (db unchanged when not asked for). */
    exact_sum *ex_dx = calloc(MK, sizeof *ex_dx), *ex_dw = calloc(NK, sizeof *ex_dw);
    exact_sum *ex_db = calloc((size_t)N, sizeof *ex_db);
    for (size_t i = 0; i < NK; i++) add_term(&ex_dw[i], dw[i]);
    for (int j = 0; j < N; j++) add_term(&ex_db[j], db[j]);
    for (int i = 0; i < M && m != QB_MATH_FP32; i++)
        for (int j = 0; j < N; j++) {
            const double g = dy[(size_t)i * N + j];
            if (want_db) add_term(&ex_db[j], g);
            for (int k = 0; k < K; k++) {
                add_term(&ex_dx[(size_t)i * K + k], g * w[(size_t)j * K + k]);
                add_term(&ex_dw[(size_t)j * K + k], g * x[(size_t)i * K + k]);
            }
        }
    cpu->linear_backward(NULL, dx, dw, want_db ? db : NULL, dy, x, w, M, N, K, m, QB_F32);
    gpu->linear_backward(NULL, g_dx, g_dw, want_db ? g_db : NULL, g_dy, g_x, g_w, M, N, K, m, QB_F32);
    if (want_dx) {
        snprintf(part, sizeof part, "%s: dx", what);
        check_sums(part, g_dx, dx, ex_dx, MK, N, m);
    }
    snprintf(part, sizeof part, "%s: dW", what);
    check_sums(part, g_dw, dw, ex_dw, NK, M, m);
    snprintf(part, sizeof part, "%s: db", what);
    check_sums(part, g_db, db, ex_db, (size_t)N, M, m);
    free(dy), free(x), free(w), free(dw), free(db), free(dx), free(ex_dx), free(ex_dw), free(ex_db);
    gpu->free(g_dy), gpu->free(g_x), gpu->free(g_w), gpu->free(g_dw), gpu->free(g_db), gpu->free(g_dx);
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_gemm")) return QB_TEST_SKIPPED;
    static const int shapes[][3] = {{1, 1, 1}, {1, 3, 768}, {7, 5, 3}, {33, 65, 17}, {128, 768, 768},
                                    {256, 3072, 768}, {300, 768, 3072}, {4, 3, 384}};
    for (qb_math m = QB_MATH_FP32; m <= QB_MATH_FP16; m++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            check_linear(M, N, K, 1, m);
            check_linear(M, N, K, 0, m);
            check_linear_backward(M, N, K, 1, 1, m);
            check_linear_backward(M, N, K, 0, 0, m);
        }
    /* The plans are cached per shape and math: the same shape again, after others,
     * must still agree. */
    check_linear(33, 65, 17, 1, QB_MATH_FP32);
    check_linear(33, 65, 17, 1, QB_MATH_BF16);
    qb_cuda_scratch_release(NULL);
    qb_cuda_gemm_release();
    return check_summary("test_cuda_gemm");
}
