/* AVX2 dropout: Philox4x32-10 for 8 counters at once, the same mask as the scalar
 * qb_cpu_dropout_at (dropout.c) bit for bit. One Philox block gives the 4 words of
 * elements 4c .. 4c+3; 8 consecutive blocks (32 elements) run in the 8 lanes.
 * AVX2 has no 32 x 32 -> 64 multiply of all 8 lanes, so the even and odd lanes are
 * multiplied separately (vpmuludq) and their halves blended back together.
 * Compiled with -mavx2 -mfma; called only after a CPUID check. */
#include "cpu/cpu.h"

#include <immintrin.h>

/* hi, lo (8 lanes) = the high and low 32 bits of a * m, lane by lane. */
static void mulhilo(__m256i a, __m256i m, __m256i *hi, __m256i *lo)
{
    const __m256i even = _mm256_mul_epu32(a, m);
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/* x (32) *= the masks of blocks block .. block + 7. */
static void dropout32(float *x, uint64_t block, const qb_dropout *d, __m256 p, __m256 scale)
{
    /* Counter words: c0 = low 32 bits of the block index per lane (the 8 blocks never
     * straddle a 2^32 boundary unless block + 7 wraps, handled by the carry in c1). */
    __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32((int)(uint32_t)block),
                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i carry = _mm256_cmpgt_epi32(  /* unsigned c0 < low(block): wrapped */
        _mm256_xor_si256(_mm256_set1_epi32((int)(uint32_t)block), _mm256_set1_epi32(INT32_MIN)),
        _mm256_xor_si256(c0, _mm256_set1_epi32(INT32_MIN)));
    __m256i c1 = _mm256_sub_epi32(_mm256_set1_epi32((int)(uint32_t)(block >> 32)), carry);
    __m256i c2 = _mm256_set1_epi32((int)(uint32_t)d->stream);
    __m256i c3 = _mm256_set1_epi32((int)(uint32_t)(d->stream >> 32));
    uint32_t k0 = (uint32_t)d->seed, k1 = (uint32_t)(d->seed >> 32);
    const __m256i m0 = _mm256_set1_epi64x(0xD2511F53), m1 = _mm256_set1_epi64x(0xCD9E8D57);
    for (int r = 0; r < 10; r++) {
        __m256i hi0, lo0, hi1, lo1;
        mulhilo(c0, m0, &hi0, &lo0);
        mulhilo(c2, m1, &hi1, &lo1);
        c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32((int)k0));
        c1 = lo1;
        c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32((int)k1));
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    /* Words (c0..c3) of 8 blocks -> element order: block j's 4 words are elements 4j..4j+3. */
    const __m256i a = _mm256_unpacklo_epi32(c0, c1), b = _mm256_unpacklo_epi32(c2, c3);
    const __m256i e = _mm256_unpackhi_epi32(c0, c1), f = _mm256_unpackhi_epi32(c2, c3);
    const __m256i b04 = _mm256_unpacklo_epi64(a, b), b15 = _mm256_unpackhi_epi64(a, b);
    const __m256i b26 = _mm256_unpacklo_epi64(e, f), b37 = _mm256_unpackhi_epi64(e, f);
    const __m256i words[4] = {
        _mm256_permute2x128_si256(b04, b15, 0x20), _mm256_permute2x128_si256(b26, b37, 0x20),
        _mm256_permute2x128_si256(b04, b15, 0x31), _mm256_permute2x128_si256(b26, b37, 0x31)};
    const __m256 unit = _mm256_set1_ps(1.0f / 16777216.0f);
    for (int i = 0; i < 4; i++) {
        /* 24 random bits -> uniform in [0, 1), kept when >= p (as keep_scale in dropout.c) */
        const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(words[i], 8)), unit);
        const __m256 keep = _mm256_and_ps(_mm256_cmp_ps(u, p, _CMP_GE_OQ), scale);
        _mm256_storeu_ps(x + 8 * i, _mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), keep));
    }
}

void qb_dropout_avx2(float *x, size_t n, uint64_t first, const qb_dropout *d)
{
    /* Elements up to the first block boundary, and the tail, by the scalar code. */
    size_t head = (size_t)((4 - first % 4) % 4);
    if (head > n) head = n;
    qb_dropout_scalar(x, head, first, d);
    const __m256 p = _mm256_set1_ps(d->p), scale = _mm256_set1_ps(1.0f / (1.0f - d->p));
    size_t i = head;
    for (; i + 32 <= n; i += 32) dropout32(x + i, (first + i) / 4, d, p, scale);
    qb_dropout_scalar(x + i, n - i, first + i, d);
}
