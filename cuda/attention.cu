/* Multi-head self-attention on the GPU, forward and backward. BF16 / FP16 products
 * (math) at head dims 32, 64 and 128 go to the tensor-core kernels of
 * cuda/flash_attention.cu; everything else runs here, the FP32 reference with the
 * semantics of csrc/cpu/attention.c (Hugging Face BERT's eager path). Per head (b, h),
 * Q, K, V, dO (T, D) are read in place from (B, T, H*D) at row stride H*D:
 *   S (T, T) = Q K^T / sqrt(D) + (1 - mask) * -FLT_MAX,  P = softmax(S) row-wise,
 *   P' = dropout(P),  O (T, D) = P' V.
 * The scores are formed exactly as the CPU forms them (a division by sqrt(D) as a
 * float, then the bias added), so a masked score rounds to -FLT_MAX on both and a
 * fully padded row attends uniformly to every key, as in HF.
 *
 * Limits: T <= 512 (a block keeps 16 whole score rows in shared memory) and D <= 128
 * (a lane accumulates at most 4 columns of a row); outside them the op records
 * cudaErrorInvalidValue with a message naming the limits and does nothing.
 *
 * All kernels share one tiling. A block of 4 warps owns 16 rows of one head (query
 * rows; key rows in the backward's second kernel), 4 per warp. The other operand
 * streams through shared memory 32 rows at a time: for dot products (S = Q K^T,
 * dP' = dO V^T) lane j of a warp takes row j of the tile against the warp's 4 rows,
 * so a row's 32 scores are one value per lane (max and sum by shuffles); for products
 * with the tile (P' V, dS K, ...) lane l owns columns l, l+32, l+64, l+96 of its rows.
 * Arithmetic is FP32 FMA on CUDA cores: TF32 tensor cores would miss the 1e-5
 * agreement with the CPU. Blocks of one head are adjacent in the grid, so its K and
 * V stay in L2 while all of its row tiles read them.
 *
 * Each forward is one fused kernel, so that S and P live in registers and shared
 * memory instead of making a round trip through global memory between GEMMs:
 * - inference (no lse and no dropout): attention_online_kernel, one pass over K and
 *   V tiles with a running maximum and sum per query row (flash-style online
 *   softmax); nothing of size T x T is ever written;
 * - training: attention_rows_kernel keeps the block's 16 whole score rows in shared
 *   memory, takes the softmax like the CPU (max, exp, sum in double, divide: see
 *   softmax_rows), stores each row's log-sum-exp when asked, applies the dropout
 *   factor of element (b, h, i, j) (Philox index ((b H + h) T + i) T + j, the CPU's
 *   bits, one Philox block per 4 consecutive indices) and multiplies by V.
 * Backward, two kernels and no atomics (each output row has one owner); P is
 * recomputed by softmax_rows, so it has the forward's bits (the forward's out and
 * lse are not needed here):
 *   attention_backward_query_kernel, per query rows: P, dP' = dO V^T, dP =
 *     dropout(dP'), dS = P * (dP - rowsum(P * dP)) / sqrt(D) (rowsum in double, as the
 *     CPU), P and dS written to (B, H, T, T) scratch, then dQ = dS K;
 *   attention_backward_key_kernel, per key rows: dV = P'^T dO and dK = dS^T Q over
 *     query tiles, P' from that P and the dropout mask.
 * The scratch is stream-ordered (cudaMallocAsync / cudaFreeAsync on the op's
 * stream), so it is freed only after both kernels have run. */
#include "cuda/common.cuh"

#include <float.h>
#include <math.h>
#include <stdio.h>

#define MAX_T 512
#define MAX_D 128
#define WARPS 4
#define THREADS (32 * WARPS)
#define ROWS_PER_WARP 4
#define BLOCK_ROWS (WARPS * ROWS_PER_WARP)  /* the rows a block owns */
#define TILE 32                              /* rows of the streamed operand per step: one per lane */
#define COLS (MAX_D / 32)                    /* accumulator columns per lane */

