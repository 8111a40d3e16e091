/* The quantized Linear of a low-bit model file on the GPU (backend op linear_q): the
 * numbers of csrc/cpu/linear_q.c, whose scalar references define them.
 *
 *   INT8 dynamic  x (M, K) on the 7-bit per-token grid (a LayerNorm's qb_qinput, or
 *                 quantize_kernel here): v = u in [0, 127] is a valid int8, so the
 *                 product is an IMMA GEMM of v and the weights into int32; the
 *                 epilogue takes the zero point off in integers (sum q w =
 *                 sum v w - zp colsum(w), exact), then y = (float)acc * (sx * sw) + b
 *                 and GELU. By default the pipelined mma.sync kernel of
 *                 cuda/qgemm.cuh does it all in one pass, the int32 sums kept in
 *                 registers; otherwise (QBERT_CUDA_INT8=cublaslt, or a K it cannot
 *                 take) cuBLASLt's IMMA GEMM (qb_cuda_gemm_s8) writes them and an
 *                 epilogue kernel reads them back.
 *   INT8 static   x quantized with the file's per-tensor scale straight to s8 (v = q,
 *                 zp 0): the same GEMM and epilogue.
 *   INT4 (W4A8)   the same activations against the file's packed nibbles: one exact
 *                 int32 sum per group of columns, added as (float)S_g * sw in group
 *                 order, then * sx + b and GELU. One GEMM cannot apply a scale per
 *                 group, and cuBLASLt's IMMA per group would write and re-read an
 *                 int32 (M, N) per group, so two hand-written kernels keep each
 *                 group's sums in registers: w4a8_mma_kernel unpacks the nibbles to
 *                 int8 in shared memory and sums on the tensor cores (mma.sync
 *                 m16n8k32, the IMMA instruction), w4a8_dp4a_kernel on the CUDA
 *                 cores (dp4a); the default is the pipelined kernel of
 *                 cuda/qgemm.cuh on the values widened to int8 in device memory at
 *                 prepare (twice the nibbles' bytes: INT8's). All give the same
 *                 bits; qb_cuda_set_w4a8 picks one, so that qbert-bench can measure
 *                 them (cuda/README.md).
 *   weight-only   FP32 x times the weights dequantized once at prepare (qb_cuda_linear).
 * The epilogues round each product and sum (__fmul_rn / __fadd_rn, qb_mul_rn /
 * qb_add_rn), so nvcc fuses nothing into an FMA and the
 * outputs are the CPU reference's bits (GELU aside: CUDA's erff against libm's).
 * x and y may be stored in FP16 / BF16 (the half activations; not weight-only): x is
 * read as float, y computed in FP32 exactly as above and rounded once as it is
 * stored, and a quantized y (yq) is made from the rounded values, as the next Linear
 * reading y would make it.
 *
 * Weights move to the device once, at prepare, in the layout of their kernel; the
 * quantized activations (M, ldu), their scales and zero points (M each) and the int32
 * products (M, Np) live in the stream's scratch (qb_cuda_scratch), which grows to the
 * largest call and is then reused, so a warm engine allocates nothing. */
#include "cuda/common.cuh"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <type_traits>

#include "cuda/qgemm.cuh"
#include "qbert/quant.h"

/* w4a8_dp4a_kernel: a block computes TILE rows x TILE columns of y, 256 threads as
 * 16 x 16, each 4 x 4 outputs (rows ty + 16 i, columns tx + 16 j: a warp's loads and
 * stores run along consecutive columns); K in chunks of KCHUNK (at most a group). */
#define TILE 64
#define KCHUNK 32
#define KWORDS (KCHUNK / 4)

/* w4a8_mma_kernel: a block computes MMA_TILE x MMA_TILE of y with 4 warps as 2 x 2,
 * each warp 32 x 32 = 2 x 4 tiles of mma.m16n8k32; K in chunks of MMA_KC (at most a
 * group). Shared rows are MMA_LDS words apart: with 20 = 16 + 4, a fragment load (8
 * rows x 4 consecutive words per warp) touches 32 distinct banks. */
