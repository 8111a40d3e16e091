/* The CPU backend: the op table filled with the kernels of csrc/cpu/. Host memory
 * is device memory here, so allocation is qb_malloc and the copies are memcpy. Every
 * op runs at once on the calling thread, so the stream argument (qb_stream) means
 * nothing here, and activations are FP32 only (no QB_CAN_HALF: the t arguments are
 * always QB_F32): the adapters below drop both and call the kernels. */
#include "backend/backend.h"

#include <math.h>
#include <string.h>

#include "cpu/cpu.h"
#include "qbert/core.h"

static void cpu_copy(qb_stream *s, void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);  /* memcpy with NULL pointers is undefined even for 0 */
}

static void cpu_zero(qb_stream *s, void *p, size_t bytes)
{
    if (bytes) memset(p, 0, bytes);
}

static qb_status cpu_sync(qb_stream *s) { return QB_OK; }  /* every op has finished when it returns */

/* linear and its backward in a rounded arithmetic: the FP32 kernels on copies of the
 * inputs rounded to that format, which is what the GPU's FAST compute types compute
 * up to the order of the sums. A reference (tests, CPU runs of a GPU recipe), not a
 * fast path. Out of memory: the outputs become NaN, which stops a training run. */
static float *rounded(const float *x, size_t n, qb_math m)
{
    float *r = qb_malloc(n * sizeof *r);
    for (size_t i = 0; r && i < n; i++) r[i] = qb_math_round(x[i], m);
    return r;
}

static void fill_nan(float *y, size_t n, const char *what)
{
    qb_log(QB_LOG_ERROR, "%s: out of memory for the rounded inputs; output set to NaN", what);
    for (size_t i = 0; y && i < n; i++) y[i] = NAN;
}

static void cpu_linear(qb_stream *s, void *y, const void *x, const void *w, const void *b, int M, int N, int K,
                       qb_math math, qb_dtype t)
{
    if (math == QB_MATH_FP32) {
        qb_cpu_linear(y, x, w, b, M, N, K);
        return;
    }
    float *xr = rounded(x, (size_t)M * K, math), *wr = rounded(w, (size_t)N * K, math);
    if (xr && wr) qb_cpu_linear(y, xr, wr, b, M, N, K);
    else fill_nan(y, (size_t)M * N, "linear");
    qb_free(xr), qb_free(wr);
}

static void cpu_linear_backward(qb_stream *s, void *dx, float *dw, float *db, const void *dy, const void *x,
                                const void *w, int M, int N, int K, qb_math math, qb_dtype t)
{
    if (math == QB_MATH_FP32) {
        qb_cpu_linear_backward(dx, dw, db, dy, x, w, M, N, K);
        return;
    }
    float *dyr = rounded(dy, (size_t)M * N, math), *xr = rounded(x, (size_t)M * K, math);
    float *wr = rounded(w, (size_t)N * K, math);
    if (dyr && xr && wr) {
        qb_cpu_linear_backward(dx, dw, db, dyr, xr, wr, M, N, K);
    } else {
        fill_nan(dx, (size_t)M * K, "linear backward");
        fill_nan(dw, (size_t)N * K, "linear backward");
    }
    qb_free(dyr), qb_free(xr), qb_free(wr);
}

/* Element i of a row of type t as a float, and back (rounded to nearest). */
static float load_as_float(const void *p, qb_dtype t, size_t i)
{
    if (t == QB_F16) return qb_f16_to_f32(((const uint16_t *)p)[i]);
    if (t == QB_BF16) return qb_bf16_to_f32(((const uint16_t *)p)[i]);
    return ((const float *)p)[i];
}

static void store_float(void *p, qb_dtype t, size_t i, float v)
{
    if (t == QB_F16) ((uint16_t *)p)[i] = qb_f32_to_f16(v);
    else if (t == QB_BF16) ((uint16_t *)p)[i] = qb_f32_to_bf16(v);
    else ((float *)p)[i] = v;
}

/* rows converts between every storage type, so that tests and tools can make half
 * copies on the host; the other ops take FP32 only. */
