/* qbert-bench kernels: the nightly GPU benchmark. Every CUDA op of the backend at
 * BERT-base training / inference shapes (B 32 x T 128 tokens, C 768, I 3072, 12 heads
 * of 64), as achieved TFLOP/s (GEMMs, attention) or GB/s (everything that streams
 * memory), each next to the device's measured ceiling of its kind:
 *   compute  a plain BF16 GEMM, 8192 x 8192 x 8192, through cuBLASLt (qb_cuda_gemm_bf16);
 *   memory   a device-to-device copy of 1 GiB, counted as bytes read + written.
 * The INT8 GEMMs are reported against the BF16 ceiling too (an H100's dense INT8 rate
 * is twice its BF16 rate, so 2.0 is their roof). Bytes are what the op must move at
 * least (each input read once, each output written once); FLOPs are the products'
 * 2 M N K. Each point: `warmup` untimed calls, then `runs` calls between two stream
 * syncs, wall time / runs (so launch overhead counts, as it does in the engine).
 * Inputs are random; the numbers do not depend on their values. */
#include "bench.h"

#include "backend/backend.h"
#include "cuda/qb_cuda.h"
#include "qbert/core.h"
#include "qbert/metrics.h"
#include "qbert/quant.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert-bench kernels [options]\n"
            "  --warmup N     untimed calls per kernel (default 5)\n"
            "  --runs N       timed calls per kernel (default 50)\n"
            "  --json FILE    write the table as JSON\n"
            "shapes: M = 4096 tokens (batch 32 x seq 128), C 768, I 3072, 12 heads x 64; needs a CUDA GPU\n");
}

enum { B = 32, T = 128, M = B * T, C = 768, I = 3072, H = 12, D = 64, CEIL = 8192 };

typedef struct {
    const qb_backend *be;
    int warmup, runs;
    double tflops_ceiling, gbs_ceiling;
    cJSON *rows;
    int failed;
} bench;

/* Device memory of n floats, uniform in [lo, hi) (NULL: the run fails). */
static float *dev_random(bench *b, size_t n, float lo, float hi)
{
    float *h = malloc(n * sizeof *h), *d = b->be->alloc(n * sizeof *d);
    qb_rng rng;
    qb_rng_init(&rng, n);
    for (size_t i = 0; h && i < n; i++) h[i] = lo + (hi - lo) * qb_rng_uniform(&rng);
    if (h && d) b->be->to_device(NULL, d, h, n * sizeof *d);
    else b->failed = 1;
    free(h);
    return d;
}

/* Device bf16 matrix (CEIL, CEIL) of random values (the top half of random floats);
 * false when host memory runs out. */
static bool fill_bf16(const qb_backend *be, void *dst)
{
    const size_t n = (size_t)CEIL * CEIL;
    uint16_t *h = malloc(n * 2);
    if (!h) return false;
    qb_rng rng;
    qb_rng_init(&rng, 5);
    for (size_t i = 0; i < n; i++) {
        const float f = qb_rng_uniform(&rng) - 0.5f;
        uint32_t u;
        memcpy(&u, &f, 4);
        h[i] = (uint16_t)(u >> 16);
    }
    be->to_device(NULL, dst, h, n * 2);
    be->sync(NULL);  /* h is freed next: the copy must be done */
    free(h);
    return true;
}

/* Seconds per call of op(ctx): warm-up, then runs calls between syncs. */
static double seconds(bench *b, void (*op)(void *), void *ctx)
{
    for (int r = 0; r < b->warmup; r++) op(ctx);
    if (b->be->sync(NULL)) goto fail;
    const double t0 = qb_now();
    for (int r = 0; r < b->runs; r++) op(ctx);
    if (b->be->sync(NULL)) goto fail;
    return (qb_now() - t0) / b->runs;
fail:
    fprintf(stderr, "qbert-bench kernels: %s\n", qb_error());
    b->failed = 1;
    return 0.0;
}