#define MMA_TILE 64
#define MMA_KC 64
#define MMA_KW (MMA_KC / 4)
#define MMA_LDS (MMA_KW + 4)

typedef struct {
    int8_t *w;        /* INT8: (Np, Kp), zero past N and K: the column-major (Kp, Np) IMMA operand;
                       * INT4: (N, K) the values widened, for qgemm (NULL when it cannot take K) */
    uint8_t *w4;      /* INT4: (N, K / 2) the file's nibbles, low first */
    int32_t *colsum;  /* INT8: (Np) sum over k of w; INT4: (N, groups) the same per group */
    float *scales;    /* (N, groups); INT8: groups = 1 */
    float *wf;        /* weight-only: (N, K) dequantized */
    int Np, Kp;
} prepared;

/* The kernels of the INT8 and W4A8 Linears (__atomic: any thread may set them). */
static qb_cuda_w4a8 w4a8 = QB_W4A8_PIPELINED;
static qb_cuda_int8 int8_kernel = QB_INT8_PIPELINED;

/* cudaMalloc; a failure is recorded naming what and how many bytes. */
static bool dev_alloc(qb_stream *s, void **p, size_t bytes, const char *what)
{
    char msg[96];
    snprintf(msg, sizeof msg, "%s (%zu bytes)", what, bytes);
    return !qb_cuda_note(s, cudaMalloc(p, bytes), msg);
}

/* *p holds at least `bytes`, grown (after the stream is done with the old buffer)
 * when not; false after recording what failed. */
static bool grow(qb_stream *s, void **p, size_t *cap, size_t bytes, const char *what)
{
    if (*cap >= bytes) return true;
    qb_cuda_wait(s, what);
    qb_cuda_scratch_moved(s);  /* graphs recorded with the old buffer are stale */
    cudaFree(*p);
    *p = NULL, *cap = 0;
    if (!dev_alloc(s, p, bytes, what)) return false;
    *cap = bytes;
    return true;
}

/* grid (M), 256 threads: row m of x (M, K) quantized into v (ldu bytes, ldu - K of
 * padding), sx[m], zp[m]. is_static: with the file's scale (inv its inverse as the
 * CPU computes it), v = clamp(rint(x inv), -128, 127), zp 0 (qb_quantize_s8); else
 * per token on the 7-bit grid. */
template <typename X>
static __global__ void quantize_kernel(int8_t *v, float *sx, int32_t *zp, const X *x, int K, int ldu,
                                       bool is_static, float inv, float scale)
{
    __shared__ float scratch[64];
    const X *xr = x + (size_t)blockIdx.x * K;
    int8_t *vr = v + (size_t)blockIdx.x * ldu;
    if (is_static) {
        for (int k = threadIdx.x; k < ldu; k += blockDim.x) {
            float r = k < K ? rintf(__fmul_rn(qb_to_float(xr[k]), inv)) : 0.0f;
            r = r > -128.0f ? r : -128.0f;
            vr[k] = (int8_t)(r < 127.0f ? r : 127.0f);
        }
        if (threadIdx.x == 0) sx[blockIdx.x] = scale, zp[blockIdx.x] = 0;
        return;
    }
    float lo = 0.0f, hi = 0.0f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) {
        const float e = qb_to_float(xr[k]);
        lo = e < lo ? e : lo, hi = e > hi ? e : hi;
    }
    qb_quantize_row_u7((uint8_t *)vr, &sx[blockIdx.x], &zp[blockIdx.x], xr, K, ldu, lo, hi, scratch);
}

using qgemm::add_group;
using qgemm::finish;

/* Grid-stride over y (M, N): the INT8 epilogue on acc (M, Np). */
template <typename Y>
static __global__ void epilogue_kernel(Y *y, const int32_t *acc, const float *sx, const int32_t *zp,
                                       const int32_t *colsum, const float *sw, const float *b, int M, int N, int Np,
                                       int gelu)
{
    const size_t n_out = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_out; i += (size_t)gridDim.x * blockDim.x) {
        const int m = (int)(i / N), n = (int)(i % N);
        const int32_t a = acc[(size_t)m * Np + n] - zp[m] * colsum[n];
        y[i] = qb_from_float<Y>(finish((float)a, __fmul_rn(sx[m], sw[n]), b ? b[n] : 0.0f, gelu));
    }
}

