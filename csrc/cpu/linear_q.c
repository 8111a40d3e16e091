/* The quantized Linear of a low-bit model file on the CPU (backend op linear_q):
 *   INT8 dynamic x quantized per token to 7 bits with a zero point (u8), u8 x s8
 *                tiles (gemm_u8.c: why 7 bits), epilogue zero point, x-scale *
 *                w-scale + bias (+ GELU) fused in the tile;
 *   INT8 static  x quantized with the file's per-tensor 8-bit scale, exact 16-bit
 *                tile (gemm_s8.c), the same epilogue;
 *   INT4 (W4A8)  the same activations (7-bit per token, or static) against nibbles
 *                unpacked in registers, one scale per group, GELU as a separate
 *                pass (the W4A8 tile has none);
 *   weight-only  FP32 activations times the weights dequantized once at prepare.
 * Without packed weights (QBERT_ISA=scalar, or not prepared) the scalar references
 * compute the same integers. The activation buffers are allocated per call: they are
 * M x K bytes, small next to the GEMM's M x N x K work. */
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
    if (q->prepared) return QB_OK;
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
    } else {
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

void qb_cpu_linear_q(float *y, const float *x, const qb_qlinear *q, const float *b, int M, int gelu)
{
    const prepared *p = q->prepared;
    const int N = q->N, K = q->K;
    const size_t MN = (size_t)M * N;
    if (q->act_f32) {
        float *w = p ? p->w : dequantize(q);
        if (!w) {
            fail_nan(y, MN, "the dequantized weights", M, q);
            return;
        }
        qb_cpu_linear(y, x, w, b, M, N, K);
        if (gelu) qb_cpu_gelu(y, y, MN);
        if (!p) qb_free(w);
        return;
    }
    const qb_u8_kernel *kern = p && p->u8.data ? qb_u8_kernel_best() : NULL;
    float *sx = qb_malloc((size_t)M * sizeof *sx);
    int32_t *zp = qb_malloc((size_t)M * sizeof *zp);
    int8_t *xq = !sx || !zp ? NULL : kern ? qb_u8_activations(&p->u8, sx, zp, x, M) : qb_malloc((size_t)M * K);
    if (!xq) {
        qb_free(sx), qb_free(zp);
        fail_nan(y, MN, "the quantized activations", M, q);
        return;
    }
    if (kern) {
        qb_gemm_u8(kern, y, xq, sx, zp, &p->u8, q->scales, b, M, N, gelu);
    } else {
        if (q->act_scale > 0.0f) {
            qb_quantize_tensor_s8(xq, x, (size_t)M * K, q->act_scale);
            for (int m = 0; m < M; m++) sx[m] = q->act_scale;
        } else {  /* the u8 grid's integers, q = u - zp */
            qb_quantize_rows_u7(xq, (size_t)K, sx, zp, x, M, K);
            for (int m = 0; m < M; m++)
                for (int k = 0; k < K; k++) xq[(size_t)m * K + k] = (int8_t)(xq[(size_t)m * K + k] - zp[m]);
        }
        if (q->bits == 8) {
            qb_cpu_gemm_s8(y, xq, sx, q->wq, p ? &p->s8 : NULL, q->scales, b, M, N, K, gelu);
        } else {
            qb_cpu_gemm_s4(y, xq, sx, q->wq, p ? &p->s4 : NULL, q->scales, b, M, N, K, q->group);
            if (gelu) qb_cpu_gelu(y, y, MN);
        }
    }
    qb_free(xq);
    qb_free(sx);
    qb_free(zp);
}