/* One row: the rate (TFLOP/s when flops > 0, else GB/s) and its fraction of the ceiling. */
static void report(bench *b, const char *name, const char *shape, double s, double flops, double bytes)
{
    if (s <= 0.0) return;
    const bool compute = flops > 0.0;
    const double rate = compute ? flops / s / 1e12 : bytes / s / 1e9;
    const double ceiling = compute ? b->tflops_ceiling : b->gbs_ceiling;
    const char *unit = compute ? "TFLOP/s" : "GB/s";
    printf("%-28s %-26s %10.3f %9.1f %-8s %7.2f\n", name, shape, s * 1e6, rate, unit, ceiling > 0 ? rate / ceiling : 0);
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "kernel", name);
    cJSON_AddStringToObject(r, "shape", shape);
    cJSON_AddNumberToObject(r, "us", s * 1e6);
    cJSON_AddNumberToObject(r, compute ? "tflops" : "gbs", rate);
    cJSON_AddNumberToObject(r, "fraction_of_ceiling", ceiling > 0 ? rate / ceiling : 0);
    cJSON_AddItemToArray(b->rows, r);
}

/* The ops, each a closure over its buffers. The activations (and the Linears' weights
 * and bias, which half storage reads in half too) are stored in st: FP32, or a copy
 * of the same values in BF16 / FP16 (half_args). */
typedef struct {
    const qb_backend *be;
    qb_dtype st;
    void *y, *x, *w, *bias, *res, *t, *q, *k, *vv, *dq, *dk, *dv;
    float *stats, *m, *v, *g, *lse, *wf;  /* wf: FP32 weights (AdamW, fake quantization, the INT8 inputs) */
    void *a16, *b16, *c16;
    int32_t *ids, *types, *mask;
    qb_qinput xq, yq;  /* a Linear's input, and the FFN's GELU output, quantized per token */
    qb_qlinear *ql;
    int n, nn, kk;
    qb_math math;
    qb_adamw_args *adam;  /* in device memory, as the op reads it */
    uint8_t *decay;    /* AdamW's decay mask (a byte per 64 floats) */
    double *sumsq;     /* the squared gradient norm AdamW reads (0.25: no clipping) */
    qb_dropout drop;
} args;

static void op_bf16(void *p) { args *a = p; qb_cuda_gemm_bf16(NULL, a->c16, a->a16, a->b16, CEIL, CEIL, CEIL); }
static void op_copy(void *p) { args *a = p; a->be->copy(NULL, a->y, a->x, (size_t)a->n * 4); }
static void op_linear(void *p) { args *a = p; a->be->linear(NULL, a->y, a->x, a->w, a->bias, M, a->nn, a->kk, a->math, a->st); }
/* x and y in a->st; the quantized Linears' bias is FP32 whatever the storage. */
static void op_linear_q(void *p)
{
    args *a = p;
    a->be->linear_q(NULL, a->y, NULL, a->x, a->xq.u ? &a->xq : NULL, a->ql, a->bias, M, 0, a->st);
}
static void op_linear_q_gelu(void *p)
{
    args *a = p;
    a->be->linear_q(NULL, a->y, a->yq.u ? &a->yq : NULL, a->x, &a->xq, a->ql, a->bias, M, 1, a->st);
}
static void op_linear_backward(void *p)
{
    args *a = p;
    a->be->linear_backward(NULL, a->res, a->g, a->m, a->y, a->x, a->w, M, a->nn, a->kk, a->math, a->st);
}
static void op_layernorm(void *p)
{
    args *a = p;
    a->be->layernorm(NULL, a->y, a->t, a->stats, a->xq.u ? &a->xq : NULL, a->x, a->res, a->g, a->g + C, M, C, 1e-12f,
                     a->st);
}
static void op_layernorm_backward(void *p)
{
    args *a = p;
    a->be->layernorm_backward(NULL, a->y, a->m, a->v, a->res, a->t, a->stats, a->g, M, C, a->st);
}
static void op_gelu(void *p) { args *a = p; a->be->gelu(NULL, a->y, a->x, (size_t)a->n, a->st); }
static void op_gelu_backward(void *p) { args *a = p; a->be->gelu_backward(NULL, a->y, a->res, a->x, (size_t)a->n, a->st); }
static void op_attention(void *p)
{
    args *a = p;
    a->be->attention(NULL, a->y, a->lse, a->q, a->k, a->vv, H * D, a->mask, &a->drop, B, T, H, D, a->math, a->st);
}
static void op_attention_backward(void *p)
{
    args *a = p;
    a->be->attention_backward(NULL, a->dq, a->dk, a->dv, a->res, a->q, a->k, a->vv, H * D, a->y, a->lse, a->mask, &a->drop, B,
                              T, H, D, a->math, a->st);
}
static void op_embedding(void *p)
{
    args *a = p;
    a->be->embedding(NULL, a->y, a->ids, a->types, a->wf, a->m, a->v, B, T, C, a->st, QB_F32);
}
static void op_dropout(void *p) { args *a = p; a->be->dropout(NULL, a->y, (size_t)a->n, &a->drop, a->st); }
static void op_adamw(void *p)
{
    args *a = p;
    a->be->adamw(NULL, a->wf, a->m, a->v, a->g, a->decay, (size_t)a->n, a->adam, a->sumsq, NULL);
}
/* The gradient norm's reduction into sumsq (left growing: only the time counts). */
static void op_sumsq(void *p) { args *a = p; a->be->sumsq(NULL, a->sumsq, a->g, (size_t)a->n); }
static void op_fake_quant_weight(void *p)
{
    args *a = p;
    a->be->fake_quant_weight(NULL, a->y, a->stats, a->wf, a->nn, a->kk, a->kk, 8);
}

