/* Quantization tests: the fake-quant ops of QAT (forward and clipped straight-through
 * backward) against direct formulas written here, on random inputs and on values
 * exactly at the clip boundaries and rounding ties; the STE against finite
 * differences of its rounding-free surrogate; the observers' min/max; the per-token
 * activation quantizer (7 bits with a zero point, the u8 tiles' layout); INT4
 * per-group quantization and nibble packing; the INT8 GEMMs (16-bit tile, and every
 * u8 tile the CPU has: AVX2, AVX-VNNI, AVX-512 VNNI) and the W4A8 GEMM, every SIMD
 * path bit-identical to the scalar reference, which is checked against exact
 * integer sums computed here.
 * Inputs are fresh random numbers each run; QBERT_TEST_SEED=N replays a run. */
#include "check.h"

#include <math.h>
#include <string.h>

#include "backend/backend.h"
#include "cpu/cpu.h"
#include "qbert/core.h"
#include "qbert/quant.h"

static qb_rng rng;

static float *rand_floats(size_t n, float lo, float hi)
{
    float *p = malloc((n ? n : 1) * sizeof *p);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * qb_rng_uniform(&rng);
    return p;
}

/* The formula of the ops, written out: clamp(rint(x * (1/s)), qmin, qmax) * s. */
static float direct_q(float x, float s, int bits)
{
    const double qmax = (1 << (bits - 1)) - 1, qmin = -qmax - 1;
    double q = nearbyint((double)(x * (1.0f / s)));
    q = q < qmin ? qmin : q > qmax ? qmax : q;
    return (float)(q * s);
}

static void test_fake_quant_weight(void)
{
    const qb_backend *be = qb_backend_cpu();
    const int cases[][4] = {{8, 768, 768, 768}, {8, 5, 33, 33}, {4, 16, 128, 64}, {4, 3, 64, 64},
                            {4, 7, 96, 32}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const int bits = cases[c][0], N = cases[c][1], K = cases[c][2], G = cases[c][3];
        const int groups = K / G;
        const size_t n = (size_t)N * K;
        float *w = rand_floats(n, -0.2f, 0.2f), *y = malloc(n * sizeof *y);
        float *scales = malloc((size_t)N * groups * sizeof *scales);
        memset(w, 0, (size_t)G * sizeof *w);  /* an all-zero group */
        be->fake_quant_weight(NULL, y, scales, w, N, K, G, bits);
        const float qmax = (float)((1 << (bits - 1)) - 1);
        int bad = 0, levels_ok = 1;
        for (int r = 0; r < N; r++) {
            for (int g = 0; g < groups; g++) {
                const float *wg = w + (size_t)r * K + (size_t)g * G, *yg = y + (size_t)r * K + (size_t)g * G;
                float amax = 0.0f;
                for (int k = 0; k < G; k++) amax = fmaxf(amax, fabsf(wg[k]));
                const float s = amax / qmax;
                bad += scales[(size_t)r * groups + g] != s;
                for (int k = 0; k < G; k++) {
                    const float want = s == 0.0f ? 0.0f : direct_q(wg[k], s, bits);
                    bad += yg[k] != want;
                    /* on the grid, and within half a step of w */
                    if (s > 0.0f) {
                        const double q = yg[k] / s;
                        /* half a step, plus float rounding of w * (1/s) and of q s at ties */
                        levels_ok &= fabs(q - nearbyint(q)) < 1e-3 && fabs(q) <= qmax + 1e-3 &&
                                     fabs(yg[k] - wg[k]) <= 0.5 * s * (1 + 1e-4);
                    }
                }
            }
        }
        CHECKF(bad == 0, "fake_quant_weight bits=%d N=%d K=%d group=%d: %d mismatches", bits, N,
               K, G, bad);
        CHECKF(levels_ok, "fake_quant_weight bits=%d N=%d K=%d group=%d: off the grid", bits, N, K, G);
        CHECK(scales[0] == 0.0f && y[0] == 0.0f && y[G - 1] == 0.0f);
        /* in place */
        be->fake_quant_weight(NULL, w, scales, w, N, K, G, bits);
        CHECK(memcmp(w, y, n * sizeof *w) == 0);
        free(w), free(y), free(scales);
    }
}