/* One block per row m of y (M, N): the epilogue above, the row kept in shared memory
 * (N floats, as stored in y) and quantized per token into u (ldu bytes per row),
 * su[m], zu[m] from there: the FFN's GELU output reaches the next Linear quantized
 * without a second pass over it. */
template <typename Y>
static __global__ void epilogue_rows_kernel(Y *y, uint8_t *u, float *su, int32_t *zu, int ldu, const int32_t *acc,
                                            const float *sx, const int32_t *zp, const int32_t *colsum,
                                            const float *sw, const float *b, int N, int Np, int gelu)
{
    extern __shared__ float row[];
    __shared__ float scratch[64];
    const int m = blockIdx.x;
    float lo = 0.0f, hi = 0.0f;
    for (int n = threadIdx.x; n < N; n += blockDim.x) {
        const int32_t a = acc[(size_t)m * Np + n] - zp[m] * colsum[n];
        const Y r = qb_from_float<Y>(finish((float)a, __fmul_rn(sx[m], sw[n]), b ? b[n] : 0.0f, gelu));
        const float e = qb_to_float(r);
        y[(size_t)m * N + n] = r, row[n] = e;
        lo = e < lo ? e : lo, hi = e > hi ? e : hi;
    }
    qb_quantize_row_u7(u + (size_t)m * ldu, &su[m], &zu[m], row, N, ldu, lo, hi, scratch);
}

/* Four int8 in one word for dp4a and mma, the first in the low byte. */
__device__ __forceinline__ int pack4(int a, int b, int c, int d)
{
    return (a & 0xff) | (b & 0xff) << 8 | (c & 0xff) << 16 | (int)((unsigned)(d & 0xff) << 24);
}

/* Weights k .. k + 3 of row n of the nibbles w4 (N, K / 2), sign-extended into one
 * word (k a multiple of 4, so the 2 bytes are aligned: K is a multiple of the group). */
__device__ __forceinline__ int nibbles4(const uint8_t *w4, int n, int K, int k)
{
    const uint16_t h = *(const uint16_t *)(w4 + ((size_t)n * K + k) / 2);
    return pack4((int8_t)(h << 4) >> 4, (int8_t)h >> 4, (int8_t)(h >> 4) >> 4, (int8_t)(h >> 8) >> 4);
}

/* grid (ceil(N / TILE), ceil(M / TILE)), 256 threads: y (M, N) of W4A8 from v (M, ldu)
 * with zero points zp, the nibbles w4 (N, K / 2), per-group colsum and scales
 * (N, groups). group is a multiple of 4, so a chunk ends on a word boundary and words
 * past it are zero. */
template <typename Y>
static __global__ void w4a8_dp4a_kernel(Y *y, const int8_t *v, const float *sx, const int32_t *zp, int ldu,
                                        const uint8_t *w4, const int32_t *colsum, const float *sw, const float *b,
                                        int M, int N, int K, int group, int gelu)
{
    __shared__ int xs[KWORDS][TILE], ws[KWORDS][TILE];  /* [word of the chunk][row or column] */
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int m0 = blockIdx.y * TILE, n0 = blockIdx.x * TILE, groups = K / group;
    const int lr = threadIdx.x / 4, lw = 2 * (threadIdx.x % 4);  /* the row / column and the two words this thread loads */
    float f[4][4] = {};
    for (int g = 0; g < groups; g++) {
        int acc[4][4] = {};
        const int gend = (g + 1) * group;
        for (int k0 = g * group; k0 < gend; k0 += KCHUNK) {
            const int kend = k0 + KCHUNK < gend ? k0 + KCHUNK : gend;
            for (int t = 0; t < 2; t++) {
                const int k = k0 + 4 * (lw + t);
                const bool in = k < kend;
                const int m = m0 + lr, n = n0 + lr;
                xs[lw + t][lr] = in && m < M ? *(const int *)(v + (size_t)m * ldu + k) : 0;
                ws[lw + t][lr] = in && n < N ? nibbles4(w4, n, K, k) : 0;
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < KWORDS; kk++) {
                int a[4], c[4];
#pragma unroll
                for (int i = 0; i < 4; i++) a[i] = xs[kk][ty + 16 * i], c[i] = ws[kk][tx + 16 * i];
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) acc[i][j] = __dp4a(a[i], c[j], acc[i][j]);
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
                if (m < M && n < N) f[i][j] = add_group(f[i][j], acc[i][j], m, n, g, groups, zp, colsum, sw);
            }
    }
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;
            if (m < M && n < N) y[(size_t)m * N + n] = qb_from_float<Y>(finish(f[i][j], sx[m], b ? b[n] : 0.0f, gelu));
        }
}

