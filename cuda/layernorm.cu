/* LayerNorm over the last dimension on the GPU, forward and backward (qb_cpu_layernorm
 * and qb_cpu_layernorm_backward in csrc/cpu/layernorm.c are the reference, formulas
 * included: biased variance of t - mean in two FP32 passes, rstd = 1 / sqrtf(var + eps)).
 *
 * Forward, x, res, out, t_out (M, C), g, b (C), stats (M, 2): one block per row. The
 * residual add t = x + res is fused in front so that t is made in registers and never
 * read back from memory: each thread adds its columns of x and res, writes t_out and
 * keeps t in shared memory (C floats) for the two reductions (mean, then the variance
 * of t - mean) and the output pass. A thread reads and writes only its own columns,
 * and out is written after the row's reductions, so out and t_out may alias x and out
 * may alias res.
 *
 * Backward, dout, t, dt (M, C), stats (M, 2), g, dg, db (C): dt and the parameter
 * sums in one pass over dout and t. Block k takes rows k, k + blocks, ...; its threads
 * own fixed columns and add dout * xhat and dout into the block's column sums in
 * shared memory (2, C), then store them to a scratch (blocks, 2, C); a second kernel
 * adds the partials, in block order and in double, onto dg and db. No atomics: the
 * result is the same run after run. dt may alias dout: a thread reads dout[c] before
 * it writes dt[c], and no other thread touches either. */
#include "cuda/common.cuh"

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
 * from the values just computed, which the block holds in shared memory: the 7-bit
 * grid needs the row's min and max first, so the quantizer cannot run column by
 * column, but it needs no second pass over memory either. */
static __global__ void layernorm_kernel(float *out, float *t_out, float *stats, uint8_t *u, float *qscale,
                                        int32_t *qzp, int ldu, const float *x, const float *res, const float *g,
                                        const float *b, int C, float eps)
{
    extern __shared__ float row[];  /* t of this row (C), then out; column c belongs to thread c % blockDim.x */
    __shared__ float scratch[64];
    const size_t off = (size_t)blockIdx.x * C;

    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float t = res ? x[off + c] + res[off + c] : x[off + c];
        row[c] = t;
        if (t_out) t_out[off + c] = t;
        s += t;
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
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        const float o = (row[c] - mean) * rstd * g[c] + b[c];
        out[off + c] = o;
        row[c] = o;
        lo = o < lo ? o : lo, hi = o > hi ? o : hi;
    }
    if (u) qb_quantize_row_u7(u + (size_t)blockIdx.x * ldu, &qscale[blockIdx.x], &qzp[blockIdx.x], row, C, ldu, lo, hi,
                              scratch);
}

/* grid (parts), row_threads(C) threads, 2C floats of dynamic shared memory;
 * partial (parts, 2, C) receives each block's sums of dout * xhat, then of dout. */
static __global__ void layernorm_backward_kernel(float *dt, float *partial, const float *dout, const float *t,
                                                 const float *stats, const float *g, int M, int C)
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
            const float d = dout[off + c], xhat = (t[off + c] - mean) * rstd, e = __fmul_rn(d, g[c]);
            sg[c] += d * xhat;
            sb[c] += d;
            se += e;
            sex += e * xhat;
        }
        const float me = qb_block_sum(se, scratch) / C, mex = qb_block_sum(sex, scratch) / C;
        /* e rounded as it was summed: nvcc would fuse dout * g - me into one FMA, whose
         * exact product leaves e's rounding error in dt, times rstd (1e6 when C = 1,
         * where the CPU's dt is exactly 0). */
        for (int c = threadIdx.x; c < C; c += blockDim.x)
            dt[off + c] = rstd * (__fmul_rn(dout[off + c], g[c]) - me - (t[off + c] - mean) * rstd * mex);
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

extern "C" void qb_cuda_layernorm(float *out, float *t_out, float *stats, qb_qinput *outq, const float *x,
                                  const float *res, const float *g, const float *b, int M, int C, float eps)
{
    if (M <= 0 || C <= 0) return;
    if (outq && !qb_qinput_fits(outq, M, C)) {
        qb_cuda_note(cudaErrorInvalidValue, "layernorm: the quantized output is not laid out for M x C");
        return;
    }
    const size_t shared = (size_t)C * sizeof(float);  /* past 48 KiB from C = 12288 on */
    if (!qb_cuda_allow_shared((const void *)layernorm_kernel, shared, "layernorm: shared memory for the row")) return;
    layernorm_kernel<<<(unsigned)M, row_threads(C), shared, qb_cuda_stream()>>>(
        out, t_out, stats, outq ? outq->u : NULL, outq ? outq->scale : NULL, outq ? outq->zp : NULL,
        outq ? outq->ldu : 0, x, res, g, b, C, eps);
    if (qb_cuda_launched("layernorm") || !outq) return;
    qb_cuda_qinput_pad(outq, "layernorm: padding rows");
}

extern "C" void qb_cuda_layernorm_backward(float *dt, float *dg, float *db, const float *dout, const float *t,
                                           const float *stats, const float *g, int M, int C)
{
    if (M <= 0 || C <= 0) return;
    const cudaStream_t stream = qb_cuda_stream();
    const int parts = M < BACKWARD_BLOCKS ? M : BACKWARD_BLOCKS;
    const size_t shared = 2 * (size_t)C * sizeof(float);  /* past 48 KiB from C = 6144 on */
    if (!qb_cuda_allow_shared((const void *)layernorm_backward_kernel, shared,
                              "layernorm_backward: shared memory for the sums"))
        return;
    float *partial = NULL;
    if (qb_cuda_note(cudaMallocAsync((void **)&partial, (size_t)parts * shared, stream), "layernorm_backward: scratch"))
        return;
    layernorm_backward_kernel<<<(unsigned)parts, row_threads(C), shared, stream>>>(dt, partial, dout, t, stats, g,
                                                                                  M, C);
    if (!qb_cuda_launched("layernorm_backward")) {
        const unsigned blocks = (unsigned)((2 * (size_t)C + SUM_COLS - 1) / SUM_COLS);
        add_column_sums_kernel<<<blocks, dim3(SUM_COLS, SUM_ROWS), 0, stream>>>(dg, db, partial, parts, C);
        qb_cuda_launched("layernorm_backward: dg, db");
    }
    qb_cuda_note(cudaFreeAsync(partial, stream), "layernorm_backward: scratch");
}