/* Shared rows are D rounded up to 4 floats, zero-padded, read as float4. */
static __host__ __device__ __forceinline__ int pad4(int D) { return (D + 3) / 4 * 4; }

/* Row stride of a tile read one row per lane as float4: the smallest stride >= Dp
 * that is 4 mod 32, so the 8 lanes of each quarter warp hit 32 distinct banks. */
static __host__ __device__ __forceinline__ int lane_row_stride(int Dp) { return (Dp + 27) / 32 * 32 + 4; }

__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* exp(d) for d <= 0, exactly 0 below -104 like the CPU's softmax. */
__device__ __forceinline__ float exp_or_zero(float d) { return d < -104.0f ? 0.0f : expf(d); }

/* row (n) *= the dropout factors of indices first .. first+n-1, one Philox block per
 * 4 indices (qb_dropout_block): lane l takes blocks first / 4 + l, + l + 32, ... Called
 * by a whole warp; its lanes touch other elements than a loop over j = lane, lane + 32. */
__device__ __forceinline__ void dropout_row(float *row, int n, uint64_t first, const qb_dropout &drop, int lane)
{
    const float scale = 1.0f / (1.0f - drop.p);
    for (uint64_t g = first / 4 + lane; 4 * g < first + n; g += 32) qb_dropout_block(row, first, n, drop, scale, g);
}

/* dst (n, ld) in shared memory = rows row0 .. row0+n-1 of src (T, D; row stride C),
 * zero in columns D .. Dp-1 and in rows past T. Called by the whole block; a warp
 * copies a row at a time (coalesced). */
__device__ __forceinline__ void load_rows(float *dst, int ld, const float *src, size_t C, int row0, int n,
                                          int T, int D, int Dp)
{
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int r = warp; r < n; r += WARPS) {
        const int t = row0 + r;
        for (int d = lane; d < Dp; d += 32) dst[r * ld + d] = t < T && d < D ? src[(size_t)t * C + d] : 0.0f;
    }
}

/* s[r] = row r of A (the warp's rows, stride Dp) . row b (this lane's row of the tile)
 * over Dp columns, summed in column order (the zero padding adds nothing). A's reads
 * are broadcasts; b's are conflict-free with the stride lane_row_stride(Dp). */
__device__ __forceinline__ void tile_dots(float s[ROWS_PER_WARP], const float *A, const float *b, int Dp)
{
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) s[r] = 0.0f;
    for (int d = 0; d < Dp; d += 4) {
        const float4 y = *reinterpret_cast<const float4 *>(b + d);
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++) {
            const float4 x = *reinterpret_cast<const float4 *>(A + r * Dp + d);
            s[r] = fmaf(x.x, y.x, s[r]);
            s[r] = fmaf(x.y, y.y, s[r]);
            s[r] = fmaf(x.z, y.z, s[r]);
            s[r] = fmaf(x.w, y.w, s[r]);
        }
    }
}

/* acc[r][c] += sum over j < n of W[r * ldw + j] * X[j * ldx + lane + 32 c], for the
 * warp's rows r (W points at its first row) and its lane's columns below D. */
__device__ __forceinline__ void accumulate(float acc[ROWS_PER_WARP][COLS], const float *W, int ldw,
                                           const float *X, int ldx, int n, int D, int lane)
{
    for (int j = 0; j < n; j++) {
        float w[ROWS_PER_WARP];
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++) w[r] = W[r * ldw + j];
#pragma unroll
        for (int c = 0; c < COLS; c++) {
            if (lane + 32 * c >= D) continue;
            const float x = X[j * ldx + lane + 32 * c];
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++) acc[r][c] = fmaf(w[r], x, acc[r][c]);
        }
    }
}

__device__ __forceinline__ void zero_acc(float acc[ROWS_PER_WARP][COLS])
{
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++)
#pragma unroll
        for (int c = 0; c < COLS; c++) acc[r][c] = 0.0f;
}

