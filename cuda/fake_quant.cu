/* Fake quantization (QAT) and the observers' statistics on the GPU; the CPU
 * reference is csrc/cpu/fake_quant.c, and every result here equals its bit for bit.
 *
 * - fake_quant_weight, w (N, K) -> y (N, K), scales (N, K / group): one warp per
 *   (row, group), fusing the group's absmax, its scale and the quantize-dequantize of
 *   its values (the second pass re-reads the group from cache; each lane reads a value
 *   before writing it, so y may alias w).
 * - fake_quant, fake_quant_backward, x (n): element-wise.
 * - minmax: per-block min / max, then one block over the partials, into device
 *   memory (the observers stay on the device: nobody waits).
 * - abs_percentile: the largest |x| (block maxima merged with atomicMax on the bits,
 *   which order like the values for non-negative floats), a 2048-bin histogram of
 *   |x| * (2048 / amax) (one shared-memory histogram per block, merged with 64-bit
 *   atomics; integer counts are exact, so any order gives the CPU's histogram), then
 *   the cumulative scan in one thread, as the CPU does it.
 * - observe: one thread folds the batch statistic into the range and makes the scale.
 *
 * Bit-identity: the same float operations as the CPU in the same order, with x * (1 / s)
 * (not x / s), rintf (half to even on both sides) and the CPU's comparisons
 * (qb_maxf / qb_minf keep their second argument when the first is NaN; fminf / fmaxf of
 * minmax ignore NaN, on both sides). The _rn intrinsics keep the division correctly
 * rounded even under --use_fast_math (which would still flush denormals: the build
 * does not use it); no multiply is followed by an add, so nothing can become an FMA.
 * Maxima here are of values that are never NaN, hence unique and order-free.
 *
 * Scratch (minmax, abs_percentile) is stream-ordered (cudaMallocAsync / cudaFreeAsync).
 * On any failure the error is noted (qb_cuda_note), for the stream's next sync. */
#include "cuda/common.cuh"

#include <math.h>

#define FULL_MASK 0xffffffffu
#define WARPS_PER_BLOCK (QB_CUDA_THREADS / 32)
/* Reductions: a grid-stride loop over at most this many blocks (several per SM). */
#define REDUCE_BLOCKS 1024
/* The histogram: fewer blocks, since each merges up to BINS counts into global memory. */
#define HIST_BLOCKS 256

enum { BINS = 2048 };

/* qb_maxf / qb_minf of csrc/cpu/cpu.h: the second argument unless the first compares
 * greater (less); a NaN first argument yields the second. */
static __device__ __forceinline__ float maxf(float a, float b) { return a > b ? a : b; }
static __device__ __forceinline__ float minf(float a, float b) { return a < b ? a : b; }

struct min_op {
    __device__ float operator()(float a, float b) const { return fminf(a, b); }
};
struct max_op {
    __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};

/* The min or max (op) of v over the block (blockDim.x a multiple of 32), returned to
 * every thread. scratch: 32 floats of shared memory; the call synchronises. */
template <typename Op>
static __device__ float block_reduce(float v, float *scratch, Op op)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(FULL_MASK, v, o));
    __syncthreads();  /* scratch may still be read by a previous call */
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = scratch[lane < warps ? lane : 0];  /* min / max: a repeated value changes nothing */
    for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

static unsigned capped_blocks(size_t n, unsigned cap)
{
    const unsigned b = qb_cuda_blocks(n);
    return b < cap ? b : cap;
}

/* grid (ceil(N * groups / WARPS_PER_BLOCK)): warp gid handles group gid of the
 * row-major (N, groups) grid of groups, i.e. values w[gid * group ...] and scales[gid]
 * (K = groups * group, so row r's group g starts at r * K + g * group). */
static __global__ void fake_quant_weight_kernel(float *y, float *scales, const float *w, size_t ngroups,
                                                int group, float qmin, float qmax)
{
    const size_t gid = (size_t)blockIdx.x * WARPS_PER_BLOCK + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (gid >= ngroups) return;  /* the whole warp: gid is the same in all its lanes */
    const float *wg = w + gid * group;
    float *yg = y + gid * group;

    float amax = 0.0f;
    for (int k = lane; k < group; k += 32) amax = maxf(fabsf(wg[k]), amax);
    for (int o = 16; o > 0; o >>= 1) amax = maxf(__shfl_xor_sync(FULL_MASK, amax, o), amax);
    const float s = __fdiv_rn(amax, qmax);
    /* An all-zero group has nothing to scale: it stays 0. */
    const float inv = s > 0.0f ? __fdiv_rn(1.0f, s) : 0.0f;
    for (int k = lane; k < group; k += 32) {
        const float v = s > 0.0f ? minf(maxf(rintf(__fmul_rn(wg[k], inv)), qmin), qmax) : 0.0f;
        yg[k] = __fmul_rn(v, s);
    }
    if (lane == 0) scales[gid] = s;
}

