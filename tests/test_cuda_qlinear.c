/* The CUDA quantized Linear (cuda/qlinear.cu) against the CPU's scalar reference
 * (an unprepared qb_qlinear on the CPU backend) on fresh random weights, scales and
 * inputs: INT8 with per-token and static inputs on both INT8 kernels (the pipelined
 * mma.sync GEMM, cuBLASLt's IMMA), W4A8 with per-token and static inputs on its three
 * (pipelined, mma.sync on nibbles, dp4a), weight-only INT8 / INT4; with and without
 * bias; shapes whose N is not a multiple of 4 (the classifier's 3) and whose K is not
 * either (the pipelined GEMM then hands over to the second kernel). The integer
 * paths give the reference's integers and its float operations, so without GELU
 * their outputs must be the same bits; GELU (CUDA's erff against libm's) and the
 * weight-only FP32 GEMM within 1e-5. Also: the input quantized once per token
 * (linear_q's xq, as a LayerNorm hands it over); the output quantized per token too
 * (linear_q's yq, as the FFN's first Linear hands its GELU output to the second:
 * fused into the INT8 epilogue when a row fits shared memory, a pass after it
 * otherwise), whose bytes must be the CPU quantizer's on the GPU's own output (the
 * CPU's output may differ in the last bit with GELU); an unprepared Linear, a
 * mis-shaped yq or xq, and an INT4 group size the kernel cannot take. With x and y
 * stored in BF16 / FP16 (the half activations): the CPU reads the rounded x and its
 * output is rounded once, so without GELU the GPU's stored y must be those bits, with
 * GELU within 1e-3 (a last-bit flip of a few elements); yq is checked against the
 * CPU quantizer on the GPU's stored y. */
#include "cuda_check.h"

#include "cpu/cpu.h"
#include "qbert/quant.h"

typedef enum { DYNAMIC, STATIC, WEIGHT_ONLY } act_kind;
static const char *const act_names[] = {"dynamic", "static", "weight-only"};
/* The kernel the checks run on: qb_cuda_int8 for INT8, qb_cuda_w4a8 for W4A8. */
static const char *const int8_names[] = {" (pipelined)", " (cublaslt)"};
static const char *const w4a8_names[] = {" (pipelined)", " (mma)", " (dp4a)"};
static int kernel;

/* A random quantized Linear (bits 8: group = K). */
static qb_qlinear random_qlinear(int bits, int N, int K, int group, act_kind act)
{
    qb_qlinear q = {.bits = bits, .N = N, .K = K, .group = bits == 8 ? K : group, .act_f32 = act == WEIGHT_ONLY};
    const int lo = bits == 8 ? -128 : -8, span = bits == 8 ? 256 : 16;
    q.wq = host_alloc((size_t)N * K);
    for (size_t i = 0; i < (size_t)N * K; i++) q.wq[i] = (int8_t)(lo + (int)(qb_rng_uniform(&cuda_rng) * span));
    q.scales = rand_host((size_t)N * (K / q.group), 1e-3f, 2e-2f);
    q.act_scale = act == STATIC ? 0.02f + 0.01f * qb_rng_uniform(&cuda_rng) : 0.0f;
    return q;
}

/* x (M, K): most rows in [-3, 3], some skewed (all positive, or a large outlier),
 * so that the per-token zero points vary; with a static scale some values clip. */
static float *random_input(int M, int K)
{
    float *x = rand_host((size_t)M * K, -3, 3);
    for (int m = 0; m < M; m++) {
        float *r = x + (size_t)m * K;
        if (m % 3 == 1)
            for (int k = 0; k < K; k++) r[k] = r[k] * 0.5f + 1.5f;
        if (m % 5 == 2) r[m % K] = 40.0f;
    }
    return x;
}

/* yq (a device qb_qinput for M x N) against the CPU quantizer on dy (the GPU's y,
 * stored in t): every byte, the padding rows' included, every scale and zero point. */
static void check_output_quantized(const char *what, const qb_qinput *yq, const void *dy, int M, int N, qb_dtype t)
{
    qb_qinput ref;
    CHECK(qb_qinput_alloc(&ref, M, N) == QB_OK);
    float *y = host_floats(dy, (size_t)M * N, t, what);
    qb_qinput_quantize(&ref, y);
    char w[200];
    snprintf(w, sizeof w, "%s: quantized output", what);
    check_equal(w, yq->u, ref.u, (size_t)qb_qinput_rows(M) * ref.ldu);
    snprintf(w, sizeof w, "%s: its scales", what);
    check_equal(w, yq->scale, ref.scale, (size_t)M * sizeof *ref.scale);
    snprintf(w, sizeof w, "%s: its zero points", what);
    check_equal(w, yq->zp, ref.zp, (size_t)M * sizeof *ref.zp);
    qb_qinput_free(&ref);
    free(y);
}