/* Rows row0 .. row0+3 of dst (T, D; row stride C) = acc; rows past T are skipped. */
__device__ __forceinline__ void store_rows(float *dst, size_t C, int row0, int T, int D, int lane,
                                           const float acc[ROWS_PER_WARP][COLS])
{
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        if (row0 + r >= T) break;
#pragma unroll
        for (int c = 0; c < COLS; c++)
            if (lane + 32 * c < D) dst[(size_t)(row0 + r) * C + lane + 32 * c] = acc[r][c];
    }
}

/* acc (the warp's rows x D) = S X, S the warp's rows of (BLOCK_ROWS, T) in shared
 * memory and X (T, D; row stride C) streamed through tile (TILE, Dp). Block-wide. */
__device__ __forceinline__ void rows_times(float acc[ROWS_PER_WARP][COLS], const float *S, int T,
                                           float *tile, const float *X, size_t C, int D, int Dp, int lane)
{
    zero_acc(acc);
    for (int j0 = 0; j0 < T; j0 += TILE) {
        __syncthreads();  /* every warp is done with the tile's previous contents */
        load_rows(tile, Dp, X, C, j0, TILE, T, D, Dp);
        __syncthreads();
        accumulate(acc, S + j0, T, tile, Dp, min(TILE, T - j0), D, lane);
    }
}

/* Sw[r * T + j] = score(j, row r of A . row j of X) for the warp's rows (A: stride
 * Dp; Sw: stride T) and every key j < T, X (T, D; row stride C) streamed through tile
 * one row per lane (tile_dots). Block-wide. */
template <typename Score>
__device__ __forceinline__ void score_rows(float *Sw, const float *A, float *tile, const float *X, size_t C, int T,
                                           int D, int Dp, int lane, Score score)
{
    const int ldk = lane_row_stride(Dp);
    for (int j0 = 0; j0 < T; j0 += TILE) {
        __syncthreads();  /* every warp is done with the tile's previous contents */
        load_rows(tile, ldk, X, C, j0, TILE, T, D, Dp);
        __syncthreads();
        float s[ROWS_PER_WARP];
        tile_dots(s, A, tile + lane * ldk, Dp);
        const int j = j0 + lane;
        if (j < T) {
#pragma unroll
            for (int r = 0; r < ROWS_PER_WARP; r++) Sw[r * T + j] = score(j, s[r]);
        }
    }
}

/* The block's place: grid (B*H * ceil(T / BLOCK_ROWS)), the row tiles of a head
 * adjacent. head = offset of element (b, 0, h*D) in out and dout (rows of C = H*D);
 * in = that offset in q, k, v and their gradients (rows of ld). */
struct Place {
    int bh, b, row0;
    size_t C, head, ld, in;
};

__device__ __forceinline__ Place block_place(int T, int H, int D, int ld)
{
    const int tiles = (T + BLOCK_ROWS - 1) / BLOCK_ROWS;
    Place p;
    p.bh = blockIdx.x / tiles;
    p.b = p.bh / H;
    p.row0 = blockIdx.x % tiles * BLOCK_ROWS;
    p.C = (size_t)H * D, p.ld = (size_t)ld;
    p.head = (size_t)p.b * T * p.C + (size_t)(p.bh % H) * D;
    p.in = (size_t)p.b * T * p.ld + (size_t)(p.bh % H) * D;
    return p;
}

/* THREADS threads; shared: Q rows (BLOCK_ROWS, Dp), K tile (TILE, lane_row_stride),
 * V tile (TILE, Dp), the tile's probabilities (BLOCK_ROWS, TILE). out (B, T, H*D). */