static void cpu_rows(qb_stream *s, void *dst, qb_dtype dt, size_t ldd, const void *src, qb_dtype st, size_t lds,
                     int rows, int cols)
{
    for (int r = 0; r < rows; r++) {
        char *d = (char *)dst + (size_t)r * ldd * qb_store_bytes(dt);
        const char *x = (const char *)src + (size_t)r * lds * qb_store_bytes(st);
        for (int c = 0; c < cols; c++) store_float(d, dt, (size_t)c, load_as_float(x, st, (size_t)c));
    }
}

static void cpu_linear_q(qb_stream *s, void *y, qb_qinput *yq, const void *x, const qb_qinput *xq,
                         const struct qb_qlinear *q, const float *b, int M, int gelu, qb_dtype t)
{
    qb_cpu_linear_q(y, yq, x, xq, q, b, M, gelu);
}

static qb_status cpu_qlinear_prepare(qb_stream *s, struct qb_qlinear *q) { return qb_cpu_qlinear_prepare(q); }

static void cpu_layernorm(qb_stream *s, void *out, void *u_out, float *stats, qb_qinput *outq, const void *x,
                          const void *res, const float *g, const float *b, int M, int C, float eps, qb_dtype t)
{
    qb_cpu_layernorm(out, u_out, stats, outq, x, res, g, b, M, C, eps);
}

static void cpu_layernorm_backward(qb_stream *s, void *du, float *dg, float *db, const void *dout, const void *u,
                                   const float *stats, const float *g, int M, int C, qb_dtype t)
{
    qb_cpu_layernorm_backward(du, dg, db, dout, u, stats, g, M, C);
}

static void cpu_gelu(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t) { qb_cpu_gelu(y, x, n); }

static void cpu_gelu_backward(qb_stream *s, void *dx, const void *dy, const void *x, size_t n, qb_dtype t)
{
    qb_cpu_gelu_backward(dx, dy, x, n);
}

static void cpu_tanh(qb_stream *s, float *x, size_t n) { qb_cpu_tanh(x, n); }

static void cpu_tanh_backward(qb_stream *s, float *dx, const float *dy, const float *y, size_t n)
{
    qb_cpu_tanh_backward(dx, dy, y, n);
}

static void cpu_attention(qb_stream *s, void *out, float *lse, const void *q, const void *k, const void *v, int ld,
                          const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D, qb_math math,
                          qb_dtype t)
{
    qb_cpu_attention(out, lse, q, k, v, ld, mask, drop, B, T, H, D, math);
}

static void cpu_attention_backward(qb_stream *s, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                   const void *k, const void *v, int ld, const void *out, const float *lse,
                                   const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                                   qb_math math, qb_dtype t)
{
    qb_cpu_attention_backward(dq, dk, dv, dout, q, k, v, ld, out, lse, mask, drop, B, T, H, D, math);
}

static void cpu_embedding(qb_stream *s, void *out, const int32_t *ids, const int32_t *types, const void *word,
                          const void *pos, const void *type, int B, int T, int C, qb_dtype t, qb_dtype tables)
{
    qb_cpu_embedding(out, ids, types, word, pos, type, B, T, C);
}

static void cpu_embedding_backward(qb_stream *s, float *dword, float *dpos, float *dtype, const void *dout,
                                   const int32_t *ids, const int32_t *types, int pad_id, int B, int T, int C,
                                   qb_dtype t)
{
    qb_cpu_embedding_backward(dword, dpos, dtype, dout, ids, types, pad_id, B, T, C);
}

static void cpu_dropout(qb_stream *s, void *x, size_t n, const qb_dropout *drop, qb_dtype t)
{
    qb_cpu_dropout(x, n, drop);
}

static void cpu_xent(qb_stream *s, float *losses, float *dlogits, const float *logits, const int32_t *labels, int B,
                     int K, float grad_scale, const float *loss_scale)
{
    qb_cpu_xent(losses, dlogits, logits, labels, B, K, loss_scale ? grad_scale * *loss_scale : grad_scale);
}