static void test_fake_quant_act(void)
{
    const qb_backend *be = qb_backend_cpu();
    for (int bits = 4; bits <= 8; bits += 4) {
        const float qmax = (float)((1 << (bits - 1)) - 1), qmin = -qmax - 1.0f;
        /* A power-of-two scale makes x * (1/s) exact, so the boundary values below are
         * exactly where they claim to be. */
        const float s = 0.0625f;
        const float edge[] = {qmax * s,          qmin * s,          (qmax + 0.5f) * s,
                              (qmin - 0.5f) * s, (qmax + 0.49f) * s, (qmin - 0.51f) * s,
                              2.5f * s,          -3.5f * s,          0.0f, 1e30f, -1e30f};
        /* q = rint(x / s): qmax, qmin, qmax + 1 (tie to even: 128 or 8 -> outside),
         * qmin (tie -128.5 -> -128, -8.5 -> -8: inside), qmax, qmin - 1, 2, -4, 0, out, out */
        const int passes[] = {1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0};
        const size_t ne = sizeof edge / sizeof edge[0], n = 10000 + ne;
        float *x = rand_floats(n, (qmin - 20) * s, (qmax + 20) * s), *dy = rand_floats(n, -1, 1);
        memcpy(x, edge, sizeof edge);
        float *y = malloc(n * sizeof *y), *dx = malloc(n * sizeof *dx);
        be->fake_quant(NULL, y, x, n, &s, bits);
        be->fake_quant_backward(NULL, dx, dy, x, n, &s, bits);
        int bad = 0, bad_grad = 0;
        for (size_t i = 0; i < n; i++) {
            bad += y[i] != direct_q(x[i], s, bits);
            const double q = nearbyint((double)x[i] / s);
            const float want = q >= qmin && q <= qmax ? dy[i] : 0.0f;
            bad_grad += dx[i] != want;
        }
        CHECKF(bad == 0, "fake_quant bits=%d: %d mismatches", bits, bad);
        CHECKF(bad_grad == 0, "fake_quant_backward bits=%d: %d mismatches", bits, bad_grad);
        for (size_t i = 0; i < ne; i++)
            CHECKF((dx[i] == dy[i]) == passes[i], "bits=%d edge %zu (x/s = %g): gradient %s", bits,
                   i, (double)(edge[i] / s), passes[i] ? "blocked" : "passed");
        CHECK(y[0] == qmax * s && y[1] == qmin * s && y[2] == qmax * s && y[6] == 2.0f * s &&
              y[7] == -4.0f * s && y[9] == qmax * s && y[10] == qmin * s);

        /* A random, non-power-of-two scale too. */
        const float s2 = 0.01f + qb_rng_uniform(&rng);
        for (size_t i = 0; i < n; i++) x[i] = (qmin - 10) * s2 + (qmax - qmin + 20) * s2 * qb_rng_uniform(&rng);
        be->fake_quant(NULL, y, x, n, &s2, bits);
        bad = 0;
        for (size_t i = 0; i < n; i++) bad += y[i] != direct_q(x[i], s2, bits);
        CHECKF(bad == 0, "fake_quant bits=%d s=%g: %d mismatches", bits, s2, bad);
        /* in place */
        memcpy(dx, x, n * sizeof *dx);
        be->fake_quant(NULL, dx, dx, n, &s2, bits);
        CHECK(memcmp(dx, y, n * sizeof *y) == 0);
        free(x), free(dy), free(y), free(dx);
    }
}

/* The STE is the gradient of the rounding-free surrogate of q: clamp(x, lo, hi) with
 * lo = (qmin - 1/2) s and hi = (qmax + 1/2) s, the interval where rint(x / s) is in
 * range. Compare with central differences of L = sum c_i clamp(x_i) at points away
 * from the surrogate's kinks. */
static void test_ste_finite_differences(void)
{
    const qb_backend *be = qb_backend_cpu();
    const int bits = 8, n = 2000;
    const float s = 0.03f, lo = -128.5f * s, hi = 127.5f * s;
    const double h = 1e-3;
    float *x = rand_floats(n, 2 * lo, 2 * hi), *c = rand_floats(n, -1, 1), *dx = malloc(n * sizeof *dx);
    for (int i = 0; i < n; i++)
        if (fabs(x[i] - lo) < 2 * h || fabs(x[i] - hi) < 2 * h) x[i] = 0.5f * x[i];
    be->fake_quant_backward(NULL, dx, c, x, n, &s, bits);
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        const double xp = fmin(fmax(x[i] + h, lo), hi), xm = fmin(fmax(x[i] - h, lo), hi);
        const double fd = c[i] * (xp - xm) / (2 * h);
        worst = fmax(worst, fabs(fd - dx[i]));
    }
    CHECKF(worst < 1e-6, "STE vs finite differences: worst |diff| %.3g", worst);
    free(x), free(c), free(dx);
}

static void test_minmax(void)
{
    const qb_backend *be = qb_backend_cpu();
    const size_t sizes[] = {1, 17, 100003};
    for (size_t si = 0; si < 3; si++) {
        const size_t n = sizes[si];
        float *x = rand_floats(n, -3, 5), out[2];
        float lo = x[0], hi = x[0];
        for (size_t i = 1; i < n; i++) lo = fminf(lo, x[i]), hi = fmaxf(hi, x[i]);
        be->minmax(NULL, out, x, n);
        CHECKF(out[0] == lo && out[1] == hi, "minmax n=%zu: got %g %g, want %g %g", n, out[0],
               out[1], lo, hi);
        free(x);
    }
}

