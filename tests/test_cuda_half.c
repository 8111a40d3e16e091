/* The CUDA ops with activations stored in FP16 and BF16 (backend.h's qb_dtype t, the
 * GPU's QB_CAN_HALF) against the CPU backend in FP32 on the same values: every input
 * the GPU reads in half is rounded first and the CPU reads the rounded values, so
 * what differs is the GPU's rounding of its outputs (and, for the products, their
 * format and the order of the sums). Tolerances (shared/DESIGN.md): half outputs
 * relative L2 <= 1e-2; FP32 outputs computed from half inputs (LayerNorm statistics,
 * parameter gradients) 1e-4 (the same values, another order of the sums). Outputs are
 * poisoned (NaN) before each op, so an element left unwritten fails. Ops: rows (the
 * conversions, bit for bit), gelu, gelu_backward, add, dropout, layernorm (+ residual,
 * its input and statistics) and its backward, embedding (FP32 and half tables) and its
 * backward, linear (bias in the epilogue) and its backward, attention and its backward
 * (the tensor-core kernels reading half with cp.async). Sizes off every vector width,
 * and at an offset of one element (the unaligned paths). */
#include "cuda_check.h"

#define HALF_TOL 1e-2
#define SUM_TOL 1e-4

static const qb_dtype halves[2] = {QB_BF16, QB_F16};

static qb_math math_of(qb_dtype t) { return t == QB_BF16 ? QB_MATH_BF16 : QB_MATH_FP16; }

/* n fresh values in [lo, hi), rounded to t, on the device (*dev) and the host. */
static float *rand_store(size_t n, float lo, float hi, qb_dtype t, void **dev)
{
    float *x = rand_host(n, lo, hi);
    *dev = dev_store(x, n, t);
    return x;
}

/* n values of device buffer dev stored in t against ref. */
static void check_as(const char *what, const void *dev, qb_dtype t, const float *ref, size_t n, double tol)
{
    float *got = host_floats(dev, n, t, what);
    const double e = rel_l2(got, ref, n);
    CHECKF(e <= tol && !isnan(e), "%s %s: relative L2 error %.3g > %.1g (n %zu)", what, qb_dtype_name(t), e, tol, n);
    free(got);
}

/* rows: FP32 -> t -> FP32, gathered with strides, against the CPU's conversions: the
 * same bits (both round to nearest). */
static void check_rows(qb_dtype t)
{
    enum { R = 5, C = 37, LDS = 41, LDD = 39 };
    float *x = rand_host((size_t)R * LDS, -300, 300);
    uint16_t *h = host_alloc((size_t)R * LDD * 2);
    float *back = host_alloc((size_t)R * C * 4);
    void *g_x = dev_from(x, (size_t)R * LDS * 4), *g_h = dev_poison((size_t)R * LDD * 2);
    void *g_back = dev_poison((size_t)R * C * 4);
    memset(h, 0xFF, (size_t)R * LDD * 2);
    cpu->rows(NULL, h, t, LDD, x, QB_F32, LDS, R, C);
    gpu->rows(NULL, g_h, t, LDD, g_x, QB_F32, LDS, R, C);
    char what[64];
    snprintf(what, sizeof what, "rows F32 -> %s", qb_dtype_name(t));
    check_equal(what, g_h, h, (size_t)R * LDD * 2);  /* the gaps stay poisoned on both */
    cpu->rows(NULL, back, QB_F32, C, h, t, LDD, R, C);
    gpu->rows(NULL, g_back, QB_F32, C, g_h, t, LDD, R, C);
    snprintf(what, sizeof what, "rows %s -> F32", qb_dtype_name(t));
    check_equal(what, g_back, back, (size_t)R * C * 4);
    free(x), free(h), free(back);
    gpu->free(g_x), gpu->free(g_h), gpu->free(g_back);
}

