/* Flash attention on the tensor cores (mma.sync, sm_80 and later): the bodies of the
 * forward kernel and the two backward kernels, templated on the storage type S of
 * q, k, v, out and their gradients (FP32, or the operand type itself) and on the
 * operand type M of the products (FP16 or BF16), with FP32 sums, softmax statistics
 * and log-sum-exp. cuda/flash_attention.cu launches them; tests/test_flash_emu.cpp
 * runs these very bodies on the host (tests/simt.h) against the CPU reference.
 *
 * Semantics: those of backend.h's attention (HF BERT's eager path): per head,
 *   x = q k^T / sqrt(D) + bias,  P = softmax(x),  out = dropout(P) v,
 * bias 0 where the mask attends and -inf-like where it does not. A key tile whose
 * keys are all masked is skipped. A sequence with no key to attend to (fully padded)
 * attends uniformly to all its T keys, as HF's -FLT_MAX bias makes it. Dropout
 * multiplies element (i, j) of P by the CPU's Philox factor of index ((b H + h) T +
 * i) T + j (cuda/philox.cuh); the row sums are taken before it.
 *
 * Forward (FlashAttention-2): a block of 4 warps owns BM = 64 query rows (16 a warp)
 * of one head and streams the head's key tiles (BN = 64 keys of K and V, double
 * buffered: cp.async when S is the operand type, else loaded, rounded and stored)
 * through shared memory. Per tile and warp: S = Q K^T (16 x 64, ldmatrix + mma),
 * then the online softmax in the log2 domain (running max m and sum l per row, the
 * output rescaled by 2^(m_old - m_new)), then O += P V with P taken straight from the
 * accumulators as the A operand (the m16n8 C layout of two n-tiles is the m16n8k16 A
 * layout). At the end O / l is stored, and for training lse = ln(sum exp x) per row.
 *
 * Backward, deterministic (each output element has one writer, no atomics), from
 * out, dout and lse, with P recomputed as 2^(x log2 e - lse log2 e):
 *   dsum_i = dout_i . out_i  (= rowsum(P * dP) whether or not dropout is on),
 *   dP = dropout(dout v^T),  dS = P * (dP - dsum) / sqrt(D);
 * - dq kernel, per 64 query rows over the key tiles: S, P, dP, dS, then dq += dS K;
 *   it also writes dsum (B, H, T) for the other kernel;
 * - dkdv kernel, per 64 keys over the query tiles, on the transposed products:
 *   S^T = K Q^T, P^T, dP^T = V dout^T, then dv += P'^T dout and dk += dS^T Q.
 * Seven products against FlashAttention-2's five (which adds dq with atomics in one
 * kernel): the price of determinism.
 *
 * Shared memory per block (D = 64): forward 42 KiB, dq and dkdv 51 KiB; D = 128 about
 * twice that. Head dims 32, 64 and 128; T <= 512 (the bias row of a sequence is kept
 * in shared memory). */
#ifndef QBERT_CUDA_FLASH_ATTENTION_CUH
#define QBERT_CUDA_FLASH_ATTENTION_CUH

#include <math.h>
#include <type_traits>

#include "cuda/warp.cuh"