static int8_t *rand_s8(size_t n, int lo, int hi)
{
    int8_t *p = malloc(n ? n : 1);
    if (!p) exit(1);
    for (size_t i = 0; i < n; i++) p[i] = (int8_t)(lo + (int)(qb_rng_u32(&rng) % (unsigned)(hi - lo + 1)));
    return p;
}

/* Mismatches of the 7-bit per-token quantizer's output a (for x (M, K)) against the
 * formula, written directly: u, the scale, the zero point, |dequantized - x| <= s / 2,
 * u = zp past K, zero padding rows. */
static int u7_mismatches(const qb_qinput *a, const float *x)
{
    const int M = a->M, K = a->K;
    const size_t ldu = (size_t)a->ldu;
    int bad = 0;
    for (int m = 0; m < M; m++) {
        float lo = 0.0f, hi = 0.0f;
        for (int k = 0; k < K; k++) lo = fminf(lo, x[m * K + k]), hi = fmaxf(hi, x[m * K + k]);
        const float s = (hi - lo) / 127.0f, inv = s > 0.0f ? 1.0f / s : 0.0f;
        const int z = s > 0.0f ? (int)fminf(fmaxf(nearbyintf(-lo * inv), 0.0f), 127.0f) : 0;
        bad += a->scale[m] != s || a->zp[m] != z;
        const uint8_t *u = a->u + m * ldu;
        for (int k = 0; k < K; k++) {
            const float v = x[m * K + k];
            const int want = (int)fminf(fmaxf(nearbyintf(v * inv) + (float)z, 0.0f), 127.0f);
            bad += u[k] != want || (s > 0.0f && fabsf((float)(u[k] - z) * s - v) > 0.5001f * s);
        }
        for (size_t k = (size_t)K; k < ldu; k++) bad += u[k] != z;
    }
    for (size_t i = (size_t)M * ldu; i < (size_t)qb_qinput_rows(M) * ldu; i++) bad += a->u[i] != 0;
    return bad;
}

/* Random LayerNorm inputs: rows with a residual, mean and spread varying by row. */
static float *ln_input(int M, int C)
{
    float *x = rand_floats((size_t)M * C, -2, 2);
    for (int m = 0; m < M; m++)
        for (int c = 0; c < C; c++) x[(size_t)m * C + c] = x[(size_t)m * C + c] * (float)(1 + m % 3) + (float)(m % 5);
    return x;
}

/* The 7-bit per-token quantizer, scalar and AVX2, against the formula on row lengths
 * around the 16-value step of the SIMD loop (ldu past K: 0 to 3 bytes), and fused into
 * the LayerNorm: the same bits as quantizing the LayerNorm's output afterwards. */
