/* The CUDA LayerNorm (cuda/layernorm.cu) against the CPU backend's on the same fresh
 * random inputs: the forward with and without the residual, with and without t_out
 * and stats, in every aliasing the contract allows (out = x, t_out = x, out = res);
 * the backward with dt separate and dt = dout, dg and db added onto non-zero values,
 * and the same bits on a second run; the output quantized per token (outq): the bytes,
 * scales and zero points of the CPU's quantizer on the GPU's own output, stored in
 * FP32, BF16 or FP16. Shapes:
 * C in {1, 31, 384, 768, 1024, 4099} (one column, part of a warp, several columns per
 * thread, odd and over 4 per thread of a 1024-thread block) x M in {1, 7, 300}, and a
 * backward with more rows than it has blocks (M = 1100). Inputs have an offset mean
 * (x in [2, 6)), which costs a one-pass variance its digits. */
#include "cuda_check.h"

#include "cpu/cpu.h"

#define EPS 1e-12f  /* BERT's */

static const int Cs[] = {1, 31, 384, 768, 1024, 4099};
static const int Ms[] = {1, 7, 300};

/* Where the GPU's out and t_out go. */
typedef enum { SEPARATE, OUT_IS_X, T_IS_X, OUT_IS_RES } placement;
static const char *const placement_names[] = {"separate", "out = x", "t_out = x", "out = res"};

/* One forward on fresh device copies of x, res (NULL: none), g, b; keep: t_out and
 * stats are asked for. Checks out (and t, stats) against the CPU backend's. */
static void check_forward(const float *x, const float *res, const float *g, const float *b, int M, int C, int keep,
                          placement where)
{
    const size_t n = (size_t)M * C;
    float *out = host_alloc(n * sizeof *out), *t = host_alloc(n * sizeof *t);
    float *stats = host_alloc(2 * (size_t)M * sizeof *stats);
    cpu->layernorm(NULL, out, keep ? t : NULL, keep ? stats : NULL, NULL, x, res, g, b, M, C, EPS, QB_F32);

    float *dx = dev_from(x, n * sizeof *dx), *dres = res ? dev_from(res, n * sizeof *dres) : NULL;
    float *dg = dev_from(g, C * sizeof *dg), *db = dev_from(b, C * sizeof *db);
    float *dout = where == OUT_IS_X ? dx : where == OUT_IS_RES ? dres : dev_from(NULL, n * sizeof *dout);
    float *dt = !keep ? NULL : where == T_IS_X ? dx : dev_from(NULL, n * sizeof *dt);
    float *dstats = keep ? dev_from(NULL, 2 * (size_t)M * sizeof *dstats) : NULL;
    gpu->layernorm(NULL, dout, dt, dstats, NULL, dx, dres, dg, db, M, C, EPS, QB_F32);

    char what[128];
    snprintf(what, sizeof what, "layernorm M=%d C=%d%s%s, %s: out", M, C, res ? " +res" : "",
             keep ? " +t_out +stats" : "", placement_names[where]);
    check_close(what, dout, out, n, CUDA_TOL);
    if (keep) {
        snprintf(what, sizeof what, "layernorm M=%d C=%d%s, %s: t_out", M, C, res ? " +res" : "", placement_names[where]);
        check_close(what, dt, t, n, CUDA_TOL);
        snprintf(what, sizeof what, "layernorm M=%d C=%d%s, %s: stats", M, C, res ? " +res" : "", placement_names[where]);
        check_close(what, dstats, stats, 2 * (size_t)M, CUDA_TOL);
    }

    if (dout != dx && dout != dres) gpu->free(dout);
    if (dt && dt != dx) gpu->free(dt);
    gpu->free(dx), gpu->free(dres), gpu->free(dg), gpu->free(db), gpu->free(dstats);
    free(out), free(t), free(stats);
}

