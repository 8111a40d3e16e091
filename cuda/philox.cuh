/* The dropout bits of csrc/core/rng.c and csrc/cpu/dropout.c for device code: the
 * Philox4x32-10 block, the keep rule and the per-element factor, so that a mask drawn
 * on the GPU equals the CPU's for the same seed, stream and index. Host-compilable as
 * well (QB_HD): the tensor-core kernels' bodies also run in the host emulation of
 * tests/simt.h, against the CPU reference. */
#ifndef QBERT_CUDA_PHILOX_CUH
#define QBERT_CUDA_PHILOX_CUH

#include <stdint.h>

#include "backend/backend.h"
#include "cuda/portable.cuh"

/* The high word of a 32 x 32-bit product (mul.hi on the device). */
QB_HD uint32_t qb_mulhi(uint32_t a, uint32_t b)
{
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return (uint32_t)(((uint64_t)a * b) >> 32);
#endif
}

/* Block `counter` of stream `stream` under key `seed`: qb_philox4x32 of rng.c; out
 * receives its four words. */
QB_HD void qb_philox(uint64_t seed, uint64_t counter, uint64_t stream, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
QB_UNROLL
    for (int r = 0; r < 10; r++) {
        const uint32_t hi0 = qb_mulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        const uint32_t hi1 = qb_mulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0, c1 = lo1, c2 = n2, c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* The keep rule of csrc/cpu/dropout.c (keep_scale): scale when the 24-bit uniform of
 * Philox word w is >= p, else 0. */
QB_HD float qb_dropout_keep(uint32_t w, float p, float scale)
{
    return (float)(w >> 8) * (1.0f / 16777216.0f) >= p ? scale : 0.0f;
}

/* The stream of a site: d.stream, plus *d.offset when the step's streams come from
 * device memory (qb_dropout in backend.h). */
QB_HD uint64_t qb_dropout_stream(const qb_dropout &d) { return d.offset ? d.stream + *d.offset : d.stream; }

/* The dropout factor of element `idx` of a site (qb_dropout in backend.h): word idx % 4
 * of block idx / 4, times scale = 1 / (1 - d.p) (the caller's, so that it is computed
 * once). One Philox block per element: for scattered indices; runs of indices use
 * qb_dropout_block. Callers check p > 0 first. */
QB_HD float qb_dropout_factor(const qb_dropout &d, uint64_t idx, float scale)
{
    uint32_t w[4];
    qb_philox(d.seed, idx / 4, qb_dropout_stream(d), w);
    const unsigned i = (unsigned)(idx & 3);  /* a select, not w[i]: that would put w in local memory */
    return qb_dropout_keep(i == 0 ? w[0] : i == 1 ? w[1] : i == 2 ? w[2] : w[3], d.p, scale);
}

/* x[idx - first] *= the dropout factor of idx, for the indices of Philox block g
 * (4 g .. 4 g + 3) that lie in [first, first + n): one draw for four elements. scale is
 * 1 / (1 - d.p). */
QB_HD void qb_dropout_block(float *x, uint64_t first, uint64_t n, const qb_dropout &d, float scale, uint64_t g)
{
    uint32_t w[4];
    qb_philox(d.seed, g, qb_dropout_stream(d), w);
QB_UNROLL
    for (int i = 0; i < 4; i++) {
        const uint64_t idx = 4 * g + i;
        if (idx >= first && idx < first + n) x[idx - first] *= qb_dropout_keep(w[i], d.p, scale);
    }
}

#endif
