/* The tensor-core attention kernels (cuda/flash_attention.cuh), their very bodies,
 * run lane by lane on the host (tests/simt.h emulates ldmatrix, mma.m16n8k16, the
 * shuffles and the barriers as the PTX ISA defines them) against the CPU backend's
 * attention with the same BF16 / FP16 products, on fresh random inputs: out, the
 * log-sum-exp, and dq, dk, dv from the kernels' own out and lse, relative L2 <= 1e-2
 * (shared/DESIGN.md). Outputs are poisoned (NaN) first, so an element left unwritten
 * fails; shared memory is poisoned before each block, so a read of a tile that was
 * never loaded fails too; and no ldmatrix may meet a bank conflict (the swizzle). This runs on every machine (no GPU needed): it checks the
 * fragment layouts, the swizzle, the tile pipeline, the online softmax, the masks
 * (padding tails, skipped key tiles, a fully padded sequence), dropout and both
 * backward kernels before any of them runs on a GPU; test_cuda_attention checks the
 * same on the GPU itself. Storage: FP32 (the reference mode with BF16 / FP16 products) and
 * the operand type itself (half-precision activations), q, k, v in their own buffers
 * and as the thirds of one fused QKV product. Shapes: T = 1, T = 512, T off the tiles,
 * D = 32, 64, 128 (whose dK, dV take two blocks). */
#include "simt.h"

#include "check.h"
#include "backend/backend.h"
#include "cuda/flash_attention.cuh"

#include <math.h>
#include <time.h>

static qb_rng rng;

struct Case {
    int B, T, H, D;
    qb_math math;      /* BF16 or FP16 */
    bool half_store;   /* q, k, v, out and the gradients in the operand type, not FP32 */
    bool train;        /* lse and the backward */
    float p;           /* dropout */
    bool fused;        /* q, k, v (and their gradients) the thirds of one (B, T, 3 H D) buffer */
};

static std::vector<float> random_floats(size_t n, float lo, float hi)
{
    std::vector<float> x(n);
    for (float &v : x) v = lo + (hi - lo) * qb_rng_uniform(&rng);
    return x;
}

/* A buffer of storage type S holding x (rounded to S; x takes the rounded values,
 * what the CPU reference then reads), or poisoned (NaN) when x is NULL. */
template <typename S> static std::vector<S> storage(std::vector<float> *x, size_t n)
{
    std::vector<S> s(n);
    if (!x) {
        memset((void *)s.data(), 0xFF, n * sizeof(S));
        return s;
    }
    for (size_t i = 0; i < n; i++) {
        s[i] = qb_from_float<S>((*x)[i]);
        (*x)[i] = qb_to_float(s[i]);
    }
    return s;
}

template <typename S> static std::vector<float> floats(const std::vector<S> &s)
{
    std::vector<float> x(s.size());
    for (size_t i = 0; i < s.size(); i++) x[i] = qb_to_float(s[i]);
    return x;
}

/* The (B T, C) slice at element off of rows of ld. */
static std::vector<float> slice(const std::vector<float> &x, size_t off, size_t rows, size_t C, size_t ld)
{
    std::vector<float> r(rows * C);
    for (size_t i = 0; i < rows; i++) memcpy(&r[i * C], &x[off + i * ld], C * 4);
    return r;
}

static void check_close(const char *what, const std::vector<float> &got, const std::vector<float> &ref, double tol)
{
    const double e = rel_l2(got.data(), ref.data(), ref.size());
    CHECKF(e <= tol && !isnan(e), "%s: relative L2 error %.3g > %.1g", what, e, tol);
}

