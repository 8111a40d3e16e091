/* The CUDA attention (forward and backward) against the CPU backend's on fresh random
 * inputs (shared/DESIGN.md: f32, relative L2 <= 1e-5). Every shape runs both forward
 * paths (online softmax: no probs and no dropout; score rows: probs kept or dropout
 * on), with dropout off (NULL or p = 0) and on (p = 0.1, the same qb_dropout on both
 * backends), and the backward pass from each backend's own probs. Shapes: T = 1,
 * T = 512, T not a multiple of 32, D = 32, 64, 128 and an odd D, B*H > 1. Masks: a
 * padded tail in the first sequence, random lengths in the middle ones, the last
 * sequence (B >= 2) fully padded. Past the limits (T > 512, D > 128) the op must
 * leave a pending error that names them. */
#include "cuda_check.h"

/* One case: keep_probs asks for probs (and then runs the backward pass); p < 0
 * passes drop = NULL, else drop with that p. */
static void check_attention(int B, int T, int H, int D, int keep_probs, float p)
{
    char what[96];
    snprintf(what, sizeof what, "attention B=%d T=%d H=%d D=%d probs=%d p=%g", B, T, H, D, keep_probs, p);
    const size_t n = (size_t)B * T * H * D, np = (size_t)B * H * T * T;
    float *q = rand_host(n, -2, 2), *k = rand_host(n, -2, 2), *v = rand_host(n, -1, 1);
    float *dout = rand_host(n, -1, 1);
    int32_t *mask = host_alloc((size_t)B * T * sizeof *mask);
    for (int b = 0; b < B; b++) {
        const int len = B >= 2 && b == B - 1 ? 0 : b == 0 ? T - T / 3 : 1 + (int)(qb_rng_u32(&cuda_rng) % T);
        for (int t = 0; t < T; t++) mask[(size_t)b * T + t] = t < len;
    }
    const qb_dropout drop_on = {.p = p, .seed = qb_rng_u32(&cuda_rng), .stream = 7};
    const qb_dropout *drop = p < 0.0f ? NULL : &drop_on;

    float *out = host_alloc(n * sizeof *out), *probs = keep_probs ? host_alloc(np * sizeof *probs) : NULL;
    float *g_q = dev_from(q, n * 4), *g_k = dev_from(k, n * 4), *g_v = dev_from(v, n * 4);
    int32_t *g_mask = dev_from(mask, (size_t)B * T * 4);
    float *g_out = dev_from(NULL, n * 4), *g_probs = keep_probs ? dev_from(NULL, np * 4) : NULL;
    cpu->attention(out, probs, q, k, v, mask, drop, B, T, H, D);
    gpu->attention(g_out, g_probs, g_q, g_k, g_v, g_mask, drop, B, T, H, D);
    char part[160];
    snprintf(part, sizeof part, "%s: out", what);
    check_close(part, g_out, out, n, CUDA_TOL);

    if (keep_probs) {
        snprintf(part, sizeof part, "%s: probs", what);
        check_close(part, g_probs, probs, np, CUDA_TOL);
        float *dq = host_alloc(n * sizeof *dq), *dk = host_alloc(n * sizeof *dk), *dv = host_alloc(n * sizeof *dv);
        float *g_dout = dev_from(dout, n * 4);
        float *g_dq = dev_from(NULL, n * 4), *g_dk = dev_from(NULL, n * 4), *g_dv = dev_from(NULL, n * 4);
        cpu->attention_backward(dq, dk, dv, dout, q, k, v, probs, drop, B, T, H, D);
        gpu->attention_backward(g_dq, g_dk, g_dv, g_dout, g_q, g_k, g_v, g_probs, drop, B, T, H, D);
        snprintf(part, sizeof part, "%s: dq", what);
        check_close(part, g_dq, dq, n, CUDA_TOL);
        snprintf(part, sizeof part, "%s: dk", what);
        check_close(part, g_dk, dk, n, CUDA_TOL);
        snprintf(part, sizeof part, "%s: dv", what);
        check_close(part, g_dv, dv, n, CUDA_TOL);
        free(dq), free(dk), free(dv);
        gpu->free(g_dout), gpu->free(g_dq), gpu->free(g_dk), gpu->free(g_dv);
    }
    free(q), free(k), free(v), free(dout), free(mask), free(out), free(probs);
    gpu->free(g_q), gpu->free(g_k), gpu->free(g_v), gpu->free(g_mask), gpu->free(g_out), gpu->free(g_probs);
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
        float *buf = dev_from(NULL, n * 4), *probs = dev_from(NULL, (size_t)T * T * 4);
        float *dq = dev_from(NULL, n * 4), *dk = dev_from(NULL, n * 4), *dv = dev_from(NULL, n * 4);
        int32_t *mask = dev_from(NULL, (size_t)T * 4);

        gpu->attention(buf, probs, buf, buf, buf, mask, NULL, 1, T, 1, D);
        qb_status st = qb_cuda_sync();
        CHECKF(st != QB_OK && strstr(qb_error(), limit), "attention T=%d D=%d: %s", T, D,
               st == QB_OK ? "no error" : qb_error());
        CHECK(qb_cuda_sync() == QB_OK);

        gpu->attention_backward(dq, dk, dv, buf, buf, buf, buf, probs, NULL, 1, T, 1, D);
        st = qb_cuda_sync();
        CHECKF(st != QB_OK && strstr(qb_error(), limit), "attention_backward T=%d D=%d: %s", T, D,
               st == QB_OK ? "no error" : qb_error());
        CHECK(qb_cuda_sync() == QB_OK);

        gpu->free(buf), gpu->free(probs), gpu->free(dq), gpu->free(dk), gpu->free(dv), gpu->free(mask);
    }
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_attention")) return 0;
    static const int shapes[][4] = {{2, 1, 2, 64},  {3, 45, 2, 64}, {3, 77, 3, 32}, {2, 512, 2, 64},
                                    {2, 100, 2, 128}, {3, 17, 2, 3}, {1, 64, 4, 64}, {4, 128, 2, 64}};
    /* {keep probs, p}: p < 0 passes no qb_dropout at all. */
    static const struct {
        int keep_probs;
        float p;
    } variants[] = {{0, -1.0f}, {0, 0.0f}, {1, -1.0f}, {1, 0.0f}, {1, 0.1f}, {0, 0.1f}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++)
            check_attention(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], variants[i].keep_probs,
                            variants[i].p);
    check_limits();
    return check_summary("test_cuda_attention");
}
