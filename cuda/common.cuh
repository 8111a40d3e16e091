/* What the kernel files of cuda/ share: launch sizes, warp and block sums, the
 * Philox4x32-10 generator of csrc/core/rng.c (the same bits, so a dropout mask
 * drawn here equals the CPU's for the same seed, stream and index), the exact GELU,
 * and the per-token 7-bit quantizer of csrc/cpu/gemm_u8.c (the same bytes). */
#ifndef QBERT_CUDA_COMMON_CUH
#define QBERT_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <limits.h>
#include <stdint.h>

#include "cuda/qb_cuda.h"

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
static inline void qb_cuda_qinput_pad(const qb_qinput *q, const char *what)
{
    const size_t pad = (size_t)(qb_qinput_rows(q->M) - q->M) * q->ldu;
    if (pad) qb_cuda_note(cudaMemsetAsync(q->u + (size_t)q->M * q->ldu, 0, pad, qb_cuda_stream()), what);
}

/* Dynamic shared memory past the default 48 KiB must be asked for per kernel; past the
 * device's limit the request fails and is recorded (what names the op). */
static inline bool qb_cuda_allow_shared(const void *kernel, size_t bytes, const char *what)
{
    if (bytes <= 48 * 1024) return true;
    const cudaError_t e = bytes > (size_t)INT_MAX ? cudaErrorInvalidValue
                          : cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    return !qb_cuda_note(e, what);
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

/* One row x (K) quantized per token into u (ldu bytes: the K values, then the zero
 * point as padding), *scale and *zp, by the whole block; lo and hi are the thread's
 * min(x, 0) and max(x, 0) over the columns it owns (its own x[c] are all it reads
 * back, so x may be shared memory it wrote). scratch: 64 floats of shared memory. */
__device__ __forceinline__ void qb_quantize_row_u7(uint8_t *u, float *scale, int32_t *zp, const float *x, int K,
                                                   int ldu, float lo, float hi, float *scratch)
{
    qb_block_minmax(lo, hi, scratch);
    float inv;
    int32_t z;
    const float s = qb_u7_params(lo, hi, &inv, &z);
    if (threadIdx.x == 0) *scale = s, *zp = z;
    for (int c = threadIdx.x; c < ldu; c += blockDim.x) u[c] = c < K ? qb_u7(x[c], inv, (float)z) : (uint8_t)z;
}

/* Exact GELU, x Phi(x) with erf, as csrc/cpu/gelu.c. */
__device__ __forceinline__ float qb_gelu(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

/* Block `counter` of stream `stream` under key `seed`: qb_philox4x32 of rng.c. */
__device__ __forceinline__ uint4 qb_philox(uint64_t seed, uint64_t counter, uint64_t stream)
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
#pragma unroll
    for (int r = 0; r < 10; r++) {
        const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return make_uint4(c0, c1, c2, c3);
}

/* The keep rule of csrc/cpu/dropout.c (keep_scale): scale when the 24-bit uniform of
 * Philox word w is >= p, else 0. */
__device__ __forceinline__ float qb_dropout_keep(uint32_t w, float p, float scale)
{
    return (float)(w >> 8) * (1.0f / 16777216.0f) >= p ? scale : 0.0f;
}

/* The dropout factor of element `idx` of a site (qb_dropout in backend.h): word idx % 4
 * of block idx / 4. One Philox block per element: for scattered indices; runs of
 * indices use qb_dropout_block. Callers check p > 0 first. */
__device__ __forceinline__ float qb_dropout_factor(const qb_dropout d, uint64_t idx)
{
    const uint4 r = qb_philox(d.seed, idx / 4, d.stream);
    const uint32_t w = (idx & 3) == 0 ? r.x : (idx & 3) == 1 ? r.y : (idx & 3) == 2 ? r.z : r.w;
    return qb_dropout_keep(w, d.p, 1.0f / (1.0f - d.p));
}

/* x[idx - first] *= the dropout factor of idx, for the indices of Philox block g
 * (4 g .. 4 g + 3) that lie in [first, first + n): one draw for four elements. scale is
 * 1 / (1 - d.p). */
__device__ __forceinline__ void qb_dropout_block(float *x, uint64_t first, uint64_t n, const qb_dropout &d,
                                                 float scale, uint64_t g)
{
    const uint4 r = qb_philox(d.seed, g, d.stream);
    const uint32_t words[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int w = 0; w < 4; w++) {
        const uint64_t idx = 4 * g + w;
        if (idx >= first && idx < first + n) x[idx - first] *= qb_dropout_keep(words[w], d.p, scale);
    }
}

#endif