static void test_quantize_rows_u7(void)
{
    static const int Ks[] = {300, 7, 16, 23, 33};
    enum { M = 8 };
    for (size_t t = 0; t < sizeof Ks / sizeof *Ks; t++) {
        const int K = Ks[t];
        float *x = rand_floats((size_t)M * K, -3, 3);
        memset(x + 2 * K, 0, K * sizeof *x);                            /* a zero row: scale 0 */
        x[3 * K + 5] = 10.0f;                                            /* an outlier sets its row's range */
        for (int k = 0; k < K; k++) x[5 * K + k] = fabsf(x[5 * K + k]);  /* all >= 0: zero point 0 */
        for (int k = 0; k < K; k++) x[6 * K + k] = -fabsf(x[6 * K + k]); /* all <= 0: zero point 127 */
        /* scale 1 with zero point 27 (range [-27, 100]), and two ties, to even */
        for (int k = 0; k < K; k++) x[4 * K + k] = 0.0f;
        x[4 * K] = -27.0f, x[4 * K + 1] = 100.0f;
        if (K > 3) x[4 * K + 2] = 2.5f, x[4 * K + 3] = -3.5f;
        qb_qinput a, fused;
        CHECK(qb_qinput_alloc(&a, M, K) == QB_OK && qb_qinput_alloc(&fused, M, K) == QB_OK);
        const size_t bytes = (size_t)qb_qinput_rows(M) * a.ldu;
        float *y = ln_input(M, K), *out = malloc((size_t)M * K * sizeof *out), *res = rand_floats((size_t)M * K, -1, 1);
        float *g = rand_floats(K, 0.5f, 1.5f), *bias = rand_floats(K, -0.5f, 0.5f);
        for (int isa = QB_ISA_SCALAR; isa <= QB_ISA_AVX2; isa++) {
            if (!qb_cpu_isa_available((qb_isa)isa)) continue;
            qb_cpu_set_isa((qb_isa)isa);
            memset(a.u, 99, bytes);
            qb_qinput_quantize(&a, x);
            const uint8_t *u = a.u;
            const size_t ldu = (size_t)a.ldu;
            CHECKF(u7_mismatches(&a, x) == 0, "quantize_rows_u7 %s K=%d", qb_isa_name(qb_cpu_isa()), K);
            CHECK(a.scale[2] == 0.0f && a.zp[2] == 0 && u[2 * ldu] == 0 && a.zp[5] == 0 && a.zp[6] == 127);
            CHECK(a.scale[4] == 1.0f && a.zp[4] == 27 && u[4 * ldu] == 0 && u[4 * ldu + 1] == 127);
            if (K > 3) CHECK(u[4 * ldu + 2] == 27 + 2 && u[4 * ldu + 3] == 27 - 4);
            /* fused into the LayerNorm (with a residual, and without) */
            for (int r = 0; r < 2; r++) {
                memset(fused.u, 99, bytes);
                qb_cpu_layernorm(out, NULL, NULL, &fused, y, r ? res : NULL, g, bias, M, K, 1e-12f);
                qb_qinput_quantize(&a, out);
                CHECKF(memcmp(a.u, fused.u, bytes) == 0 && memcmp(a.scale, fused.scale, M * sizeof *a.scale) == 0 &&
                           memcmp(a.zp, fused.zp, M * sizeof *a.zp) == 0,
                       "layernorm %s K=%d residual %d: the fused quantization differs", qb_isa_name(qb_cpu_isa()), K, r);
                CHECKF(u7_mismatches(&fused, out) == 0, "layernorm %s K=%d: fused quantization", qb_isa_name(qb_cpu_isa()), K);
            }
        }
        qb_cpu_set_isa(qb_cpu_isa_resolve(NULL));
        qb_qinput_free(&a), qb_qinput_free(&fused);
        free(x), free(y), free(out), free(res), free(g), free(bias);
    }
}

/* The static 8-bit quantizer (qb_quantize_tensor_s8, and the row form of the qb_qinput
 * for static W4A8), scalar and AVX2, against the formula: ties to even, both clip
 * ends, NaN and infinities (NaN goes to -128, as the clamps order it), lengths around
 * the 16-value SIMD step and across the threads' chunks; and the qb_qinput's shift. */
static void test_quantize_s8(void)
{
    static const size_t ns[] = {1, 15, 16, 17, 33, 40000};
    const float scale = 0.05f, inv = 1.0f / scale;
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++) {
        const size_t n = ns[t];
        float *x = rand_floats(n, -8, 8);
        for (size_t i = 0; i < n; i += 7) x[i] = ((float)(i % 9) - 4.5f) * scale;  /* ties */
        if (n > 5) x[1] = NAN, x[2] = INFINITY, x[3] = -INFINITY, x[4] = 127.5f * scale, x[5] = -128.5f * scale;
        int8_t *q = malloc(n);
        for (int isa = QB_ISA_SCALAR; isa <= QB_ISA_AVX2; isa++) {
            if (!qb_cpu_isa_available((qb_isa)isa)) continue;
            qb_cpu_set_isa((qb_isa)isa);
            memset(q, 99, n);
            qb_quantize_tensor_s8(q, x, n, scale);
            int bad = 0;
            for (size_t i = 0; i < n; i++) {
                const float r = isnan(x[i]) ? -128.0f : fminf(fmaxf(nearbyintf(x[i] * inv), -128.0f), 127.0f);
                bad += q[i] != (int8_t)r;
            }
            CHECKF(bad == 0, "quantize_tensor_s8 %s n=%zu: %d differ from the formula", qb_isa_name(qb_cpu_isa()), n, bad);
            if (n > 5) CHECK(q[1] == -128 && q[2] == 127 && q[3] == -128 && q[4] == 127 && q[5] == -128);
        }
        if (n <= 40) {  /* as a static W4A8 input: u = q + 128, zp = 128, padded */
            qb_qinput a;
            CHECK(qb_qinput_alloc(&a, 2, (int)n) == QB_OK);
            float *x2 = malloc(2 * n * sizeof *x2);
            memcpy(x2, x, n * sizeof *x), memcpy(x2 + n, x, n * sizeof *x);
            qb_qinput_quantize_static(&a, x2, scale);
            int bad = 0;
            for (int m = 0; m < 2; m++) {
                bad += a.zp[m] != 128 || a.scale[m] != scale;
                for (size_t i = 0; i < n; i++) bad += a.u[m * a.ldu + i] != q[i] + 128;
                for (size_t i = n; i < (size_t)a.ldu; i++) bad += a.u[m * a.ldu + i] != 128;
            }
            CHECKF(bad == 0, "qinput_quantize_static n=%zu: %d wrong", n, bad);
            qb_qinput_free(&a);
            free(x2);
        }
        qb_cpu_set_isa(qb_cpu_isa_resolve(NULL));
        free(x), free(q);
    }
}