/* A device qb_qinput for M x K, its bytes set to garbage (padding rows included). */
static qb_qinput dev_qinput(int M, int K)
{
    qb_qinput d = {.M = M, .K = K, .ldu = qb_qinput_ldu(K)};
    const size_t n = (size_t)qb_qinput_rows(M) * d.ldu;
    uint8_t *junk = host_alloc(n);
    memset(junk, 0x5a, n);
    d.u = dev_from(junk, n);
    d.scale = dev_from(NULL, (size_t)M * 4), d.zp = dev_from(NULL, (size_t)M * 4);
    free(junk);
    return d;
}

/* x and y stored in t (weight-only: FP32 only). */
static void check_qlinear(int bits, act_kind act, int M, int N, int K, int group, int bias, int gelu, int shared,
                          int outq, qb_dtype t)
{
    char what[180];
    snprintf(what, sizeof what, "linear_q INT%d%s %s M=%d N=%d K=%d group=%d bias=%d gelu=%d xq=%d yq=%d %s", bits,
             act == WEIGHT_ONLY ? "" : bits == 4 ? w4a8_names[kernel] : int8_names[kernel], act_names[act], M, N, K, bits == 8 ? K : group,
             bias, gelu, shared, outq, qb_dtype_name(t));
    qb_qlinear q = random_qlinear(bits, N, K, group, act), g = q;  /* g: the same weights, prepared for CUDA */
    const qb_status st = gpu->qlinear_prepare(NULL, &g);
    CHECKF(st == QB_OK, "%s: prepare: %s", what, qb_error());
    const size_t MN = (size_t)M * N, e = qb_store_bytes(t);
    float *x = random_input(M, K), *b = bias ? rand_host((size_t)N, -1, 1) : NULL;  /* x: then as stored */
    float *y = host_alloc(MN * sizeof *y), *db = b ? dev_from(b, (size_t)N * 4) : NULL;
    void *dx = dev_store(x, (size_t)M * K, t), *dy = dev_poison(MN * e);
    qb_qinput hq = {0}, dq = {0};  /* shared: x quantized per token once, on the host and as a device copy */
    if (shared) {
        CHECK(qb_qinput_alloc(&hq, M, K) == QB_OK);
        qb_qinput_quantize(&hq, x);
        dq = (qb_qinput){.M = M, .K = K, .ldu = hq.ldu};
        dq.u = dev_from(hq.u, (size_t)qb_qinput_rows(M) * hq.ldu);
        dq.scale = dev_from(hq.scale, (size_t)M * 4);
        dq.zp = dev_from(hq.zp, (size_t)M * 4);
    }
    qb_qinput yq = outq ? dev_qinput(M, N) : (qb_qinput){0};
    cpu->linear_q(NULL, y, NULL, x, shared ? &hq : NULL, &q, b, M, gelu, QB_F32);
    if (!st) gpu->linear_q(NULL, dy, outq ? &yq : NULL, dx, shared ? &dq : NULL, &g, db, M, gelu, t);
    void *stored = host_alloc(MN * e);  /* the CPU's y as the GPU stores it, and as floats again */
    cpu->rows(NULL, stored, t, MN, y, QB_F32, MN, 1, (int)MN);
    if (gelu || act == WEIGHT_ONLY) {
        float *got = host_floats(dy, MN, t, what);
        cpu->rows(NULL, y, QB_F32, MN, stored, t, MN, 1, (int)MN);
        const double err = rel_l2(got, y, MN), tol = t == QB_F32 ? CUDA_TOL : 1e-3;
        CHECKF(err <= tol && !isnan(err), "%s: relative L2 error %.3g > %.1g", what, err, tol);
        free(got);
    } else {
        check_equal(what, dy, stored, MN * e);
    }
    free(stored);
    if (outq) check_output_quantized(what, &yq, dy, M, N, t);
    if (outq) gpu->free(yq.u), gpu->free(yq.scale), gpu->free(yq.zp);
    if (g.prepared) g.release(&g);
    if (shared) qb_qinput_free(&hq), gpu->free(dq.u), gpu->free(dq.scale), gpu->free(dq.zp);
    free(q.wq), free(q.scales), free(x), free(b), free(y);
    gpu->free(dx), gpu->free(db), gpu->free(dy);
}

/* A Linear that was never prepared leaves a pending error; an INT4 group that is not
 * a multiple of 4 is refused at prepare, naming the group. */
