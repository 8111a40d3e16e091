/* A backend for tests: the CPU backend with QB_CAN_HALF, storing activations in FP16
 * / BF16 as a GPU does. Each op that takes a storage type converts its half inputs to
 * FP32, runs the CPU kernel and rounds its outputs back to half (the CPU kernels are
 * the reference; this only adds the storage), so a whole pass of csrc/model/bert.c
 * with half activations (its layout, the head's gather and scatter, the half weights
 * and their refresh) runs on any machine: tests/test_half_model.c. Ops on FP32
 * storage pass straight to the CPU's. Out of host memory: the test stops. */
#ifndef QBERT_TEST_HALF_BACKEND_H
#define QBERT_TEST_HALF_BACKEND_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "cpu/cpu.h"
#include "qbert/quant.h"

static const qb_backend *half_cpu;

/* n floats: a copy of src (stored in t), or zeros when src is NULL. */
static float *widen(const void *src, size_t n, qb_dtype t)
{
    float *f = calloc(n ? n : 1, sizeof *f);
    if (!f) {
        fprintf(stderr, "half backend: out of memory\n");
        exit(1);
    }
    if (src) half_cpu->rows(NULL, f, QB_F32, n, src, t, n, 1, (int)n);
    return f;
}

/* dst (n, stored in t) = f rounded; f freed. */
static void narrow(void *dst, float *f, size_t n, qb_dtype t)
{
    if (dst) half_cpu->rows(NULL, dst, t, n, f, QB_F32, n, 1, (int)n);
    free(f);
}

/* q (when not NULL) = y (n, stored in t) quantized per token: from y as stored. */
static void quantize_stored(qb_qinput *q, const void *y, size_t n, qb_dtype t)
{
    if (!q) return;
    float *f = widen(y, n, t);
    qb_qinput_quantize(q, f);
    free(f);
}

static void hb_linear_q(qb_stream *s, void *y, qb_qinput *yq, const void *x, const qb_qinput *xq,
                        const struct qb_qlinear *q, const float *b, int M, int gelu, qb_dtype t)
{
    if (t == QB_F32) {
        qb_backend_cpu()->linear_q(s, y, yq, x, xq, q, b, M, gelu, t);
        return;
    }
    const size_t ny = (size_t)M * q->N;
    float *fy = widen(NULL, ny, t), *fx = x ? widen(x, (size_t)M * q->K, t) : NULL;
    qb_backend_cpu()->linear_q(s, fy, NULL, fx, xq, q, b, M, gelu, QB_F32);
    narrow(y, fy, ny, t);
    free(fx);
    quantize_stored(yq, y, ny, t);
}

static void hb_linear(qb_stream *s, void *y, const void *x, const void *w, const void *b, int M, int N, int K,
                      qb_math math, qb_dtype t)
{
    if (t == QB_F32) {
        qb_backend_cpu()->linear(s, y, x, w, b, M, N, K, math, t);
        return;
    }
    float *fy = widen(NULL, (size_t)M * N, t), *fx = widen(x, (size_t)M * K, t), *fw = widen(w, (size_t)N * K, t);
    float *fb = b ? widen(b, (size_t)N, t) : NULL;
    qb_backend_cpu()->linear(s, fy, fx, fw, fb, M, N, K, QB_MATH_FP32, QB_F32);  /* the inputs are half already */
    narrow(y, fy, (size_t)M * N, t);
    free(fx), free(fw), free(fb);
}

static void hb_linear_backward(qb_stream *s, void *dx, float *dw, float *db, const void *dy, const void *x,
                               const void *w, int M, int N, int K, qb_math math, qb_dtype t)
{
    if (t == QB_F32) {
        qb_backend_cpu()->linear_backward(s, dx, dw, db, dy, x, w, M, N, K, math, t);
        return;
    }
    float *fdx = dx ? widen(NULL, (size_t)M * K, t) : NULL, *fdy = widen(dy, (size_t)M * N, t);
    float *fx = widen(x, (size_t)M * K, t), *fw = widen(w, (size_t)N * K, t);
    qb_backend_cpu()->linear_backward(s, fdx, dw, db, fdy, fx, fw, M, N, K, QB_MATH_FP32, QB_F32);
    if (dx) narrow(dx, fdx, (size_t)M * K, t);
    free(fdy), free(fx), free(fw);
}

