/* The pipelined integer GEMM of the quantized Linears (mma.sync, sm_80 and later),
 * with their epilogue fused: the body, templated on the storage type Y of the output
 * (FP32, FP16, BF16). cuda/qlinear.cu launches it; tests/test_qgemm_emu.cpp runs this
 * very body on the host (tests/simt.h) against the CPU's scalar reference.
 *
 *   y (M, N) = epilogue(v (M, K) . w (N, K)^T), int8 operands, int32 sums,
 *
 * v the activations quantized per token (zero points zp, scales sx) or statically
 * (zp 0), w the weights: INT8 with a scale per output channel (group = K), or INT4
 * values widened to int8 with a scale per group of `group` columns (W4A8). The
 * epilogue is csrc/cpu/linear_q.c's, with its roundings (qb_mul_rn / qb_add_rn: no
 * FMA), so without GELU the output is the CPU reference's bits:
 *   INT8   y = (float)(S - zp colsum) * (sx sw) + b
 *   W4A8   f = sum over the groups in order of (float)(S_g - zp colsum_g) * sw_g,
 *          y = f * sx + b
 * then GELU when asked, rounded once to Y as it is stored.
 *
 * Tiles: a block of 4 warps owns BM x BN = 64 x 64 outputs, each warp 32 x 32 (2 x 4
 * tiles of mma.m16n8k32); K streams through shared memory in BK = 64 byte slices,
 * STAGES = 3 deep with cp.async, both operands row-major [row][k] and swizzled (the
 * 16-bit tile of cuda/warp.cuh with rows of 32 elements), their fragments loaded by
 * ldmatrix. W4A8 folds the int32 sums into float accumulators at each group's end
 * (group a multiple of 32, one or more mma k-steps). The int32 products never reach
 * memory: against cuBLASLt's IMMA GEMM plus an epilogue kernel this saves writing
 * and reading an int32 (M, N). Shapes: K a multiple of 16 (whole 16-byte chunks,
 * rows 16-byte aligned: ldv, ldw multiples of 16); M and N any. */
#ifndef QBERT_CUDA_QGEMM_CUH
#define QBERT_CUDA_QGEMM_CUH

#include "cuda/warp.cuh"