/* One shape: the scalar reference against exact sums, then every other path against
 * the reference bit for bit (GELU: within 1e-6, the erf differs). */
static void check_gemm_s8(int M, int N, int K, int extreme)
{
    int8_t *xq = extreme ? rand_s8((size_t)M * K, -128, -127) : rand_s8((size_t)M * K, -127, 127);
    int8_t *wq = extreme ? rand_s8((size_t)N * K, -128, -128) : rand_s8((size_t)N * K, -127, 127);
    float *sx = rand_floats(M, 0.001f, 0.1f), *sw = rand_floats(N, 0.001f, 0.1f);
    float *b = rand_floats(N, -1, 1);
    float *ref = malloc((size_t)M * N * sizeof *ref), *y = malloc((size_t)M * N * sizeof *y);
    float *ref_g = malloc((size_t)M * N * sizeof *ref_g);
    qb_gemm_s8_scalar(ref, xq, sx, wq, sw, b, M, N, K, 0);
    int bad = 0;
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            long long acc = 0;
            for (int k = 0; k < K; k++) acc += (long long)xq[(size_t)m * K + k] * wq[(size_t)n * K + k];
            bad += ref[(size_t)m * N + n] != (float)acc * (sx[m] * sw[n]) + b[n];
        }
    }
    CHECKF(bad == 0, "gemm_s8 scalar M=%d N=%d K=%d: %d differ from exact sums", M, N, K, bad);
    qb_gemm_s8_scalar(ref_g, xq, sx, wq, sw, NULL, M, N, K, 1);
    if (qb_cpu_isa_available(QB_ISA_AVX2)) {
        qb_s8_packed wp;
        CHECK(qb_s8_pack(&wp, wq, N, K) == QB_OK);
        qb_gemm_s8_avx2(y, xq, sx, &wp, sw, b, M, N, K, 0);
        CHECKF(memcmp(y, ref, (size_t)M * N * sizeof *y) == 0, "gemm_s8 avx2 M=%d N=%d K=%d: not bit-identical", M, N, K);
        qb_gemm_s8_avx2(y, xq, sx, &wp, sw, NULL, M, N, K, 1);
        double e = 0.0;
        for (size_t i = 0; i < (size_t)M * N; i++) e = fmax(e, fabs(y[i] - ref_g[i]) / fmax(1.0, fabs(ref_g[i])));
        CHECKF(e <= 1e-6, "gemm_s8 avx2 + gelu M=%d N=%d K=%d: max rel diff %.3g", M, N, K, e);
        qb_s8_packed_free(&wp);
    }
    free(xq), free(wq), free(sx), free(sw), free(b), free(ref), free(y), free(ref_g);
}

static void test_gemm_s8(void)
{
    static const int Ms[] = {1, 5, 6, 7, 13, 128};
    static const int Ns[] = {1, 15, 16, 17, 100};
    static const int Ks[] = {1, 2, 3, 31, 64, 769};
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++)
            for (size_t d = 0; d < sizeof Ks / sizeof Ks[0]; d++) check_gemm_s8(Ms[a], Ns[c], Ks[d], 0);
    check_gemm_s8(64, 768, 768, 0);
    check_gemm_s8(3, 40, 3072, 1);  /* -128 x -128 everywhere: the largest sums, no overflow */
    if (!qb_cpu_isa_available(QB_ISA_AVX2)) printf("gemm_s8: no AVX2 on this CPU, SIMD path skipped\n");
}

/* A random quantized input for M x K: u in [ulo, uhi] (zero padding rows), zero
 * points in [zlo, zhi]; *q (M, K) = u - zp, the reference's integers. */
static qb_qinput rand_qinput(int M, int K, int ulo, int uhi, int zlo, int zhi, int8_t **q)
{
    qb_qinput a;
    CHECK(qb_qinput_alloc(&a, M, K) == QB_OK);
    for (size_t i = 0; i < (size_t)M * a.ldu; i++) a.u[i] = (uint8_t)(ulo + (int)(qb_rng_u32(&rng) % (unsigned)(uhi - ulo + 1)));
    qb_qinput_pad(&a);
    *q = malloc((size_t)M * K + 1);
    for (int m = 0; m < M; m++) {
        a.zp[m] = zlo + (int)(qb_rng_u32(&rng) % (unsigned)(zhi - zlo + 1));
        a.scale[m] = 0.001f + 0.1f * (float)(qb_rng_u32(&rng) % 1000) / 1000.0f;
        for (int k = 0; k < K; k++) (*q)[(size_t)m * K + k] = (int8_t)(a.u[(size_t)m * a.ldu + k] - a.zp[m]);
    }
    return a;
}

