/* LayerNorm over the last dimension on the GPU, forward and backward (qb_cpu_layernorm
 * and qb_cpu_layernorm_backward in csrc/cpu/layernorm.c are the reference, formulas
 * included: biased variance of t - mean in two FP32 passes, rstd = 1 / sqrtf(var + eps)).
 *
 * Forward, x, res, out, u_out (M, C), g, b (C), stats (M, 2): one block per row. The
 * residual add u = x + res is fused in front so that u is made in registers and never
 * read back from memory: each thread adds its columns of x and res, writes u_out and
 * keeps u in shared memory (C floats) for the two reductions (mean, then the variance
 * of u - mean) and the output pass. A thread reads and writes only its own columns,
 * and out is written after the row's reductions, so out and u_out may alias x and out
 * may alias res.
 *
 * Backward, dout, u, du (M, C), stats (M, 2), g, dg, db (C): du and the parameter
 * sums in one pass over dout and u. Block k takes rows k, k + blocks, ...; its threads
 * own fixed columns and add dout * xhat and dout into the block's column sums in
 * shared memory (2, C), then store them to a scratch (blocks, 2, C); a second kernel
 * adds the partials, in block order and in double, onto dg and db. No atomics: the
 * result is the same run after run. du may alias dout: a thread reads dout[c] before
 * it writes du[c], and no other thread touches either.
 *
 * The (M, C) tensors are in the activations' storage type T (FP32, FP16, BF16):
 * read as FP32, every statistic and sum in FP32, written rounded; u is kept in
 * shared memory as computed (FP32), u_out gets it rounded. g, b, stats, dg, db FP32. */
#include "cuda/common.cuh"

#include <type_traits>

/* Row blocks of the backward: enough warps in flight to keep an H100's memory busy,
 * few enough that the partials (blocks x 2C floats) stay small next to dout. */
#define BACKWARD_BLOCKS 512
/* The column-sum kernel: 32 columns (one warp wide, coalesced) x 8 rows of partials. */
#define SUM_COLS 32
#define SUM_ROWS 8

/* Threads per row: about 4 columns each, whole warps (qb_block_sum), at most 1024. */
static int row_threads(int C)
{
    const int t = (C / 4 + 31) / 32 * 32;
    return t < 32 ? 32 : t > 1024 ? 1024 : t;
}

/* grid (M), row_threads(C) threads, C floats of dynamic shared memory. With u, the
 * row's output is also quantized per token (qb_qinput: u (M, ldu), qscale, qzp (M))
 * from the values just stored, which the block holds in shared memory: the 7-bit
 * grid needs the row's min and max first, so the quantizer cannot run column by
 * column, but it needs no second pass over memory either. */
template <typename T>
static __global__ void layernorm_kernel(T *out, T *u_out, float *stats, uint8_t *u, float *qscale, int32_t *qzp,
                                        int ldu, const T *x, const T *res, const float *g, const float *b, int C,
                                        float eps)
{
    extern __shared__ float row[];  /* u of this row (C), then out; column c belongs to thread c % blockDim.x */
    __shared__ float scratch[64];
    const size_t off = (size_t)blockIdx.x * C;

    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float v = res ? qb_to_float(x[off + c]) + qb_to_float(res[off + c]) : qb_to_float(x[off + c]);
        row[c] = v;
        if (u_out) u_out[off + c] = qb_from_float<T>(v);
        s += v;
    }
    const float mean = qb_block_sum(s, scratch) / C;
    float q = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float d = row[c] - mean;
        q += d * d;
    }
    const float rstd = 1.0f / sqrtf(qb_block_sum(q, scratch) / C + eps);
    if (stats && threadIdx.x == 0) stats[2 * (size_t)blockIdx.x] = mean, stats[2 * (size_t)blockIdx.x + 1] = rstd;
    float lo = 0.0f, hi = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {  /* row: out as stored, for the quantizer */
        const T r = qb_from_float<T>((row[c] - mean) * rstd * g[c] + b[c]);
        const float o = qb_to_float(r);
        out[off + c] = r;
        row[c] = o;
        lo = o < lo ? o : lo, hi = o > hi ? o : hi;
    }
    if (u) qb_quantize_row_u7(u + (size_t)blockIdx.x * ldu, &qscale[blockIdx.x], &qzp[blockIdx.x], row, C, ldu, lo, hi,
                              scratch);
}

/* grid (parts), row_threads(C) threads, 2C floats of dynamic shared memory;
 * partial (parts, 2, C) receives each block's sums of dout * xhat, then of dout. */
