/* The CUDA fake-quant ops and observer statistics against the CPU backend's on fresh
 * random inputs, bit for bit (both compute the same float operations in the same
 * order): fake_quant_weight at 4 and 8 bits, per channel (group = K, also a K that is
 * not a multiple of 32) and per group of 64 / 32, with an all-zero row, a row of
 * exact rounding ties, and y aliasing w; fake_quant and fake_quant_backward with
 * values exactly on the clip boundaries and at ties, in place too; minmax and
 * abs_percentile (p = 50, 99.9, 100) on mixed, positive-only, negative-only and
 * all-zero x, and with a NaN or an infinity present (whatever the CPU gives), into
 * device memory; observe folding runs of statistics (min / max and EMA). */
#include "cuda_check.h"

static int rand_int(int lo, int hi)
{
    return lo + (int)(qb_rng_u32(&cuda_rng) % (unsigned)(hi - lo + 1));
}

static void check_fake_quant_weight(int bits, int N, int K, int group)
{
    char what[128], part[160];
    snprintf(what, sizeof what, "fake_quant_weight bits=%d N=%d K=%d group=%d", bits, N, K, group);
    const int groups = K / group;
    const size_t n = (size_t)N * K, ns = (size_t)N * groups;
    const float qmax = (float)((1 << (bits - 1)) - 1);
    float *w = rand_host(n, -0.2f, 0.2f), *y = host_alloc(n * sizeof *y), *scales = host_alloc(ns * sizeof *scales);
    memset(w + K, 0, (size_t)K * sizeof *w);  /* row 1: all zero */
    /* Row 2: each group's absmax is qmax * s with s a power of two, so s and 1 / s are
     * exact and the other values, (j + 0.5) s, land exactly on rounding ties. */
    const float s = 0.015625f;
    float *tie = w + 2 * (size_t)K;
    for (int k = 0; k < K; k++) tie[k] = ((float)rand_int((int)-qmax, (int)qmax - 1) + 0.5f) * s;
    for (int g = 0; g < groups; g++) tie[g * group] = (g & 1 ? -qmax : qmax) * s;

    float *g_w = dev_from(w, n * sizeof *w), *g_y = dev_from(NULL, n * sizeof *y);
    float *g_s = dev_from(NULL, ns * sizeof *scales);
    cpu->fake_quant_weight(NULL, y, scales, w, N, K, group, bits);
    gpu->fake_quant_weight(NULL, g_y, g_s, g_w, N, K, group, bits);
    snprintf(part, sizeof part, "%s: y", what);
    check_equal(part, g_y, y, n * sizeof *y);
    snprintf(part, sizeof part, "%s: scales", what);
    check_equal(part, g_s, scales, ns * sizeof *scales);

    /* In place: y aliasing w. */
    gpu->zero(NULL, g_s, ns * sizeof *scales);
    gpu->fake_quant_weight(NULL, g_w, g_s, g_w, N, K, group, bits);
    snprintf(part, sizeof part, "%s: in place", what);
    check_equal(part, g_w, y, n * sizeof *y);
    snprintf(part, sizeof part, "%s: in place scales", what);
    check_equal(part, g_s, scales, ns * sizeof *scales);
    free(w), free(y), free(scales);
    gpu->free(g_w), gpu->free(g_y), gpu->free(g_s);
}

/* x (n >= 18): the clip boundaries and their neighbourhoods at scale s first, then random
 * values over the clip range and 20 steps past it, every third one an exact multiple
 * (k + 0.5) s (a tie when s is a power of two). */
