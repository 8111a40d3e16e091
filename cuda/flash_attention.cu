/* Launchers of the tensor-core attention (cuda/flash_attention.cuh: the kernels'
 * bodies and their design), for qb_cuda_attention / qb_cuda_attention_backward when
 * the products are BF16 or FP16 and the head dim is 32, 64 or 128. q, k, v, out and
 * the gradients are stored in t: FP32 (each tile is then rounded to the operand type
 * as it is loaded), or the operand type itself (half-precision activations: loaded
 * with cp.async as they are). lse (B, H, T) and dsum are FP32; the backward's dsum
 * (B, H, T) is stream-ordered scratch. */
#include "cuda/common.cuh"
#include "cuda/flash_attention.cuh"

#include <math.h>
#include <stdio.h>
#include <type_traits>

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
static void launch(qb_stream *s, void (*kernel)(Args), const Args &args, size_t bytes, int B, int T, int H, int rows,
                   int per, const char *what)
{
    if (!qb_cuda_allow_shared(s, (const void *)kernel, bytes, what)) return;
    const unsigned blocks = (unsigned)B * (unsigned)H * (unsigned)((T + rows - 1) / rows) * (unsigned)per;
    kernel<<<blocks, THREADS, bytes, qb_cuda_stream(s)>>>(args);
    qb_cuda_launched(s, what);
}

/* The launches of one instantiation: S the storage type, M the operand type. */
template <typename S, typename M, int D> struct Kernels {
    static void forward(qb_stream *s, const flash::Forward<S> &a, int B)
    {
        launch(s, forward_kernel<S, M, D>, a, flash::forward_bytes<D>(), B, a.T, a.H, flash::BM, 1, "flash attention");
    }
    static void backward(qb_stream *s, const flash::Backward<S> &a, int B)
    {
        /* dq first: it writes dsum, which the dkdv kernel reads */
        launch(s, dq_kernel<S, M, D>, a, flash::dq_bytes<D>(), B, a.T, a.H, flash::BM, 1,
               "flash attention backward (dQ)");
        launch(s, dkdv_kernel<S, M, D>, a, flash::dkdv_bytes<D>(), B, a.T, a.H, flash::BN, D / flash::DKDV_COLS<D>,
               "flash attention backward (dK, dV)");
    }
};

/* f.template operator()<S, M, D>() for storage t (FP32, or the operand type), the
 * operand type (t's when t is half, else math's) and head dim D (32, 64 or 128). */
template <typename F> static void dispatch(qb_dtype t, qb_math math, int D, const F &f)
{
    qb_cuda_storage(t, [&](auto *tag) {
        using S = std::remove_pointer_t<decltype(tag)>;
        const bool bf16 = t == QB_BF16 || (t == QB_F32 && math == QB_MATH_BF16);
        auto with = [&](auto *mtag) {
            using M = std::remove_pointer_t<decltype(mtag)>;
            if constexpr (std::is_same<S, float>::value || std::is_same<S, M>::value) {
                if (D == 32) f.template operator()<S, M, 32>();
                else if (D == 64) f.template operator()<S, M, 64>();
                else f.template operator()<S, M, 128>();
            }
        };
        if (bf16) with((__nv_bfloat16 *)nullptr);
        else with((__half *)nullptr);
    });
}

static float scale_log2(int D) { return (float)(1.4426950408889634 / sqrt((double)D)); }

/* The forward and backward launches for dispatch: the op's arguments, typed once S,
 * M and D are known. */
struct RunForward {
    qb_stream *s;
    void *out;
    float *lse;
    const void *q, *k, *v;
    int ld;
    const int32_t *mask;
    const qb_dropout *drop;
    int B, T, H, D;
    template <typename S, typename M, int DD> void operator()() const
    {
        const int C = H * D;
        const flash::Forward<S> a = {(const S *)q, (const S *)k, (const S *)v, (S *)out, lse, mask, T, H, ld, C,
                                     scale_log2(D), *drop, 1.0f / (1.0f - drop->p)};
        Kernels<S, M, DD>::forward(s, a, B);
    }
};

struct RunBackward {
    qb_stream *s;
    void *dq, *dk, *dv;
    const void *dout, *q, *k, *v;
    int ld;
    const void *out;
    const float *lse;
    float *dsum;
    const int32_t *mask;
    const qb_dropout *drop;
    int B, T, H, D;
    template <typename S, typename M, int DD> void operator()() const
    {
        const int C = H * D;
        const flash::Backward<S> a = {(const S *)q, (const S *)k, (const S *)v, (const S *)out, (const S *)dout,
                                      (S *)dq, (S *)dk, (S *)dv, lse, dsum, mask, T, H, ld, C, scale_log2(D),
                                      (float)(1.0 / sqrt((double)D)), *drop, 1.0f / (1.0f - drop->p)};
        Kernels<S, M, DD>::backward(s, a, B);
    }
};

extern "C" void qb_cuda_flash_attention(qb_stream *s, void *out, float *lse, const void *q, const void *k,
                                        const void *v, int ld, const int32_t *mask, const qb_dropout *drop, int B, int T,
                                        int H, int D, qb_math math, qb_dtype t)
{
    dispatch(t, math, D, RunForward{s, out, lse, q, k, v, ld, mask, drop, B, T, H, D});
}

extern "C" void qb_cuda_flash_attention_backward(qb_stream *s, void *dq, void *dk, void *dv, const void *dout,
                                                 const void *q, const void *k, const void *v, int ld, const void *out,
                                                 const float *lse, const int32_t *mask, const qb_dropout *drop, int B,
                                                 int T, int H, int D, qb_math math, qb_dtype t)
{
    const cudaStream_t stream = qb_cuda_stream(s);
    const size_t bytes = (size_t)B * H * T * sizeof(float);
    float *dsum = NULL;
    const cudaError_t e = cudaMallocAsync((void **)&dsum, bytes, stream);
    if (e != cudaSuccess) {
        char what[96];
        snprintf(what, sizeof what, "flash attention backward: %zu bytes of dsum scratch", bytes);
        qb_cuda_note(s, e, what);
        return;
    }
    dispatch(t, math, D, RunBackward{s, dq, dk, dv, dout, q, k, v, ld, out, lse, dsum, mask, drop, B, T, H, D});
    qb_cuda_note(s, cudaFreeAsync(dsum, stream), "flash attention backward: free dsum");
}