static __global__ void __launch_bounds__(THREADS)
attention_online_kernel(float *out, const float *q, const float *k, const float *v, const int32_t *mask, int T,
                        int H, int D, int ld, float sqrt_d)
{
    extern __shared__ float4 shared4[];
    const int Dp = pad4(D), ldk = lane_row_stride(Dp);
    float *Qs = reinterpret_cast<float *>(shared4), *Ks = Qs + BLOCK_ROWS * Dp, *Vs = Ks + TILE * ldk;
    float *Ps = Vs + TILE * Dp;
    const Place pl = block_place(T, H, D, ld);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = warp * ROWS_PER_WARP;
    const int32_t *mask_b = mask + (size_t)pl.b * T;

    load_rows(Qs, Dp, q + pl.in, pl.ld, pl.row0, BLOCK_ROWS, T, D, Dp);
    /* Per row: m the maximum score so far, l the sum of exp(score - m), acc the sum of
     * exp(score - m) v; both rescaled by exp(m_old - m_new) when m grows. m starts at
     * -inf, which the first tile (key 0 is always there) replaces by a finite value. */
    float m[ROWS_PER_WARP], l[ROWS_PER_WARP], acc[ROWS_PER_WARP][COLS];
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++) m[r] = -INFINITY, l[r] = 0.0f;
    zero_acc(acc);
    for (int j0 = 0; j0 < T; j0 += TILE) {
        __syncthreads();  /* every warp is done with the previous K, V and P tiles */
        load_rows(Ks, ldk, k + pl.in, pl.ld, j0, TILE, T, D, Dp);
        load_rows(Vs, Dp, v + pl.in, pl.ld, j0, TILE, T, D, Dp);
        __syncthreads();
        float s[ROWS_PER_WARP];
        tile_dots(s, Qs + r0 * Dp, Ks + lane * ldk, Dp);
        const int j = j0 + lane;
        const float bias = j < T ? (1.0f - (float)mask_b[j]) * -FLT_MAX : 0.0f;
#pragma unroll
        for (int r = 0; r < ROWS_PER_WARP; r++) {
            /* A key past T scores -inf: no maximum picks it and its exp is 0. */
            const float x = j < T ? s[r] / sqrt_d + bias : -INFINITY;
            const float m_new = fmaxf(m[r], warp_max(x));
            const float rescale = exp_or_zero(m[r] - m_new);
            const float p = exp_or_zero(x - m_new);
            l[r] = l[r] * rescale + qb_warp_sum(p);
#pragma unroll
            for (int c = 0; c < COLS; c++) acc[r][c] *= rescale;
            m[r] = m_new;
            Ps[(r0 + r) * TILE + lane] = p;
        }
        __syncwarp();  /* a warp reads only its own rows of Ps */
        accumulate(acc, Ps + r0 * TILE, TILE, Vs, Dp, min(TILE, T - j0), D, lane);
    }
#pragma unroll
    for (int r = 0; r < ROWS_PER_WARP; r++)
#pragma unroll
        for (int c = 0; c < COLS; c++) acc[r][c] /= l[r];
    store_rows(out + pl.head, pl.C, pl.row0 + r0, T, D, lane, acc);
}

/* The block's query rows Qs (BLOCK_ROWS, Dp) against every key of k: the warp's rows
 * of P = softmax(Q K^T / sqrt(D) + maskbias) into Sw (its rows of (BLOCK_ROWS, T)),
 * taken as the CPU takes it (max, exp, sum in double, divide); lse (B, H, T), when
 * not NULL, receives each row's max + log(sum). Rows past T keep their raw scores.
 * Block-wide. */
__device__ __forceinline__ void softmax_rows(float *Sw, const float *Qs, float *tile, const float *k,
                                             const int32_t *mask, float *lse, const Place &pl, int T, int D,
                                             float sqrt_d)
{
    const int Dp = pad4(D), lane = threadIdx.x & 31, r0 = (threadIdx.x >> 5) * ROWS_PER_WARP;
    const int32_t *mask_b = mask + (size_t)pl.b * T;
    score_rows(Sw, Qs + r0 * Dp, tile, k + pl.in, pl.ld, T, D, Dp, lane,
               [&](int j, float s) { return s / sqrt_d + (1.0f - (float)mask_b[j]) * -FLT_MAX; });
    __syncwarp();  /* the softmax of a row is taken by the warp that wrote it */
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        const int i = pl.row0 + r0 + r;
        if (i >= T) break;  /* the same in every lane of the warp */
        float *row = Sw + r * T;
        float mx = -INFINITY;
        for (int j = lane; j < T; j += 32) mx = fmaxf(mx, row[j]);
        mx = warp_max(mx);
        double sum = 0.0;
        for (int j = lane; j < T; j += 32) {
            const float e = exp_or_zero(row[j] - mx);
            row[j] = e;
            sum += e;
        }
        const double total = qb_warp_sum_d(sum);
        for (int j = lane; j < T; j += 32) row[j] /= (float)total;
        if (lse && lane == 0) lse[(size_t)pl.bh * T + i] = (float)(mx + log(total));
    }
    __syncwarp();
}

