/* What the kernel files of cuda/ share: launch sizes, warp and block sums, the
 * dropout bits (cuda/philox.cuh: a mask drawn here equals the CPU's), the exact GELU,
 * and the per-token 7-bit quantizer of csrc/cpu/gemm_u8.c (the same bytes). */
#ifndef QBERT_CUDA_COMMON_CUH
#define QBERT_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <limits.h>
#include <stdint.h>

#include "cuda/philox.cuh"
#include "cuda/qb_cuda.h"
#include "cuda/storage.cuh"

/* Element-wise kernels: 256 threads, a grid-stride loop over at most this many
 * blocks (enough to fill any current GPU several times over). */
#define QB_CUDA_THREADS 256
#define QB_CUDA_MAX_BLOCKS 65535

static inline unsigned qb_cuda_blocks(size_t n)
{
    const size_t b = (n + QB_CUDA_THREADS - 1) / QB_CUDA_THREADS;
    return (unsigned)(b < 1 ? 1 : b > QB_CUDA_MAX_BLOCKS ? QB_CUDA_MAX_BLOCKS : b);
}

/* The padding rows of q (past q->M, qb_qinput) set to zero, as the CPU's quantizer
 * leaves them; what names the op in an error. */
static inline void qb_cuda_qinput_pad(qb_stream *s, const qb_qinput *q, const char *what)
{
    const size_t pad = (size_t)(qb_qinput_rows(q->M) - q->M) * q->ldu;
    if (pad) qb_cuda_note(s, cudaMemsetAsync(q->u + (size_t)q->M * q->ldu, 0, pad, qb_cuda_stream(s)), what);
}

/* Dynamic shared memory past the default 48 KiB must be asked for per kernel; past the
 * device's limit the request fails and is recorded on s (what names the op). */
static inline bool qb_cuda_allow_shared(qb_stream *s, const void *kernel, size_t bytes, const char *what)
{
    if (bytes <= 48 * 1024) return true;
    const cudaError_t e = bytes > (size_t)INT_MAX ? cudaErrorInvalidValue
                          : cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    return !qb_cuda_note(s, e, what);
}

__device__ __forceinline__ float qb_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double qb_warp_sum_d(double v)
{
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* The sum of v over the block (blockDim.x a multiple of 32, at most 1024), returned
 * to every thread. scratch: 32 floats of shared memory; the call synchronises. */
__device__ __forceinline__ float qb_block_sum(float v, float *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    v = qb_warp_sum(v);
    __syncthreads();  /* scratch may still be read by a previous call */
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < warps ? scratch[lane] : 0.0f;
    return qb_warp_sum(v);
}

/* The row's min(x, 0) and max(x, 0) over the block, returned to every thread; lo and
 * hi come in as the thread's own. The comparisons are qb_minf / qb_maxf's (csrc/cpu/
 * cpu.h), so a NaN is skipped as on the CPU. scratch: 64 floats of shared memory. */
__device__ __forceinline__ void qb_block_minmax(float &lo, float &hi, float *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) {
        const float l = __shfl_xor_sync(0xffffffffu, lo, o), h = __shfl_xor_sync(0xffffffffu, hi, o);
        lo = l < lo ? l : lo, hi = h > hi ? h : hi;
    }
    __syncthreads();
    if (lane == 0) scratch[warp] = lo, scratch[32 + warp] = hi;
    __syncthreads();
    lo = lane < warps ? scratch[lane] : 0.0f, hi = lane < warps ? scratch[32 + lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) {
        const float l = __shfl_xor_sync(0xffffffffu, lo, o), h = __shfl_xor_sync(0xffffffffu, hi, o);
        lo = l < lo ? l : lo, hi = h > hi ? h : hi;
    }
}

/* qb_u7_row_params: the scale of a row with min lo <= 0 and max hi >= 0, its inverse and
 * zero point, with the CPU's roundings (the _rn forms keep nvcc from fusing). */
__device__ __forceinline__ float qb_u7_params(float lo, float hi, float *inv, int32_t *z)
{
    const float s = __fdiv_rn(__fsub_rn(hi, lo), 127.0f);
    *inv = s > 0.0f ? __fdiv_rn(1.0f, s) : 0.0f;
    const float r = rintf(__fmul_rn(-lo, *inv)), c = r > 0.0f ? r : 0.0f;
    *z = s > 0.0f ? (int32_t)(c < 127.0f ? c : 127.0f) : 0;
    return s;
}

/* u = clamp(rint(x / s) + z, 0, 127) as gemm_u8.c's quantizer (NaN -> 0). */
__device__ __forceinline__ uint8_t qb_u7(float x, float inv, float zf)
{
    const float r = __fadd_rn(rintf(__fmul_rn(x, inv)), zf), c = r > 0.0f ? r : 0.0f;
    return (uint8_t)(c < 127.0f ? c : 127.0f);
}

/* One row x (K, in any storage type) quantized per token into u (ldu bytes: the K
 * values, then the zero point as padding), *scale and *zp, by the whole block; lo and
 * hi are the thread's min(x, 0) and max(x, 0) over the columns it owns (its own x[c]
 * are all it reads back, so x may be shared memory it wrote). scratch: 64 floats of
 * shared memory. */
template <typename X>
__device__ __forceinline__ void qb_quantize_row_u7(uint8_t *u, float *scale, int32_t *zp, const X *x, int K, int ldu,
                                                   float lo, float hi, float *scratch)
{
    qb_block_minmax(lo, hi, scratch);
    float inv;
    int32_t z;
    const float s = qb_u7_params(lo, hi, &inv, &z);
    if (threadIdx.x == 0) *scale = s, *zp = z;
    for (int c = threadIdx.x; c < ldu; c += blockDim.x) u[c] = c < K ? qb_u7(qb_to_float(x[c]), inv, (float)z) : (uint8_t)z;
}

#endif