static void hb_layernorm(qb_stream *s, void *out, void *u_out, float *stats, qb_qinput *outq, const void *x,
                         const void *res, const float *g, const float *b, int M, int C, float eps, qb_dtype t)
{
    if (t == QB_F32) {
        qb_backend_cpu()->layernorm(s, out, u_out, stats, outq, x, res, g, b, M, C, eps, t);
        return;
    }
    const size_t n = (size_t)M * C;
    float *fx = widen(x, n, t), *fres = res ? widen(res, n, t) : NULL, *fo = widen(NULL, n, t);
    float *fu = u_out ? widen(NULL, n, t) : NULL;
    qb_backend_cpu()->layernorm(s, fo, fu, stats, NULL, fx, fres, g, b, M, C, eps, QB_F32);
    narrow(out, fo, n, t);
    if (u_out) narrow(u_out, fu, n, t);
    free(fx), free(fres);
    quantize_stored(outq, out, n, t);
}

static void hb_layernorm_backward(qb_stream *s, void *du, float *dg, float *db, const void *dout, const void *u,
                                  const float *stats, const float *g, int M, int C, qb_dtype t)
{
    if (t == QB_F32) {
        qb_backend_cpu()->layernorm_backward(s, du, dg, db, dout, u, stats, g, M, C, t);
        return;
    }
    const size_t n = (size_t)M * C;
    float *fd = widen(dout, n, t), *fu = widen(u, n, t), *fdu = widen(NULL, n, t);
    qb_backend_cpu()->layernorm_backward(s, fdu, dg, db, fd, fu, stats, g, M, C, QB_F32);
    narrow(du, fdu, n, t);
    free(fd), free(fu);
}

static void hb_gelu(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t)
{
    float *f = widen(x, n, t);
    qb_backend_cpu()->gelu(s, f, f, n, QB_F32);
    narrow(y, f, n, t);
}

static void hb_gelu_backward(qb_stream *s, void *dx, const void *dy, const void *x, size_t n, qb_dtype t)
{
    float *fdy = widen(dy, n, t), *fx = widen(x, n, t);
    qb_backend_cpu()->gelu_backward(s, fdy, fdy, fx, n, QB_F32);
    narrow(dx, fdy, n, t);
    free(fx);
}

static void hb_add(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t)
{
    float *fy = widen(y, n, t), *fx = widen(x, n, t);
    qb_backend_cpu()->add(s, fy, fx, n, QB_F32);
    narrow(y, fy, n, t);
    free(fx);
}

static void hb_dropout(qb_stream *s, void *x, size_t n, const qb_dropout *drop, qb_dtype t)
{
    float *f = widen(x, n, t);
    qb_backend_cpu()->dropout(s, f, n, drop, QB_F32);
    narrow(x, f, n, t);
}

static void hb_attention(qb_stream *s, void *out, float *lse, const void *q, const void *k, const void *v, int ld,
                         const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D, qb_math math,
                         qb_dtype t)
{
    if (t == QB_F32) {
        qb_backend_cpu()->attention(s, out, lse, q, k, v, ld, mask, drop, B, T, H, D, math, t);
        return;
    }
    const size_t n = (size_t)B * T * H * D, nin = ((size_t)B * T - 1) * ld + (size_t)H * D;
    const qb_math m = t == QB_BF16 ? QB_MATH_BF16 : QB_MATH_FP16;  /* half storage: products in it */
    float *fq = widen(q, nin, t), *fk = widen(k, nin, t), *fv = widen(v, nin, t), *fo = widen(NULL, n, t);
    qb_backend_cpu()->attention(s, fo, lse, fq, fk, fv, ld, mask, drop, B, T, H, D, m, QB_F32);
    narrow(out, fo, n, t);
    free(fq), free(fk), free(fv);
}