static void test_forward(int M, int C)
{
    const size_t n = (size_t)M * C;
    float *x = rand_host(n, 2, 6), *res = rand_host(n, -1, 1);
    float *g = rand_host(C, 0.5f, 1.5f), *b = rand_host(C, -0.5f, 0.5f);
    check_forward(x, res, g, b, M, C, 1, SEPARATE);
    check_forward(x, NULL, g, b, M, C, 0, SEPARATE);
    check_forward(x, NULL, g, b, M, C, 1, OUT_IS_X);
    check_forward(x, res, g, b, M, C, 0, OUT_IS_X);
    check_forward(x, res, g, b, M, C, 1, T_IS_X);
    check_forward(x, res, g, b, M, C, 1, OUT_IS_RES);
    free(x), free(res), free(g), free(b);
}

/* The backward from the CPU forward's t and stats; dt separate, then dt = dout. */
static void test_backward(int M, int C)
{
    const size_t n = (size_t)M * C;
    float *x = rand_host(n, 2, 6), *g = rand_host(C, 0.5f, 1.5f), *b = rand_host(C, -0.5f, 0.5f);
    float *dout = rand_host(n, -1, 1), *dg0 = rand_host(C, -1, 1), *db0 = rand_host(C, -1, 1);
    float *out = host_alloc(n * sizeof *out), *t = host_alloc(n * sizeof *t);
    float *stats = host_alloc(2 * (size_t)M * sizeof *stats);
    cpu->layernorm(NULL, out, t, stats, NULL, x, NULL, g, b, M, C, EPS, QB_F32);
    float *dt = host_alloc(n * sizeof *dt), *dg = host_alloc(C * sizeof *dg), *db = host_alloc(C * sizeof *db);
    memcpy(dg, dg0, C * sizeof *dg), memcpy(db, db0, C * sizeof *db);
    cpu->layernorm_backward(NULL, dt, dg, db, dout, t, stats, g, M, C, QB_F32);

    float *d_dout = dev_from(dout, n * sizeof *dout), *d_t = dev_from(t, n * sizeof *t);
    float *d_stats = dev_from(stats, 2 * (size_t)M * sizeof *stats), *d_g = dev_from(g, C * sizeof *g);
    float *d_dt = dev_from(NULL, n * sizeof *d_dt);
    float *d_dg = dev_from(dg0, C * sizeof *d_dg), *d_db = dev_from(db0, C * sizeof *d_db);
    char what[96];

    gpu->layernorm_backward(NULL, d_dt, d_dg, d_db, d_dout, d_t, d_stats, d_g, M, C, QB_F32);
    snprintf(what, sizeof what, "layernorm_backward M=%d C=%d: dt", M, C);
    check_close(what, d_dt, dt, n, CUDA_TOL);
    snprintf(what, sizeof what, "layernorm_backward M=%d C=%d: dg", M, C);
    check_close(what, d_dg, dg, C, CUDA_TOL);
    snprintf(what, sizeof what, "layernorm_backward M=%d C=%d: db", M, C);
    check_close(what, d_db, db, C, CUDA_TOL);

    /* Again from the same dg, db with dt = dout: the same dt, and dg, db to the bit. */
    float *first_dg = host_from(d_dg, C * sizeof *first_dg, "layernorm_backward: dg");
    float *first_db = host_from(d_db, C * sizeof *first_db, "layernorm_backward: db");
    gpu->to_device(NULL, d_dg, dg0, C * sizeof *dg0), gpu->to_device(NULL, d_db, db0, C * sizeof *db0);
    gpu->layernorm_backward(NULL, d_dout, d_dg, d_db, d_dout, d_t, d_stats, d_g, M, C, QB_F32);
    snprintf(what, sizeof what, "layernorm_backward M=%d C=%d, dt = dout: dt", M, C);
    check_close(what, d_dout, dt, n, CUDA_TOL);
    snprintf(what, sizeof what, "layernorm_backward M=%d C=%d, second run: dg", M, C);
    check_equal(what, d_dg, first_dg, C * sizeof *first_dg);
    snprintf(what, sizeof what, "layernorm_backward M=%d C=%d, second run: db", M, C);
    check_equal(what, d_db, first_db, C * sizeof *first_db);

    gpu->free(d_dout), gpu->free(d_t), gpu->free(d_stats), gpu->free(d_g), gpu->free(d_dt);
    gpu->free(d_dg), gpu->free(d_db);
    free(first_dg), free(first_db);
    free(x), free(g), free(b), free(dout), free(dg0), free(db0), free(out), free(t), free(stats);
    free(dt), free(dg), free(db);
}

