/* The CUDA attention (forward and backward) against the CPU backend's on fresh random
 * inputs, in FP32 (the CUDA-core reference kernels; relative L2 <= 1e-5) and with BF16
 * and FP16 products (the tensor-core kernels of cuda/flash_attention.cu at head dims
 * 32, 64, 128, the FP32 kernels otherwise; against the CPU's emulation of those
 * products, relative L2 <= 1e-2: shared/DESIGN.md). Every shape runs inference (no
 * log-sum-exp) and training (log-sum-exp kept, then the backward from each backend's
 * own out and lse), with dropout off (NULL or p = 0) and on (p = 0.1, the same
 * qb_dropout on both backends). Outputs are poisoned (NaN) before each run, so an
 * element left unwritten fails. Shapes: T = 1, T = 512, T not a multiple of 16 or 64,
 * D = 32, 64, 128 and an odd D, B*H > 1. Masks: a padded tail in the first sequence
 * (whole key tiles of it skipped at T = 512), random lengths in the middle ones, the
 * last sequence (B >= 2) fully padded (its log-sum-exp is the backend's own and is
 * not compared). q, k, v as the thirds of one fused QKV buffer too (check_fused). Past
 * the limits (T > 512, D > 128) the op must leave a pending error that names them. */
#include "cuda_check.h"

/* lse (B, H, T) of the sequences that attend to at least one key (mask (B, T)). */
static void check_lse(const char *what, const float *g_lse, const float *lse, const int32_t *mask, int B, int T,
                      int H, double tol)
{
    const size_t n = (size_t)B * H * T;
    float *got = host_from(g_lse, n * sizeof *got, what);
    for (int b = 0; b < B; b++) {
        int any = 0;
        for (int t = 0; t < T; t++) any |= mask[(size_t)b * T + t];
        const size_t off = (size_t)b * H * T;
        if (any) {
            const double e = rel_l2(got + off, lse + off, (size_t)H * T);
            CHECKF(e <= tol && !isnan(e), "%s: sequence %d: relative L2 error %.3g > %.1g", what, b, e, tol);
        }
    }
    free(got);
}

/* One case: train keeps lse (and then runs the backward pass); p < 0 passes drop =
 * NULL, else drop with that p. */
static void check_attention(int B, int T, int H, int D, int train, float p, qb_math m)
{
    char what[112], part[160];
    snprintf(what, sizeof what, "attention %s B=%d T=%d H=%d D=%d train=%d p=%g", qb_math_name(m), B, T, H, D, train,
             p);
    const double tol = m == QB_MATH_FP32 ? CUDA_TOL : 1e-2;
    const size_t n = (size_t)B * T * H * D, nl = (size_t)B * H * T;
    float *q = rand_host(n, -2, 2), *k = rand_host(n, -2, 2), *v = rand_host(n, -1, 1);
    float *dout = rand_host(n, -1, 1);
    int32_t *mask = host_alloc((size_t)B * T * sizeof *mask);
    for (int b = 0; b < B; b++) {
        const int len = B >= 2 && b == B - 1 ? 0 : b == 0 ? T - T / 3 : 1 + (int)(qb_rng_u32(&cuda_rng) % T);
        for (int t = 0; t < T; t++) mask[(size_t)b * T + t] = t < len;
    }
    const qb_dropout drop_on = {.p = p, .seed = qb_rng_u32(&cuda_rng), .stream = 7};
    const qb_dropout *drop = p < 0.0f ? NULL : &drop_on;

    float *out = host_alloc(n * sizeof *out), *lse = train ? host_alloc(nl * sizeof *lse) : NULL;
    float *g_q = dev_from(q, n * 4), *g_k = dev_from(k, n * 4), *g_v = dev_from(v, n * 4);
    int32_t *g_mask = dev_from(mask, (size_t)B * T * 4);
    float *g_out = dev_poison(n * 4), *g_lse = train ? dev_poison(nl * 4) : NULL;
    cpu->attention(NULL, out, lse, q, k, v, H * D, mask, drop, B, T, H, D, m, QB_F32);
    gpu->attention(NULL, g_out, g_lse, g_q, g_k, g_v, H * D, g_mask, drop, B, T, H, D, m, QB_F32);
    snprintf(part, sizeof part, "%s: out", what);
    check_close(part, g_out, out, n, tol);

    if (train) {
        snprintf(part, sizeof part, "%s: lse", what);
        check_lse(part, g_lse, lse, mask, B, T, H, tol);
        float *dq = host_alloc(n * sizeof *dq), *dk = host_alloc(n * sizeof *dk), *dv = host_alloc(n * sizeof *dv);
        float *g_dout = dev_from(dout, n * 4);
        float *g_dq = dev_poison(n * 4), *g_dk = dev_poison(n * 4), *g_dv = dev_poison(n * 4);
        cpu->attention_backward(NULL, dq, dk, dv, dout, q, k, v, H * D, out, lse, mask, drop, B, T, H, D, m, QB_F32);
        gpu->attention_backward(NULL, g_dq, g_dk, g_dv, g_dout, g_q, g_k, g_v, H * D, g_out, g_lse, g_mask, drop, B, T, H, D, m, QB_F32);
        snprintf(part, sizeof part, "%s: dq", what);
        check_close(part, g_dq, dq, n, tol);
        snprintf(part, sizeof part, "%s: dk", what);
        check_close(part, g_dk, dk, n, tol);
        snprintf(part, sizeof part, "%s: dv", what);
        check_close(part, g_dv, dv, n, tol);
        free(dq), free(dk), free(dv);
        gpu->free(g_dout), gpu->free(g_dq), gpu->free(g_dk), gpu->free(g_dv);
    }
    free(q), free(k), free(v), free(dout), free(mask), free(out), free(lse);
    gpu->free(g_q), gpu->free(g_k), gpu->free(g_v), gpu->free(g_mask), gpu->free(g_out), gpu->free(g_lse);
}