namespace qgemm {

constexpr int BM = 64, BN = 64, BK = 64, STAGES = 3, WARPS = 4, THREADS = 32 * WARPS;
constexpr int TILE = BM * BK;                   /* bytes of one operand's slice (BN = BM) */
constexpr int SMEM_BYTES = STAGES * 2 * TILE;   /* 24 KiB */
constexpr int ROW16 = BK / 2;                   /* a slice row in 16-bit elements (warp::tile_offset) */

template <typename Y> struct Args {
    Y *y;                  /* (M, N) */
    const int8_t *v;       /* (M, ldv) */
    const float *sx;       /* (M) */
    const int32_t *zp;     /* (M) */
    const int8_t *w;       /* (N, ldw) */
    const int32_t *colsum; /* (N, groups): the sum of w over each group */
    const float *sw;       /* (N, groups) */
    const float *b;        /* (N) or NULL */
    int M, N, K, ldv, ldw, group, gelu;
};

/* y = a * s + b with the CPU's two roundings, then GELU when asked. */
QB_HD float finish(float a, float s, float b, int gelu)
{
    const float y = qb_add_rn(qb_mul_rn(a, s), b);
    return gelu ? qb_gelu(y) : y;
}

/* f += (float)(S_g - zp colsum_g) * sw_g: group g's term of output (m, n), in the CPU's
 * roundings (every W4A8 kernel adds its groups in order through this). */
QB_HD float add_group(float f, int32_t s, int m, int n, int g, int groups, const int32_t *zp, const int32_t *colsum,
                      const float *sw)
{
    const size_t at = (size_t)n * groups + g;
    return qb_add_rn(f, qb_mul_rn((float)(s - zp[m] * colsum[at]), sw[at]));
}

/* Whether the kernel takes the shape: K in whole 16-byte chunks, W4A8 groups in whole
 * mma k-steps. */
QB_HD bool fits(int K, int ldv, int ldw, int group)
{
    return K % 16 == 0 && ldv % 16 == 0 && ldw % 16 == 0 && (group == K || group % 32 == 0);
}

/* Slice kt of both operands into stage `at` of shared memory: row r, chunk c (16
 * bytes) of each, zero past M, N and K (cp.async zero fill). */
template <typename Y> QB_DEV void load(const Args<Y> &a, char *at, int m0, int n0, int kt)
{
    for (int i = threadIdx.x; i < BM * (BK / 16); i += THREADS) {
        const int r = i / (BK / 16), c = i % (BK / 16), k = kt * BK + 16 * c;
        const int off = 2 * warp::tile_offset<ROW16>(r, 8 * c);
        const bool in_m = m0 + r < a.M && k < a.K, in_n = n0 + r < a.N && k < a.K;
        warp::cp_async16(at + off, in_m ? a.v + (size_t)(m0 + r) * a.ldv + k : (const void *)a.v, in_m);
        warp::cp_async16(at + TILE + off, in_n ? a.w + (size_t)(n0 + r) * a.ldw + k : (const void *)a.w, in_n);
    }
}

/* The block's 64 x 64 outputs (block index bm * ceil(N / BN) + bn); smem SMEM_BYTES,
 * 16-byte aligned. Grouped: W4A8 (a.group < a.K), else INT8. */
template <typename Y, bool Grouped> QB_DEV void gemm(const Args<Y> &a, char *smem, int block)
{
    const int lane = threadIdx.x % 32, warp_id = threadIdx.x / 32, g4 = lane / 4, t4 = lane % 4;
    const int bns = (a.N + BN - 1) / BN, m0 = block / bns * BM, n0 = block % bns * BN;
    const int wm = 32 * (warp_id / 2), wn = 32 * (warp_id % 2);  /* the warp's 32 x 32 in the block's */
    const int kts = (a.K + BK - 1) / BK, groups = a.K / a.group;
    /* The row and column in y of element e of the warp's mma tile (i, j). */
    const auto row = [&](int i, int e) { return m0 + wm + 16 * i + g4 + 8 * (e / 2); };
    const auto col = [&](int j, int e) { return n0 + wn + 8 * j + 2 * t4 + e % 2; };
    int32_t d[2][4][4] = {};
    float f[2][4][4] = {};  /* W4A8: the groups folded so far (unused, so dropped, for INT8) */

    for (int s = 0; s < STAGES - 1; s++) {
        if (s < kts) load(a, smem + s * 2 * TILE, m0, n0, s);
        warp::cp_async_commit();
    }
    for (int kt = 0; kt < kts; kt++) {
        warp::cp_async_wait<STAGES - 2>();  /* slice kt has landed (for this thread) ... */
        __syncthreads();                    /* ... for every thread, and slice kt - 1 is read */
        if (kt + STAGES - 1 < kts) load(a, smem + (kt + STAGES - 1) % STAGES * 2 * TILE, m0, n0, kt + STAGES - 1);
        warp::cp_async_commit();
        const char *as = smem + kt % STAGES * 2 * TILE, *bs = as + TILE;
        QB_UNROLL
        for (int kk = 0; kk < BK / 32; kk++) {  /* 32 k per mma: 16 elements of the 16-bit view */
            uint32_t af[2][4], bf[4][2];
            QB_UNROLL
            for (int i = 0; i < 2; i++) {
                int r, c;
                warp::a_rows(lane, wm + 16 * i, 16 * kk, &r, &c);
                warp::ldmatrix4<false>(af[i], as + 2 * warp::tile_offset<ROW16>(r, c));
            }
            QB_UNROLL
            for (int jp = 0; jp < 2; jp++) {  /* two n-tiles per ldmatrix */
                int r, c;
                uint32_t q[4];
                warp::b_rows(lane, wn + 16 * jp, 16 * kk, &r, &c);
                warp::ldmatrix4<false>(q, bs + 2 * warp::tile_offset<ROW16>(r, c));
                bf[2 * jp][0] = q[0], bf[2 * jp][1] = q[1], bf[2 * jp + 1][0] = q[2], bf[2 * jp + 1][1] = q[3];
            }
            QB_UNROLL
            for (int i = 0; i < 2; i++)
                QB_UNROLL
                for (int j = 0; j < 4; j++) warp::mma_s8(d[i][j], af[i], bf[j][0], bf[j][1]);
            const int kend = kt * BK + 32 * (kk + 1);  /* the k the sums reach */
            if (Grouped && kend % a.group == 0 && kend <= a.K) {
                const int g = kend / a.group - 1;
                QB_UNROLL
                for (int i = 0; i < 2; i++)
                    QB_UNROLL
                    for (int j = 0; j < 4; j++)
                        QB_UNROLL
                        for (int e = 0; e < 4; e++) {
                            const int m = row(i, e), n = col(j, e);
                            if (m < a.M && n < a.N)
                                f[i][j][e] = add_group(f[i][j][e], d[i][j][e], m, n, g, groups, a.zp, a.colsum, a.sw);
                            d[i][j][e] = 0;
                        }
            }
        }
    }

    /* The epilogue, two adjacent columns at a time (one store when they are in y and
     * aligned: N even). */
    QB_UNROLL
    for (int i = 0; i < 2; i++)
        QB_UNROLL
        for (int j = 0; j < 4; j++)
            QB_UNROLL
            for (int h = 0; h < 2; h++) {
                const int m = row(i, 2 * h), n = col(j, 2 * h);
                if (m >= a.M || n >= a.N) continue;
                float out[2];
                for (int e = 0; e < 2; e++) {
                    const int ne = n + e < a.N ? n + e : n, at = 2 * h + e;
                    const float bias = a.b ? a.b[ne] : 0.0f;
                    out[e] = Grouped ? finish(f[i][j][at], a.sx[m], bias, a.gelu)
                                     : finish((float)(d[i][j][at] - a.zp[m] * a.colsum[ne]),
                                              qb_mul_rn(a.sx[m], a.sw[ne]), bias, a.gelu);
                }
                Y *p = a.y + (size_t)m * a.N + n;
                if (n + 1 < a.N && a.N % 2 == 0) {
                    warp::store2(p, out[0], out[1]);
                } else {
                    p[0] = qb_from_float<Y>(out[0]);
                    if (n + 1 < a.N) p[1] = qb_from_float<Y>(out[1]);
                }
            }
}

}  // namespace qgemm

#endif