static void test_refusals(void)
{
    qb_qlinear q = random_qlinear(8, 4, 8, 8, DYNAMIC);
    float *d = dev_from(NULL, 64 * 4);
    gpu->linear_q(NULL, d, NULL, d, NULL, &q, NULL, 2, 0, QB_F32);
    CHECK(qb_cuda_sync(NULL) != QB_OK);
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    qb_qlinear p = q;
    CHECK(gpu->qlinear_prepare(NULL, &p) == QB_OK);
    qb_qinput wrong = dev_qinput(2, 5);  /* the output is 2 x 4, the input 2 x 8 */
    gpu->linear_q(NULL, d, &wrong, d, NULL, &p, NULL, 2, 0, QB_F32);
    CHECK(qb_cuda_sync(NULL) != QB_OK && strstr(qb_error(), "output is laid out for another shape"));
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    gpu->linear_q(NULL, d, NULL, d, &wrong, &p, NULL, 2, 0, QB_F32);
    CHECK(qb_cuda_sync(NULL) != QB_OK && strstr(qb_error(), "input is laid out for another shape"));
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    if (p.prepared) p.release(&p);
    gpu->free(wrong.u), gpu->free(wrong.scale), gpu->free(wrong.zp);
    free(q.wq), free(q.scales);
    q = random_qlinear(4, 4, 12, 6, DYNAMIC);
    CHECK(gpu->qlinear_prepare(NULL, &q) == QB_EUNSUPPORTED && strstr(qb_error(), "group size 6"));
    CHECK(!q.prepared);
    if (q.prepared) q.release(&q);
    free(q.wq), free(q.scales);
    gpu->free(d);
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_qlinear")) return QB_TEST_SKIPPED;
    /* M, N, K, INT4 group (0: INT8 only, K has no group that is a multiple of 4) */
    /* Groups shorter than an mma's 32 k (4, 12), of one, two and one and a half of the
     * mma kernel's 64-k chunks, and of 48 (its second mma on a half-empty 32 k); M and
     * N off its 16 x 8 tiles and its 64 x 64 blocks. */
    static const int shapes[][4] = {{1, 3, 768, 64}, {7, 5, 12, 4}, {5, 3, 10, 0}, {33, 65, 64, 32}, {24, 8, 36, 12},
                                    {70, 130, 192, 96}, {65, 67, 144, 48}, {128, 768, 768, 64},
                                    {300, 3072, 768, 128}, {200, 768, 3072, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], group = shapes[s][3];
        for (int bits = 8; bits >= (group ? 4 : 8); bits -= 4)
            for (act_kind act = DYNAMIC; act <= WEIGHT_ONLY; act++)
                for (kernel = 0; kernel < (act == WEIGHT_ONLY ? 1 : bits == 4 ? 3 : 2); kernel++) {
                    qb_cuda_set_w4a8((qb_cuda_w4a8)kernel);
                    qb_cuda_set_int8((qb_cuda_int8)(kernel % 2));
                    check_qlinear(bits, act, M, N, K, group, 1, 0, 0, 0, QB_F32);
                    check_qlinear(bits, act, M, N, K, group, 0, 1, 0, 0, QB_F32);
                    check_qlinear(bits, act, M, N, K, group, 1, 1, act == DYNAMIC, 1, QB_F32);
                    if (act == DYNAMIC) check_qlinear(bits, act, M, N, K, group, 1, 0, 1, 0, QB_F32);
                    for (int h = 0; h < 2 && act != WEIGHT_ONLY; h++) {  /* half activations */
                        const qb_dtype t = h ? QB_F16 : QB_BF16;
                        check_qlinear(bits, act, M, N, K, group, 1, 0, 0, 0, t);
                        check_qlinear(bits, act, M, N, K, group, 1, 1, act == DYNAMIC, 1, t);
                    }
                }
    }
    /* A row too wide for the cuBLASLt path's row epilogue (N > 12288): quantized in a
     * pass after it, as the pipelined GEMM's always is. */
    for (kernel = 1; kernel >= 0; kernel--) {
        qb_cuda_set_int8((qb_cuda_int8)kernel);
        check_qlinear(8, DYNAMIC, 3, 12300, 16, 0, 1, 1, 0, 1, QB_F32);
        check_qlinear(8, DYNAMIC, 3, 12300, 16, 0, 1, 1, 0, 1, QB_BF16);
    }
    qb_cuda_set_w4a8(QB_W4A8_PIPELINED);
    kernel = 0;
    /* The scratch buffers grown by a large call serve a small one after it. */
    check_qlinear(8, DYNAMIC, 2, 3, 768, 64, 1, 0, 0, 0, QB_F32);
    test_refusals();
    qb_cuda_scratch_release(NULL);
    qb_cuda_gemm_release();
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    return check_summary("test_cuda_qlinear");
}