/* THREADS threads; shared: Q rows (BLOCK_ROWS, Dp), a K then V tile
 * (TILE, lane_row_stride), score rows S (BLOCK_ROWS, T). out (B, T, H*D), lse
 * (B, H, T) or NULL; drop.p == 0: no dropout. */
static __global__ void __launch_bounds__(THREADS)
attention_rows_kernel(float *out, float *lse, const float *q, const float *k, const float *v, const int32_t *mask,
                      qb_dropout drop, int T, int H, int D, int ld, float sqrt_d)
{
    extern __shared__ float4 shared4[];
    const int Dp = pad4(D), ldk = lane_row_stride(Dp);
    float *Qs = reinterpret_cast<float *>(shared4), *tile = Qs + BLOCK_ROWS * Dp, *S = tile + TILE * ldk;
    const Place pl = block_place(T, H, D, ld);
    const int lane = threadIdx.x & 31, r0 = (threadIdx.x >> 5) * ROWS_PER_WARP;
    float *Sw = S + r0 * T;  /* this warp's rows */

    load_rows(Qs, Dp, q + pl.in, pl.ld, pl.row0, BLOCK_ROWS, T, D, Dp);
    softmax_rows(Sw, Qs, tile, k, mask, lse, pl, T, D, sqrt_d);
    for (int r = 0; r < ROWS_PER_WARP && drop.p > 0.0f; r++) {
        const int i = pl.row0 + r0 + r;
        if (i < T) dropout_row(Sw + r * T, T, ((uint64_t)pl.bh * T + i) * T, drop, lane);
    }
    __syncwarp();
    float acc[ROWS_PER_WARP][COLS];
    rows_times(acc, Sw, T, tile, v + pl.in, pl.ld, D, Dp, lane);
    store_rows(out + pl.head, pl.C, pl.row0 + r0, T, D, lane, acc);
}

/* THREADS threads over query rows; shared: Q then dO rows (BLOCK_ROWS, Dp), a K then V
 * then K tile (TILE, lane_row_stride), rows of P and of dP then dS (BLOCK_ROWS, T)
 * each. P is recomputed as the forward took it; dq (B, T, H*D); probs and ds (B, H,
 * T, T) receive P and dS for the key kernel. */