/* A device copy of n floats of device memory src, rounded to the half type t. */
static void *half_copy(bench *b, const float *src, size_t n, qb_dtype t)
{
    void *d = b->be->alloc(n * 2);
    if (d) b->be->rows(NULL, d, t, n, src, QB_F32, n, 1, (int)n);
    else b->failed = 1;
    return d;
}

/* The args of a with its activations, the Linears' weights and bias in BF16 (the same
 * values, rounded; sized for the largest op that reads each): the half-storage rows. */
static args half_args(bench *b, const args *a)
{
    const size_t MC = (size_t)M * C, MI = (size_t)M * I;
    args h = *a;
    h.st = QB_BF16;
    h.y = half_copy(b, a->y, MI, QB_BF16), h.x = half_copy(b, a->x, MI, QB_BF16);
    h.w = half_copy(b, a->w, (size_t)I * C, QB_BF16), h.bias = half_copy(b, a->bias, I, QB_BF16);
    h.res = half_copy(b, a->res, MI, QB_BF16), h.t = half_copy(b, a->t, MC, QB_BF16);
    h.q = half_copy(b, a->q, MC, QB_BF16), h.k = half_copy(b, a->k, MC, QB_BF16), h.vv = half_copy(b, a->vv, MC, QB_BF16);
    h.dq = half_copy(b, a->dq, MC, QB_BF16), h.dk = half_copy(b, a->dk, MC, QB_BF16);
    h.dv = half_copy(b, a->dv, MC, QB_BF16);
    return h;
}

/* Attention at B x T x H x D: FP32 on the CUDA cores (the reference), BF16 products
 * with FP32 in memory, and BF16 / FP16 storage (the half activations' path), all but
 * the first on the tensor cores: inference (nothing kept), training (log-sum-exp
 * kept, dropout 0.1 as BERT trains) and the backward. FLOPs: 4 B H T^2 D forward
 * (q k^T and p v), 2.5 times that backward (FlashAttention's count: five products of
 * that size; the deterministic kernels compute seven). hv: the buffers in half. */
static void attention_rows(bench *b, args *a, args *hv, const char *shape)
{
    const double attn = 4.0 * B * H * T * T * D;
    const struct { qb_math math; bool half; const char *name; } runs[] = {
        {QB_MATH_FP32, false, "fp32"}, {QB_MATH_BF16, false, "bf16, fp32 in memory"},
        {QB_MATH_BF16, true, "bf16"}, {QB_MATH_FP16, true, "fp16"}};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        args *x = runs[i].half ? hv : a;
        char name[64];
        x->math = runs[i].math, x->st = runs[i].half ? (runs[i].math == QB_MATH_BF16 ? QB_BF16 : QB_F16) : QB_F32;
        float *lse = x->lse;
        x->drop = (qb_dropout){0};
        x->lse = NULL;  /* inference */
        snprintf(name, sizeof name, "attention %s (inference)", runs[i].name);
        report(b, name, shape, seconds(b, op_attention, x), attn, 0);
        x->lse = lse;
        x->drop = (qb_dropout){0.1f, 1, 2, NULL};
        snprintf(name, sizeof name, "attention %s (training)", runs[i].name);
        report(b, name, shape, seconds(b, op_attention, x), attn, 0);
        snprintf(name, sizeof name, "attention_backward %s", runs[i].name);
        report(b, name, shape, seconds(b, op_attention_backward, x), 2.5 * attn, 0);
        x->math = QB_MATH_FP32, x->drop = (qb_dropout){0};
    }
}