static void hb_attention_backward(qb_stream *s, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                  const void *k, const void *v, int ld, const void *out, const float *lse,
                                  const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                                  qb_math math, qb_dtype t)
{
    if (t == QB_F32) {
        qb_backend_cpu()->attention_backward(s, dq, dk, dv, dout, q, k, v, ld, out, lse, mask, drop, B, T, H, D, math,
                                             t);
        return;
    }
    const size_t n = (size_t)B * T * H * D, nin = ((size_t)B * T - 1) * ld + (size_t)H * D;
    const qb_math m = t == QB_BF16 ? QB_MATH_BF16 : QB_MATH_FP16;
    float *fdo = widen(dout, n, t), *fq = widen(q, nin, t), *fk = widen(k, nin, t), *fv = widen(v, nin, t);
    float *grads[3] = {widen(NULL, nin, t), widen(NULL, nin, t), widen(NULL, nin, t)};
    qb_backend_cpu()->attention_backward(s, grads[0], grads[1], grads[2], fdo, fq, fk, fv, ld, NULL, lse, mask, drop, B,
                                         T, H, D, m, QB_F32);
    /* dq, dk, dv may be the thirds of one buffer: each writes back only its own columns */
    void *dst[3] = {dq, dk, dv};
    for (int i = 0; i < 3; i++) {
        half_cpu->rows(NULL, dst[i], t, (size_t)ld, grads[i], QB_F32, (size_t)ld, B * T, H * D);
        free(grads[i]);
    }
    free(fdo), free(fq), free(fk), free(fv);
}

/* Element i of a table stored in t, as a float. */
static float table_at(const void *p, qb_dtype t, size_t i)
{
    float f;
    half_cpu->rows(NULL, &f, QB_F32, 1, (const char *)p + i * qb_store_bytes(t), t, 1, 1, 1);
    return f;
}

/* The CPU kernel's sum, (word + type) + pos, from tables of either type. */
static void hb_embedding(qb_stream *s, void *out, const int32_t *ids, const int32_t *types, const void *word,
                         const void *pos, const void *type, int B, int T, int C, qb_dtype t, qb_dtype tables)
{
    const size_t n = (size_t)B * T * C;
    float *f = widen(NULL, n, t);
    for (size_t bt = 0; bt < (size_t)B * T; bt++)
        for (int c = 0; c < C; c++)
            f[bt * C + c] = (table_at(word, tables, (size_t)ids[bt] * C + c) +
                             table_at(type, tables, (size_t)types[bt] * C + c)) +
                            table_at(pos, tables, (bt % T) * C + c);
    narrow(out, f, n, t);
}

static void hb_embedding_backward(qb_stream *s, float *dword, float *dpos, float *dtype, const void *dout,
                                  const int32_t *ids, const int32_t *types, int pad_id, int B, int T, int C, qb_dtype t)
{
    float *f = widen(dout, (size_t)B * T * C, t);
    qb_backend_cpu()->embedding_backward(s, dword, dpos, dtype, f, ids, types, pad_id, B, T, C, QB_F32);
    free(f);
}

/* The backend, made once. */
static const qb_backend *half_backend(void)
{
    static qb_backend be;
    if (!half_cpu) {
        be = *qb_backend_cpu();
        be.name = "cpu-half";
        be.caps = QB_CAN_HALF;
        be.linear = hb_linear, be.linear_q = hb_linear_q, be.linear_backward = hb_linear_backward;
        be.layernorm = hb_layernorm, be.layernorm_backward = hb_layernorm_backward;
        be.gelu = hb_gelu, be.gelu_backward = hb_gelu_backward, be.add = hb_add, be.dropout = hb_dropout;
        be.attention = hb_attention, be.attention_backward = hb_attention_backward;
        be.embedding = hb_embedding, be.embedding_backward = hb_embedding_backward;
        half_cpu = &be;
    }
    return half_cpu;
}

#endif