/* d += a (16 x 32 int8, row-major) . b (32 x 8 int8, column-major) in int32, by the
 * warp (sm_80 and later). The fragments, lane = 4 g + t (PTX ISA, mma.m16n8k32):
 * a0 = A[g][4t .. 4t+3], a1 = A[g+8][4t ..], a2 = A[g][16+4t ..], a3 = A[g+8][16+4t ..];
 * b0 = B[4t .. 4t+3][g], b1 = B[16+4t ..][g]; d0, d1 = D[g][2t, 2t+1], d2, d3 = D[g+8][2t, 2t+1]. */
__device__ __forceinline__ void mma_s8(int d[4], const int a[4], const int b[2])
{
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* grid (ceil(N / MMA_TILE), ceil(M / MMA_TILE)), 128 threads: what w4a8_dp4a_kernel
 * computes, the sums on the tensor cores. A chunk's x (rows) and unpacked weights
 * (columns) go to shared memory as words of 4 int8 along k, zero past the group,
 * M or N; a warp's output element (m, n) is d[i][j][e] with m = 16 i + g + 8 (e / 2),
 * n = 8 j + 2 t + e % 2 within its 32 x 32 (row, col). Two blocks an SM: at four,
 * the 128-register cap spilled. */
template <typename Y>
static __global__ void __launch_bounds__(128, 2)
    w4a8_mma_kernel(Y *y, const int8_t *v, const float *sx, const int32_t *zp, int ldu, const uint8_t *w4,
                    const int32_t *colsum, const float *sw, const float *b, int M, int N, int K, int group, int gelu)
{
    __shared__ int xs[MMA_TILE][MMA_LDS], ws[MMA_TILE][MMA_LDS];  /* [row or column][word of the chunk] */
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g4 = lane / 4, t4 = lane % 4;
    const int bm = blockIdx.y * MMA_TILE, bn = blockIdx.x * MMA_TILE;  /* the block's tile in y */
    const int wm = 32 * (warp / 2), wn = 32 * (warp % 2);             /* the warp's in the block's */
    const int groups = K / group;
    /* The row and column in y of element e of the warp's mma tile (i, j). */
    const auto row = [&](int i, int e) { return bm + wm + 16 * i + g4 + 8 * (e / 2); };
    const auto col = [&](int j, int e) { return bn + wn + 8 * j + 2 * t4 + e % 2; };
    float f[2][4][4] = {};
    for (int g = 0; g < groups; g++) {
        int d[2][4][4] = {};
        const int gend = (g + 1) * group;
        for (int k0 = g * group; k0 < gend; k0 += MMA_KC) {
            const int kend = k0 + MMA_KC < gend ? k0 + MMA_KC : gend;
            for (int i = threadIdx.x; i < MMA_TILE * MMA_KW; i += blockDim.x) {
                const int r = i / MMA_KW, w = i % MMA_KW, k = k0 + 4 * w;
                const int m = bm + r, n = bn + r;
                xs[r][w] = k < kend && m < M ? *(const int *)(v + (size_t)m * ldu + k) : 0;
                ws[r][w] = k < kend && n < N ? nibbles4(w4, n, K, k) : 0;
            }
            __syncthreads();
            for (int kw = 0; kw < MMA_KW && k0 + 4 * kw < kend; kw += 8) {  /* 32 k: 8 words per mma */
                int a[2][4], c[4][2];
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    const int r = wm + 16 * i + g4;
                    a[i][0] = xs[r][kw + t4], a[i][1] = xs[r + 8][kw + t4];
                    a[i][2] = xs[r][kw + 4 + t4], a[i][3] = xs[r + 8][kw + 4 + t4];
                }
#pragma unroll
                for (int j = 0; j < 4; j++) c[j][0] = ws[wn + 8 * j + g4][kw + t4], c[j][1] = ws[wn + 8 * j + g4][kw + 4 + t4];
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) mma_s8(d[i][j], a[i], c[j]);
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int m = row(i, e), n = col(j, e);
                    if (m < M && n < N) f[i][j][e] = add_group(f[i][j][e], d[i][j][e], m, n, g, groups, zp, colsum, sw);
                }
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int m = row(i, e), n = col(j, e);
                if (m < M && n < N)
                    y[(size_t)m * N + n] = qb_from_float<Y>(finish(f[i][j][e], sx[m], b ? b[n] : 0.0f, gelu));
            }
}