/* outq: the GPU's out quantized per token in the same kernel must be exactly what
 * the CPU's quantizer (qb_qinput_quantize) makes of that out as stored (in t: FP32,
 * or half, the INT8 Linears' half activations), padding included; with res, and with
 * out aliasing x (the encoder's in-place use). A qb_qinput laid out for another shape
 * is refused with a pending error. */
static void test_outq(int M, int C, int alias, qb_dtype t)
{
    char what[96];
    snprintf(what, sizeof what, "layernorm outq M=%d C=%d%s %s", M, C, alias ? " out = x" : "", qb_dtype_name(t));
    const size_t n = (size_t)M * C, e = qb_store_bytes(t);
    float *x = rand_host(n, -2, 2), *res = rand_host(n, 2, 6), *g = rand_host((size_t)C, 0.5f, 1.5f);
    float *b = rand_host((size_t)C, -0.5f, 0.5f);
    for (int m = 0; m < M; m += 4) x[(size_t)m * C] = 50.0f;  /* outliers move the zero point */
    void *dx = dev_store(x, n, t), *dres = dev_store(res, n, t), *dout = alias ? dx : dev_from(NULL, n * e);
    float *dg = dev_from(g, (size_t)C * 4), *db = dev_from(b, (size_t)C * 4);
    qb_qinput ref;
    CHECK(qb_qinput_alloc(&ref, M, C) == QB_OK);
    const size_t ubytes = (size_t)qb_qinput_rows(M) * ref.ldu;
    qb_qinput dq = {.M = M, .K = C, .ldu = ref.ldu};
    dq.u = dev_from(NULL, ubytes);
    if (qb_qinput_rows(M) > M)  /* a dirty padding row: the kernel must zero it */
        gpu->to_device(NULL, dq.u + (size_t)M * ref.ldu, (const uint8_t[]){0xAB}, 1);
    dq.scale = dev_from(NULL, (size_t)M * 4), dq.zp = dev_from(NULL, (size_t)M * 4);
    gpu->layernorm(NULL, dout, NULL, NULL, &dq, dx, dres, dg, db, M, C, EPS, t);
    float *out = host_floats(dout, n, t, what);
    qb_qinput_quantize(&ref, out);
    char part[128];
    snprintf(part, sizeof part, "%s: bytes", what);
    check_equal(part, dq.u, ref.u, ubytes);
    snprintf(part, sizeof part, "%s: scales", what);
    check_equal(part, dq.scale, ref.scale, (size_t)M * 4);
    snprintf(part, sizeof part, "%s: zero points", what);
    check_equal(part, dq.zp, ref.zp, (size_t)M * 4);
    dq.K = C + 1;
    gpu->layernorm(NULL, dout, NULL, NULL, &dq, dx, dres, dg, db, M, C, EPS, t);
    CHECK(qb_cuda_sync(NULL) != QB_OK);
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    qb_qinput_free(&ref);
    free(x), free(res), free(g), free(b), free(out);
    gpu->free(dx), gpu->free(dres), gpu->free(dg), gpu->free(db), gpu->free(dq.u), gpu->free(dq.scale);
    gpu->free(dq.zp);
    if (!alias) gpu->free(dout);
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_layernorm")) return QB_TEST_SKIPPED;
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t ci = 0; ci < sizeof Cs / sizeof Cs[0]; ci++) {
            test_forward(Ms[mi], Cs[ci]);
            test_backward(Ms[mi], Cs[ci]);
        }
    /* More rows than the backward has blocks: each block sums several. */
    test_backward(1100, 768);
    for (int k = 0; k < 3; k++) {
        const qb_dtype t = k == 0 ? QB_F32 : k == 1 ? QB_BF16 : QB_F16;
        test_outq(1, 768, 0, t);
        test_outq(7, 31, 1, t);
        test_outq(300, 768, 1, t);
        test_outq(5, 4099, 0, t);
    }
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    return check_summary("test_cuda_layernorm");
}