/* A random INT8 (bits 8) or W4A8 (group 64) Linear (N, K) with per-token inputs,
 * prepared for the backend; NULL when that fails. */
static qb_qlinear *random_qlinear(bench *b, int bits, int N, int K)
{
    qb_qlinear *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    *q = (qb_qlinear){.bits = bits, .N = N, .K = K, .group = bits == 8 ? K : 64};
    q->wq = qb_malloc((size_t)N * K);
    q->scales = qb_malloc((size_t)N * (K / q->group) * sizeof *q->scales);
    qb_rng rng;
    qb_rng_init(&rng, 7);
    for (size_t i = 0; q->wq && i < (size_t)N * K; i++) q->wq[i] = (int8_t)(qb_rng_u32(&rng) % (bits == 8 ? 255 : 15)) - (bits == 8 ? 127 : 7);
    for (size_t i = 0; q->scales && i < (size_t)N * (K / q->group); i++) q->scales[i] = 0.01f;
    if (!q->wq || !q->scales || b->be->qlinear_prepare(NULL, q)) {
        fprintf(stderr, "qbert-bench kernels: INT%d Linear: %s\n", bits, qb_error());
        qb_qlinear_free(q);
        free(q);
        b->failed = 1;
        return NULL;
    }
    return q;
}

/* linear_q of a->ql in a->st: quantizing its own input, on a shared quantized input
 * and, for the FFN's first Linear, with GELU and its output quantized as well. */
static void quantized_rows(bench *b, args *a, const char *kind, const char *storage, const char *shape, double flops)
{
    char name[96];
    qb_qinput shared = a->xq, yq = a->yq;
    a->xq.u = NULL;  /* quantizing its own input */
    snprintf(name, sizeof name, "linear_q %s (quantize x)%s", kind, storage);
    report(b, name, shape, seconds(b, op_linear_q, a), flops, 0);
    a->xq = shared;
    a->xq.K = a->kk, a->xq.ldu = qb_qinput_ldu(a->kk);  /* x quantized beforehand, by a LayerNorm */
    snprintf(name, sizeof name, "linear_q %s (shared x)%s", kind, storage);
    report(b, name, shape, seconds(b, op_linear_q, a), flops, 0);
    if (a->nn == I && a->kk == C) {  /* the FFN's first Linear: GELU; its output quantized for the next */
        a->yq.u = NULL;
        snprintf(name, sizeof name, "linear_q %s +gelu%s", kind, storage);
        report(b, name, shape, seconds(b, op_linear_q_gelu, a), flops, 0);
        a->yq = yq;
        snprintf(name, sizeof name, "linear_q %s +gelu, quantized y%s", kind, storage);
        report(b, name, shape, seconds(b, op_linear_q_gelu, a), flops, 0);
    }
    a->xq = shared;
}

