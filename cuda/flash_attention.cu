/* Launchers of the tensor-core attention (cuda/flash_attention.cuh: the kernels'
 * bodies and their design), for qb_cuda_attention / qb_cuda_attention_backward when
 * the products are BF16 or FP16 and the head dim is 32, 64 or 128. q, k, v, out and
 * the gradients are FP32 in memory for now (each tile is rounded to the operand type
 * as it is loaded); lse (B, H, T) and dsum are FP32. The backward's dsum (B, H, T)
 * is stream-ordered scratch. */
#include "cuda/common.cuh"
#include "cuda/flash_attention.cuh"

#include <math.h>
#include <stdio.h>

using flash::THREADS;

template <typename S, typename M, int D>
static __global__ void __launch_bounds__(THREADS) forward_kernel(flash::Forward<S> a)
{
    extern __shared__ __align__(16) char smem[];
    flash::forward<S, M, D>(a, smem);
}

template <typename S, typename M, int D>
static __global__ void __launch_bounds__(THREADS) dq_kernel(flash::Backward<S> a)
{
    extern __shared__ __align__(16) char smem[];
    flash::backward_dq<S, M, D>(a, smem);
}

template <typename S, typename M, int D>
static __global__ void __launch_bounds__(THREADS) dkdv_kernel(flash::Backward<S> a)
{
    extern __shared__ __align__(16) char smem[];
    flash::backward_dkdv<S, M, D>(a, smem);
}

/* kernel<<<B H ceil(T / rows) per, THREADS, bytes>>>(args) on the current stream. */
template <typename Args>
static void launch(void (*kernel)(Args), const Args &args, size_t bytes, int B, int T, int H, int rows, int per,
                   const char *what)
{
    if (!qb_cuda_allow_shared((const void *)kernel, bytes, what)) return;
    const unsigned blocks = (unsigned)B * (unsigned)H * (unsigned)((T + rows - 1) / rows) * (unsigned)per;
    kernel<<<blocks, THREADS, bytes, qb_cuda_stream()>>>(args);
    qb_cuda_launched(what);
}

template <typename M, int D>
static void forward(const flash::Forward<float> &a, int B)
{
    launch(forward_kernel<float, M, D>, a, flash::forward_bytes<D>(), B, a.T, a.H, flash::BM, 1, "flash attention");
}

template <typename M, int D>
static void backward(const flash::Backward<float> &a, int B)
{
    /* dq first: it writes dsum, which the dkdv kernel reads */
    launch(dq_kernel<float, M, D>, a, flash::dq_bytes<D>(), B, a.T, a.H, flash::BM, 1,
           "flash attention backward (dQ)");
    launch(dkdv_kernel<float, M, D>, a, flash::dkdv_bytes<D>(), B, a.T, a.H, flash::BN, D / flash::DKDV_COLS<D>,
           "flash attention backward (dK, dV)");
}

/* f<M, D>() for the operand type of math and head dim D (32, 64 or 128). */
template <template <typename, int> class F, typename... A>
static void dispatch(qb_math math, int D, A &&...args)
{
    const bool bf16 = math == QB_MATH_BF16;
    switch (D) {
    case 32: bf16 ? F<__nv_bfloat16, 32>::run(args...) : F<__half, 32>::run(args...); break;
    case 64: bf16 ? F<__nv_bfloat16, 64>::run(args...) : F<__half, 64>::run(args...); break;
    default: bf16 ? F<__nv_bfloat16, 128>::run(args...) : F<__half, 128>::run(args...); break;
    }
}
template <typename M, int D> struct Forward {
    static void run(const flash::Forward<float> &a, int B) { forward<M, D>(a, B); }
};
template <typename M, int D> struct Backward {
    static void run(const flash::Backward<float> &a, int B) { backward<M, D>(a, B); }
};

static float scale_log2(int D) { return (float)(1.4426950408889634 / sqrt((double)D)); }

extern "C" void qb_cuda_flash_attention(float *out, float *lse, const float *q, const float *k, const float *v,
                                        const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                                        qb_math math)
{
    const int C = H * D;
    const flash::Forward<float> a = {q, k, v, out, lse, mask, T, H, C, C, scale_log2(D), *drop,
                                     1.0f / (1.0f - drop->p)};
    dispatch<Forward>(math, D, a, B);
}

extern "C" void qb_cuda_flash_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                                 const float *k, const float *v, const float *out, const float *lse,
                                                 const int32_t *mask, const qb_dropout *drop, int B, int T, int H,
                                                 int D, qb_math math)
{
    const cudaStream_t stream = qb_cuda_stream();
    const size_t bytes = (size_t)B * H * T * sizeof(float);
    float *dsum = NULL;
    const cudaError_t e = cudaMallocAsync((void **)&dsum, bytes, stream);
    if (e != cudaSuccess) {
        char what[96];
        snprintf(what, sizeof what, "flash attention backward: %zu bytes of dsum scratch", bytes);
        qb_cuda_note(e, what);
        return;
    }
    const int C = H * D;
    const flash::Backward<float> a = {q,    k, v, out, dout, dq, dk, dv, lse, dsum, mask, T, H, C, C,
                                      scale_log2(D), (float)(1.0 / sqrt((double)D)), *drop,
                                      1.0f / (1.0f - drop->p)};
    dispatch<Backward>(math, D, a, B);
    qb_cuda_note(cudaFreeAsync(dsum, stream), "flash attention backward: free dsum");
}
