/* Element-wise activations and vector ops on the GPU (csrc/cpu/gelu.c and vector.c
 * are the reference, formulas included): exact erf GELU and its backward, tanh and
 * its backward, y += x, all of shape (n), rows (the strided copy that converts
 * between storage types), and the sum of squares of x (n) for the global gradient
 * norm.
 *
 * The five maps are one grid-stride kernel over an operator op(a, b) (b absent for
 * the unary ones), instantiated for the storage type of the activations (FP32, FP16,
 * BF16: computed in FP32, stored rounded to nearest; tanh is the pooler's, FP32
 * only). Each element is read and then written by the same thread, so an output may
 * alias an input. When every pointer is aligned to four elements the kernel moves
 * four at a time (one 16- or 8-byte access); otherwise, and for the last n % 4
 * elements, one by one.
 *
 * sumsq: each block adds (double) x^2 over its grid-stride share into a partial
 * (scratch on the stream); one block adds all the partials in a fixed order (the
 * same result run after run) to the total in device memory: nobody waits. */
#include "cuda/common.cuh"

#include <math.h>
#include <type_traits>

#define INV_SQRT2 0.70710678118654752f    /* (float)M_SQRT1_2, as gelu.c */
#define INV_SQRT_2PI 0.3989422804014327f
#define FINAL_THREADS 1024                /* the block that adds sumsq's partials */

struct gelu_op {
    __device__ float operator()(float x, float) const { return qb_gelu(x); }
};

/* dy * gelu'(x), gelu'(x) = Phi(x) + x phi(x). */
struct gelu_backward_op {
    __device__ float operator()(float dy, float x) const
    {
        const float cdf = 0.5f * (1.0f + erff(x * INV_SQRT2));
        const float pdf = INV_SQRT_2PI * expf(-0.5f * x * x);
        return dy * (cdf + x * pdf);
    }
};

struct tanh_op {
    __device__ float operator()(float x, float) const { return tanhf(x); }
};

/* dy * (1 - y^2) rounded as the CPU does: without the _rn intrinsics nvcc would fuse
 * 1 - y * y into one FMA, which differs most where it matters (|y| near 1). */
struct tanh_backward_op {
    __device__ float operator()(float dy, float y) const { return __fmul_rn(dy, __fsub_rn(1.0f, __fmul_rn(y, y))); }
};

struct add_op {
    __device__ float operator()(float y, float x) const { return y + x; }
};

/* Four consecutive elements, loaded and stored in one access. */
template <typename T> struct alignas(4 * sizeof(T)) quad {
    T v[4];
};

/* y[i] = op(a[i], b[i]) for i < n (b NULL: op(a[i], 0)); vec: every pointer is
 * aligned to a quad. Grid-stride over n / 4 quads, then over the rest one by one. */
template <typename T, class Op>
static __global__ void map_kernel(T *y, const T *a, const T *b, size_t n, bool vec, Op op)
{
    const size_t stride = (size_t)gridDim.x * blockDim.x, i0 = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t first = 0;  /* the first element the scalar loop handles */
    if (vec) {
        const size_t n4 = n / 4;
        for (size_t i = i0; i < n4; i += stride) {
            const quad<T> va = reinterpret_cast<const quad<T> *>(a)[i];
            quad<T> vb = {}, vy;
            if (b) vb = reinterpret_cast<const quad<T> *>(b)[i];
#pragma unroll
            for (int e = 0; e < 4; e++) vy.v[e] = qb_from_float<T>(op(qb_to_float(va.v[e]), qb_to_float(vb.v[e])));
            reinterpret_cast<quad<T> *>(y)[i] = vy;
        }
        first = n4 * 4;
    }
    for (size_t i = first + i0; i < n; i += stride)
        y[i] = qb_from_float<T>(op(qb_to_float(a[i]), b ? qb_to_float(b[i]) : 0.0f));
}

template <typename T, class Op>
static void map(qb_stream *s, T *y, const T *a, const T *b, size_t n, Op op, const char *what)
{
    if (n == 0) return;
    const bool vec = ((uintptr_t)y | (uintptr_t)a | (uintptr_t)b) % sizeof(quad<T>) == 0;  /* b NULL: aligned */
    map_kernel<<<qb_cuda_blocks(vec ? n / 4 : n), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>(y, a, b, n, vec, op);
    qb_cuda_launched(s, what);
}