template <typename T>
static __global__ void layernorm_backward_kernel(T *du, float *partial, const T *dout, const T *u, const float *stats,
                                                 const float *g, int M, int C)
{
    extern __shared__ float sums[];  /* (2, C); column c belongs to thread c % blockDim.x */
    __shared__ float scratch[32];
    float *sg = sums, *sb = sums + C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) sg[c] = 0.0f, sb[c] = 0.0f;

    for (int m = blockIdx.x; m < M; m += gridDim.x) {
        const size_t off = (size_t)m * C;
        const float mean = stats[2 * (size_t)m], rstd = stats[2 * (size_t)m + 1];
        float se = 0.0f, sex = 0.0f;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            const float d = qb_to_float(dout[off + c]), xhat = (qb_to_float(u[off + c]) - mean) * rstd;
            const float e = __fmul_rn(d, g[c]);
            sg[c] += d * xhat;
            sb[c] += d;
            se += e;
            sex += e * xhat;
        }
        const float me = qb_block_sum(se, scratch) / C, mex = qb_block_sum(sex, scratch) / C;
        /* e rounded as it was summed: nvcc would fuse dout * g - me into one FMA, whose
         * exact product leaves e's rounding error in du, times rstd (1e6 when C = 1,
         * where the CPU's du is exactly 0). */
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            const float d = qb_to_float(dout[off + c]), v = qb_to_float(u[off + c]);
            du[off + c] = qb_from_float<T>(rstd * (__fmul_rn(d, g[c]) - me - (v - mean) * rstd * mex));
        }
    }

    float *p = partial + (size_t)blockIdx.x * 2 * C;
    for (int c = threadIdx.x; c < C; c += blockDim.x) p[c] = sg[c], p[C + c] = sb[c];
}

/* grid (ceil(2C / SUM_COLS)), (SUM_COLS, SUM_ROWS) threads: column j of partial
 * (parts, 2C) summed over its rows in a fixed order, added to dg (j < C) or db. */
static __global__ void add_column_sums_kernel(float *dg, float *db, const float *partial, int parts, int C)
{
    __shared__ double acc[SUM_ROWS][SUM_COLS];
    const int j = blockIdx.x * SUM_COLS + threadIdx.x, cols = 2 * C;
    double s = 0.0;
    if (j < cols)
        for (int p = threadIdx.y; p < parts; p += SUM_ROWS) s += partial[(size_t)p * cols + j];
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y != 0 || j >= cols) return;
    for (int r = 1; r < SUM_ROWS; r++) s += acc[r][threadIdx.x];
    if (j < C) dg[j] += (float)s;
    else db[j - C] += (float)s;
}

extern "C" void qb_cuda_layernorm(qb_stream *s, void *out, void *u_out, float *stats, qb_qinput *outq, const void *x,
                                  const void *res, const float *g, const float *b, int M, int C, float eps, qb_dtype t)
{
    if (M <= 0 || C <= 0) return;
    if (outq && !qb_qinput_fits(outq, M, C)) {
        qb_cuda_note(s, cudaErrorInvalidValue, "layernorm: the quantized output is not laid out for M x C");
        return;
    }
    const size_t shared = (size_t)C * sizeof(float);  /* past 48 KiB from C = 12288 on */
    qb_cuda_storage(t, [&](auto *tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        if (!qb_cuda_allow_shared(s, (const void *)layernorm_kernel<T>, shared, "layernorm: shared memory for the row"))
            return;
        layernorm_kernel<T><<<(unsigned)M, row_threads(C), shared, qb_cuda_stream(s)>>>(
            (T *)out, (T *)u_out, stats, outq ? outq->u : NULL, outq ? outq->scale : NULL, outq ? outq->zp : NULL,
            outq ? outq->ldu : 0, (const T *)x, (const T *)res, g, b, C, eps);
        if (!qb_cuda_launched(s, "layernorm") && outq) qb_cuda_qinput_pad(s, outq, "layernorm: padding rows");
    });
}

extern "C" void qb_cuda_layernorm_backward(qb_stream *s, void *du, float *dg, float *db, const void *dout,
                                           const void *u, const float *stats, const float *g, int M, int C,
                                           qb_dtype t)
{
    if (M <= 0 || C <= 0) return;
    const cudaStream_t stream = qb_cuda_stream(s);
    const int parts = M < BACKWARD_BLOCKS ? M : BACKWARD_BLOCKS;
    const size_t shared = 2 * (size_t)C * sizeof(float);  /* past 48 KiB from C = 6144 on */
    qb_cuda_storage(t, [&](auto *tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        if (!qb_cuda_allow_shared(s, (const void *)layernorm_backward_kernel<T>, shared,
                                  "layernorm_backward: shared memory for the sums"))
            return;
        float *partial = NULL;
        if (qb_cuda_note(s, cudaMallocAsync((void **)&partial, (size_t)parts * shared, stream),
                         "layernorm_backward: scratch"))
            return;
        layernorm_backward_kernel<T><<<(unsigned)parts, row_threads(C), shared, stream>>>(
            (T *)du, partial, (const T *)dout, (const T *)u, stats, g, M, C);
        if (!qb_cuda_launched(s, "layernorm_backward")) {
            const unsigned blocks = (unsigned)((2 * (size_t)C + SUM_COLS - 1) / SUM_COLS);
            add_column_sums_kernel<<<blocks, dim3(SUM_COLS, SUM_ROWS), 0, stream>>>(dg, db, partial, parts, C);
            qb_cuda_launched(s, "layernorm_backward: dg, db");
        }
        qb_cuda_note(s, cudaFreeAsync(partial, stream), "layernorm_backward: scratch");
    });
}
