/* The quantized Linear of a low-bit model file on the CPU (backend op linear_q):
 *   INT8 dynamic x quantized per token to 7 bits with a zero point (a qb_qinput:
 *                given, when a LayerNorm wrote it for several Linears, or made
 *                here), u8 x s8 tiles (gemm_u8.c: why 7 bits), epilogue zero point,
 *                x-scale * w-scale + bias (+ GELU) fused in the tile;
 *   INT8 static  x quantized with the file's per-tensor 8-bit scale, exact 16-bit
 *                tile (gemm_s8.c), the same epilogue;
 *   INT4 (W4A8)  the activations as a qb_qinput (7-bit per token, or the static
 *                8-bit scale shifted by 128) against nibbles unpacked in registers,
 *                one scale per group (gemm_s4.c), GELU as a separate pass;
 *   weight-only  FP32 activations times the weights dequantized once at prepare.
 * Without packed weights (QBERT_ISA=scalar, or not prepared) the scalar references
 * compute the same integers. Activation buffers made here are allocated per call:
 * they are M x K bytes, small next to the GEMM's M x N x K work. */
#include "cpu/cpu.h"

#include "qbert/quant.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    qb_u8_packed u8;  /* INT8 with per-token activations */
    qb_s8_packed s8;  /* INT8 with a static activation scale */
    qb_s4_packed s4;
    float *w;  /* (N, K) dequantized weights of a weight-only Linear */
} prepared;

static void release(qb_qlinear *q)
{
    prepared *p = q->prepared;
    if (!p) return;
    qb_u8_packed_free(&p->u8);
    qb_s8_packed_free(&p->s8);
    qb_s4_packed_free(&p->s4);
    qb_free(p->w);
    free(p);
    q->prepared = NULL;
}

/* w (N, K) = each integer times the scale of its group. NULL when out of memory. */
static float *dequantize(const qb_qlinear *q)
{
    float *w = qb_malloc((size_t)q->N * q->K * sizeof *w);
    if (w) qb_cpu_dequantize_groups(w, q->wq, q->scales, q->N, q->K, q->group);
    return w;
}

qb_status qb_cpu_qlinear_prepare(qb_qlinear *q)
{
    if (q->prepared)
        return q->release == release ? QB_OK
                                     : qb_fail(QB_EINVAL, "quantized Linear %d x %d: already laid out for another "
                                               "backend", q->N, q->K);
    prepared *p = calloc(1, sizeof *p);
    if (!p) return qb_fail(QB_ENOMEM, "cannot allocate a quantized Linear's layout");
    qb_status st = QB_OK;
    if (q->act_f32) {
        if (!(p->w = dequantize(q)))
            st = qb_fail(QB_ENOMEM, "dequantizing a %d x %d weight: out of memory", q->N, q->K);
    } else if (q->bits == 8 && q->act_scale > 0.0f) {
        st = qb_s8_pack(&p->s8, q->wq, q->N, q->K);
    } else if (q->bits == 8) {
        st = qb_u8_pack(&p->u8, q->wq, q->N, q->K);
    } else if (q->group % 4 == 0) {  /* else the scalar reference runs (see qb_s4_pack) */
        st = qb_s4_pack(&p->s4, q->wq, q->scales, q->N, q->K, q->group);
    }
    q->prepared = p;
    q->release = release;
    if (st) release(q);
    return st;
}

static void fail_nan(float *y, size_t n, const char *what, int M, const qb_qlinear *q)
{
    qb_log(QB_LOG_ERROR, "quantized Linear %dx%dx%d: cannot allocate %s; output set to NaN", M, q->N, q->K, what);
    for (size_t i = 0; i < n; i++) y[i] = NAN;
}

/* The weight-only Linear: FP32 x times the dequantized weights. */
static void linear_f32(float *y, const float *x, const qb_qlinear *q, const prepared *p, const float *b, int M,
                       int gelu)
{
    float *w = p ? p->w : dequantize(q);
    if (!w) {
        fail_nan(y, (size_t)M * q->N, "the dequantized weights", M, q);
        return;
    }
    qb_cpu_linear(y, x, w, b, M, q->N, q->K);
    if (gelu) qb_cpu_gelu(y, y, (size_t)M * q->N);
    if (!p) qb_free(w);
}