static __global__ void __launch_bounds__(THREADS)
attention_backward_query_kernel(float *dq, float *probs, float *ds, const float *dout, const float *q,
                                const float *k, const float *v, const int32_t *mask, qb_dropout drop, int T, int H,
                                int D, int ld, float sqrt_d)
{
    extern __shared__ float4 shared4[];
    const int Dp = pad4(D), ldk = lane_row_stride(Dp);
    float *Qs = reinterpret_cast<float *>(shared4), *tile = Qs + BLOCK_ROWS * Dp, *P = tile + TILE * ldk;
    float *G = P + BLOCK_ROWS * T;
    const Place pl = block_place(T, H, D, ld);
    const int lane = threadIdx.x & 31, r0 = (threadIdx.x >> 5) * ROWS_PER_WARP;
    float *Pw = P + r0 * T, *Gw = G + r0 * T;  /* this warp's rows */
    const float inv_sqrt_d = 1.0f / sqrt_d;

    load_rows(Qs, Dp, q + pl.in, pl.ld, pl.row0, BLOCK_ROWS, T, D, Dp);
    softmax_rows(Pw, Qs, tile, k, mask, NULL, pl, T, D, sqrt_d);
    __syncthreads();  /* every warp is done with the Q rows */
    load_rows(Qs, Dp, dout + pl.head, pl.C, pl.row0, BLOCK_ROWS, T, D, Dp);
    score_rows(Gw, Qs + r0 * Dp, tile, v + pl.in, pl.ld, T, D, Dp, lane, [](int, float s) { return s; });  /* dP' */
    __syncwarp();  /* a row of dP' is turned into dS by the warp that wrote it */
    /* Rows past T hold dP' of zero dO rows (zeros) and are never stored. */
    for (int r = 0; r < ROWS_PER_WARP; r++) {
        const int i = pl.row0 + r0 + r;
        if (i >= T) break;  /* the same in every lane of the warp */
        const uint64_t first = ((uint64_t)pl.bh * T + i) * T;
        const float *pr = Pw + r * T;
        float *row = Gw + r * T;
        if (drop.p > 0.0f) {
            dropout_row(row, T, first, drop, lane);  /* dP = dropout(dP') */
            __syncwarp();
        }
        double dot = 0.0;
        for (int j = lane; j < T; j += 32) dot += (double)pr[j] * row[j];
        const float rowsum = (float)qb_warp_sum_d(dot);
        for (int j = lane; j < T; j += 32) {
            const float g = pr[j] * (row[j] - rowsum) * inv_sqrt_d;
            row[j] = g;
            ds[first + j] = g;
            probs[first + j] = pr[j];
        }
    }
    float acc[ROWS_PER_WARP][COLS];
    rows_times(acc, Gw, T, tile, k + pl.in, pl.ld, D, Dp, lane);
    store_rows(dq + pl.in, pl.ld, pl.row0 + r0, T, D, lane, acc);
}

/* Row stride of the transposed weight tiles: the pad of 1 spreads their transposing
 * stores over the banks. */
#define LDW (TILE + 1)

/* THREADS threads over key rows; shared: dO and Q tiles (TILE, Dp) each, P' and dS
 * tiles transposed (BLOCK_ROWS key rows, LDW). dk, dv (B, T, H*D); probs, ds (B, H,
 * T, T): the query kernel's P and dS. */
static __global__ void __launch_bounds__(THREADS)
attention_backward_key_kernel(float *dk, float *dv, const float *dout, const float *q, const float *probs,
                              const float *ds, qb_dropout drop, int T, int H, int D, int ld)
{
    extern __shared__ float4 shared4[];
    const int Dp = pad4(D);
    float *Os = reinterpret_cast<float *>(shared4), *Qs = Os + TILE * Dp, *Pt = Qs + TILE * Dp;
    float *St = Pt + BLOCK_ROWS * LDW;
    const Place pl = block_place(T, H, D, ld);  /* row0: the block's first key row */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r0 = warp * ROWS_PER_WARP;

    float dv_acc[ROWS_PER_WARP][COLS], dk_acc[ROWS_PER_WARP][COLS];
    zero_acc(dv_acc);
    zero_acc(dk_acc);
    for (int i0 = 0; i0 < T; i0 += TILE) {
        __syncthreads();
        load_rows(Os, Dp, dout + pl.head, pl.C, i0, TILE, T, D, Dp);
        load_rows(Qs, Dp, q + pl.in, pl.ld, i0, TILE, T, D, Dp);
        /* Element (i0 + a, row0 + c) of P' and dS goes to [c][a]: a key row's weights
         * are then contiguous, as accumulate reads them. The dropout factor is drawn
         * per element here: a tile row spans only 16 indices. */
        for (int e = threadIdx.x; e < TILE * BLOCK_ROWS; e += THREADS) {
            const int a = e / BLOCK_ROWS, c = e % BLOCK_ROWS, i = i0 + a, j = pl.row0 + c;
            float p = 0.0f, g = 0.0f;
            if (i < T && j < T) {
                const uint64_t idx = ((uint64_t)pl.bh * T + i) * T + j;
                p = probs[idx];
                if (drop.p > 0.0f) p *= qb_dropout_factor(drop, idx, 1.0f / (1.0f - drop.p));
                g = ds[idx];
            }
            Pt[c * LDW + a] = p;
            St[c * LDW + a] = g;
        }
        __syncthreads();
        const int n = min(TILE, T - i0);
        accumulate(dv_acc, Pt + r0 * LDW, LDW, Os, Dp, n, D, lane);  /* dV += P'^T dO */
        accumulate(dk_acc, St + r0 * LDW, LDW, Qs, Dp, n, D, lane);  /* dK += dS^T Q */
    }
    store_rows(dv + pl.in, pl.ld, pl.row0 + r0, T, D, lane, dv_acc);
    store_rows(dk + pl.in, pl.ld, pl.row0 + r0, T, D, lane, dk_acc);
}

