/* The pipelined integer GEMM of the quantized Linears (cuda/qgemm.cuh), its very body,
 * run lane by lane on the host (tests/simt.h emulates ldmatrix, mma.m16n8k32 on INT8,
 * cp.async and the barriers as the PTX ISA defines them) against the CPU's scalar
 * reference of the quantized Linear (an unprepared qb_qlinear on the CPU backend), on
 * fresh random weights, scales and per-token quantized inputs: INT8 (one scale per
 * channel) and W4A8 (INT4 values widened to int8, a scale per group of 32, 64 or 128
 * columns), with and without bias and GELU, output stored in FP32, BF16 and FP16.
 * Without GELU the output must be the reference's bits (rounded once to the storage
 * type); with GELU within 1e-6 (FP32; host erff on both sides) or 1e-3 (half: a
 * last-bit flip of a few elements). Outputs are poisoned (NaN) first, so an element
 * left unwritten fails; shared memory is poisoned before each block, so a read of a
 * slice never loaded fails; no ldmatrix may meet a bank conflict. Shapes: M = 1, M and
 * N off the 64 x 64 blocks and the 16 x 8 mma tiles, N = 3 (the classifier), K off
 * the 64-byte slices (K = 80, 144), odd N (stored one element at a time). This runs on
 * every machine; test_cuda_qlinear checks the same kernel on a GPU. */
#include "simt.h"

#include "check.h"
#include "backend/backend.h"
#include "cpu/cpu.h"
#include "cuda/qgemm.cuh"
#include "qbert/quant.h"

#include <math.h>
#include <vector>

static qb_rng rng;

struct Case {
    int M, N, K, group;  /* group == K: INT8 */
    bool bias, gelu;
};

static float uniform(float lo, float hi) { return lo + (hi - lo) * qb_rng_uniform(&rng); }

template <typename Y> static void run(const Case &c)
{
    const int M = c.M, N = c.N, K = c.K, bits = c.group == K ? 8 : 4, groups = K / c.group;
    char what[160];
    snprintf(what, sizeof what, "qgemm %s M=%d N=%d K=%d group=%d bias=%d gelu=%d %s", bits == 8 ? "INT8" : "W4A8", M,
             N, K, c.group, c.bias, c.gelu, sizeof(Y) == 4 ? "F32" : std::is_same<Y, __half>::value ? "F16" : "BF16");
    /* the Linear: random integers in its range, scales per channel or group */
    std::vector<int8_t> wq((size_t)N * K);
    std::vector<float> scales((size_t)N * groups), bias(N), x((size_t)M * K);
    for (int8_t &w : wq) w = (int8_t)(bits == 8 ? (int)(qb_rng_u32(&rng) % 256) - 128 : (int)(qb_rng_u32(&rng) % 16) - 8);
    for (float &s : scales) s = uniform(1e-3f, 2e-2f);
    for (float &b : bias) b = uniform(-1, 1);
    for (int m = 0; m < M; m++)  /* some rows skewed (all positive), so the zero points vary */
        for (int k = 0; k < K; k++) x[(size_t)m * K + k] = m % 3 == 1 ? uniform(0.5f, 3) : uniform(-3, 3);
    qb_qlinear q = {};
    q.bits = bits, q.N = N, q.K = K, q.group = c.group, q.wq = wq.data(), q.scales = scales.data();
    qb_qinput xq;
    if (qb_qinput_alloc(&xq, M, K)) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    qb_qinput_quantize(&xq, x.data());
    std::vector<float> ref((size_t)M * N);
    qb_backend_cpu()->linear_q(NULL, ref.data(), NULL, NULL, &xq, &q, c.bias ? bias.data() : NULL, M, c.gelu, QB_F32);

    std::vector<int32_t> colsum((size_t)N * groups, 0);
    for (size_t i = 0; i < wq.size(); i++) colsum[i / c.group] += wq[i];
    std::vector<Y> y((size_t)M * N);
    memset((void *)y.data(), 0xFF, y.size() * sizeof(Y));
    const qgemm::Args<Y> a = {y.data(), (const int8_t *)xq.u, xq.scale, xq.zp, wq.data(), colsum.data(), scales.data(),
                              c.bias ? bias.data() : NULL, M, N, K, xq.ldu, K, c.group, c.gelu};
    CHECKF(qgemm::fits(K, xq.ldu, K, c.group), "%s: a shape the kernel takes", what);
    const unsigned blocks = (unsigned)(((M + qgemm::BM - 1) / qgemm::BM) * ((N + qgemm::BN - 1) / qgemm::BN));
    simt::launch(blocks, qgemm::THREADS, qgemm::SMEM_BYTES, [&](char *smem) {
        if (bits == 8) qgemm::gemm<Y, false>(a, smem, (int)simt::block_idx.x);
        else qgemm::gemm<Y, true>(a, smem, (int)simt::block_idx.x);
    });
    /* the reference as the kernel stores it, and the kernel's output as floats */
    std::vector<float> stored(ref.size()), got(ref.size());
    for (size_t i = 0; i < ref.size(); i++) stored[i] = qb_to_float(qb_from_float<Y>(ref[i])), got[i] = qb_to_float(y[i]);
    if (c.gelu) {
        const double e = rel_l2(got.data(), stored.data(), got.size()), tol = sizeof(Y) == 4 ? 1e-6 : 1e-3;
        CHECKF(e <= tol && !isnan(e), "%s: relative L2 error %.3g > %.1g", what, e, tol);
    } else {
        size_t bad = 0;
        for (size_t i = 0; i < got.size(); i++) bad += memcmp(&got[i], &stored[i], 4) != 0;
        CHECKF(bad == 0, "%s: %zu of %zu outputs differ from the reference's bits", what, bad, got.size());
    }
    qb_qinput_free(&xq);
}

int main()
{
    qb_rng_init(&rng, check_seed());
    static const Case cases[] = {
        {1, 3, 768, 768, true, false},     /* one token, the classifier's 3 outputs */
        {70, 130, 192, 192, true, false},  /* M, N off the blocks; INT8 */
        {65, 67, 144, 144, false, true},   /* odd N, K off the slices, GELU */
        {33, 64, 80, 80, true, true},      /* K = 80: a slice a quarter full */
        {128, 96, 768, 64, true, false},   /* W4A8, BERT's group */
        {40, 72, 256, 128, false, false},  /* W4A8, group 128: two mma k-steps per slice */
        {17, 40, 96, 32, true, true},      /* W4A8, group 32: a fold per k-step; GELU */
    };
    for (const Case &c : cases) {
        run<float>(c);
        run<__nv_bfloat16>(c);
        run<__half>(c);
    }
    CHECKF(simt::st.ldmatrix_conflicts == 0, "%ld ldmatrix reads with shared-memory bank conflicts",
           simt::st.ldmatrix_conflicts);
    return check_summary("test_qgemm_emu");
}