/* INT8 with a static scale: the exact 16-bit tile on s8 x. */
static void linear_static8(float *y, const float *x, const qb_qlinear *q, const prepared *p, const float *b,
                           int M, int gelu)
{
    int8_t *xq = qb_malloc((size_t)M * q->K);
    float *sx = qb_malloc((size_t)M * sizeof *sx);
    if (xq && sx) {
        qb_quantize_tensor_s8(xq, x, (size_t)M * q->K, q->act_scale);
        for (int m = 0; m < M; m++) sx[m] = q->act_scale;
        qb_cpu_gemm_s8(y, xq, sx, q->wq, p ? &p->s8 : NULL, q->scales, b, M, q->N, q->K, gelu);
    } else {
        fail_nan(y, (size_t)M * q->N, "the quantized activations", M, q);
    }
    qb_free(xq);
    qb_free(sx);
}

/* The scalar references on q = u - zp (M, K). */
static void linear_reference(float *y, const qb_qinput *xq, const qb_qlinear *q, const float *b, int gelu)
{
    const int M = xq->M, K = q->K;
    int8_t *s = qb_malloc((size_t)M * K);
    if (!s) {
        fail_nan(y, (size_t)M * q->N, "the activations of the reference path", M, q);
        return;
    }
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) s[(size_t)m * K + k] = (int8_t)(xq->u[(size_t)m * xq->ldu + k] - xq->zp[m]);
    if (q->bits == 8) qb_gemm_s8_scalar(y, s, xq->scale, q->wq, q->scales, b, M, q->N, K, gelu);
    else qb_gemm_s4_scalar(y, s, xq->scale, q->wq, q->scales, b, M, q->N, K, q->group);
    qb_free(s);
}

static void linear_q(float *y, const float *x, const qb_qinput *xq, const qb_qlinear *q, const float *b, int M,
                     int gelu)
{
    const prepared *p = q->prepared;
    if (q->act_f32) {
        linear_f32(y, x, q, p, b, M, gelu);
        return;
    }
    if (q->bits == 8 && q->act_scale > 0.0f) {
        linear_static8(y, x, q, p, b, M, gelu);
        return;
    }
    qb_qinput own = {0};
    if (!xq) {
        if (qb_qinput_alloc(&own, M, q->K)) {
            fail_nan(y, (size_t)M * q->N, "the quantized activations", M, q);
            return;
        }
        if (q->act_scale > 0.0f) qb_qinput_quantize_static(&own, x, q->act_scale);
        else qb_qinput_quantize(&own, x);
        xq = &own;
    }
    const qb_u8_kernel *kern = p && p->u8.data ? qb_u8_kernel_best() : NULL;
    const bool w4_tile = p && p->s4.data && qb_cpu_isa() != QB_ISA_SCALAR;
    if (kern) {
        qb_gemm_u8(kern, y, xq, &p->u8, q->scales, b, q->N, gelu);
    } else if (w4_tile) {
        qb_gemm_s4_avx2(y, xq, &p->s4, b, q->N);
    } else {
        linear_reference(y, xq, q, b, q->bits == 8 && gelu);
    }
    if (q->bits == 4 && gelu) qb_cpu_gelu(y, y, (size_t)M * q->N);
    qb_qinput_free(&own);
}

void qb_cpu_linear_q(float *y, qb_qinput *yq, const float *x, const qb_qinput *xq, const qb_qlinear *q,
                     const float *b, int M, int gelu)
{
    const qb_qinput *wrong = yq && !qb_qinput_fits(yq, M, q->N) ? yq : xq && !qb_qinput_fits(xq, M, q->K) ? xq : NULL;
    if (wrong) {
        qb_log(QB_LOG_ERROR, "quantized Linear %dx%dx%d: its quantized %s is laid out for %d x %d; output set to NaN",
               M, q->N, q->K, wrong == yq ? "output" : "input", wrong->M, wrong->K);
        for (size_t i = 0; i < (size_t)M * q->N; i++) y[i] = NAN;
        return;
    }
    linear_q(y, x, xq, q, b, M, gelu);
    if (yq) qb_qinput_quantize(yq, y);
}