/* gelu, gelu_backward, add and dropout on n elements at an offset of off. */
static void check_elementwise(qb_dtype t, size_t n, size_t off)
{
    const size_t e = qb_store_bytes(t), all = n + off;
    char what[96];
    void *g_x, *g_dy, *g_y;
    float *x = rand_store(all, -6, 6, t, &g_x), *dy = rand_store(all, -1, 1, t, &g_dy);
    float *y = rand_store(all, -1, 1, t, &g_y), *ref = host_alloc(all * 4);
    void *g_out = dev_poison(all * e);
    char *gx = (char *)g_x + off * e, *gout = (char *)g_out + off * e;

    cpu->gelu(NULL, ref, x + off, n, QB_F32);
    gpu->gelu(NULL, gout, gx, n, t);
    snprintf(what, sizeof what, "gelu n=%zu offset %zu", n, off);
    check_as(what, gout, t, ref, n, HALF_TOL);

    cpu->gelu_backward(NULL, ref, dy + off, x + off, n, QB_F32);
    gpu->gelu_backward(NULL, gout, (char *)g_dy + off * e, gx, n, t);
    snprintf(what, sizeof what, "gelu_backward n=%zu offset %zu", n, off);
    check_as(what, gout, t, ref, n, HALF_TOL);

    memcpy(ref, y + off, n * 4);
    cpu->add(NULL, ref, x + off, n, QB_F32);
    gpu->add(NULL, (char *)g_y + off * e, gx, n, t);
    snprintf(what, sizeof what, "add n=%zu offset %zu", n, off);
    check_as(what, (char *)g_y + off * e, t, ref, n, HALF_TOL);

    const qb_dropout drop = {0.1f, qb_rng_u32(&cuda_rng), 3, NULL};
    memcpy(ref, x + off, n * 4);
    cpu->dropout(NULL, ref, n, &drop, QB_F32);
    gpu->dropout(NULL, gx, n, &drop, t);
    snprintf(what, sizeof what, "dropout n=%zu offset %zu", n, off);
    check_as(what, gx, t, ref, n, HALF_TOL);
    free(x), free(dy), free(y), free(ref);
    gpu->free(g_x), gpu->free(g_dy), gpu->free(g_y), gpu->free(g_out);
}

/* layernorm with a residual, keeping its input u and statistics, then its backward
 * from the stored u (as training reads it). */
static void check_layernorm(qb_dtype t, int M, int C)
{
    const size_t n = (size_t)M * C, e = qb_store_bytes(t);
    char what[96];
    void *g_x, *g_res, *g_dout;
    float *x = rand_store(n, -2, 2, t, &g_x), *res = rand_store(n, -1, 1, t, &g_res);
    float *dout = rand_store(n, -1, 1, t, &g_dout);
    float *g = rand_host((size_t)C, 0.5f, 1.5f), *b = rand_host((size_t)C, -0.5f, 0.5f);
    float *dg = rand_host((size_t)C, -1, 1), *db = rand_host((size_t)C, -1, 1);  /* accumulated onto */
    float *out = host_alloc(n * 4), *u = host_alloc(n * 4), *stats = host_alloc((size_t)M * 8);
    float *du = host_alloc(n * 4);
    float *g_g = dev_from(g, (size_t)C * 4), *g_b = dev_from(b, (size_t)C * 4), *g_stats = dev_poison((size_t)M * 8);
    float *g_dg = dev_from(dg, (size_t)C * 4), *g_db = dev_from(db, (size_t)C * 4);
    void *g_out = dev_poison(n * e), *g_u = dev_poison(n * e), *g_du = dev_poison(n * e);

    cpu->layernorm(NULL, out, u, stats, NULL, x, res, g, b, M, C, 1e-12f, QB_F32);
    gpu->layernorm(NULL, g_out, g_u, g_stats, NULL, g_x, g_res, g_g, g_b, M, C, 1e-12f, t);
    snprintf(what, sizeof what, "layernorm M=%d C=%d: out", M, C);
    check_as(what, g_out, t, out, n, HALF_TOL);
    snprintf(what, sizeof what, "layernorm M=%d C=%d: u", M, C);
    check_as(what, g_u, t, u, n, HALF_TOL);
    snprintf(what, sizeof what, "layernorm M=%d C=%d: stats", M, C);
    check_close(what, g_stats, stats, (size_t)M * 2, SUM_TOL);

    /* the backward reads u as stored: the CPU reads it rounded too */
    free(u);
    u = host_floats(g_u, n, t, "layernorm u");
    cpu->layernorm_backward(NULL, du, dg, db, dout, u, stats, g, M, C, QB_F32);
    gpu->layernorm_backward(NULL, g_du, g_dg, g_db, g_dout, g_u, g_stats, g_g, M, C, t);
    snprintf(what, sizeof what, "layernorm_backward M=%d C=%d: du", M, C);
    check_as(what, g_du, t, du, n, HALF_TOL);
    snprintf(what, sizeof what, "layernorm_backward M=%d C=%d: dg", M, C);
    check_close(what, g_dg, dg, (size_t)C, SUM_TOL);
    snprintf(what, sizeof what, "layernorm_backward M=%d C=%d: db", M, C);
    check_close(what, g_db, db, (size_t)C, SUM_TOL);
    free(x), free(res), free(dout), free(g), free(b), free(dg), free(db), free(out), free(u), free(stats), free(du);
    gpu->free(g_x), gpu->free(g_res), gpu->free(g_dout), gpu->free(g_g), gpu->free(g_b), gpu->free(g_stats);
    gpu->free(g_dg), gpu->free(g_db), gpu->free(g_out), gpu->free(g_u), gpu->free(g_du);
}

