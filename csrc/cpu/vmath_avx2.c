/* AVX2 loops over the transcendental functions of training: exact GELU forward and
 * backward, and a softmax row. erf and exp come from glibc's libmvec (the 8-lane
 * AVX2 variants _ZGVdN8v_erff / _ZGVdN8v_expf that GCC itself calls when it
 * vectorises erff / expf; linked through libm), accurate to a few ulp, 8 elements
 * a call instead of one scalar libm call each. The scalar versions beside each
 * caller (gelu.c, softmax.c) are the reference; tails shorter than a vector are
 * zero-padded into a full one, so every element takes the same vector code.
 * Compiled with -mavx2 -mfma; called only after a CPUID check. */
#include "cpu/cpu.h"

#include <immintrin.h>
#include <string.h>

__m256 _ZGVdN8v_erff(__m256 x);
__m256 _ZGVdN8v_expf(__m256 x);

/* exp(x), and exactly 0 where x < -87 (e^-87 is ~1.6e-38, at FLT_MIN): the argument
 * is clamped first so that no lane takes libmvec's slow scalar path for arguments
 * out of range (masked attention scores are -FLT_MAX). */
static __m256 exp_or_zero(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 e = _ZGVdN8v_expf(_mm256_max_ps(x, lo));
    return _mm256_andnot_ps(_mm256_cmp_ps(x, lo, _CMP_LT_OQ), e);
}

/* Loads n < 8 floats, zero-padded; stores n. */
static __m256 load_tail(const float *p, size_t n)
{
    float buf[8] = {0};
    memcpy(buf, p, n * sizeof *p);
    return _mm256_loadu_ps(buf);
}

static void store_tail(float *p, __m256 v, size_t n)
{
    float buf[8];
    _mm256_storeu_ps(buf, v);
    memcpy(p, buf, n * sizeof *p);
}

static __m256 gelu8(__m256 x)
{
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 e = _ZGVdN8v_erff(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    return _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, e));
}

/* dy * (Phi(x) + x phi(x)) */
static __m256 gelu_grad8(__m256 dy, __m256 x)
{
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256 cdf = _mm256_mul_ps(
        half, _mm256_add_ps(one, _ZGVdN8v_erff(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)))));
    const __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(0.3989422804014327f),
                                     exp_or_zero(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(-0.5f), x), x)));
    return _mm256_mul_ps(dy, _mm256_fmadd_ps(x, pdf, cdf));
}

void qb_gelu_avx2(float *y, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu8(_mm256_loadu_ps(x + i)));
    if (i < n) store_tail(y + i, gelu8(load_tail(x + i, n - i)), n - i);
}

void qb_gelu_backward_avx2(float *dx, const float *dy, const float *x, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dx + i, gelu_grad8(_mm256_loadu_ps(dy + i), _mm256_loadu_ps(x + i)));
    if (i < n)
        store_tail(dx + i, gelu_grad8(load_tail(dy + i, n - i), load_tail(x + i, n - i)), n - i);
}

/* r (n) = exp(r - max) / sum, the sum in double in lane order, n >= 1. */
void qb_softmax_row_avx2(float *r, int n)
{
    float mx = r[0];
    for (int j = 1; j < n; j++) mx = r[j] > mx ? r[j] : mx;
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int j = 0;
    for (; j < n; j += 8) {
        const size_t m = n - j < 8 ? (size_t)(n - j) : 8;
        const __m256 d = _mm256_sub_ps(m == 8 ? _mm256_loadu_ps(r + j) : load_tail(r + j, m), vmx);
        __m256 e = exp_or_zero(d);
        if (m < 8) {  /* padded lanes hold exp(0 - mx): keep them out of the sum */
            const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            e = _mm256_and_ps(e, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)m), lane)));
            store_tail(r + j, e, m);
        } else {
            _mm256_storeu_ps(r + j, e);
        }
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    const __m256 sum = _mm256_set1_ps((float)(lanes[0] + lanes[1] + lanes[2] + lanes[3]));
    for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(r + j, _mm256_div_ps(_mm256_loadu_ps(r + j), sum));
    if (j < n) store_tail(r + j, _mm256_div_ps(load_tail(r + j, (size_t)(n - j)), sum), (size_t)(n - j));
}