/* q, k, v as the thirds of one (B, T, 3 H D) buffer (a fused QKV product, ld = 3 H D)
 * and dq, dk, dv into the thirds of another, with dropout: out and each gradient's
 * third against the CPU's on the same layout; the other thirds of the gradient
 * buffer (poisoned) are the other gradients', so every element must be written. */
static void check_fused(int B, int T, int H, int D, qb_math m)
{
    char what[96];
    const int C = H * D, ld = 3 * C;
    const size_t n = (size_t)B * T * C, n3 = 3 * n, nl = (size_t)B * H * T;
    const double tol = m == QB_MATH_FP32 ? CUDA_TOL : 1e-2;
    float *qkv = rand_host(n3, -2, 2), *dout = rand_host(n, -1, 1), *out = host_alloc(n * 4), *lse = host_alloc(nl * 4);
    float *dqkv = host_alloc(n3 * 4);
    int32_t *mask = host_alloc((size_t)B * T * 4);
    for (int i = 0; i < B * T; i++) mask[i] = i % T < T - 3 * (i / T);
    const qb_dropout drop = {0.1f, qb_rng_u32(&cuda_rng), 11, NULL};
    float *g_qkv = dev_from(qkv, n3 * 4), *g_dout = dev_from(dout, n * 4), *g_out = dev_poison(n * 4);
    float *g_lse = dev_poison(nl * 4), *g_dqkv = dev_poison(n3 * 4);
    int32_t *g_mask = dev_from(mask, (size_t)B * T * 4);
    cpu->attention(NULL, out, lse, qkv, qkv + C, qkv + 2 * C, ld, mask, &drop, B, T, H, D, m, QB_F32);
    gpu->attention(NULL, g_out, g_lse, g_qkv, g_qkv + C, g_qkv + 2 * C, ld, g_mask, &drop, B, T, H, D, m, QB_F32);
    snprintf(what, sizeof what, "attention fused qkv %s B=%d T=%d H=%d D=%d: out", qb_math_name(m), B, T, H, D);
    check_close(what, g_out, out, n, tol);
    cpu->attention_backward(NULL, dqkv, dqkv + C, dqkv + 2 * C, dout, qkv, qkv + C, qkv + 2 * C, ld, out, lse, mask,
                            &drop, B, T, H, D, m, QB_F32);
    gpu->attention_backward(NULL, g_dqkv, g_dqkv + C, g_dqkv + 2 * C, g_dout, g_qkv, g_qkv + C, g_qkv + 2 * C, ld, g_out,
                            g_lse, g_mask, &drop, B, T, H, D, m, QB_F32);
    snprintf(what, sizeof what, "attention_backward fused qkv %s B=%d T=%d H=%d D=%d", qb_math_name(m), B, T, H, D);
    check_close(what, g_dqkv, dqkv, n3, tol);
    free(qkv), free(dout), free(out), free(lse), free(dqkv), free(mask);
    gpu->free(g_qkv), gpu->free(g_dout), gpu->free(g_out), gpu->free(g_lse), gpu->free(g_dqkv), gpu->free(g_mask);
}

