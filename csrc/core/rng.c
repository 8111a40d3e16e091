/* Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3").
 * Counter-based: block `counter` of stream `seed` is computed directly, which is
 * what lets a GPU kernel reproduce the CPU's dropout masks later. */
#include "qbert/core.h"

#include <math.h>
#include <time.h>

void qb_philox4x32(uint64_t seed, uint64_t counter, uint64_t stream, uint32_t out[4])
{
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32);
    uint32_t c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void qb_rng_init(qb_rng *r, uint64_t seed)
{
    r->seed = seed;
    r->counter = 0;
    r->left = 0;
}

uint32_t qb_rng_u32(qb_rng *r)
{
    if (r->left == 0) {
        qb_philox4x32(r->seed, r->counter++, 0, r->buf);
        r->left = 4;
    }
    return r->buf[4 - r->left--];
}

float qb_rng_uniform(qb_rng *r) { return (float)(qb_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float qb_rng_normal(qb_rng *r, float mean, float std)
{
    /* Box-Muller on (0, 1]: 1 - u never reaches 0, so log() is finite. */
    double u1 = 1.0 - qb_rng_uniform(r), u2 = qb_rng_uniform(r);
    double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
    return mean + std * (float)z;
}

double qb_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