static void gemm_rows(bench *b, args *a, args *hv)
{
    static const int shapes[][2] = {{768, 768}, {3072, 768}, {768, 3072}};  /* (N, K) */
    char shape[64];
    for (int s = 0; s < 3; s++) {
        a->nn = shapes[s][0], a->kk = shapes[s][1];
        const double flops = 2.0 * M * a->nn * a->kk;
        snprintf(shape, sizeof shape, "%dx%dx%d", M, a->nn, a->kk);
        for (qb_math m = QB_MATH_FP32; m <= QB_MATH_FP16; m++)
            for (int half = 0; half < 2; half++) {  /* BF16 / FP16: in half, and with FP32 in memory */
                if (half && (m == QB_MATH_FP32 || m == QB_MATH_TF32)) continue;
                const bool fp32_store = !half && (m == QB_MATH_BF16 || m == QB_MATH_FP16);
                args *x = half ? hv : a;
                char name[64];
                x->math = m, x->nn = a->nn, x->kk = a->kk;
                x->st = !half ? QB_F32 : m == QB_MATH_BF16 ? QB_BF16 : QB_F16;
                snprintf(name, sizeof name, "linear %s%s", qb_math_name(m), fp32_store ? ", fp32 in memory" : "");
                report(b, name, shape, seconds(b, op_linear, x), flops, 0);
                snprintf(name, sizeof name, "linear_backward %s%s", qb_math_name(m), fp32_store ? ", fp32 in memory" : "");
                report(b, name, shape, seconds(b, op_linear_backward, x), 2 * flops + 2.0 * M * a->nn, 0);
            }
        a->math = QB_MATH_FP32;
        /* INT8 and W4A8 on each of their kernels (the same bits) */
        static const struct { int bits, kernel; const char *name; } quantized[] = {
            {8, QB_INT8_PIPELINED, "int8 pipelined"}, {8, QB_INT8_CUBLASLT, "int8 cublaslt"},
            {4, QB_W4A8_PIPELINED, "w4a8 pipelined"}, {4, QB_W4A8_MMA, "w4a8 mma"}, {4, QB_W4A8_DP4A, "w4a8 dp4a"}};
        /* QBERT_CUDA_W4A8's and QBERT_CUDA_INT8's kernels, restored below */
        const qb_cuda_w4a8 chosen = qb_cuda_set_w4a8(QB_W4A8_PIPELINED);
        const qb_cuda_int8 chosen8 = qb_cuda_set_int8(QB_INT8_PIPELINED);
        bool made = true;
        for (size_t v = 0; v < sizeof quantized / sizeof quantized[0]; v++) {
            if (quantized[v].bits == 4) qb_cuda_set_w4a8((qb_cuda_w4a8)quantized[v].kernel);
            else qb_cuda_set_int8((qb_cuda_int8)quantized[v].kernel);
            if (!(made = (a->ql = random_qlinear(b, quantized[v].bits, a->nn, a->kk)) != NULL)) break;
            args h = *a;  /* BF16 activations around the integer product: x and y of the half set, a's FP32 bias */
            h.x = hv->x, h.y = hv->y, h.st = QB_BF16;
            quantized_rows(b, a, quantized[v].name, "", shape, flops);
            quantized_rows(b, &h, quantized[v].name, ", bf16 storage", shape, flops);
            qb_qlinear_free(a->ql);
            free(a->ql);
            a->ql = NULL;
        }
        qb_cuda_set_w4a8(chosen);
        qb_cuda_set_int8(chosen8);
        if (!made) return;
    }
}

