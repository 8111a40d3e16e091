/* The CUDA backend: the runtime every kernel of cuda/ runs under (device 0, one
 * stream, the first error kept until qb_cuda_sync reports it), device memory and
 * copies, and the op table filled with the launchers of cuda/ (cuda/qb_cuda.h). */
#include "cuda/qb_cuda.h"

#include <stdio.h>
#include <string.h>

static struct {
    bool tried;
    qb_status init;           /* the first qb_cuda_init's result */
    char init_msg[256];
    cudaStream_t stream;
    char name[128];
    cudaError_t err;          /* the pending error, cudaSuccess when none */
    char what[96];
} rt;

qb_status qb_cuda_init(void)
{
    if (rt.tried) return rt.init ? qb_fail(rt.init, "%s", rt.init_msg) : QB_OK;
    rt.tried = true;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    struct cudaDeviceProp prop;
    if (e != cudaSuccess || n < 1)
        snprintf(rt.init_msg, sizeof rt.init_msg, "no CUDA device (%s)",
                 e != cudaSuccess ? cudaGetErrorString(e) : "the driver sees none");
    else if ((e = cudaSetDevice(0)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, 0)) != cudaSuccess ||
             (e = cudaStreamCreateWithFlags(&rt.stream, cudaStreamNonBlocking)) != cudaSuccess)
        snprintf(rt.init_msg, sizeof rt.init_msg, "CUDA device 0 cannot be used: %s", cudaGetErrorString(e));
    else if (prop.major < 8)  /* the kernels are built for sm_80 and later */
        snprintf(rt.init_msg, sizeof rt.init_msg, "CUDA device 0 (%.100s) is sm_%d%d; qbert needs sm_80 or later",
                 prop.name, prop.major, prop.minor);
    else
        snprintf(rt.name, sizeof rt.name, "%.100s (sm_%d%d)", prop.name, prop.major, prop.minor);
    cudaGetLastError();  /* a failed call above must not look like a later launch's error */
    rt.init = rt.init_msg[0] ? QB_EUNSUPPORTED : QB_OK;
    return qb_cuda_init();
}

cudaStream_t qb_cuda_stream(void) { return rt.stream; }

const char *qb_cuda_device_name(void) { return rt.name; }

int qb_cuda_note(cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return 0;
    if (rt.err == cudaSuccess) {
        rt.err = e;
        snprintf(rt.what, sizeof rt.what, "%s", what);
    }
    return 1;
}

int qb_cuda_launched(const char *what) { return qb_cuda_note(cudaGetLastError(), what); }

qb_status qb_cuda_sync(void)
{
    qb_cuda_note(cudaStreamSynchronize(rt.stream), "stream synchronize");
    if (rt.err == cudaSuccess) return QB_OK;
    const cudaError_t e = rt.err;
    rt.err = cudaSuccess;
    cudaGetLastError();
    return qb_fail(QB_EUNSUPPORTED, "CUDA: %s: %s", rt.what, cudaGetErrorString(e));
}

void *qb_cuda_alloc(size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();  /* out of memory is not sticky: the caller reports it */
        return NULL;
    }
    return p;
}

void qb_cuda_free(void *p)
{
    if (p) qb_cuda_note(cudaFree(p), "cudaFree");
}

void qb_cuda_zero(void *p, size_t bytes)
{
    if (bytes) qb_cuda_note(cudaMemsetAsync(p, 0, bytes, rt.stream), "zero");
}

/* From pageable host memory the copy has read src when the call returns, so the
 * caller may free it at once (bert.c's upload does). */
void qb_cuda_to_device(void *dst, const void *src, size_t bytes)
{
    if (bytes) qb_cuda_note(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, rt.stream), "to_device");
}

void qb_cuda_to_host(void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    if (!qb_cuda_note(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, rt.stream), "to_host"))
        qb_cuda_note(cudaStreamSynchronize(rt.stream), "to_host");
}

void qb_cuda_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) qb_cuda_note(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, rt.stream), "copy");
}

static const qb_backend cuda_backend = {
    .name = "cuda",
    .device = QB_DEV_CUDA,
    .device_name = qb_cuda_device_name,
    .alloc = qb_cuda_alloc,
    .free = qb_cuda_free,
    .linear = qb_cuda_linear,
    .linear_q = qb_cuda_linear_q,
    .qlinear_prepare = qb_cuda_qlinear_prepare,
    .linear_backward = qb_cuda_linear_backward,
    .layernorm = qb_cuda_layernorm,
    .layernorm_backward = qb_cuda_layernorm_backward,
    .gelu = qb_cuda_gelu,
    .gelu_backward = qb_cuda_gelu_backward,
    .tanh = qb_cuda_tanh,
    .tanh_backward = qb_cuda_tanh_backward,
    .attention = qb_cuda_attention,
    .attention_backward = qb_cuda_attention_backward,
    .embedding = qb_cuda_embedding,
    .embedding_backward = qb_cuda_embedding_backward,
    .dropout = qb_cuda_dropout,
    .xent = qb_cuda_xent,
    .adamw = qb_cuda_adamw,
    .sumsq = qb_cuda_sumsq,
    .add = qb_cuda_add,
    .fake_quant_weight = qb_cuda_fake_quant_weight,
    .fake_quant = qb_cuda_fake_quant,
    .fake_quant_backward = qb_cuda_fake_quant_backward,
    .minmax = qb_cuda_minmax,
    .abs_percentile = qb_cuda_abs_percentile,
    .zero = qb_cuda_zero,
    .to_device = qb_cuda_to_device,
    .to_host = qb_cuda_to_host,
    .copy = qb_cuda_copy,
    .sync = qb_cuda_sync,
};

qb_status qb_backend_cuda(const qb_backend **out)
{
    *out = NULL;
    qb_status st = qb_cuda_init();
    if (!st) *out = &cuda_backend;
    return st;
}