/* Records an error naming the limits when T or D is past them. */
static bool within_limits(qb_stream *s, const char *op, int T, int D)
{
    if (T <= MAX_T && D <= MAX_D) return true;
    char what[96];
    snprintf(what, sizeof what, "%s: T=%d D=%d exceeds the limits T <= %d, D <= %d", op, T, D, MAX_T, MAX_D);
    qb_cuda_note(s, cudaErrorInvalidValue, what);
    return false;
}

static unsigned grid_blocks(int B, int T, int H)
{
    return (unsigned)B * (unsigned)H * (unsigned)((T + BLOCK_ROWS - 1) / BLOCK_ROWS);
}

/* Shared memory of a kernel that keeps BLOCK_ROWS rows (stride Dp), one tile read one
 * row per lane and `rows` x BLOCK_ROWS rows of T scores. */
static size_t score_rows_bytes(int T, int Dp, int rows)
{
    return (size_t)(BLOCK_ROWS * Dp + TILE * lane_row_stride(Dp) + rows * BLOCK_ROWS * T) * sizeof(float);
}

/* Whether the op goes to the tensor cores (cuda/flash_attention.cu): BF16 / FP16
 * products or storage, head dims 32, 64, 128, rows aligned for 16-byte loads;
 * everything else runs here in FP32. Half storage cannot run here: past those
 * limits it is an error, recorded on s (false then too, with *refused set). */
static bool tensor_cores(qb_stream *s, qb_math math, qb_dtype t, int D, const void *const *p, int n, bool *refused)
{
    bool aligned = true;
    for (int i = 0; i < n; i++) aligned &= (uintptr_t)p[i] % 16 == 0;
    const bool fits = (D == 32 || D == 64 || D == 128) && aligned;
    *refused = t != QB_F32 && !fits;
    if (*refused)
        qb_cuda_note(s, cudaErrorInvalidValue, "attention: FP16 / BF16 storage needs head dim 32, 64 or 128 and "
                     "16-byte aligned buffers");
    return fits && (t != QB_F32 || math == QB_MATH_BF16 || math == QB_MATH_FP16);
}

extern "C" void qb_cuda_attention(qb_stream *s, void *out_, float *lse, const void *q_, const void *k_, const void *v_,
                                  int ld, const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                                  qb_math math, qb_dtype t)
{
    if (B <= 0 || H <= 0 || T <= 0 || D <= 0 || !within_limits(s, "attention", T, D)) return;
    const qb_dropout off = {};
    const qb_dropout d = drop && drop->p > 0.0f ? *drop : off;
    const void *ptrs[] = {out_, q_, k_, v_};
    bool refused;
    if (tensor_cores(s, math, t, D, ptrs, 4, &refused)) {
        qb_cuda_flash_attention(s, out_, lse, q_, k_, v_, ld, mask, &d, B, T, H, D, math, t);
        return;
    }
    if (refused) return;
    float *out = (float *)out_;
    const float *q = (const float *)q_, *k = (const float *)k_, *v = (const float *)v_;
    const int Dp = pad4(D);
    const float sqrt_d = (float)sqrt((double)D);  /* the CPU's divisor (HF's math.sqrt(head_size)) */
    const unsigned blocks = grid_blocks(B, T, H);
    if (!lse && d.p == 0.0f) {
        /* 42.5 KiB at most (D = 128): within the default limit. */
        const size_t bytes =
            (size_t)(BLOCK_ROWS * Dp + TILE * lane_row_stride(Dp) + TILE * Dp + BLOCK_ROWS * TILE) * sizeof(float);
        attention_online_kernel<<<blocks, THREADS, bytes, qb_cuda_stream(s)>>>(out, q, k, v, mask, T, H, D, ld,
                                                                                 sqrt_d);
        qb_cuda_launched(s, "attention (online softmax)");
    } else {
        const size_t bytes = score_rows_bytes(T, Dp, 1);  /* up to 56.5 KiB (T = 512, D = 128) */
        if (!qb_cuda_allow_shared(s, (const void *)attention_rows_kernel, bytes, "attention: shared memory")) return;
        attention_rows_kernel<<<blocks, THREADS, bytes, qb_cuda_stream(s)>>>(out, lse, q, k, v, mask, d, T, H, D, ld,
                                                                            sqrt_d);
        qb_cuda_launched(s, "attention (score rows)");
    }
}