/* The dynamic INT8 path on one shape: u in [ulo, uhi] with random zero points in
 * [zlo, zhi] per row, through every u8 tile this CPU runs, against the s8 reference
 * on q = u - zp bit for bit (GELU: within 1e-6). */
static void check_gemm_u8(int M, int N, int K, int ulo, int uhi, int zlo, int zhi, int wlo, int whi)
{
    int8_t *wq = rand_s8((size_t)N * K, wlo, whi), *xq;
    qb_qinput x = rand_qinput(M, K, ulo, uhi, zlo, zhi, &xq);
    float *sw = rand_floats(N, 0.001f, 0.1f), *b = rand_floats(N, -1, 1);
    float *ref = malloc((size_t)M * N * sizeof *ref), *ref_g = malloc((size_t)M * N * sizeof *ref_g);
    float *y = malloc((size_t)M * N * sizeof *y);
    qb_u8_packed wp;
    CHECK(qb_u8_pack(&wp, wq, N, K) == QB_OK);
    qb_gemm_s8_scalar(ref, xq, x.scale, wq, sw, b, M, N, K, 0);
    qb_gemm_s8_scalar(ref_g, xq, x.scale, wq, sw, NULL, M, N, K, 1);
    const qb_u8_kernel *kerns[3];
    const int nk = qb_u8_kernels(kerns, 3);
    for (int i = 0; i < nk; i++) {
        memset(y, 0, (size_t)M * N * sizeof *y);
        qb_gemm_u8(kerns[i], y, &x, &wp, sw, b, N, 0);
        CHECKF(memcmp(y, ref, (size_t)M * N * sizeof *y) == 0, "gemm_u8 %s M=%d N=%d K=%d: not bit-identical",
               kerns[i]->name, M, N, K);
        qb_gemm_u8(kerns[i], y, &x, &wp, sw, NULL, N, 1);
        double e = 0.0;
        for (size_t j = 0; j < (size_t)M * N; j++) e = fmax(e, fabs(y[j] - ref_g[j]) / fmax(1.0, fabs(ref_g[j])));
        CHECKF(e <= 1e-6, "gemm_u8 %s + gelu M=%d N=%d K=%d: max rel diff %.3g", kerns[i]->name, M, N, K, e);
    }
    qb_u8_packed_free(&wp);
    qb_qinput_free(&x);
    free(xq), free(wq), free(sw), free(b), free(ref), free(ref_g), free(y);
}

static void test_gemm_u8(void)
{
    static const int Ms[] = {1, 5, 6, 7, 8, 9, 13, 128};
    static const int Ns[] = {1, 15, 16, 17, 100};
    static const int Ks[] = {1, 2, 3, 4, 5, 31, 64, 769};
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++)
            for (size_t d = 0; d < sizeof Ks / sizeof Ks[0]; d++)
                check_gemm_u8(Ms[a], Ns[c], Ks[d], 0, 127, 0, 127, -128, 127);
    check_gemm_u8(64, 768, 768, 0, 127, 0, 127, -128, 127);
    /* the largest pair sums the 16-bit step sees, u = 127 against -128 and against 127,
     * with the largest zero-point terms (z = 127, q = 0 and q = -127) */
    check_gemm_u8(9, 40, 3072, 127, 127, 0, 0, -128, -128);
    check_gemm_u8(9, 40, 3072, 127, 127, 127, 127, 127, 127);
    check_gemm_u8(9, 40, 3072, 0, 0, 127, 127, -128, -128);
    const qb_u8_kernel *kerns[3];
    const int nk = qb_u8_kernels(kerns, 3);
    printf("gemm_u8: tiles run:");
    for (int i = 0; i < nk; i++) printf(" %s", kerns[i]->name);
    printf("%s\n", nk ? "" : " none (no AVX2)");
}