/* The scale is an observer's, in device memory; inv = 1 / scale as the CPU divides. */
static __global__ void fake_quant_kernel(float *y, const float *x, size_t n, const float *scale_p, float qmin,
                                         float qmax)
{
    const float scale = *scale_p, inv = __fdiv_rn(1.0f, scale);
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = __fmul_rn(minf(maxf(rintf(__fmul_rn(x[i], inv)), qmin), qmax), scale);
}

static __global__ void fake_quant_backward_kernel(float *dx, const float *dy, const float *x, size_t n,
                                                  const float *scale, float qmin, float qmax)
{
    const float inv = __fdiv_rn(1.0f, *scale);
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float q = rintf(__fmul_rn(x[i], inv));
        dx[i] = q >= qmin && q <= qmax ? dy[i] : 0.0f;
    }
}

/* lo_out[blockIdx.x] = the min of lo_in, hi_out[blockIdx.x] = the max of hi_in, over
 * this block's share of n (the pass over x has lo_in = hi_in = x; the final pass, one
 * block, reads the partials). NaN is ignored (fminf / fmaxf), as on the CPU; nothing
 * but NaN gives +inf and -inf. */
static __global__ void minmax_kernel(float *lo_out, float *hi_out, const float *lo_in, const float *hi_in, size_t n)
{
    __shared__ float scratch[32];
    float lo = INFINITY, hi = -INFINITY;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        lo = fminf(lo, lo_in[i]);
        hi = fmaxf(hi, hi_in[i]);
    }
    lo = block_reduce(lo, scratch, min_op());
    hi = block_reduce(hi, scratch, max_op());
    if (threadIdx.x == 0) {
        lo_out[blockIdx.x] = lo;
        hi_out[blockIdx.x] = hi;
    }
}

/* abs_percentile's device scratch, zeroed before use: the histogram and the bits of
 * the largest |x| (NaN ignored; 0 when x has nothing else). */
struct percentile_scratch {
    unsigned long long hist[BINS];
    unsigned int amax_bits;
};

static __global__ void abs_max_kernel(unsigned int *amax_bits, const float *x, size_t n)
{
    __shared__ float scratch[32];
    float m = 0.0f;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) m = maxf(fabsf(x[i]), m);
    m = block_reduce(m, scratch, max_op());
    if (threadIdx.x == 0) atomicMax(amax_bits, __float_as_uint(m));
}

/* Bin (int)(|x| * (BINS / amax)), the last bin for the max itself and for NaN. Does
 * nothing when amax is 0 or not finite (the host then needs no histogram). */
static __global__ void abs_histogram_kernel(struct percentile_scratch *ps, const float *x, size_t n)
{
    __shared__ unsigned int bins[BINS];
    const float amax = __uint_as_float(ps->amax_bits);
    if (!(amax > 0.0f) || !isfinite(amax)) return;  /* the same in every thread */
    const float inv = __fdiv_rn((float)BINS, amax);
    for (int b = threadIdx.x; b < BINS; b += blockDim.x) bins[b] = 0;
    __syncthreads();
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float v = __fmul_rn(fabsf(x[i]), inv);
        atomicAdd(&bins[v < (float)BINS ? (int)v : BINS - 1], 1u);
    }
    __syncthreads();
    for (int b = threadIdx.x; b < BINS; b += blockDim.x)
        if (bins[b]) atomicAdd(&ps->hist[b], (unsigned long long)bins[b]);
}

/* One thread: out = (-P, P) from the histogram, qb_cpu_abs_percentile's scan (double
 * sums of exact integer counts, then the same float operations). */
static __global__ void percentile_kernel(float *out, const struct percentile_scratch *ps, size_t n, double p)
{
    const float amax = __uint_as_float(ps->amax_bits);
    float r = amax;
    if (!(amax > 0.0f) || !isfinite(amax)) {
        r = amax > 0.0f ? amax : 0.0f;
    } else {
        const double want = __dmul_rn((double)n, p) / 100.0;
        double seen = 0.0;
        for (int b = 0; b < BINS; b++)
            if ((seen += (double)ps->hist[b]) >= want) {
                r = __fdiv_rn(__fmul_rn(amax, (float)(b + 1)), (float)BINS);
                break;
            }
    }
    out[0] = -r;
    out[1] = r;
}