extern "C" void qb_cuda_attention_backward(qb_stream *s, void *dq_, void *dk_, void *dv_, const void *dout_,
                                           const void *q_, const void *k_, const void *v_, int ld, const void *out,
                                           const float *lse, const int32_t *mask, const qb_dropout *drop, int B,
                                           int T, int H, int D, qb_math math, qb_dtype t)
{
    if (B <= 0 || H <= 0 || T <= 0 || D <= 0 || !within_limits(s, "attention backward", T, D)) return;
    const qb_dropout off = {};
    const qb_dropout d = drop && drop->p > 0.0f ? *drop : off;
    const void *ptrs[] = {dq_, dk_, dv_, dout_, q_, k_, v_, out};
    bool refused;
    if (tensor_cores(s, math, t, D, ptrs, 8, &refused)) {
        qb_cuda_flash_attention_backward(s, dq_, dk_, dv_, dout_, q_, k_, v_, ld, out, lse, mask, &d, B, T, H, D, math,
                                         t);
        return;
    }
    if (refused) return;
    float *dq = (float *)dq_, *dk = (float *)dk_, *dv = (float *)dv_;
    const float *dout = (const float *)dout_, *q = (const float *)q_, *k = (const float *)k_, *v = (const float *)v_;
    const int Dp = pad4(D);
    const float sqrt_d = (float)sqrt((double)D);
    const unsigned blocks = grid_blocks(B, T, H);
    const size_t query_bytes = score_rows_bytes(T, Dp, 2);  /* up to 88.5 KiB (T = 512, D = 128) */
    /* 36 KiB at most (D = 128): within the default limit at any T. */
    const size_t key_bytes = (size_t)(2 * TILE * Dp + 2 * BLOCK_ROWS * LDW) * sizeof(float);
    if (!qb_cuda_allow_shared(s, (const void *)attention_backward_query_kernel, query_bytes,
                              "attention backward: shared memory"))
        return;
    const cudaStream_t stream = qb_cuda_stream(s);
    const size_t tt = (size_t)B * H * T * T;
    float *scratch = NULL;  /* P then dS, (B, H, T, T) each */
    const cudaError_t e = cudaMallocAsync((void **)&scratch, 2 * tt * sizeof(float), stream);
    if (e != cudaSuccess) {
        char what[96];
        snprintf(what, sizeof what, "attention backward: %zu bytes of P and dS scratch", 2 * tt * sizeof(float));
        qb_cuda_note(s, e, what);
        return;
    }
    attention_backward_query_kernel<<<blocks, THREADS, query_bytes, stream>>>(dq, scratch, scratch + tt, dout, q, k, v,
                                                                              mask, d, T, H, D, ld, sqrt_d);
    qb_cuda_launched(s, "attention backward (P, dS, dQ)");
    attention_backward_key_kernel<<<blocks, THREADS, key_bytes, stream>>>(dk, dv, dout, q, scratch, scratch + tt, d, T,
                                                                          H, D, ld);
    qb_cuda_launched(s, "attention backward (dK, dV)");
    qb_cuda_note(s, cudaFreeAsync(scratch, stream), "attention backward: free the scratch");
}