/* grid (ceil(M / BM) ceil(N / BN)), qgemm::THREADS: the pipelined integer GEMM with its
 * epilogue (cuda/qgemm.cuh). */
template <typename Y, bool Grouped>
static __global__ void __launch_bounds__(qgemm::THREADS) qgemm_kernel(qgemm::Args<Y> a)
{
    __shared__ __align__(16) char smem[qgemm::SMEM_BYTES];
    qgemm::gemm<Y, Grouped>(a, smem, (int)blockIdx.x);
}

static void release(qb_qlinear *q)
{
    prepared *p = (prepared *)q->prepared;
    if (!p) return;
    cudaFree(p->w), cudaFree(p->w4), cudaFree(p->colsum), cudaFree(p->scales), cudaFree(p->wf);
    free(p);
    q->prepared = NULL;
}

/* A device copy of `bytes` of host memory into *dst, on s (from
 * pageable memory the call returns once src is read; prepare waits for the copies
 * to land); false after recording. */
template <class T>
static bool upload(qb_stream *s, T **dst, const T *src, size_t bytes, const char *what)
{
    if (!dev_alloc(s, (void **)dst, bytes, what)) return false;
    return !qb_cuda_note(s, cudaMemcpyAsync(*dst, src, bytes, cudaMemcpyHostToDevice, qb_cuda_stream(s)), what);
}

/* The device layout of q, made on the host and copied up (once per model load). */
static bool build(qb_stream *s, const qb_qlinear *q, prepared *p)
{
    const int N = q->N, K = q->K, groups = K / q->group;
    const size_t n_scales = (size_t)N * groups;
    if (!upload(s, &p->scales, q->scales, n_scales * sizeof(float), "quantized Linear: weight scales")) return false;
    if (q->act_f32) {  /* the CPU's dequantization: value times the scale of its group */
        float *wf = (float *)malloc((size_t)N * K * sizeof *wf);
        for (size_t i = 0; wf && i < (size_t)N * K; i++) wf[i] = (float)q->wq[i] * q->scales[i / q->group];
        const bool ok = wf && upload(s, &p->wf, wf, (size_t)N * K * sizeof *wf, "quantized Linear: dequantized weights");
        free(wf);
        return ok;
    }
    if (q->bits == 4) {
        uint8_t *w4 = (uint8_t *)malloc((size_t)N * K / 2);
        int32_t *cs = (int32_t *)calloc(n_scales, sizeof *cs);
        if (w4) qb_int4_pack(w4, q->wq, (size_t)N * K);  /* the file's packing; K is even */
        for (size_t i = 0; cs && i < (size_t)N * K; i++) cs[i / q->group] += q->wq[i];
        bool ok = w4 && cs && upload(s, &p->w4, w4, (size_t)N * K / 2, "quantized Linear: INT4 weights") &&
                  upload(s, &p->colsum, cs, n_scales * sizeof *cs, "quantized Linear: column sums");
        if (ok && qgemm::fits(K, qb_qinput_ldu(K), K, q->group))  /* wq is (N, K) int8 already */
            ok = upload(s, &p->w, q->wq, (size_t)N * K, "quantized Linear: INT4 weights widened to int8");
        free(w4), free(cs);
        return ok;
    }
    p->Np = (N + 3) / 4 * 4, p->Kp = qb_qinput_ldu(K);  /* IMMA: m and k multiples of 4 */
    int8_t *w = (int8_t *)calloc((size_t)p->Np * p->Kp, 1);
    int32_t *cs = (int32_t *)calloc((size_t)p->Np, sizeof *cs);
    for (int n = 0; w && cs && n < N; n++)
        for (int k = 0; k < K; k++) cs[n] += w[(size_t)n * p->Kp + k] = q->wq[(size_t)n * K + k];
    const bool ok = w && cs && upload(s, &p->w, w, (size_t)p->Np * p->Kp, "quantized Linear: INT8 weights") &&
                    upload(s, &p->colsum, cs, (size_t)p->Np * sizeof *cs, "quantized Linear: column sums");
    free(w), free(cs);
    return ok;
}