/* One thread: qb_cpu_observe (csrc/cpu/fake_quant.c), operation for operation. */
static __global__ void observe_kernel(float *range, float *scale, const float *batch, float ema, float qmax)
{
    const float lo = batch[0], hi = batch[1];
    if (isfinite(lo) && isfinite(hi)) {
        if (isnan(range[0])) {
            range[0] = lo, range[1] = hi;
        } else if (ema == 0.0f) {
            range[0] = fminf(range[0], lo), range[1] = fmaxf(range[1], hi);
        } else {
            range[0] = __fadd_rn(range[0], __fmul_rn(ema, __fsub_rn(lo, range[0])));
            range[1] = __fadd_rn(range[1], __fmul_rn(ema, __fsub_rn(hi, range[1])));
        }
    }
    const float s = __fdiv_rn(fmaxf(fabsf(range[0]), fabsf(range[1])), qmax);
    *scale = isfinite(s) && s > 0.0f ? s : 1.0f;
}

extern "C" void qb_cuda_fake_quant_weight(qb_stream *s, float *y, float *scales, const float *w, int N, int K, int group,
                                          int bits)
{
    const size_t ngroups = (size_t)N * (K / group);
    if (ngroups == 0) return;
    const float qmax = (float)((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
    const unsigned blocks = (unsigned)((ngroups + WARPS_PER_BLOCK - 1) / WARPS_PER_BLOCK);
    fake_quant_weight_kernel<<<blocks, QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>(y, scales, w, ngroups, group, qmin,
                                                                               qmax);
    qb_cuda_launched(s, "fake_quant_weight");
}

extern "C" void qb_cuda_fake_quant(qb_stream *s, float *y, const float *x, size_t n, const float *scale, int bits)
{
    if (n == 0) return;
    const float qmax = (float)((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
    fake_quant_kernel<<<qb_cuda_blocks(n), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>(y, x, n, scale, qmin, qmax);
    qb_cuda_launched(s, "fake_quant");
}

extern "C" void qb_cuda_fake_quant_backward(qb_stream *s, float *dx, const float *dy, const float *x, size_t n,
                                            const float *scale, int bits)
{
    if (n == 0) return;
    const float qmax = (float)((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
    fake_quant_backward_kernel<<<qb_cuda_blocks(n), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>(dx, dy, x, n, scale, qmin,
                                                                                            qmax);
    qb_cuda_launched(s, "fake_quant_backward");
}

/* Scratch part (2 * blocks): the per-block minima, then the maxima; the final
 * pass writes out. */
extern "C" void qb_cuda_minmax(qb_stream *s, float *out, const float *x, size_t n)
{
    const cudaStream_t st = qb_cuda_stream(s);
    const unsigned blocks = capped_blocks(n, REDUCE_BLOCKS);
    float *part = NULL;
    if (qb_cuda_note(s, cudaMallocAsync((void **)&part, 2 * (size_t)blocks * sizeof *part, st), "minmax: scratch"))
        return;
    minmax_kernel<<<blocks, QB_CUDA_THREADS, 0, st>>>(part, part + blocks, x, x, n);
    if (!qb_cuda_launched(s, "minmax")) {
        minmax_kernel<<<1, QB_CUDA_THREADS, 0, st>>>(out, out + 1, part, part + blocks, blocks);
        qb_cuda_launched(s, "minmax: final");
    }
    qb_cuda_note(s, cudaFreeAsync(part, st), "minmax: scratch");
}

extern "C" void qb_cuda_abs_percentile(qb_stream *s, float *out, const float *x, size_t n, double p)
{
    const cudaStream_t st = qb_cuda_stream(s);
    struct percentile_scratch *ps = NULL;
    if (qb_cuda_note(s, cudaMallocAsync((void **)&ps, sizeof *ps, st), "abs_percentile: scratch")) return;
    int bad = qb_cuda_note(s, cudaMemsetAsync(ps, 0, sizeof *ps, st), "abs_percentile: scratch");
    if (!bad) {
        abs_max_kernel<<<capped_blocks(n, REDUCE_BLOCKS), QB_CUDA_THREADS, 0, st>>>(&ps->amax_bits, x, n);
        bad = qb_cuda_launched(s, "abs_percentile: max");
    }
    if (!bad) {
        abs_histogram_kernel<<<capped_blocks(n, HIST_BLOCKS), QB_CUDA_THREADS, 0, st>>>(ps, x, n);
        bad = qb_cuda_launched(s, "abs_percentile: histogram");
    }
    if (!bad) {
        percentile_kernel<<<1, 1, 0, st>>>(out, ps, n, p);
        qb_cuda_launched(s, "abs_percentile: scan");
    }
    qb_cuda_note(s, cudaFreeAsync(ps, st), "abs_percentile: scratch");
}

extern "C" void qb_cuda_observe(qb_stream *s, float *range, float *scale, const float *batch, float ema, int bits)
{
    observe_kernel<<<1, 1, 0, qb_cuda_stream(s)>>>(range, scale, batch, ema, (float)((1 << (bits - 1)) - 1));
    qb_cuda_launched(s, "observe");
}