static void test_int4_format(void)
{
    /* Packing: every value of [-8, 7], odd and even counts, low nibble first. */
    int8_t q[33], back[33];
    uint8_t packed[17];
    for (int i = 0; i < 33; i++) q[i] = (int8_t)(i % 16 - 8);
    for (size_t n = 0; n <= 33; n++) {
        memset(packed, 0xAA, sizeof packed);
        qb_int4_pack(packed, q, n);
        qb_int4_unpack(back, packed, n);
        CHECKF(memcmp(q, back, n) == 0, "int4 pack/unpack n=%zu", n);
        if (n % 2) CHECKF((packed[n / 2] >> 4) == 0, "int4 pack n=%zu: odd tail's high nibble not 0", n);
    }
    qb_int4_pack(packed, (const int8_t[]){-8, 7}, 2);
    CHECK(packed[0] == 0x78);
    qb_int4_pack(packed, (const int8_t[]){-1, 1}, 2);
    CHECK(packed[0] == 0x1F);

    /* Per-group quantization = the fake-quant op with 4 bits, as integers. */
    const int N = 5, K = 128, G = 64;
    float *w = rand_floats((size_t)N * K, -1, 1), *fq = malloc((size_t)N * K * sizeof *fq);
    float sc[10], sc2[10];
    int8_t *qi = malloc((size_t)N * K);
    CHECK(qb_quantize_groups_s4(qi, sc, w, N, K, G) == QB_OK);
    qb_backend_cpu()->fake_quant_weight(NULL, fq, sc2, w, N, K, G, 4);
    int bad = memcmp(sc, sc2, sizeof sc) != 0;
    for (int i = 0; i < N * K; i++) bad += qi[i] < -8 || qi[i] > 7 || (float)qi[i] * sc[i / G] != fq[i];
    CHECKF(bad == 0, "quantize_groups_s4 vs fake_quant_weight: %d mismatches", bad);
    CHECK(qb_quantize_groups_s4(qi, sc, w, N, K, 48) == QB_EINVAL && strstr(qb_error(), "48"));
    CHECK(qb_quantize_groups_s4(qi, sc, w, N, K, 0) == QB_EINVAL);
    free(w), free(fq), free(qi);
}

/* W4A8 on one shape: the scalar reference on q = u - zp against exact sums, then the
 * AVX2 tile on u bit for bit; u and zp in [ulo, uhi] and [zlo, zhi] (the dynamic
 * 7-bit grid, or the static one: any u8 with zp = 128), weights in [wlo, whi]. */
static void check_gemm_s4(int M, int N, int K, int G, int ulo, int uhi, int zlo, int zhi, int wlo, int whi)
{
    const int groups = K / G;
    int8_t *wq = rand_s8((size_t)N * K, wlo, whi), *xq;
    qb_qinput x = rand_qinput(M, K, ulo, uhi, zlo, zhi, &xq);
    float *sw = rand_floats((size_t)N * groups, 0.001f, 0.1f), *b = rand_floats(N, -1, 1);
    float *ref = malloc((size_t)M * N * sizeof *ref), *y = malloc((size_t)M * N * sizeof *y);
    qb_gemm_s4_scalar(ref, xq, x.scale, wq, sw, b, M, N, K, G);
    int bad = 0;
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            float f = 0.0f;
            for (int g = 0; g < groups; g++) {
                long long acc = 0;
                for (int k = g * G; k < (g + 1) * G; k++) acc += (long long)xq[(size_t)m * K + k] * wq[(size_t)n * K + k];
                f += (float)acc * sw[(size_t)n * groups + g];
            }
            bad += ref[(size_t)m * N + n] != f * x.scale[m] + b[n];
        }
    }
    CHECKF(bad == 0, "gemm_s4 scalar M=%d N=%d K=%d G=%d: %d differ from exact sums", M, N, K, G, bad);
    if (qb_cpu_isa_available(QB_ISA_AVX2) && G % 4 == 0) {
        qb_s4_packed wp;
        CHECK(qb_s4_pack(&wp, wq, sw, N, K, G) == QB_OK);
        qb_gemm_s4_avx2(y, &x, &wp, b, N);
        CHECKF(memcmp(y, ref, (size_t)M * N * sizeof *y) == 0, "gemm_s4 avx2 M=%d N=%d K=%d G=%d: not bit-identical", M, N, K, G);
        qb_gemm_s4_avx2(y, &x, &wp, NULL, N);
        qb_gemm_s4_scalar(ref, xq, x.scale, wq, sw, NULL, M, N, K, G);
        CHECKF(memcmp(y, ref, (size_t)M * N * sizeof *y) == 0, "gemm_s4 avx2 no bias M=%d N=%d K=%d G=%d", M, N, K, G);
        qb_s4_packed_free(&wp);
    }
    qb_qinput_free(&x);
    free(xq), free(wq), free(sw), free(b), free(ref), free(y);
}

