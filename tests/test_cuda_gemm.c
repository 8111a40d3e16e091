/* The CUDA Linear (cuBLASLt) against the CPU backend's on fresh random inputs, in
 * every arithmetic (qb_math): forward with and without bias, backward with and
 * without dx / db, the gradients added onto non-zero starting values, shapes that
 * are not multiples of any tile. FP32: relative L2 <= 1e-5 (shared/DESIGN.md).
 * TF32 / BF16 / FP16 against the CPU's emulation (inputs rounded to nearest, FP32
 * sums): a tenth of the format's unit roundoff, so only the order of the sums may
 * differ; a GPU that kept FP32 products, or rounded otherwise, misses it by about
 * the roundoff itself. */
#include "cuda_check.h"

static double tolerance(qb_math m)
{
    switch (m) {
    case QB_MATH_TF32:
    case QB_MATH_FP16: return 0.1 * 0x1p-11;
    case QB_MATH_BF16: return 0.1 * 0x1p-8;
    case QB_MATH_FP32: break;
    }
    return CUDA_TOL;
}

static void check_linear(int M, int N, int K, int bias, qb_math m)
{
    char what[96];
    snprintf(what, sizeof what, "linear %s M=%d N=%d K=%d bias=%d", qb_math_name(m), M, N, K, bias);
    float *x = rand_host((size_t)M * K, -1, 1), *w = rand_host((size_t)N * K, -1, 1);
    float *b = bias ? rand_host((size_t)N, -1, 1) : NULL, *y = host_alloc((size_t)M * N * sizeof *y);
    float *dx = dev_from(x, (size_t)M * K * 4), *dw = dev_from(w, (size_t)N * K * 4);
    float *db = b ? dev_from(b, (size_t)N * 4) : NULL, *dy = dev_from(NULL, (size_t)M * N * 4);
    cpu->linear(y, x, w, b, M, N, K, m);
    gpu->linear(dy, dx, dw, db, M, N, K, m);
    check_close(what, dy, y, (size_t)M * N, tolerance(m));
    free(x), free(w), free(b), free(y);
    gpu->free(dx), gpu->free(dw), gpu->free(db), gpu->free(dy);
}

static void check_linear_backward(int M, int N, int K, int want_dx, int want_db, qb_math m)
{
    char what[128];
    snprintf(what, sizeof what, "linear_backward %s M=%d N=%d K=%d dx=%d db=%d", qb_math_name(m), M, N, K, want_dx,
             want_db);
    const double tol = tolerance(m);
    const size_t MN = (size_t)M * N, MK = (size_t)M * K, NK = (size_t)N * K;
    float *dy = rand_host(MN, -1, 1), *x = rand_host(MK, -1, 1), *w = rand_host(NK, -1, 1);
    float *dw = rand_host(NK, -1, 1), *db = rand_host((size_t)N, -1, 1);  /* accumulated onto */
    float *dx = want_dx ? host_alloc(MK * sizeof *dx) : NULL;
    float *g_dy = dev_from(dy, MN * 4), *g_x = dev_from(x, MK * 4), *g_w = dev_from(w, NK * 4);
    float *g_dw = dev_from(dw, NK * 4), *g_db = dev_from(db, (size_t)N * 4);
    float *g_dx = want_dx ? dev_from(NULL, MK * 4) : NULL;
    cpu->linear_backward(dx, dw, want_db ? db : NULL, dy, x, w, M, N, K, m);
    gpu->linear_backward(g_dx, g_dw, want_db ? g_db : NULL, g_dy, g_x, g_w, M, N, K, m);
    char part[160];
    if (want_dx) {
        snprintf(part, sizeof part, "%s: dx", what);
        check_close(part, g_dx, dx, MK, tol);
    }
    snprintf(part, sizeof part, "%s: dW", what);
    check_close(part, g_dw, dw, NK, tol);
    snprintf(part, sizeof part, "%s: db", what);
    check_close(part, g_db, db, (size_t)N, tol);  /* unchanged when not asked for */
    free(dy), free(x), free(w), free(dw), free(db), free(dx);
    gpu->free(g_dy), gpu->free(g_x), gpu->free(g_w), gpu->free(g_dw), gpu->free(g_db), gpu->free(g_dx);
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_gemm")) return 0;
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
    qb_cuda_scratch_release();
    qb_cuda_gemm_release();
    return check_summary("test_cuda_gemm");
}