template <typename S, typename M, int D> static void run(const Case &c)
{
    const int B = c.B, T = c.T, H = c.H, C = H * D, ld = c.fused ? 3 * C : C;
    const size_t n = (size_t)B * T * C, nl = (size_t)B * H * T, rows = (size_t)B * T;
    /* q, k, v in one buffer: three (B T, C) blocks, or (fused) the thirds of its rows */
    const size_t off[3] = {0, c.fused ? (size_t)C : n, c.fused ? 2 * (size_t)C : 2 * n};
    char what[128], part[160];
    snprintf(what, sizeof what, "flash %s store=%s B=%d T=%d H=%d D=%d train=%d p=%g%s", qb_math_name(c.math),
             c.half_store ? "half" : "fp32", B, T, H, D, c.train, c.p, c.fused ? " fused qkv" : "");
    const clock_t t0 = clock();
    std::vector<float> qkv = random_floats(3 * n, -2, 2), dout = random_floats(n, -1, 1);
    std::vector<int32_t> mask((size_t)B * T);
    /* the first sequence with a padded tail (whole key tiles of it at T >= 192), the
     * last (B >= 2) fully padded, the others of random length */
    for (int b = 0; b < B; b++) {
        const int len = B >= 2 && b == B - 1 ? 0 : b == 0 ? T - T / 3 : 1 + (int)(qb_rng_u32(&rng) % T);
        for (int t = 0; t < T; t++) mask[(size_t)b * T + t] = t < len;
    }
    std::vector<S> sqkv = storage<S>(&qkv, 3 * n), sdout = storage<S>(&dout, n), sout = storage<S>(NULL, n);
    std::vector<float> lse(nl), g_lse(nl);
    memset(g_lse.data(), 0xFF, nl * 4);
    const qb_dropout drop = {c.p, qb_rng_u32(&rng), 5, nullptr};
    const float scale_log2 = (float)(1.4426950408889634 / sqrt((double)D)), drop_scale = 1.0f / (1.0f - c.p);

    std::vector<float> out(n);
    const qb_backend *cpu = qb_backend_cpu();
    const float *q = &qkv[off[0]], *k = &qkv[off[1]], *v = &qkv[off[2]];
    cpu->attention(NULL, out.data(), c.train ? lse.data() : NULL, q, k, v, ld, mask.data(), &drop, B, T, H, D, c.math,
                   QB_F32);
    const flash::Forward<S> fa = {&sqkv[off[0]], &sqkv[off[1]], &sqkv[off[2]], sout.data(), c.train ? g_lse.data() : NULL,
                                  mask.data(), T, H, ld, C, scale_log2, drop, drop_scale};
    const unsigned query_blocks = (unsigned)(B * H * ((T + flash::BM - 1) / flash::BM));
    simt::launch(query_blocks, flash::THREADS, flash::forward_bytes<D>(),
                 [&](char *smem) { flash::forward<S, M, D>(fa, smem); });
    std::vector<float> g_out = floats(sout);
    snprintf(part, sizeof part, "%s: out", what);
    check_close(part, g_out, out, 1e-2);
    if (c.train) {
        for (int b = 0; b < B - (B >= 2); b++) {  /* the fully padded sequence's lse is the kernel's own */
            const size_t o = (size_t)b * H * T;
            const double e = rel_l2(g_lse.data() + o, lse.data() + o, (size_t)H * T);
            CHECKF(e <= 1e-2 && !isnan(e), "%s: lse of sequence %d: relative L2 error %.3g", what, b, e);
        }
        std::vector<float> dqkv(3 * n), dsum(nl);
        cpu->attention_backward(NULL, &dqkv[off[0]], &dqkv[off[1]], &dqkv[off[2]], dout.data(), q, k, v, ld,
                                out.data(), lse.data(), mask.data(), &drop, B, T, H, D, c.math, QB_F32);
        std::vector<S> sdqkv = storage<S>(NULL, 3 * n);
        const flash::Backward<S> ba = {&sqkv[off[0]],  &sqkv[off[1]],  &sqkv[off[2]],  sout.data(), sdout.data(),
                                       &sdqkv[off[0]], &sdqkv[off[1]], &sdqkv[off[2]], g_lse.data(), dsum.data(),
                                       mask.data(),    T,              H,              ld,           C,
                                       scale_log2, (float)(1.0 / sqrt((double)D)), drop, drop_scale};
        simt::launch(query_blocks, flash::THREADS, flash::dq_bytes<D>(),
                     [&](char *smem) { flash::backward_dq<S, M, D>(ba, smem); });
        const unsigned key_blocks = (unsigned)(B * H * ((T + flash::BN - 1) / flash::BN) * (D / flash::DKDV_COLS<D>));
        simt::launch(key_blocks, flash::THREADS, flash::dkdv_bytes<D>(),
                     [&](char *smem) { flash::backward_dkdv<S, M, D>(ba, smem); });
        const std::vector<float> g_dqkv = floats(sdqkv);
        for (int i = 0; i < 3; i++) {
            snprintf(part, sizeof part, "%s: d%c", what, "qkv"[i]);
            check_close(part, slice(g_dqkv, off[i], rows, (size_t)C, (size_t)ld), slice(dqkv, off[i], rows, (size_t)C,
                        (size_t)ld), 1e-2);
        }
    }
    printf("%s: %.1f s\n", what, (double)(clock() - t0) / CLOCKS_PER_SEC);
}

template <typename M, int D> static void run_store(const Case &c)
{
    if (c.half_store) run<M, M, D>(c);
    else run<float, M, D>(c);
}

template <int D> static void run_math(const Case &c)
{
    if (c.math == QB_MATH_BF16) run_store<__nv_bfloat16, D>(c);
    else run_store<__half, D>(c);
}

int main()
{
    qb_rng_init(&rng, check_seed());
    static const Case cases[] = {
        {2, 1, 1, 64, QB_MATH_BF16, false, true, 0.0f, false},    /* T = 1 */
        {3, 45, 1, 64, QB_MATH_BF16, false, true, 0.1f, false},   /* a fully padded sequence, dropout */
        {1, 77, 2, 32, QB_MATH_FP16, false, true, 0.0f, false},   /* D = 32 */
        {2, 70, 2, 64, QB_MATH_BF16, true, true, 0.1f, false},    /* half storage (cp.async) */
        {2, 70, 2, 64, QB_MATH_BF16, true, true, 0.1f, true},     /* q, k, v the thirds of one QKV product */
        {1, 130, 1, 128, QB_MATH_FP16, true, true, 0.1f, false},  /* D = 128: dK, dV in two blocks */
        {2, 200, 1, 64, QB_MATH_FP16, false, false, 0.0f, false}, /* inference; a skipped key tile */
        {1, 512, 1, 64, QB_MATH_BF16, true, true, 0.0f, false},   /* T = 512: tiles 6, 7 skipped */
    };
    for (const Case &c : cases) {
        switch (c.D) {
        case 32: run_math<32>(c); break;
        case 64: run_math<64>(c); break;
        default: run_math<128>(c); break;
        }
    }
    CHECKF(simt::st.ldmatrix_conflicts == 0, "%ld ldmatrix reads with shared-memory bank conflicts",
           simt::st.ldmatrix_conflicts);
    return check_summary("test_flash_emu");
}