/* T past 512 or D past 128: nothing runs, and the next sync reports an error whose
 * message names the limit (once). Buffers are large enough anyway. */
static void check_limits(void)
{
    static const int cases[][2] = {{513, 64}, {4, 129}};
    for (int c = 0; c < 2; c++) {
        const int T = cases[c][0], D = cases[c][1];
        const char *limit = T > 512 ? "512" : "128";
        const size_t n = (size_t)T * D;
        float *buf = dev_from(NULL, n * 4), *lse = dev_from(NULL, (size_t)T * 4);
        float *dq = dev_from(NULL, n * 4), *dk = dev_from(NULL, n * 4), *dv = dev_from(NULL, n * 4);
        int32_t *mask = dev_from(NULL, (size_t)T * 4);
        for (int mi = 0; mi < 2; mi++) {  /* the FP32 kernels' limits and the tensor cores' */
            const qb_math m = mi ? QB_MATH_BF16 : QB_MATH_FP32;
            gpu->attention(NULL, buf, lse, buf, buf, buf, D, mask, NULL, 1, T, 1, D, m, QB_F32);
            qb_status st = qb_cuda_sync(NULL);
            CHECKF(st != QB_OK && strstr(qb_error(), limit), "attention %s T=%d D=%d: %s", qb_math_name(m), T, D,
                   st == QB_OK ? "no error" : qb_error());
            CHECK(qb_cuda_sync(NULL) == QB_OK);

            gpu->attention_backward(NULL, dq, dk, dv, buf, buf, buf, buf, D, buf, lse, mask, NULL, 1, T, 1, D, m, QB_F32);
            st = qb_cuda_sync(NULL);
            CHECKF(st != QB_OK && strstr(qb_error(), limit), "attention_backward %s T=%d D=%d: %s", qb_math_name(m),
                   T, D, st == QB_OK ? "no error" : qb_error());
            CHECK(qb_cuda_sync(NULL) == QB_OK);
        }
        gpu->free(buf), gpu->free(lse), gpu->free(dq), gpu->free(dk), gpu->free(dv), gpu->free(mask);
    }
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_attention")) return QB_TEST_SKIPPED;
    static const int shapes[][4] = {{2, 1, 2, 64},  {3, 45, 2, 64},  {3, 77, 3, 32}, {2, 512, 2, 64},
                                    {2, 100, 2, 128}, {3, 17, 2, 3}, {1, 64, 4, 64}, {4, 128, 2, 64},
                                    {2, 200, 1, 128}};
    /* {train, p}: p < 0 passes no qb_dropout at all. */
    static const struct {
        int train;
        float p;
    } variants[] = {{0, -1.0f}, {0, 0.0f}, {1, -1.0f}, {1, 0.0f}, {1, 0.1f}, {0, 0.1f}};
    static const qb_math maths[] = {QB_MATH_FP32, QB_MATH_BF16, QB_MATH_FP16};
    for (size_t mi = 0; mi < sizeof maths / sizeof *maths; mi++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
                check_attention(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], variants[i].train,
                                variants[i].p, maths[mi]);
    for (size_t mi = 0; mi < sizeof maths / sizeof *maths; mi++) {
        check_fused(2, 77, 3, 64, maths[mi]);
        check_fused(3, 130, 2, 32, maths[mi]);
    }
    check_limits();
    return check_summary("test_cuda_attention");
}