/* map on buffers of storage t. */
template <class Op>
static void map_as(qb_stream *s, qb_dtype t, void *y, const void *a, const void *b, size_t n, Op op, const char *what)
{
    qb_cuda_storage(t, [&](auto *tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        map(s, (T *)y, (const T *)a, (const T *)b, n, op, what);
    });
}

extern "C" void qb_cuda_gelu(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t)
{
    map_as(s, t, y, x, NULL, n, gelu_op(), "gelu");
}

extern "C" void qb_cuda_gelu_backward(qb_stream *s, void *dx, const void *dy, const void *x, size_t n, qb_dtype t)
{
    map_as(s, t, dx, dy, x, n, gelu_backward_op(), "gelu_backward");
}

extern "C" void qb_cuda_tanh(qb_stream *s, float *x, size_t n) { map(s, x, x, (const float *)NULL, n, tanh_op(), "tanh"); }

extern "C" void qb_cuda_tanh_backward(qb_stream *s, float *dx, const float *dy, const float *y, size_t n)
{
    map(s, dx, dy, y, n, tanh_backward_op(), "tanh_backward");
}

extern "C" void qb_cuda_add(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t)
{
    map_as(s, t, y, y, x, n, add_op(), "add");
}

/* dst (rows, cols; row stride ldd) = src (row stride lds), converted: a grid-stride
 * loop over the rows * cols elements. */
template <typename D, typename S>
static __global__ void rows_kernel(D *dst, size_t ldd, const S *src, size_t lds, int rows, int cols)
{
    const size_t n = (size_t)rows * cols, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const size_t r = i / cols, c = i % cols;
        dst[r * ldd + c] = qb_from_float<D>(qb_to_float(src[r * lds + c]));
    }
}

extern "C" void qb_cuda_rows(qb_stream *s, void *dst, qb_dtype dt, size_t ldd, const void *src, qb_dtype st,
                             size_t lds, int rows, int cols)
{
    if (rows <= 0 || cols <= 0) return;
    qb_cuda_storage(dt, [&](auto *dtag) {
        qb_cuda_storage(st, [&](auto *stag) {
            using D = std::remove_pointer_t<decltype(dtag)>;
            using S = std::remove_pointer_t<decltype(stag)>;
            rows_kernel<<<qb_cuda_blocks((size_t)rows * cols), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>(
                (D *)dst, ldd, (const S *)src, lds, rows, cols);
        });
    });
    qb_cuda_launched(s, "rows");
}

/* The sum of v over the block (blockDim.x a multiple of 32), valid in thread 0.
 * scratch: 32 doubles of shared memory; called once per kernel. */
static __device__ double block_sum_d(double v, double *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = qb_warp_sum_d(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return qb_warp_sum_d(lane < (int)(blockDim.x >> 5) ? scratch[lane] : 0.0);
}

/* grid (parts), QB_CUDA_THREADS threads: partial[block] = its share of sum x^2. */
static __global__ void sumsq_kernel(double *partial, const float *x, size_t n)
{
    __shared__ double scratch[32];
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) s += (double)x[i] * x[i];
    s = block_sum_d(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

/* One block of FINAL_THREADS: *total += the sum of v (n). */
static __global__ void sum_kernel(double *total, const double *v, size_t n)
{
    __shared__ double scratch[32];
    double s = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += v[i];
    s = block_sum_d(s, scratch);
    if (threadIdx.x == 0) *total += s;
}

extern "C" void qb_cuda_sumsq(qb_stream *s, double *out, const float *x, size_t n)
{
    if (n == 0) return;
    const cudaStream_t stream = qb_cuda_stream(s);
    const unsigned parts = qb_cuda_blocks(n);
    double *partial = NULL;  /* one per block; stream-ordered, so a graph can record it */
    if (qb_cuda_note(s, cudaMallocAsync((void **)&partial, parts * sizeof *partial, stream), "sumsq: scratch")) return;
    sumsq_kernel<<<parts, QB_CUDA_THREADS, 0, stream>>>(partial, x, n);
    if (!qb_cuda_launched(s, "sumsq")) {
        sum_kernel<<<1, FINAL_THREADS, 0, stream>>>(out, partial, parts);
        qb_cuda_launched(s, "sumsq: total");
    }
    qb_cuda_note(s, cudaFreeAsync(partial, stream), "sumsq: scratch");
}