static void cpu_adamw(qb_stream *s, float *w, float *m, float *v, const float *g, const uint8_t *decay, size_t n,
                      const qb_adamw_args *a, const double *sumsq, const float *loss_scale)
{
    qb_cpu_adamw(w, m, v, g, decay, n, a, *sumsq, loss_scale ? 1.0 / *loss_scale : 1.0);
}

static void cpu_loss_scale_update(qb_stream *s, float *scale, int32_t *good, const double *sumsq)
{
    qb_cpu_loss_scale_update(scale, good, *sumsq);
}

static void cpu_sumsq(qb_stream *s, double *out, const float *x, size_t n) { *out += qb_cpu_sumsq(x, n); }

static void cpu_add(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t) { qb_cpu_add(y, x, n); }

static void cpu_fake_quant_weight(qb_stream *s, float *y, float *scales, const float *w, int N, int K, int group,
                                  int bits)
{
    qb_cpu_fake_quant_weight(y, scales, w, N, K, group, bits);
}

static void cpu_fake_quant(qb_stream *s, float *y, const float *x, size_t n, const float *scale, int bits)
{
    qb_cpu_fake_quant(y, x, n, *scale, bits);
}

static void cpu_fake_quant_backward(qb_stream *s, float *dx, const float *dy, const float *x, size_t n,
                                    const float *scale, int bits)
{
    qb_cpu_fake_quant_backward(dx, dy, x, n, *scale, bits);
}

static void cpu_minmax(qb_stream *s, float *out, const float *x, size_t n) { qb_cpu_minmax(out, x, n); }

static void cpu_abs_percentile(qb_stream *s, float *out, const float *x, size_t n, double p)
{
    out[1] = qb_cpu_abs_percentile(x, n, p);
    out[0] = -out[1];
}

static void cpu_observe(qb_stream *s, float *range, float *scale, const float *batch, float ema, int bits)
{
    qb_cpu_observe(range, scale, batch, ema, bits);
}

static const char *cpu_device_name(void) { return "cpu"; }

static const qb_backend cpu_backend = {
    .name = "cpu",
    .device = QB_DEV_CPU,
    .caps = 0,
    .device_name = cpu_device_name,
    .alloc = qb_malloc,
    .free = qb_free,
    .linear = cpu_linear,
    .linear_q = cpu_linear_q,
    .qlinear_prepare = cpu_qlinear_prepare,
    .linear_backward = cpu_linear_backward,
    .layernorm = cpu_layernorm,
    .layernorm_backward = cpu_layernorm_backward,
    .gelu = cpu_gelu,
    .gelu_backward = cpu_gelu_backward,
    .tanh = cpu_tanh,
    .tanh_backward = cpu_tanh_backward,
    .attention = cpu_attention,
    .attention_backward = cpu_attention_backward,
    .embedding = cpu_embedding,
    .embedding_backward = cpu_embedding_backward,
    .dropout = cpu_dropout,
    .xent = cpu_xent,
    .adamw = cpu_adamw,
    .loss_scale_update = cpu_loss_scale_update,
    .sumsq = cpu_sumsq,
    .add = cpu_add,
    .rows = cpu_rows,
    .fake_quant_weight = cpu_fake_quant_weight,
    .fake_quant = cpu_fake_quant,
    .fake_quant_backward = cpu_fake_quant_backward,
    .minmax = cpu_minmax,
    .abs_percentile = cpu_abs_percentile,
    .observe = cpu_observe,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .to_host_async = cpu_copy,
    .copy = cpu_copy,
    .sync = cpu_sync,
    .host_alloc = qb_malloc,
    .host_free = qb_free,
};

const qb_backend *qb_backend_cpu(void) { return &cpu_backend; }

qb_status qb_backend_by_name(const char *name, const char *what, const qb_backend **out)
{
    *out = NULL;
    if (strcmp(name, "cpu") == 0) {
        *out = &cpu_backend;
        return QB_OK;
    }
    if (strcmp(name, "cuda") == 0) {
        qb_status st = qb_backend_cuda(out);
        return st ? qb_fail_context(st, "%s = cuda", what) : QB_OK;
    }
    return qb_fail(QB_EINVAL, "%s: unknown device \"%s\" (expected cpu or cuda)", what, name);
}
