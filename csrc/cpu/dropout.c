/* Dropout masks from Philox (see qb_dropout in backend/backend.h): element i of a
 * site uses word i % 4 of the block Philox4x32(seed, counter = (i / 4, stream)).
 * The same call applies the mask forward (to activations) and backward (to their
 * gradients): nothing is stored between the two passes. With AVX2, dropout_avx2.c
 * draws 8 blocks at once and gives the same mask bit for bit. */
#include "cpu/cpu.h"

/* Below this many elements a thread team costs more than it saves. */
#define PAR_MIN 16384

static inline float keep_scale(uint32_t r, float p, float scale)
{
    /* 24 random bits, the same uniform as qb_rng_uniform. */
    return (float)(r >> 8) * (1.0f / 16777216.0f) >= p ? scale : 0.0f;
}

void qb_dropout_scalar(float *x, size_t n, uint64_t first, const qb_dropout *d)
{
    const float scale = 1.0f / (1.0f - d->p);
    uint32_t r[4];
    uint64_t block = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const uint64_t idx = first + i;
        if (idx / 4 != block) {
            block = idx / 4;
            qb_philox4x32(d->seed, block, d->stream, r);
        }
        x[i] *= keep_scale(r[idx % 4], d->p, scale);
    }
}

void qb_cpu_dropout_at(float *x, size_t n, uint64_t first, const qb_dropout *d)
{
    if (!d || d->p <= 0.0f) return;
    qb_dropout r = *d;  /* the stream as it is now (offset: in backend memory, here the host's) */
    if (r.offset) r.stream += *r.offset, r.offset = NULL;
    if (qb_cpu_isa() != QB_ISA_SCALAR)
        qb_dropout_avx2(x, n, first, &r);
    else
        qb_dropout_scalar(x, n, first, &r);
}

void qb_cpu_dropout(float *x, size_t n, const qb_dropout *d)
{
    if (!d || d->p <= 0.0f) return;
    const size_t chunk = 4096;  /* a multiple of 4: no Philox block spans two chunks */
    const long chunks = (long)((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (n >= PAR_MIN)
    for (long c = 0; c < chunks; c++) {
        const size_t lo = (size_t)c * chunk, len = n - lo < chunk ? n - lo : chunk;
        qb_cpu_dropout_at(x + lo, len, lo, d);
    }
}