extern "C" qb_status qb_cuda_qlinear_prepare(qb_stream *s, qb_qlinear *q)
{
    if (q->prepared)
        return q->release == release ? QB_OK
                                     : qb_fail(QB_EINVAL, "quantized Linear %d x %d: already laid out for another "
                                               "backend", q->N, q->K);
    if (q->bits == 4 && !q->act_f32 && q->group % 4 != 0)
        return qb_fail(QB_EUNSUPPORTED, "INT4 group size %d: the CUDA W4A8 kernel needs a multiple of 4; run this "
                       "model file on the CPU", q->group);
    prepared *p = (prepared *)calloc(1, sizeof *p);
    if (!p) return qb_fail(QB_ENOMEM, "cannot allocate a quantized Linear's layout");
    q->prepared = p;
    q->release = release;
    /* Waits for the copies: the layout may be used from any stream. */
    if (build(s, q, p) && !qb_cuda_wait(s, "quantized Linear: upload"))
        return QB_OK;
    release(q);
    char why[256] = "out of host memory";
    if (qb_cuda_sync(s)) snprintf(why, sizeof why, "%s", qb_error());  /* the recorded device error */
    return qb_fail(QB_ENOMEM, "quantized Linear %d x %d: %s", q->N, q->K, why);
}

/* yq (laid out for M x N) = y (M, N) quantized per token, padding rows zero (as
 * qb_qinput_quantize); rows_done: the rows are already there (epilogue_rows_kernel). */
template <typename T>
static void quantize_out(qb_stream *s, qb_qinput *yq, const T *y, int M, int N, bool rows_done)
{
    if (!rows_done) {
        quantize_kernel<<<(unsigned)M, QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>((int8_t *)yq->u, yq->scale, yq->zp, y, N,
                                                                             yq->ldu, false, 0.0f, 0.0f);
        if (qb_cuda_launched(s, "linear_q: quantized output")) return;
    }
    qb_cuda_qinput_pad(s, yq, "linear_q: padding rows");
}

/* The activations of q as int8 in *in (u read as int8, scale, zp, ldu): xq itself when
 * it is shared (per token: u < 128 is a valid int8), else x (M, K) quantized here into
 * the stream's scratch; false after recording a failure. */
template <typename T>
static bool int8_input(qb_stream *s, qb_qinput *in, const T *x, const qb_qinput *xq, const qb_qlinear *q, int M)
{
    if (xq && qb_qlinear_dynamic(q)) {
        *in = *xq;
        return true;
    }
    qb_cuda_scratch *scratch = qb_cuda_scratch_get(s);
    const int ldu = qb_qinput_ldu(q->K);
    if (!grow(s, (void **)&scratch->v, &scratch->v_cap, (size_t)M * ldu, "linear_q: quantized activations") ||
        !grow(s, (void **)&scratch->rows, &scratch->rows_cap, (size_t)M * 8, "linear_q: activation scales"))
        return false;
    in->u = (uint8_t *)scratch->v, in->scale = scratch->rows, in->zp = (int32_t *)(scratch->rows + M);
    in->M = M, in->K = q->K, in->ldu = ldu;
    const float as = q->act_scale;  /* its inverse as the CPU computes it */
    const bool is_static = as > 0.0f;
    quantize_kernel<<<(unsigned)M, QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>(
        (int8_t *)in->u, in->scale, in->zp, x, q->K, ldu, is_static, is_static ? 1.0f / as : 0.0f, as);
    return !qb_cuda_launched(s, "linear_q: quantize");
}

