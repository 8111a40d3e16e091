/* The CPU backend: the op table filled with the kernels of csrc/cpu/. Host memory
 * is device memory here, so allocation is qb_malloc and the copies are memcpy. */
#include "backend/backend.h"

#include <math.h>
#include <string.h>

#include "cpu/cpu.h"
#include "qbert/core.h"

static void cpu_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);  /* memcpy with NULL pointers is undefined even for 0 */
}

static void cpu_zero(void *p, size_t bytes)
{
    if (bytes) memset(p, 0, bytes);
}

static qb_status cpu_sync(void) { return QB_OK; }  /* every op has finished when it returns */

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

static void cpu_linear(float *y, const float *x, const float *w, const float *b, int M, int N, int K, qb_math math)
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

static void cpu_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                                int M, int N, int K, qb_math math)
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

static const char *cpu_device_name(void) { return "cpu"; }

static const qb_backend cpu_backend = {
    .name = "cpu",
    .device = QB_DEV_CPU,
    .device_name = cpu_device_name,
    .alloc = qb_malloc,
    .free = qb_free,
    .linear = cpu_linear,
    .linear_q = qb_cpu_linear_q,
    .qlinear_prepare = qb_cpu_qlinear_prepare,
    .linear_backward = cpu_linear_backward,
    .layernorm = qb_cpu_layernorm,
    .layernorm_backward = qb_cpu_layernorm_backward,
    .gelu = qb_cpu_gelu,
    .gelu_backward = qb_cpu_gelu_backward,
    .tanh = qb_cpu_tanh,
    .tanh_backward = qb_cpu_tanh_backward,
    .attention = qb_cpu_attention,
    .attention_backward = qb_cpu_attention_backward,
    .embedding = qb_cpu_embedding,
    .embedding_backward = qb_cpu_embedding_backward,
    .dropout = qb_cpu_dropout,
    .xent = qb_cpu_xent,
    .adamw = qb_cpu_adamw,
    .sumsq = qb_cpu_sumsq,
    .add = qb_cpu_add,
    .fake_quant_weight = qb_cpu_fake_quant_weight,
    .fake_quant = qb_cpu_fake_quant,
    .fake_quant_backward = qb_cpu_fake_quant_backward,
    .minmax = qb_cpu_minmax,
    .abs_percentile = qb_cpu_abs_percentile,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
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