/* embedding from FP32 tables and from tables in t, then its backward from dout in t. */
static void check_embedding(qb_dtype t)
{
    enum { B = 3, T = 17, C = 96, V = 50, P = 20, TV = 2 };
    const size_t n = (size_t)B * T * C, e = qb_store_bytes(t);
    int32_t ids[B * T], types[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(qb_rng_u32(&cuda_rng) % V), types[i] = (int32_t)(i % 3 == 0);
    int32_t *g_ids = dev_from(ids, sizeof ids), *g_types = dev_from(types, sizeof types);
    float *tab[3], *ref = host_alloc(n * 4);
    void *g_tab[3], *h_tab[3];
    const int rows[3] = {V, P, TV};
    for (int k = 0; k < 3; k++) {
        tab[k] = rand_host((size_t)rows[k] * C, -1, 1);
        g_tab[k] = dev_from(tab[k], (size_t)rows[k] * C * 4);
    }
    void *g_out = dev_poison(n * e);
    char what[64];
    cpu->embedding(NULL, ref, ids, types, tab[0], tab[1], tab[2], B, T, C, QB_F32, QB_F32);
    gpu->embedding(NULL, g_out, g_ids, g_types, g_tab[0], g_tab[1], g_tab[2], B, T, C, t, QB_F32);
    check_as("embedding, FP32 tables", g_out, t, ref, n, HALF_TOL);
    for (int k = 0; k < 3; k++) h_tab[k] = dev_store(tab[k], (size_t)rows[k] * C, t);  /* tab rounded now */
    cpu->embedding(NULL, ref, ids, types, tab[0], tab[1], tab[2], B, T, C, QB_F32, QB_F32);
    gpu->embedding(NULL, g_out, g_ids, g_types, h_tab[0], h_tab[1], h_tab[2], B, T, C, t, t);
    check_as("embedding, half tables", g_out, t, ref, n, HALF_TOL);

    void *g_dout;
    float *dout = rand_store(n, -1, 1, t, &g_dout), *grad[3];
    float *g_grad[3];
    for (int k = 0; k < 3; k++) {
        grad[k] = rand_host((size_t)rows[k] * C, -1, 1);
        g_grad[k] = dev_from(grad[k], (size_t)rows[k] * C * 4);
    }
    cpu->embedding_backward(NULL, grad[0], grad[1], grad[2], dout, ids, types, 0, B, T, C, QB_F32);
    gpu->embedding_backward(NULL, g_grad[0], g_grad[1], g_grad[2], g_dout, g_ids, g_types, 0, B, T, C, t);
    for (int k = 0; k < 3; k++) {
        snprintf(what, sizeof what, "embedding_backward %s: table %d", qb_dtype_name(t), k);
        check_close(what, g_grad[k], grad[k], (size_t)rows[k] * C, SUM_TOL);
    }
    for (int k = 0; k < 3; k++) free(tab[k]), free(grad[k]), gpu->free(g_tab[k]), gpu->free(h_tab[k]), gpu->free(g_grad[k]);
    free(ref), free(dout);
    gpu->free(g_ids), gpu->free(g_types), gpu->free(g_out), gpu->free(g_dout);
}

/* linear with the bias in the epilogue, then its backward (dx in t; dW and db FP32,
 * accumulated onto non-zero values). */
static void check_linear(qb_dtype t, int M, int N, int K)
{
    const size_t e = qb_store_bytes(t), MK = (size_t)M * K, NK = (size_t)N * K, MN = (size_t)M * N;
    char what[96];
    void *g_x, *g_w, *g_b, *g_dy;
    float *x = rand_store(MK, -1, 1, t, &g_x), *w = rand_store(NK, -1, 1, t, &g_w);
    float *b = rand_store((size_t)N, -1, 1, t, &g_b), *dy = rand_store(MN, -1, 1, t, &g_dy);
    float *dw = rand_host(NK, -1, 1), *db = rand_host((size_t)N, -1, 1);
    float *y = host_alloc(MN * 4), *dx = host_alloc(MK * 4);
    float *g_dw = dev_from(dw, NK * 4), *g_db = dev_from(db, (size_t)N * 4);
    void *g_y = dev_poison(MN * e), *g_dx = dev_poison(MK * e);
    cpu->linear(NULL, y, x, w, b, M, N, K, QB_MATH_FP32, QB_F32);
    gpu->linear(NULL, g_y, g_x, g_w, g_b, M, N, K, math_of(t), t);
    snprintf(what, sizeof what, "linear M=%d N=%d K=%d", M, N, K);
    check_as(what, g_y, t, y, MN, HALF_TOL);
    cpu->linear_backward(NULL, dx, dw, db, dy, x, w, M, N, K, QB_MATH_FP32, QB_F32);
    gpu->linear_backward(NULL, g_dx, g_dw, g_db, g_dy, g_x, g_w, M, N, K, math_of(t), t);
    snprintf(what, sizeof what, "linear_backward M=%d N=%d K=%d: dx", M, N, K);
    check_as(what, g_dx, t, dx, MK, HALF_TOL);
    snprintf(what, sizeof what, "linear_backward M=%d N=%d K=%d: dW", M, N, K);
    check_close(what, g_dw, dw, NK, SUM_TOL);
    snprintf(what, sizeof what, "linear_backward M=%d N=%d K=%d: db", M, N, K);
    check_close(what, g_db, db, (size_t)N, SUM_TOL);
    free(x), free(w), free(b), free(dy), free(dw), free(db), free(y), free(dx);
    gpu->free(g_x), gpu->free(g_w), gpu->free(g_b), gpu->free(g_dy), gpu->free(g_dw), gpu->free(g_db);
    gpu->free(g_y), gpu->free(g_dx);
}

/* attention in t (the tensor-core kernels, q, k, v, out and gradients in half) with
 * dropout, against the CPU's emulation of the same products: the first sequence with
 * a padded tail, the last fully padded, the others of random length. */
static void check_attention(qb_dtype t, int B, int T, int H, int D)
{
    const size_t n = (size_t)B * T * H * D, nl = (size_t)B * H * T, e = qb_store_bytes(t);
    const qb_math m = math_of(t);
    char what[96];
    void *g_q, *g_k, *g_v, *g_dout;
    float *q = rand_store(n, -2, 2, t, &g_q), *k = rand_store(n, -2, 2, t, &g_k), *v = rand_store(n, -1, 1, t, &g_v);
    float *dout = rand_store(n, -1, 1, t, &g_dout);
    int32_t *mask = host_alloc((size_t)B * T * 4);
    for (int b = 0; b < B; b++) {
        const int len = b == B - 1 ? 0 : b == 0 ? T - T / 3 : 1 + (int)(qb_rng_u32(&cuda_rng) % T);
        for (int i = 0; i < T; i++) mask[(size_t)b * T + i] = i < len;
    }
    int32_t *g_mask = dev_from(mask, (size_t)B * T * 4);
    const qb_dropout drop = {0.1f, qb_rng_u32(&cuda_rng), 9, NULL};
    float *out = host_alloc(n * 4), *lse = host_alloc(nl * 4), *dq = host_alloc(n * 4), *dk = host_alloc(n * 4);
    float *dv = host_alloc(n * 4), *g_lse = dev_poison(nl * 4);
    void *g_out = dev_poison(n * e), *g_dq = dev_poison(n * e), *g_dk = dev_poison(n * e), *g_dv = dev_poison(n * e);
    cpu->attention(NULL, out, lse, q, k, v, H * D, mask, &drop, B, T, H, D, m, QB_F32);
    gpu->attention(NULL, g_out, g_lse, g_q, g_k, g_v, H * D, g_mask, &drop, B, T, H, D, m, t);
    snprintf(what, sizeof what, "attention B=%d T=%d H=%d D=%d: out", B, T, H, D);
    check_as(what, g_out, t, out, n, HALF_TOL);
    /* the backward from the GPU's own out (as stored) and lse */
    free(out);
    out = host_floats(g_out, n, t, "attention out");
    cpu->attention_backward(NULL, dq, dk, dv, dout, q, k, v, H * D, out, lse, mask, &drop, B, T, H, D, m, QB_F32);
    gpu->attention_backward(NULL, g_dq, g_dk, g_dv, g_dout, g_q, g_k, g_v, H * D, g_out, g_lse, g_mask, &drop, B, T, H, D,
                            m, t);
    const void *gg[3] = {g_dq, g_dk, g_dv};
    const float *rr[3] = {dq, dk, dv};
    for (int i = 0; i < 3; i++) {
        snprintf(what, sizeof what, "attention_backward B=%d T=%d H=%d D=%d: d%c", B, T, H, D, "qkv"[i]);
        check_as(what, gg[i], t, rr[i], n, HALF_TOL);
    }
    free(q), free(k), free(v), free(dout), free(mask), free(out), free(lse), free(dq), free(dk), free(dv);
    gpu->free(g_q), gpu->free(g_k), gpu->free(g_v), gpu->free(g_dout), gpu->free(g_mask), gpu->free(g_lse);
    gpu->free(g_out), gpu->free(g_dq), gpu->free(g_dk), gpu->free(g_dv);
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_half")) return QB_TEST_SKIPPED;
    static const size_t sizes[] = {1, 7, 4099, 100003};
    for (int h = 0; h < 2; h++) {
        const qb_dtype t = halves[h];
        check_rows(t);
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
            for (size_t off = 0; off < 2; off++) check_elementwise(t, sizes[i], off);
        check_layernorm(t, 37, 768);
        check_layernorm(t, 5, 13);
        check_embedding(t);
        check_linear(t, 33, 65, 17);
        check_linear(t, 128, 768, 768);
        check_linear(t, 300, 768, 3072);
        check_attention(t, 3, 77, 2, 64);
        check_attention(t, 2, 512, 1, 32);
        check_attention(t, 2, 100, 2, 128);
        check_attention(t, 2, 1, 2, 64);
    }
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    qb_cuda_scratch_release(NULL);
    qb_cuda_gemm_release();
    return check_summary("test_cuda_half");
}