/* INT8 on cuBLASLt's IMMA GEMM into the stream's int32 scratch, then an epilogue
 * kernel, which also fills yq's rows when a row fits its shared memory (true then). */
template <typename T>
static bool int8_cublaslt(qb_stream *s, T *y, qb_qinput *yq, const qb_qinput *in, const qb_qlinear *q,
                          const prepared *p, const float *b, int M, int gelu)
{
    const cudaStream_t stream = qb_cuda_stream(s);
    qb_cuda_scratch *scratch = qb_cuda_scratch_get(s);
    const int8_t *v = (const int8_t *)in->u;
    if (in->ldu != p->Kp) {
        qb_cuda_note(s, cudaErrorInvalidValue, "linear_q: activations and weights disagree on K");
        return false;
    }
    if (!grow(s, (void **)&scratch->acc, &scratch->acc_cap, (size_t)M * p->Np * sizeof(int32_t),
              "linear_q: INT32 products"))
        return false;
    qb_cuda_gemm_s8(s, scratch->acc, p->w, v, p->Np, M, p->Kp);
    const size_t row_bytes = (size_t)q->N * sizeof(float);
    if (yq && row_bytes <= 48 * 1024) {  /* the row fits the default shared memory: up to N = 12288 */
        epilogue_rows_kernel<<<(unsigned)M, QB_CUDA_THREADS, row_bytes, stream>>>(
            y, yq->u, yq->scale, yq->zp, yq->ldu, scratch->acc, in->scale, in->zp, p->colsum, p->scales, b, q->N,
            p->Np, gelu);
        qb_cuda_launched(s, "linear_q: epilogue (rows, quantized output)");
        return true;
    }
    const size_t n_out = (size_t)M * q->N;
    epilogue_kernel<<<qb_cuda_blocks(n_out), QB_CUDA_THREADS, 0, stream>>>(y, scratch->acc, in->scale, in->zp,
                                                                          p->colsum, p->scales, b, M, q->N, p->Np,
                                                                          gelu);
    qb_cuda_launched(s, "linear_q: epilogue");
    return false;
}

/* W4A8 on the nibbles: the mma.sync kernel, or the dp4a one. */
template <typename T>
static void w4a8_nibbles(qb_stream *s, T *y, const qb_qinput *in, const qb_qlinear *q, const prepared *p,
                         const float *b, int M, int gelu, bool dp4a)
{
    const cudaStream_t stream = qb_cuda_stream(s);
    const int8_t *v = (const int8_t *)in->u;
    if (!dp4a) {
        const dim3 grid((unsigned)((q->N + MMA_TILE - 1) / MMA_TILE), (unsigned)((M + MMA_TILE - 1) / MMA_TILE));
        w4a8_mma_kernel<<<grid, 128, 0, stream>>>(y, v, in->scale, in->zp, in->ldu, p->w4, p->colsum, p->scales, b, M,
                                                  q->N, q->K, q->group, gelu);
        qb_cuda_launched(s, "linear_q: W4A8 (mma)");
        return;
    }
    const dim3 grid((unsigned)((q->N + TILE - 1) / TILE), (unsigned)((M + TILE - 1) / TILE));
    w4a8_dp4a_kernel<<<grid, 256, 0, stream>>>(y, v, in->scale, in->zp, in->ldu, p->w4, p->colsum, p->scales, b, M,
                                               q->N, q->K, q->group, gelu);
    qb_cuda_launched(s, "linear_q: W4A8 (dp4a)");
}

/* The pipelined integer GEMM (cuda/qgemm.cuh) when it is the chosen kernel and takes
 * the shape; false when not (nothing launched). */
