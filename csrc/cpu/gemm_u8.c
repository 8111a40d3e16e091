/* INT8 GEMM for activations quantized per token at run time (int8-dynamic, and the
 * activations of W4A8):
 *   y (M, N) = (sum_k q[m,k] wq[n,k]) * (sx[m] * sw[n]) + b[n]   [then GELU]
 * the product of gemm_s8.c, with the activations on a 7-bit asymmetric grid, as
 * PyTorch's dynamic quantization with reduce_range: per row, with lo = min(x, 0) and
 * hi = max(x, 0),
 *   sx = (hi - lo) / 127,  z = clamp(rint(-lo / sx), 0, 127),
 *   u = clamp(rint(x / sx) + z, 0, 127),  q = u - z in [-127, 127], x ~ sx q.
 * (rint rounds half to even; "/ sx" is "* (1 / sx)", as everywhere in qbert.)
 *
 * Why 7 bits: u lies in [0, 127], so the u8 x s8 products that AVX2 sums in pairs
 * into 16 bits (vpmaddubsw) stay below saturation even against -128 weights
 * (2 x 127 x 128 = 32512 < 32767), which makes that instruction, 32 multiply-adds
 * where the exact 16-bit path (gemm_s8_avx2.c) does 16, exact. Asymmetric: the 128
 * levels span [lo, hi] rather than [-absmax, absmax], which wins back most of the
 * eighth bit on skewed rows (GELU outputs feed the FFN's second Linear). VNNI's
 * vpdpbusd would be exact with 8 bits, but one grid on every ISA keeps a model's
 * outputs the same on every machine.
 * The tiles sum u w; the zero point comes off exactly in integers,
 * sum q w = sum u w - z colsum(w), with colsum computed once at packing, in the
 * epilogue (gemm_s8_avx2.c's, shared). So every path yields the integers of
 * qb_gemm_s8_scalar on q (the reference) and its float operations: bit-identical.
 *
 * Layout (also what vpdpbusd reads): weights in panels of QB_U8_NR columns, k in
 * quads, byte ((panel * Kq/4 + k/4) * NR + column) * 4 + k%4, zero past N and K;
 * activations a qb_qinput (csrc/backend/backend.h: rows padded to a multiple of every
 * tile's height, Kq bytes per row), so that a row's quad is one 32-bit broadcast.
 * This file: the quantizer (scalar reference) and the qb_qinput buffers, packing, the
 * choice of tile. The tiles: gemm_u8_avx2.c (AVX2 vpmaddubsw +
 * vpmaddwd and AVX-VNNI 256-bit vpdpbusd, the driver and the AVX2 quantizer),
 * gemm_u8_avx512.c (512-bit vpdpbusd). */
#include "cpu/cpu.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

float qb_u7_row_params(float lo, float hi, float *inv, int32_t *z)
{
    const float s = (hi - lo) / 127.0f;
    *inv = s > 0.0f ? 1.0f / s : 0.0f;
    /* clamps map NaN to a bound (qb_maxf / qb_minf), so the int conversion is defined */
    *z = s > 0.0f ? (int32_t)qb_minf(qb_maxf(rintf(-lo * *inv), 0.0f), 127.0f) : 0;
    return s;
}

static void quantize_row_scalar(uint8_t *u, int ldu, float *scale, int32_t *zp, const float *x, int K)
{
    float lo = 0.0f, hi = 0.0f, inv;
    for (int k = 0; k < K; k++) lo = qb_minf(x[k], lo), hi = qb_maxf(x[k], hi);
    *scale = qb_u7_row_params(lo, hi, &inv, zp);
    const float zf = (float)*zp;
    for (int k = 0; k < K; k++) u[k] = (uint8_t)qb_minf(qb_maxf(rintf(x[k] * inv) + zf, 0.0f), 127.0f);
    memset(u + K, *zp, (size_t)(ldu - K));
}

void qb_quantize_row_u7(uint8_t *u, int ldu, float *scale, int32_t *zp, const float *x, int K)
{
    if (qb_cpu_isa() != QB_ISA_SCALAR) qb_quantize_row_u7_avx2(u, ldu, scale, zp, x, K);
    else quantize_row_scalar(u, ldu, scale, zp, x, K);
}

qb_status qb_qinput_alloc(qb_qinput *a, int M, int K)
{
    *a = (qb_qinput){.M = M, .K = K, .ldu = qb_qinput_ldu(K)};
    a->u = qb_malloc((size_t)qb_qinput_rows(M) * a->ldu);
    a->scale = qb_malloc((size_t)M * sizeof *a->scale);
    a->zp = qb_malloc((size_t)M * sizeof *a->zp);
    if (a->u && a->scale && a->zp) return QB_OK;
    qb_qinput_free(a);
    return qb_fail(QB_ENOMEM, "cannot allocate the quantized input of a %d x %d activation", M, K);
}

void qb_qinput_free(qb_qinput *a)
{
    qb_free(a->u), qb_free(a->scale), qb_free(a->zp);
    memset(a, 0, sizeof *a);
}