int qb_bench_kernels(int argc, char **argv)
{
    qb_bench_common o = {.warmup = 5, .runs = 50};
    const int parsed = qb_bench_options("kernels", argc, argv, &o, usage, NULL, NULL);
    if (parsed >= 0) return parsed;
    bench b = {.warmup = o.warmup, .runs = o.runs};
    if (qb_backend_cuda(&b.be)) {
        fprintf(stderr, "qbert-bench kernels: %s\n", qb_error());
        return 1;
    }
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    const qb_backend *be = b.be;
    const size_t MC = (size_t)M * C, MI = (size_t)M * I, big = (size_t)1 << 28;  /* 1 GiB of floats */
    args a = {.be = be, .st = QB_F32}, hv = {0};
    a.y = dev_random(&b, big, -1, 1), a.x = dev_random(&b, big, -1, 1);  /* 1 GiB each: the copy's operands */
    a.w = a.wf = dev_random(&b, (size_t)50000 * C, -0.05f, 0.05f), a.bias = dev_random(&b, I, -0.1f, 0.1f);
    a.res = dev_random(&b, MI, -1, 1), a.t = dev_random(&b, MC, -1, 1), a.stats = dev_random(&b, 2 * (size_t)M, 1, 2);
    a.g = dev_random(&b, (size_t)I * C, -1, 1), a.m = dev_random(&b, (size_t)I * C, -1, 1);
    a.v = dev_random(&b, (size_t)I * C, 0, 1);
    a.decay = be->alloc((size_t)I * C / QB_DECAY_BLOCK + 1), a.sumsq = be->alloc(sizeof(double));
    a.adam = be->alloc(sizeof *a.adam);
    if (a.decay) be->zero(NULL, a.decay, (size_t)I * C / QB_DECAY_BLOCK + 1);
    if (a.sumsq) be->to_device(NULL, a.sumsq, &(double){0.25}, sizeof(double));
    a.q = dev_random(&b, MC, -1, 1), a.k = dev_random(&b, MC, -1, 1), a.vv = dev_random(&b, MC, -1, 1);
    a.dq = dev_random(&b, MC, 0, 1), a.dk = dev_random(&b, MC, 0, 1), a.dv = dev_random(&b, MC, 0, 1);
    a.lse = dev_random(&b, (size_t)B * H * T, 0, 1);
    a.a16 = be->alloc((size_t)CEIL * CEIL * 2), a.b16 = be->alloc((size_t)CEIL * CEIL * 2);
    a.c16 = be->alloc((size_t)CEIL * CEIL * 2);
    a.ids = be->alloc(M * 4), a.types = be->alloc(M * 4), a.mask = be->alloc(M * 4);
    a.xq = (qb_qinput){.M = M, .K = C, .ldu = qb_qinput_ldu(I)};
    a.xq.u = be->alloc((size_t)qb_qinput_rows(M) * qb_qinput_ldu(I));
    a.xq.scale = be->alloc(M * 4), a.xq.zp = be->alloc(M * 4);
    a.yq = (qb_qinput){.M = M, .K = I, .ldu = qb_qinput_ldu(I)};
    a.yq.u = be->alloc((size_t)qb_qinput_rows(M) * qb_qinput_ldu(I));
    a.yq.scale = be->alloc(M * 4), a.yq.zp = be->alloc(M * 4);
    int rc = 1;
    if (b.failed || !a.a16 || !a.b16 || !a.c16 || !a.ids || !a.types || !a.mask || !a.xq.u || !a.xq.scale ||
        !a.xq.zp || !a.yq.u || !a.yq.scale || !a.yq.zp || !a.decay || !a.sumsq || !a.adam) {
        fprintf(stderr, "qbert-bench kernels: cannot allocate the buffers (about 3 GiB of device memory)\n");
        goto done;
    }
    /* random bf16 operands: an H100 clocks higher on zeros, which would inflate the ceiling */
    if (!fill_bf16(be, a.a16) || !fill_bf16(be, a.b16)) {
        fprintf(stderr, "qbert-bench kernels: out of host memory\n");
        goto done;
    }
    be->zero(NULL, a.types, M * 4);
    be->zero(NULL, a.xq.u, (size_t)qb_qinput_rows(M) * qb_qinput_ldu(I)), be->zero(NULL, a.xq.zp, M * 4);
    be->zero(NULL, a.xq.scale, M * 4);
    {
        int32_t *h = malloc(2 * M * 4);  /* mask all ones; ids spread over a BERT-base vocabulary */
        for (int i = 0; h && i < M; i++) h[i] = 1, h[M + i] = (int32_t)((i * 2654435761u) % 50000u);
        if (h) be->to_device(NULL, a.mask, h, M * 4), be->to_device(NULL, a.ids, h + M, M * 4);
        free(h);
    }
    /* the activations quantized per token once, as a LayerNorm would (the shared-x rows) */
    be->layernorm(NULL, a.t, NULL, NULL, &(qb_qinput){.u = a.xq.u, .scale = a.xq.scale, .zp = a.xq.zp, .M = M, .K = C,
                                                  .ldu = qb_qinput_ldu(C)},
                  a.x, NULL, a.g, a.bias, M, C, 1e-12f, QB_F32);
    a.n = (int)big;
    b.tflops_ceiling = 2.0 * CEIL * CEIL * CEIL / seconds(&b, op_bf16, &a) / 1e12;
    b.gbs_ceiling = 2.0 * big * 4 / seconds(&b, op_copy, &a) / 1e9;
    printf("qbert-bench kernels: %s | driver %d.%d, runtime %d.%d | warm-up %d, runs %d\n", qb_cuda_device_name(),
           driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10, b.warmup, b.runs);
    printf("ceilings: BF16 GEMM %dx%dx%d %.1f TFLOP/s; device copy %.1f GB/s\n\n", CEIL, CEIL, CEIL, b.tflops_ceiling,
           b.gbs_ceiling);
    printf("%-28s %-26s %10s %9s %-8s %7s\n", "kernel", "shape", "us", "rate", "", "of ceil");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "device", qb_cuda_device_name());
    cJSON_AddNumberToObject(root, "driver", driver);
    cJSON_AddNumberToObject(root, "runtime", runtime);
    cJSON_AddNumberToObject(root, "ceiling_bf16_tflops", b.tflops_ceiling);
    cJSON_AddNumberToObject(root, "ceiling_copy_gbs", b.gbs_ceiling);
    cJSON_AddNumberToObject(root, "warmup", b.warmup);
    cJSON_AddNumberToObject(root, "runs", b.runs);
    b.rows = cJSON_AddArrayToObject(root, "kernels");

    char shape[64];
    hv = half_args(&b, &a);
    if (b.failed) {
        fprintf(stderr, "qbert-bench kernels: cannot allocate the BF16 copies\n");
        goto done;
    }
    gemm_rows(&b, &a, &hv);
    /* the memory-bound ops in FP32, then (the " bf16" rows) on BF16 activations */
    for (int half = 0; half < 2; half++) {
        args *x = half ? &hv : &a;
        const double e = half ? 2 : 4;  /* bytes of an activation */
        const char *sfx = half ? " bf16" : "";
        char name[64];
        snprintf(shape, sizeof shape, "%dx%d", M, C);
        x->xq.K = C, x->xq.ldu = qb_qinput_ldu(C);
        qb_qinput shared = x->xq;
        x->xq.u = NULL;
        snprintf(name, sizeof name, "layernorm +res%s", sfx);
        report(&b, name, shape, seconds(&b, op_layernorm, x), 0, 4.0 * MC * e);  /* x, res; out, t */
        if (!half) {
            x->xq = shared;
            report(&b, "layernorm +res +quantize", shape, seconds(&b, op_layernorm, x), 0, 4.0 * MC * 4 + MC);
            x->xq.u = NULL;
        }
        snprintf(name, sizeof name, "layernorm_backward%s", sfx);
        report(&b, name, shape, seconds(&b, op_layernorm_backward, x), 0, 3.0 * MC * e);
        snprintf(name, sizeof name, "embedding%s", sfx);
        report(&b, name, shape, seconds(&b, op_embedding, x), 0, MC * (4 + e));  /* word rows in, out */
        x->n = (int)MI;
        snprintf(shape, sizeof shape, "%dx%d", M, I);
        snprintf(name, sizeof name, "gelu%s", sfx);
        report(&b, name, shape, seconds(&b, op_gelu, x), 0, 2.0 * MI * e);
        snprintf(name, sizeof name, "gelu_backward%s", sfx);
        report(&b, name, shape, seconds(&b, op_gelu_backward, x), 0, 3.0 * MI * e);
        x->drop = (qb_dropout){0.1f, 1, 2, NULL};
        snprintf(name, sizeof name, "dropout%s", sfx);
        report(&b, name, shape, seconds(&b, op_dropout, x), 0, 2.0 * MI * e);
        x->drop = (qb_dropout){0};
        x->xq = shared;
    }
    snprintf(shape, sizeof shape, "B%d T%d H%d D%d", B, T, H, D);
    attention_rows(&b, &a, &hv, shape);
    a.n = I * C;
    const qb_adamw_args adam = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                                .max_norm = 1.0f, .bc1 = 0.1f, .bc2_sqrt = 0.03f};
    be->to_device(NULL, a.adam, &adam, sizeof adam);
    snprintf(shape, sizeof shape, "%d", a.n);
    report(&b, "adamw", shape, seconds(&b, op_adamw, &a), 0, 7.0 * a.n * 4);  /* w m v g in, w m v out */
    report(&b, "sumsq", shape, seconds(&b, op_sumsq, &a), 0, 4.0 * a.n);  /* memory-bound: g in */
    a.nn = I, a.kk = C;
    snprintf(shape, sizeof shape, "%dx%d", I, C);
    report(&b, "fake_quant_weight int8", shape, seconds(&b, op_fake_quant_weight, &a), 0, 2.0 * I * C * 4);

    rc = qb_bench_finish("kernels", b.failed, o.json, root);
done:
    be->free(hv.y), be->free(hv.x), be->free(hv.w), be->free(hv.bias), be->free(hv.res), be->free(hv.t);
    be->free(hv.q), be->free(hv.k), be->free(hv.vv), be->free(hv.dq), be->free(hv.dk), be->free(hv.dv);
    be->free(a.y), be->free(a.x), be->free(a.w), be->free(a.bias), be->free(a.res), be->free(a.t);
    be->free(a.decay), be->free(a.sumsq), be->free(a.adam);
    be->free(a.stats), be->free(a.g), be->free(a.m), be->free(a.v), be->free(a.q), be->free(a.k), be->free(a.vv);
    be->free(a.dq), be->free(a.dk), be->free(a.dv), be->free(a.lse), be->free(a.a16), be->free(a.b16);
    be->free(a.c16), be->free(a.ids), be->free(a.types), be->free(a.mask), be->free(a.xq.u), be->free(a.xq.scale);
    be->free(a.xq.zp), be->free(a.yq.u), be->free(a.yq.scale), be->free(a.yq.zp);
    return rc;
}