template <typename T>
static bool pipelined(qb_stream *s, T *y, const qb_qinput *in, const qb_qlinear *q, const prepared *p,
                      const float *b, int M, int gelu)
{
    const int ldw = q->bits == 4 ? q->K : p->Kp;
    const bool chosen = q->bits == 4 ? __atomic_load_n(&w4a8, __ATOMIC_RELAXED) == QB_W4A8_PIPELINED
                                     : __atomic_load_n(&int8_kernel, __ATOMIC_RELAXED) == QB_INT8_PIPELINED;
    if (!chosen || !p->w || !qgemm::fits(q->K, in->ldu, ldw, q->group)) return false;
    const qgemm::Args<T> a = {y, (const int8_t *)in->u, in->scale, in->zp, p->w, p->colsum, p->scales, b,
                              M, q->N, q->K, in->ldu, ldw, q->group, gelu};
    const unsigned blocks = (unsigned)((M + qgemm::BM - 1) / qgemm::BM) * (unsigned)((q->N + qgemm::BN - 1) / qgemm::BN);
    if (q->bits == 4) qgemm_kernel<T, true><<<blocks, qgemm::THREADS, 0, qb_cuda_stream(s)>>>(a);
    else qgemm_kernel<T, false><<<blocks, qgemm::THREADS, 0, qb_cuda_stream(s)>>>(a);
    qb_cuda_launched(s, "linear_q: pipelined integer GEMM");
    return true;
}

/* The product into y (M, N; x and y stored as T), and when the cuBLASLt epilogue can,
 * yq's rows with it (true then). */
template <typename T>
static bool linear_q(qb_stream *s, T *y, qb_qinput *yq, const T *x, const qb_qinput *xq, const qb_qlinear *q,
                     const prepared *p, const float *b, int M, int gelu)
{
    if (q->act_f32) {
        if (!std::is_same<T, float>::value) {
            qb_cuda_note(s, cudaErrorInvalidValue, "linear_q: weight-only Linears run with FP32 activations");
            return false;
        }
        qb_cuda_linear(s, y, x, p->wf, b, M, q->N, q->K, QB_MATH_FP32, QB_F32);
        if (gelu) qb_cuda_gelu(s, y, y, (size_t)M * q->N, QB_F32);
        return false;
    }
    qb_qinput in;
    if (!int8_input(s, &in, x, xq, q, M) || pipelined(s, y, &in, q, p, b, M, gelu)) return false;
    if (q->bits == 4) {
        w4a8_nibbles(s, y, &in, q, p, b, M, gelu, __atomic_load_n(&w4a8, __ATOMIC_RELAXED) == QB_W4A8_DP4A);
        return false;
    }
    return int8_cublaslt(s, y, yq, &in, q, p, b, M, gelu);
}

extern "C" void qb_cuda_linear_q(qb_stream *s, void *y, qb_qinput *yq, const void *x, const qb_qinput *xq,
                                 const qb_qlinear *q, const float *b, int M, int gelu, qb_dtype t)
{
    const prepared *p = (const prepared *)q->prepared;
    if (M <= 0) return;
    if (!p) {
        qb_cuda_note(s, cudaErrorInvalidValue, "linear_q: the quantized Linear was not prepared for CUDA");
        return;
    }
    if (yq && !qb_qinput_fits(yq, M, q->N)) {
        qb_cuda_note(s, cudaErrorInvalidValue, "linear_q: the quantized output is laid out for another shape");
        return;
    }
    if (xq && !qb_qinput_fits(xq, M, q->K)) {
        qb_cuda_note(s, cudaErrorInvalidValue, "linear_q: the quantized input is laid out for another shape");
        return;
    }
    qb_cuda_storage(t, [&](auto *tag) {
        using T = std::remove_pointer_t<decltype(tag)>;
        const bool rows_done = linear_q(s, (T *)y, yq, (const T *)x, xq, q, p, b, M, gelu);
        if (yq) quantize_out(s, yq, (const T *)y, M, q->N, rows_done);
    });
}

extern "C" qb_cuda_w4a8 qb_cuda_set_w4a8(qb_cuda_w4a8 kernel)
{
    return __atomic_exchange_n(&w4a8, kernel, __ATOMIC_RELAXED);
}

extern "C" qb_cuda_int8 qb_cuda_set_int8(qb_cuda_int8 kernel)
{
    return __atomic_exchange_n(&int8_kernel, kernel, __ATOMIC_RELAXED);
}