void qb_qinput_pad(qb_qinput *a)
{
    const size_t ldu = (size_t)a->ldu;
    memset(a->u + (size_t)a->M * ldu, 0, (size_t)(qb_qinput_rows(a->M) - a->M) * ldu);
}

void qb_qinput_quantize(qb_qinput *a, const float *x)
{
    const int K = a->K;
#pragma omp parallel for schedule(static) if ((size_t)a->M * K >= 16384)
    for (int m = 0; m < a->M; m++)
        qb_quantize_row_u7(a->u + (size_t)m * a->ldu, a->ldu, &a->scale[m], &a->zp[m], x + (size_t)m * K, K);
    qb_qinput_pad(a);
}

void qb_qinput_quantize_static(qb_qinput *a, const float *x, float s)
{
    const int K = a->K;
    const float inv = 1.0f / s;
#pragma omp parallel for schedule(static) if ((size_t)a->M * K >= 16384)
    for (int m = 0; m < a->M; m++) {
        uint8_t *u = a->u + (size_t)m * a->ldu;
        qb_quantize_s8((int8_t *)u, x + (size_t)m * K, (size_t)K, inv);
        for (int k = 0; k < K; k++) u[k] ^= 0x80;  /* q + 128 in two's complement */
        memset(u + K, 128, (size_t)(a->ldu - K));
        a->scale[m] = s, a->zp[m] = 128;
    }
    qb_qinput_pad(a);
}

qb_status qb_u8_pack(qb_u8_packed *p, const int8_t *wq, int N, int K)
{
    memset(p, 0, sizeof *p);
    p->N = N, p->K = K, p->Kq = (K + 3) / 4 * 4;
    const int panels = (N + QB_U8_NR - 1) / QB_U8_NR, kq = p->Kq / 4;
    const size_t bytes = (size_t)panels * QB_U8_NR * p->Kq;
    p->data = qb_malloc(bytes);
    p->colsum = qb_malloc((size_t)panels * QB_U8_NR * sizeof *p->colsum);
    if (!p->data || !p->colsum) {
        qb_u8_packed_free(p);
        return qb_fail(QB_ENOMEM, "packing INT8 weights (%d x %d): cannot allocate %zu bytes", N, K, bytes);
    }
    for (int pn = 0; pn < panels; pn++) {
        for (int j = 0; j < QB_U8_NR; j++) {
            const int n = pn * QB_U8_NR + j;
            int32_t colsum = 0;
            for (int k = 0; k < p->Kq; k++) {
                const int8_t w = n < N && k < K ? wq[(size_t)n * K + k] : 0;
                p->data[(((size_t)pn * kq + k / 4) * QB_U8_NR + j) * 4 + k % 4] = w;
                colsum += w;
            }
            p->colsum[(size_t)pn * QB_U8_NR + j] = colsum;
        }
    }
    return QB_OK;
}

void qb_u8_packed_free(qb_u8_packed *p)
{
    qb_free(p->data);
    qb_free(p->colsum);
    memset(p, 0, sizeof *p);
}

/* QBERT_VNNI is read once, on first use (every quantized Linear asks for its tile). */
static pthread_once_t vnni_once = PTHREAD_ONCE_INIT;
static int vnni_allowed;
static void vnni_init(void)
{
    const char *env = getenv("QBERT_VNNI");
    vnni_allowed = !(env && strcmp(env, "0") == 0);
}

/* The tiles this CPU can run, slowest first. QBERT_ISA=avx2 leaves out the AVX-512
 * one; QBERT_VNNI=0 leaves out both VNNI ones (to measure the AVX2 tile on a VNNI
 * machine). */
int qb_u8_kernels(const qb_u8_kernel **out, int cap)
{
    static const qb_u8_kernel avx2 = {"avx2", QB_U8_MR_AVX2, qb_u8_tile_avx2};
    static const qb_u8_kernel avxvnni = {"avx-vnni", QB_U8_MR_AVXVNNI, qb_u8_tile_avxvnni};
    static const qb_u8_kernel avx512 = {"avx512-vnni", QB_U8_MR_AVX512, qb_u8_tile_avx512vnni};
    pthread_once(&vnni_once, vnni_init);
    const unsigned f = qb_cpu_features();
    const int vnni = vnni_allowed;
    int n = 0;
    if (qb_cpu_isa() == QB_ISA_SCALAR) return 0;
    if (n < cap) out[n++] = &avx2;
    if (vnni && (f & QB_CPU_AVXVNNI) && n < cap) out[n++] = &avxvnni;
    const unsigned f512 = QB_CPU_AVX512F | QB_CPU_AVX512BW | QB_CPU_AVX512VNNI;
    if (vnni && qb_cpu_isa() == QB_ISA_AVX512 && (f & f512) == f512 && n < cap) out[n++] = &avx512;
    return n;
}

const qb_u8_kernel *qb_u8_kernel_best(void)
{
    const qb_u8_kernel *k[3];
    const int n = qb_u8_kernels(k, 3);
    return n ? k[n - 1] : NULL;
}