static void test_gemm_s4(void)
{
    static const int Ms[] = {1, 3, 5, 6, 7, 33};
    static const int Ns[] = {1, 15, 16, 17, 40};
    static const int KG[][2] = {{2, 2}, {6, 2}, {4, 4}, {64, 64}, {128, 32}, {192, 64}, {768, 128}};
    for (size_t a = 0; a < sizeof Ms / sizeof Ms[0]; a++)
        for (size_t c = 0; c < sizeof Ns / sizeof Ns[0]; c++)
            for (size_t d = 0; d < sizeof KG / sizeof KG[0]; d++) {
                check_gemm_s4(Ms[a], Ns[c], KG[d][0], KG[d][1], 0, 127, 0, 127, -8, 7);     /* dynamic */
                check_gemm_s4(Ms[a], Ns[c], KG[d][0], KG[d][1], 0, 255, 128, 128, -8, 7);   /* static */
            }
    check_gemm_s4(64, 768, 768, 64, 0, 127, 0, 127, -8, 7);
    /* the largest pair sums (255 x -8 twice) and zero-point terms */
    check_gemm_s4(13, 40, 3072, 64, 255, 255, 128, 128, -8, -8);
    check_gemm_s4(13, 40, 3072, 3072, 0, 0, 127, 127, -8, -8);
    qb_s4_packed wp;
    int8_t wq[64] = {0};
    float sw[32] = {0};
    CHECK(qb_s4_pack(&wp, wq, sw, 1, 64, 24) == QB_EINVAL && strstr(qb_error(), "24"));
    CHECK(qb_s4_pack(&wp, wq, sw, 1, 64, 2) == QB_EINVAL && strstr(qb_error(), "multiple of 4"));
}

/* Hybrid precision: the bytes of each precision, and the greedy path. Each point of
 * the path is optimal for its size (the greedy over convex hulls solves the LP
 * relaxation of the multiple-choice knapsack, and its points are integral): no
 * choice of precisions, among all 3^n, is at most as large with a smaller total
 * loss. Random instances, including losses that fall from INT8 to INT4 (INT8 then
 * lies off the hull) and ties. */
static void test_hybrid_path(void)
{
    CHECK(qb_hybrid_weight_bytes(768, 3072, QB_Q_INT8, 64) == 768 * 3072 + 768 * 4);
    CHECK(qb_hybrid_weight_bytes(768, 3072, QB_Q_INT4, 64) == 768 * 3072 / 2 + 768 * 48 * 4);
    CHECK(qb_hybrid_weight_bytes(3, 768, QB_Q_F16, 64) == 3 * 768 * 2);
    enum { N = 5, CHOICES = 243 };
    int bad = 0, bad_shape = 0;
    for (int trial = 0; trial < 300; trial++) {
        double loss[2 * N];
        int64_t bytes[3 * N];
        for (int i = 0; i < N; i++) {
            const int K = 64 << (qb_rng_u32(&rng) % 4), Nr = 8 << (qb_rng_u32(&rng) % 4);
            bytes[3 * i] = qb_hybrid_weight_bytes(Nr, K, QB_Q_F16, 32);
            bytes[3 * i + 1] = qb_hybrid_weight_bytes(Nr, K, QB_Q_INT8, 32);
            bytes[3 * i + 2] = qb_hybrid_weight_bytes(Nr, K, QB_Q_INT4, 32);
            loss[2 * i] = qb_rng_uniform(&rng) * (trial % 3 == 0 ? 1.0 : 0.1);
            loss[2 * i + 1] = trial % 5 == 0 ? (double)(qb_rng_u32(&rng) % 3) : loss[2 * i] + qb_rng_uniform(&rng);
        }
        qb_hybrid_step steps[2 * N];
        const int n_steps = qb_hybrid_path(N, loss, bytes, steps);
        int at[N] = {0};
        double L = 0;
        int64_t S = 0;
        for (int i = 0; i < N; i++) S += bytes[3 * i];
        for (int k = 0; k < n_steps; k++) {
            const int i = steps[k].linear, to = steps[k].prec == QB_Q_INT8 ? 1 : 2;
            bad_shape += to <= at[i];
            L += (to == 1 ? loss[2 * i] : loss[2 * i + 1]) - (at[i] ? loss[2 * i] : 0.0);
            S -= bytes[3 * i + at[i]] - bytes[3 * i + to];
            at[i] = to;
            for (int c = 0; c < CHOICES; c++) {
                double l = 0;
                int64_t s = 0;
                for (int i2 = 0, code = c; i2 < N; i2++, code /= 3) {
                    const int o = code % 3;
                    s += bytes[3 * i2 + o];
                    l += o ? loss[2 * i2 + o - 1] : 0.0;
                }
                bad += s <= S && l < L - 1e-9;
            }
        }
        for (int i = 0; i < N; i++) bad_shape += at[i] != 2;
    }
    CHECKF(bad_shape == 0, "hybrid path: %d moves up in precision or Linears not ending at INT4", bad_shape);
    CHECKF(bad == 0, "hybrid path: %d cases of a smaller-or-equal choice with less loss", bad);
}

int main(void)
{
    qb_rng_init(&rng, check_seed());
    test_hybrid_path();
    test_fake_quant_weight();
    test_fake_quant_act();
    test_ste_finite_differences();
    test_minmax();
    test_quantize_rows_u7();
    test_quantize_s8();
    test_gemm_s8();
    test_gemm_u8();
    test_int4_format();
    test_gemm_s4();
    return check_summary("test_quant");
}