static float *act_input(size_t n, float s, int bits)
{
    const float qmax = (float)((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
    const float edge[] = {qmax * s,          qmin * s,           (qmax + 0.5f) * s, (qmin - 0.5f) * s,
                          (qmax + 0.49f) * s, (qmin - 0.51f) * s, (qmax - 0.5f) * s, (qmin + 0.5f) * s,
                          2.5f * s,          -3.5f * s,          0.5f * s,          -0.5f * s,
                          0.0f,              1e30f,              -1e30f,            INFINITY,
                          -INFINITY,         NAN};
    const size_t ne = sizeof edge / sizeof edge[0];
    float *x = rand_host(n, (qmin - 20) * s, (qmax + 20) * s);
    memcpy(x, edge, sizeof edge);
    for (size_t i = ne; i < n; i += 3) x[i] = ((float)rand_int((int)qmin - 3, (int)qmax + 2) + 0.5f) * s;
    return x;
}

static void check_fake_quant(int bits, float s, size_t n)
{
    char what[128], part[160];
    snprintf(what, sizeof what, "fake_quant bits=%d s=%a n=%zu", bits, (double)s, n);
    float *x = act_input(n, s, bits), *dy = rand_host(n, -1, 1);
    float *y = host_alloc(n * sizeof *y), *dx = host_alloc(n * sizeof *dx);
    float *g_x = dev_from(x, n * sizeof *x), *g_dy = dev_from(dy, n * sizeof *dy);
    float *g_y = dev_from(NULL, n * sizeof *y), *g_dx = dev_from(NULL, n * sizeof *dx), *g_s = dev_from(&s, sizeof s);
    cpu->fake_quant(NULL, y, x, n, &s, bits);
    cpu->fake_quant_backward(NULL, dx, dy, x, n, &s, bits);

    gpu->fake_quant(NULL, g_y, g_x, n, g_s, bits);
    snprintf(part, sizeof part, "%s: y", what);
    check_equal(part, g_y, y, n * sizeof *y);
    gpu->fake_quant_backward(NULL, g_dx, g_dy, g_x, n, g_s, bits);
    snprintf(part, sizeof part, "%s: backward dx", what);
    check_equal(part, g_dx, dx, n * sizeof *dx);

    /* In place: dx aliasing dy, then y aliasing x (x last: the backward reads it). */
    gpu->fake_quant_backward(NULL, g_dy, g_dy, g_x, n, g_s, bits);
    snprintf(part, sizeof part, "%s: backward in place", what);
    check_equal(part, g_dy, dx, n * sizeof *dx);
    gpu->fake_quant(NULL, g_x, g_x, n, g_s, bits);
    snprintf(part, sizeof part, "%s: in place", what);
    check_equal(part, g_x, y, n * sizeof *y);
    free(x), free(dy), free(y), free(dx);
    gpu->free(g_x), gpu->free(g_dy), gpu->free(g_y), gpu->free(g_dx), gpu->free(g_s);
}

enum { MIXED, POSITIVE, NEGATIVE, ZERO, WITH_NAN, WITH_INF, KINDS };
static const char *const kind_names[KINDS] = {"mixed", "positive", "negative", "all-zero", "a NaN", "an inf"};

static float *stat_input(size_t n, int kind)
{
    float *x = kind == POSITIVE   ? rand_host(n, 0.5f, 4.0f)
               : kind == NEGATIVE ? rand_host(n, -5.0f, -0.5f)
                                  : rand_host(n, -3.0f, 5.0f);
    if (kind == ZERO) memset(x, 0, n * sizeof *x);
    if (kind == WITH_NAN) x[n / 2] = NAN;
    if (kind == WITH_INF) x[n / 2] = -INFINITY;
    return x;
}

static void check_statistics(size_t n, int kind)
{
    float *x = stat_input(n, kind), want[2], got[2];
    float *g_x = dev_from(x, n * sizeof *x), *g_out = dev_from(NULL, sizeof got);
    cpu->minmax(NULL, want, x, n);
    gpu->minmax(NULL, g_out, g_x, n);
    gpu->to_host(NULL, got, g_out, sizeof got);
    CHECKF(memcmp(got, want, sizeof got) == 0, "minmax n=%zu %s: got %a %a, CPU %a %a", n, kind_names[kind],
           (double)got[0], (double)got[1], (double)want[0], (double)want[1]);
    static const double ps[] = {50.0, 99.9, 100.0};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        cpu->abs_percentile(NULL, want, x, n, ps[i]);
        gpu->abs_percentile(NULL, g_out, g_x, n, ps[i]);
        gpu->to_host(NULL, got, g_out, sizeof got);
        CHECKF(memcmp(got, want, sizeof got) == 0, "abs_percentile n=%zu %s p=%g: got %a %a, CPU %a %a", n,
               kind_names[kind], ps[i], (double)got[0], (double)got[1], (double)want[0], (double)want[1]);
    }
    free(x);
    gpu->free(g_x), gpu->free(g_out);
}

/* observe: a run of batch statistics folded by min / max (ema 0) and by EMA, from
 * an unobserved (NaN) range, with non-finite batches that must change nothing; the
 * range and the scale after each fold, bit for bit. */
static void check_observe(float ema, int bits)
{
    float range[2] = {NAN, NAN}, scale, got[3];
    float *g = dev_from(range, sizeof range), *g_scale = dev_from(NULL, sizeof scale);
    float *g_batch = dev_from(NULL, 2 * sizeof(float));
    for (int i = 0; i < 40; i++) {
        float batch[2] = {-qb_rng_uniform(&cuda_rng) * 8, qb_rng_uniform(&cuda_rng) * 8};
        if (i % 7 == 3) batch[i % 2] = i % 3 ? NAN : INFINITY;
        if (i == 0) batch[0] = batch[1] = 0.0f;  /* a zero range: scale 1 */
        gpu->to_device(NULL, g_batch, batch, sizeof batch);
        cpu->observe(NULL, range, &scale, batch, ema, bits);
        gpu->observe(NULL, g, g_scale, g_batch, ema, bits);
        gpu->to_host(NULL, got, g, 2 * sizeof(float));
        gpu->to_host(NULL, got + 2, g_scale, sizeof(float));
        CHECKF(memcmp(got, range, sizeof range) == 0 && memcmp(got + 2, &scale, sizeof scale) == 0,
               "observe ema=%g bits=%d fold %d: got %a %a scale %a, CPU %a %a scale %a", ema, bits, i,
               (double)got[0], (double)got[1], (double)got[2], (double)range[0], (double)range[1], (double)scale);
    }
    gpu->free(g), gpu->free(g_scale), gpu->free(g_batch);
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_fake_quant")) return QB_TEST_SKIPPED;
    static const int weights[][4] = {
        /* bits, N, K, group */
        {8, 64, 768, 768}, {4, 64, 768, 768},  {8, 5, 100, 100},  {4, 7, 33, 33},   {8, 3, 3072, 3072},
        {4, 16, 128, 64},  {8, 16, 128, 64},   {4, 9, 96, 32},    {8, 9, 96, 32},   {4, 768, 768, 32},
    };
    for (size_t c = 0; c < sizeof weights / sizeof weights[0]; c++)
        check_fake_quant_weight(weights[c][0], weights[c][1], weights[c][2], weights[c][3]);

    for (int bits = 4; bits <= 8; bits += 4) {
        check_fake_quant(bits, 0.0625f, 100003);
        check_fake_quant(bits, 0.01f + qb_rng_uniform(&cuda_rng), 100003);
        check_fake_quant(bits, 0.0625f, 20);
    }

    /* 3000017: more than one pass of the reductions' grid-stride loops. */
    static const size_t sizes[] = {1, 5, 100003, 3000017};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int kind = 0; kind < KINDS; kind++) check_statistics(sizes[i], kind);
    for (int bits = 4; bits <= 8; bits += 4) {
        check_observe(0.0f, bits);
        check_observe(0.01f, bits);
        check_observe(0.3f, bits);
    }

    CHECKF(qb_cuda_sync(NULL) == QB_OK, "pending CUDA error: %s", qb_error());
    return check_summary("test_cuda_fake_quant");
}