namespace flash {

constexpr int WARPS = 4, THREADS = 32 * WARPS;
constexpr int BM = 64;      /* query rows of a block, 16 per warp */
constexpr int BN = 64;      /* keys of a tile */
constexpr int QM = 32;      /* query rows of a tile of the dkdv kernel: its S^T and dP^T
                             * are 16 x QM a warp, beside dK and dV (16 x DC each) */
/* Columns of dK and dV a dkdv block computes: at D = 128 two blocks share a key tile,
 * each recomputing S^T and dP^T, so that the accumulators fit in registers. */
template <int D> constexpr int DKDV_COLS = D > 64 ? 64 : D;
constexpr int MAX_T = 512;  /* the bias row of a sequence in shared memory */
constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;

/* q, k, v (and the gradients dq, dk, dv): rows of ldq elements, head h at column h D;
 * out and dout: rows of ldo. lse, dsum (B, H, T). */
template <typename S> struct Forward {
    const S *q, *k, *v;
    S *out;
    float *lse;           /* NULL: not kept */
    const int32_t *mask;  /* (B, T) */
    int T, H, ldq, ldo;
    float scale_log2;     /* log2(e) / sqrt(D) */
    qb_dropout drop;      /* p = 0: off */
    float drop_scale;     /* 1 / (1 - p) */
};

template <typename S> struct Backward {
    const S *q, *k, *v, *out, *dout;
    S *dq, *dk, *dv;
    const float *lse;
    float *dsum;          /* written by the dq kernel, read by the dkdv kernel */
    const int32_t *mask;
    int T, H, ldq, ldo;
    float scale_log2, scale;  /* log2(e) / sqrt(D), 1 / sqrt(D) */
    qb_dropout drop;
    float drop_scale;
};

/* The block's head and first row of a flat grid: blocks (B H) x ceil(T / rows), the
 * tiles of a head adjacent (its K and V stay in L2 while they run). */
struct Place {
    int bh, b, h, row0;
};
QB_DEV Place place(int T, int H, int rows, int block)
{
    const int tiles = (T + rows - 1) / rows;
    Place p;
    p.bh = block / tiles;
    p.b = p.bh / H, p.h = p.bh % H;
    p.row0 = block % tiles * rows;
    return p;
}

/* bias[t] for the keys of sequence b (mask_b (T)) over whole tiles: 0 to attend,
 * -inf not (padding, and the keys past T). Returns the key tiles that have a key to
 * attend to; a sequence without any attends to all its keys alike (*none: the scores
 * are then taken as 0). Block-wide; word: one shared word. */
QB_DEV unsigned key_tiles(const int32_t *mask_b, int T, float *bias, unsigned *word, bool *none)
{
    const int tiles = (T + BN - 1) / BN;
    if (threadIdx.x == 0) *word = 0;
    __syncthreads();
    for (int t = threadIdx.x; t < tiles * BN; t += THREADS) {
        const bool attend = t < T && mask_b[t] != 0;
        bias[t] = attend ? 0.0f : -INFINITY;
        if (attend) warp::or_shared(word, 1u << (t / BN));
    }
    __syncthreads();
    const unsigned bits = *word;
    *none = bits == 0;
    if (bits) return bits;
    for (int t = threadIdx.x; t < T; t += THREADS) bias[t] = 0.0f;
    __syncthreads();
    return (1u << tiles) - 1;
}

/* The lowest tile of bits above `after`, or -1. */
QB_DEV int next_tile(unsigned bits, int after)
{
    const unsigned rest = after < 0 ? bits : bits & ~((2u << after) - 1);
    return rest ? warp::lowest_bit(rest) : -1;
}

/* Rows r0 .. r0+ROWS-1 of a head (row stride ld, D columns from src) into a ROWS x D
 * tile of M (warp.cuh's swizzle), rows past T zero. Block-wide. S == M: cp.async (the
 * caller commits and waits); S FP32: read, rounded and stored now. */
template <typename S, typename M, int D, int ROWS>
QB_DEV void load_tile(M *tile, const S *src, size_t ld, int r0, int T)
{
    static_assert(std::is_same<S, M>::value || std::is_same<S, float>::value, "storage: FP32 or the operand type");
    constexpr int CH = D / 8;  /* 16-byte chunks of a row of M */
    for (int i = threadIdx.x; i < ROWS * CH; i += THREADS) {
        const int r = i / CH, c = i % CH, t = r0 + r;
        const bool in = t < T;
        const S *s = src + (size_t)(in ? t : 0) * ld + c * 8;
        M *dst = tile + warp::tile_offset<D>(r, c * 8);
        if constexpr (std::is_same<S, M>::value) {
            warp::cp_async16(dst, s, in);
        } else {
            float f[8];
            warp::load8(f, s, in);
            uint32_t w[4];
            QB_UNROLL
            for (int e = 0; e < 4; e++) w[e] = qb_pack2<M>(f[2 * e], f[2 * e + 1]);
            warp::store16(dst, w);
        }
    }
}

/* s (16 x N: N / 8 n-tiles of C fragments) = rows r0 .. r0+15 of tile A (x D) times
 * the N rows of tile B (x D) transposed: A B^T for this warp. */
template <typename M, int D, int N>
QB_DEV void gemm_abt(float s[][4], const M *A, int r0, const M *B, int lane)
{
    QB_UNROLL
    for (int j = 0; j < N / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
    QB_UNROLL
    for (int kk = 0; kk < D; kk += 16) {
        uint32_t af[4], bf[4];
        int r, c;
        warp::a_rows(lane, r0, kk, &r, &c);
        warp::ldmatrix4<false>(af, A + warp::tile_offset<D>(r, c));
        QB_UNROLL
        for (int n = 0; n < N; n += 16) {
            warp::b_rows(lane, n, kk, &r, &c);
            warp::ldmatrix4<false>(bf, B + warp::tile_offset<D>(r, c));
            warp::mma<M>(s[n / 8], af, bf[0], bf[1]);
            warp::mma<M>(s[n / 8 + 1], af, bf[2], bf[3]);
        }
    }
}

/* The C fragments s (16 x N) as A fragments of the next product (rounded to M). */
template <typename M, int N>
QB_DEV void as_a(uint32_t a[][4], const float s[][4])
{
    QB_UNROLL
    for (int kc = 0; kc < N / 16; kc++) {
        a[kc][0] = qb_pack2<M>(s[2 * kc][0], s[2 * kc][1]);
        a[kc][1] = qb_pack2<M>(s[2 * kc][2], s[2 * kc][3]);
        a[kc][2] = qb_pack2<M>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
        a[kc][3] = qb_pack2<M>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
    }
}

/* o (16 x W) += a (16 x N, A fragments) times columns c0 .. c0+W-1 of tile V (N x D,
 * rows the k index). */
template <typename M, int D, int N, int W = D>
QB_DEV void gemm_av(float o[][4], const uint32_t a[][4], const M *V, int c0, int lane)
{
    QB_UNROLL
    for (int kc = 0; kc < N / 16; kc++)
        QB_UNROLL
        for (int n = 0; n < W; n += 16) {
            uint32_t bf[4];
            int r, c;
            warp::a_rows(lane, kc * 16, c0 + n, &r, &c);
            warp::ldmatrix4<true>(bf, V + warp::tile_offset<D>(r, c));
            warp::mma<M>(o[n / 8], a[kc], bf[0], bf[1]);
            warp::mma<M>(o[n / 8 + 1], a[kc], bf[2], bf[3]);
        }
}

/* Rows row and row + 8 of fragments o (16 x W) at dst (row stride ld) times f[0], f[1]:
 * element (row + 8 h, col) of the warp's block goes to dst[(row + 8 h) ld + col]; rows
 * at or past T are skipped. */
template <typename S, int W>
QB_DEV void store_rows(S *dst, size_t ld, const float o[][4], int row, int T, const float f[2], int lane)
{
    QB_UNROLL
    for (int h = 0; h < 2; h++) {
        if (row + 8 * h >= T) continue;
        S *p = dst + (size_t)(row + 8 * h) * ld + 2 * (lane & 3);
        QB_UNROLL
        for (int j = 0; j < W / 8; j++) warp::store2(p + 8 * j, o[j][2 * h] * f[h], o[j][2 * h + 1] * f[h]);
    }
}

/* Dropout of this lane's C fragments of a 16 x N tile: bit 4 j + e set when element
 * (row + 8 (e >> 1), col + 8 j + (e & 1)) is kept, its Philox index base + row_step r
 * + col_step c (qb_dropout). A rolled loop: the ten Philox rounds of each element,
 * unrolled over all of them beside the tile's accumulators, would spill registers. */
template <int N>
QB_DEV uint32_t keep_bits(const qb_dropout &d, uint64_t base, uint64_t row_step, uint64_t col_step, int row, int col)
{
    static_assert(N / 2 <= 32, "one bit an element");
    uint32_t bits = 0;
    QB_NO_UNROLL
    for (int n = 0; n < N / 2; n++) {
        const int j = n / 4, e = n % 4;
        const uint64_t r = (uint64_t)(row + 8 * (e >> 1)), c = (uint64_t)(col + 8 * j + (e & 1));
        bits |= (uint32_t)(qb_dropout_factor(d, base + r * row_step + c * col_step, 1.0f) != 0.0f) << n;
    }
    return bits;
}

/* keep_bits of this lane's 16 x BN tile of P (query rows row, row + 8; key tile kt),
 * indexed (bh T + query) T + key; 0 without dropout. Args: Forward or Backward. */
template <typename Args> QB_DEV uint32_t query_keep(const Args &a, const Place &pl, int row, int kt, int lane)
{
    if (!(a.drop.p > 0.0f)) return 0;
    return keep_bits<BN>(a.drop, (uint64_t)pl.bh * a.T * a.T, a.T, 1, row, kt * BN + 2 * (lane & 3));
}

/* The dropout factor of element (j, e) of a tile whose kept elements are bits. */
QB_DEV float kept(uint32_t bits, int j, int e, float scale) { return bits >> (4 * j + e) & 1 ? scale : 0.0f; }

/* The shared memory of each kernel, in bytes. */
template <int D> constexpr size_t forward_bytes() { return (size_t)(BM + 4 * BN) * D * 2 + MAX_T * 4 + 16; }
template <int D> constexpr size_t dq_bytes() { return (size_t)(2 * BM + 4 * BN) * D * 2 + MAX_T * 4 + 16; }
template <int D> constexpr size_t dkdv_bytes() { return (size_t)(2 * BN + 4 * QM) * D * 2 + 4 * QM * 4 + MAX_T * 4 + 16; }

template <typename S, typename M, int D>
QB_DEV void forward(const Forward<S> &a, char *smem)
{
    M *Qs = (M *)smem, *Ks = Qs + BM * D, *Vs = Ks + 2 * BN * D;  /* K, V: two stages */
    float *bias = (float *)(Vs + 2 * BN * D);
    unsigned *word = (unsigned *)(bias + MAX_T);
    const Place pl = place(a.T, a.H, BM, (int)blockIdx.x);
    const int warp_id = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int row = pl.row0 + warp_id * 16 + lane / 4;  /* this lane's rows: row, row + 8 */
    const size_t in = (size_t)pl.b * a.T * a.ldq + (size_t)pl.h * D;  /* element (b, 0, h D) */
    bool none;
    const unsigned tiles = key_tiles(a.mask + (size_t)pl.b * a.T, a.T, bias, word, &none);

    load_tile<S, M, D, BM>(Qs, a.q + in, a.ldq, pl.row0, a.T);
    int kt = next_tile(tiles, -1);
    load_tile<S, M, D, BN>(Ks, a.k + in, a.ldq, kt * BN, a.T);
    load_tile<S, M, D, BN>(Vs, a.v + in, a.ldq, kt * BN, a.T);
    warp::cp_async_commit();

    float o[D / 8][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    for (int stage = 0; kt >= 0; stage ^= 1) {
        const int next = next_tile(tiles, kt);
        if (next >= 0) {
            load_tile<S, M, D, BN>(Ks + (stage ^ 1) * BN * D, a.k + in, a.ldq, next * BN, a.T);
            load_tile<S, M, D, BN>(Vs + (stage ^ 1) * BN * D, a.v + in, a.ldq, next * BN, a.T);
        }
        warp::cp_async_commit();
        warp::cp_async_wait<1>();  /* this tile's group (and Q) has landed */
        __syncthreads();
        float s[BN / 8][4];
        gemm_abt<M, D, BN>(s, Qs, warp_id * 16, Ks + stage * BN * D, lane);
        /* x in the log2 domain; the rows' new maxima (over the quad that holds a row). */
        float mx[2] = {-INFINITY, -INFINITY};
        QB_UNROLL
        for (int j = 0; j < BN / 8; j++)
            QB_UNROLL
            for (int e = 0; e < 4; e++) {
                const int key = kt * BN + 8 * j + 2 * (lane & 3) + (e & 1);
                s[j][e] = (none ? 0.0f : s[j][e] * a.scale_log2) + bias[key];
                mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
            }
        float base[2], alpha[2];
        QB_UNROLL
        for (int h = 0; h < 2; h++) {
            mx[h] = fmaxf(mx[h], warp::shfl_xor(mx[h], 1));
            mx[h] = fmaxf(mx[h], warp::shfl_xor(mx[h], 2));
            const float m_new = fmaxf(m[h], mx[h]);
            base[h] = m_new == -INFINITY ? 0.0f : m_new;  /* no key yet: keeps -inf - -inf away */
            alpha[h] = warp::exp2_fast(m[h] - base[h]);
            m[h] = m_new;
            l[h] *= alpha[h];
        }
        QB_UNROLL
        for (int j = 0; j < D / 8; j++)
            QB_UNROLL
            for (int e = 0; e < 4; e++) o[j][e] *= alpha[e >> 1];
        const bool drop = a.drop.p > 0.0f;
        const uint32_t keep = query_keep(a, pl, row, kt, lane);
        QB_UNROLL
        for (int j = 0; j < BN / 8; j++)
            QB_UNROLL
            for (int e = 0; e < 4; e++) {
                const float p = warp::exp2_fast(s[j][e] - base[e >> 1]);
                l[e >> 1] += p;
                s[j][e] = drop ? p * kept(keep, j, e, a.drop_scale) : p;
            }
        uint32_t pa[BN / 16][4];
        as_a<M, BN>(pa, s);
        gemm_av<M, D, BN>(o, pa, Vs + stage * BN * D, 0, lane);
        __syncthreads();  /* every warp is done with this stage before it is refilled */
        kt = next;
    }
    float inv[2];
    QB_UNROLL
    for (int h = 0; h < 2; h++) {
        l[h] += warp::shfl_xor(l[h], 1);
        l[h] += warp::shfl_xor(l[h], 2);
        inv[h] = 1.0f / l[h];
        if (a.lse && (lane & 3) == 0 && row + 8 * h < a.T)
            a.lse[(size_t)pl.bh * a.T + row + 8 * h] = (m[h] + log2f(l[h])) * LN2;
    }
    store_rows<S, D>(a.out + (size_t)pl.b * a.T * a.ldo + (size_t)pl.h * D, a.ldo, o, row, a.T, inv, lane);
}

/* dsum of rows row0 .. row0+15 (dout . out, FP32) for this warp, written to dsum for
 * the dkdv kernel; returns this lane's two (rows row0 + lane / 4 and that + 8). dout is
 * taken rounded to M, as the products dP = dout V^T take it: dS = P (dP - dsum) then
 * cancels as it should (exactly 0 at T = 1, where out = v). */
template <typename S, typename M, int D>
QB_DEV void row_dsum(float mine[2], const S *out, const S *dout, size_t ld, float *dsum, int row0, int T, int lane)
{
    QB_UNROLL
    for (int r = 0; r < 16; r++) {
        const int t = row0 + r;
        float v = 0.0f;
        if (t < T)
            for (int d = lane; d < D; d += 32)
                v += qb_to_float(qb_from_float<M>(qb_to_float(dout[(size_t)t * ld + d]))) *
                     qb_to_float(out[(size_t)t * ld + d]);
        for (int o = 16; o > 0; o >>= 1) v += warp::shfl_xor(v, o);
        if (r == lane / 4) mine[0] = v;
        if (r == lane / 4 + 8) mine[1] = v;
        if (lane == 0 && t < T) dsum[t] = v;
    }
}

template <typename S, typename M, int D>
QB_DEV void backward_dq(const Backward<S> &a, char *smem)
{
    M *Qs = (M *)smem, *Os = Qs + BM * D, *Ks = Os + BM * D, *Vs = Ks + 2 * BN * D;  /* Os: dout */
    float *bias = (float *)(Vs + 2 * BN * D);
    unsigned *word = (unsigned *)(bias + MAX_T);
    const Place pl = place(a.T, a.H, BM, (int)blockIdx.x);
    const int warp_id = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int row = pl.row0 + warp_id * 16 + lane / 4;
    const size_t in = (size_t)pl.b * a.T * a.ldq + (size_t)pl.h * D, io = (size_t)pl.b * a.T * a.ldo + (size_t)pl.h * D;
    bool none;
    const unsigned tiles = key_tiles(a.mask + (size_t)pl.b * a.T, a.T, bias, word, &none);

    load_tile<S, M, D, BM>(Qs, a.q + in, a.ldq, pl.row0, a.T);
    load_tile<S, M, D, BM>(Os, a.dout + io, a.ldo, pl.row0, a.T);
    int kt = next_tile(tiles, -1);
    load_tile<S, M, D, BN>(Ks, a.k + in, a.ldq, kt * BN, a.T);
    load_tile<S, M, D, BN>(Vs, a.v + in, a.ldq, kt * BN, a.T);
    warp::cp_async_commit();

    float dsum[2], lse[2];
    row_dsum<S, M, D>(dsum, a.out + io, a.dout + io, a.ldo, a.dsum + (size_t)pl.bh * a.T, pl.row0 + warp_id * 16, a.T,
                   lane);
    QB_UNROLL
    for (int h = 0; h < 2; h++)  /* rows past T: P = 0 */
        lse[h] = row + 8 * h < a.T ? a.lse[(size_t)pl.bh * a.T + row + 8 * h] * LOG2E : INFINITY;

    float dq[D / 8][4] = {};
    for (int stage = 0; kt >= 0; stage ^= 1) {
        const int next = next_tile(tiles, kt);
        if (next >= 0) {
            load_tile<S, M, D, BN>(Ks + (stage ^ 1) * BN * D, a.k + in, a.ldq, next * BN, a.T);
            load_tile<S, M, D, BN>(Vs + (stage ^ 1) * BN * D, a.v + in, a.ldq, next * BN, a.T);
        }
        warp::cp_async_commit();
        warp::cp_async_wait<1>();
        __syncthreads();
        const M *K = Ks + stage * BN * D;
        float s[BN / 8][4], dp[BN / 8][4];
        gemm_abt<M, D, BN>(s, Qs, warp_id * 16, K, lane);                    /* S = Q K^T */
        gemm_abt<M, D, BN>(dp, Os, warp_id * 16, Vs + stage * BN * D, lane);  /* dP' = dO V^T */
        const bool drop = a.drop.p > 0.0f;
        const uint32_t keep = query_keep(a, pl, row, kt, lane);
        QB_UNROLL
        for (int j = 0; j < BN / 8; j++)
            QB_UNROLL
            for (int e = 0; e < 4; e++) {
                const int h = e >> 1, key = kt * BN + 8 * j + 2 * (lane & 3) + (e & 1);
                const float x = (none ? 0.0f : s[j][e] * a.scale_log2) + bias[key];
                const float p = warp::exp2_fast(x - lse[h]);
                const float g = drop ? dp[j][e] * kept(keep, j, e, a.drop_scale) : dp[j][e];
                s[j][e] = p * (g - dsum[h]);  /* dS, without the 1 / sqrt(D) */
            }
        uint32_t da[BN / 16][4];
        as_a<M, BN>(da, s);
        gemm_av<M, D, BN>(dq, da, K, 0, lane);  /* dQ += dS K */
        __syncthreads();
        kt = next;
    }
    const float f[2] = {a.scale, a.scale};
    store_rows<S, D>(a.dq + in, a.ldq, dq, row, a.T, f, lane);
}

template <typename S, typename M, int D>
QB_DEV void backward_dkdv(const Backward<S> &a, char *smem)
{
    M *Ks = (M *)smem, *Vs = Ks + BN * D, *Qs = Vs + BN * D, *Os = Qs + 2 * QM * D;  /* Q, dout: two stages */
    float *lse = (float *)(Os + 2 * QM * D), *dsum = lse + 2 * QM, *bias = dsum + 2 * QM;
    unsigned *word = (unsigned *)(bias + MAX_T);
    constexpr int DC = DKDV_COLS<D>;
    const int c0 = (int)blockIdx.x % (D / DC) * DC;  /* the block's columns of dK, dV */
    const Place pl = place(a.T, a.H, BN, (int)blockIdx.x / (D / DC));  /* row0: the block's first key */
    const int warp_id = (int)threadIdx.x / 32, lane = (int)threadIdx.x % 32;
    const int key = pl.row0 + warp_id * 16 + lane / 4;  /* this lane's keys: key, key + 8 */
    const size_t in = (size_t)pl.b * a.T * a.ldq + (size_t)pl.h * D, io = (size_t)pl.b * a.T * a.ldo + (size_t)pl.h * D;
    bool none;
    const unsigned tiles = key_tiles(a.mask + (size_t)pl.b * a.T, a.T, bias, word, &none);
    float dk[DC / 8][4] = {}, dv[DC / 8][4] = {};
    const float f[2] = {a.scale, a.scale}, one[2] = {1.0f, 1.0f};
    if (!(tiles >> (pl.row0 / BN) & 1)) {  /* no query attends to these keys: zero gradients */
        store_rows<S, DC>(a.dk + in + c0, a.ldq, dk, key, a.T, one, lane);
        store_rows<S, DC>(a.dv + in + c0, a.ldq, dv, key, a.T, one, lane);
        return;
    }
    const float *lse_bh = a.lse + (size_t)pl.bh * a.T, *dsum_bh = a.dsum + (size_t)pl.bh * a.T;
    /* One query tile into stage st: Q and dout, and their rows' lse (log2 domain; +inf
     * past T, so P = 0 there) and dsum. */
    auto load_queries = [&](int it, int to) {
        load_tile<S, M, D, QM>(Qs + to * QM * D, a.q + in, a.ldq, it * QM, a.T);
        load_tile<S, M, D, QM>(Os + to * QM * D, a.dout + io, a.ldo, it * QM, a.T);
        for (int t = threadIdx.x; t < QM; t += THREADS) {
            const int i = it * QM + t;
            lse[to * QM + t] = i < a.T ? lse_bh[i] * LOG2E : INFINITY;
            dsum[to * QM + t] = i < a.T ? dsum_bh[i] : 0.0f;
        }
    };
    load_tile<S, M, D, BN>(Ks, a.k + in, a.ldq, pl.row0, a.T);
    load_tile<S, M, D, BN>(Vs, a.v + in, a.ldq, pl.row0, a.T);
    load_queries(0, 0);
    warp::cp_async_commit();

    const int query_tiles = (a.T + QM - 1) / QM;
    for (int it = 0, stage = 0; it < query_tiles; it++, stage ^= 1) {
        if (it + 1 < query_tiles) load_queries(it + 1, stage ^ 1);
        warp::cp_async_commit();
        warp::cp_async_wait<1>();
        __syncthreads();
        const M *Q = Qs + stage * QM * D, *dO = Os + stage * QM * D;
        float st[QM / 8][4], dpt[QM / 8][4];
        gemm_abt<M, D, QM>(st, Ks, warp_id * 16, Q, lane);   /* S^T = K Q^T */
        gemm_abt<M, D, QM>(dpt, Vs, warp_id * 16, dO, lane);  /* dP'^T = V dO^T */
        /* the elements are (key, query): Philox index (bh T + query) T + key */
        const bool drop = a.drop.p > 0.0f;
        const uint32_t keep = drop ? keep_bits<QM>(a.drop, (uint64_t)pl.bh * a.T * a.T, 1, a.T, key,
                                                   it * QM + 2 * (lane & 3))
                                   : 0;
        QB_UNROLL
        for (int j = 0; j < QM / 8; j++)
            QB_UNROLL
            for (int e = 0; e < 4; e++) {
                const int h = e >> 1, t = 8 * j + 2 * (lane & 3) + (e & 1);
                const float x = (none ? 0.0f : st[j][e] * a.scale_log2) + bias[key + 8 * h];
                const float p = warp::exp2_fast(x - lse[stage * QM + t]);
                const float fd = drop ? kept(keep, j, e, a.drop_scale) : 1.0f;
                st[j][e] = p * fd;                                        /* P'^T */
                dpt[j][e] = p * (dpt[j][e] * fd - dsum[stage * QM + t]);  /* dS^T, without 1 / sqrt(D) */
            }
        uint32_t fa[QM / 16][4];
        as_a<M, QM>(fa, st);
        gemm_av<M, D, QM, DC>(dv, fa, dO, c0, lane);  /* dV += P'^T dO */
        as_a<M, QM>(fa, dpt);
        gemm_av<M, D, QM, DC>(dk, fa, Q, c0, lane);   /* dK += dS^T Q */
        __syncthreads();
    }
    store_rows<S, DC>(a.dk + in + c0, a.ldq, dk, key, a.T, f, lane);
    store_rows<S, DC>(a.dv + in + c0, a.ldq, dv, key, a.T, one, lane);
}

}  // namespace flash

#endif
