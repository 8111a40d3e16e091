/* qb_tensor helpers, half-precision conversion, and the named-tensor list. */
#include "qbert/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *qb_dtype_name(qb_dtype t)
{
    switch (t) {
    case QB_F32: return "F32";
    case QB_F16: return "F16";
    case QB_BF16: return "BF16";
    case QB_I8: return "I8";
    case QB_U8: return "U8";
    case QB_I32: return "I32";
    case QB_I64: return "I64";
    case QB_I4: return "I4";
    }
    return "?";
}

size_t qb_dtype_bytes(qb_dtype t, int64_t n)
{
    switch (t) {
    case QB_F32: case QB_I32: return (size_t)n * 4;
    case QB_F16: case QB_BF16: return (size_t)n * 2;
    case QB_I8: case QB_U8: return (size_t)n;
    case QB_I64: return (size_t)n * 8;
    case QB_I4: return (size_t)(n + 1) / 2;
    }
    return 0;
}

int64_t qb_tensor_numel(const qb_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t qb_tensor_nbytes(const qb_tensor *t) { return qb_dtype_bytes(t->dtype, qb_tensor_numel(t)); }

qb_status qb_tensor_alloc(qb_tensor *t, qb_dtype dtype, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    if (ndim < 0 || ndim > QB_MAX_DIMS) return qb_fail(QB_EINVAL, "tensor rank %d (max %d)", ndim, QB_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] > 0 && n > INT64_MAX / 8 / shape[i]))
            return qb_fail(QB_EINVAL, "tensor dimension %d has bad size %lld", i, (long long)shape[i]);
        n *= shape[i];
        t->shape[i] = shape[i];
    }
    t->dtype = dtype;
    t->device = QB_DEV_CPU;
    t->ndim = ndim;
    size_t bytes = qb_dtype_bytes(dtype, n);
    t->data = qb_calloc(1, bytes);
    if (!t->data) return qb_fail(QB_ENOMEM, "cannot allocate a %zu-byte tensor", bytes);
    t->owned = true;
    return QB_OK;
}

void qb_tensor_free(qb_tensor *t)
{
    if (t->owned) qb_free(t->data);
    t->data = NULL;
    t->owned = false;
}

qb_status qb_tensor_to_f32(qb_tensor *t)
{
    if (t->dtype == QB_F32) return QB_OK;
    if (t->dtype != QB_F16 && t->dtype != QB_BF16)
        return qb_fail(QB_EINVAL, "cannot widen a %s tensor to F32", qb_dtype_name(t->dtype));
    qb_tensor f;
    qb_status st = qb_tensor_alloc(&f, QB_F32, t->ndim, t->shape);
    if (st) return st;
    const uint16_t *h = t->data;
    float *d = f.data;
    const int64_t n = qb_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) d[i] = t->dtype == QB_F16 ? qb_f16_to_f32(h[i]) : qb_bf16_to_f32(h[i]);
    qb_tensor_free(t);
    *t = f;
    return QB_OK;
}

const char *qb_shape_str(const qb_tensor *t, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

float qb_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; mant <<= 1; } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t qb_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    if (absx >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u) return (uint16_t)sign;
        uint32_t mant = (absx & 0x7fffff) | 0x800000;
        int shift = 126 - (int)(absx >> 23); /* 14..24 */
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t r = absx - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t half = r >> 13, rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

float qb_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

const char *qb_math_name(qb_math m)
{
    static const char *const names[] = {"fp32", "tf32", "bf16", "fp16"};
    return (unsigned)m < 4 ? names[m] : "?";
}

qb_status qb_math_parse(const char *name, qb_math *m)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(name, qb_math_name((qb_math)i)) == 0) {
            *m = (qb_math)i;
            return QB_OK;
        }
    return qb_fail(QB_EINVAL, "unknown arithmetic \"%s\" (expected fp32, tf32, bf16 or fp16)", name);
}

float qb_math_round(float x, qb_math m)
{
    switch (m) {
    case QB_MATH_FP32: break;
    case QB_MATH_TF32: {  /* 10 mantissa bits: the low 13 rounded off, ties to even */
        uint32_t u;
        memcpy(&u, &x, 4);
        if ((u & 0x7f800000u) != 0x7f800000u) {  /* inf and NaN stay */
            u += 0xfffu + ((u >> 13) & 1u);
            u &= ~0x1fffu;
        }
        memcpy(&x, &u, 4);
        return x;
    }
    case QB_MATH_BF16: return qb_bf16_to_f32(qb_f32_to_bf16(x));
    case QB_MATH_FP16: return qb_f16_to_f32(qb_f32_to_f16(x));
    }
    return x;
}

uint16_t qb_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

qb_status qb_weights_add(qb_weights *w, const char *name, qb_tensor t)
{
    if (w->count == w->cap) {
        int cap = w->cap ? w->cap * 2 : 64;
        char **names = realloc(w->names, (size_t)cap * sizeof *names);
        if (!names) return qb_fail(QB_ENOMEM, "cannot grow the tensor list");
        w->names = names;
        qb_tensor *ts = realloc(w->tensors, (size_t)cap * sizeof *ts);
        if (!ts) return qb_fail(QB_ENOMEM, "cannot grow the tensor list");
        w->tensors = ts;
        w->cap = cap;
    }
    char *copy = qb_strdup(name);
    if (!copy) return qb_fail(QB_ENOMEM, "cannot copy tensor name");
    w->names[w->count] = copy;
    w->tensors[w->count] = t;
    w->count++;
    return QB_OK;
}

int qb_weights_find(const qb_weights *w, const char *name)
{
    for (int i = 0; i < w->count; i++)
        if (strcmp(w->names[i], name) == 0) return i;
    return -1;
}

void qb_weights_take(qb_weights *w, int i, qb_tensor *t)
{
    *t = w->tensors[i];
    free(w->names[i]);
    memmove(w->names + i, w->names + i + 1, (size_t)(w->count - i - 1) * sizeof *w->names);
    memmove(w->tensors + i, w->tensors + i + 1, (size_t)(w->count - i - 1) * sizeof *w->tensors);
    w->count--;
}

void qb_weights_free(qb_weights *w)
{
    for (int i = 0; i < w->count; i++) {
        free(w->names[i]);
        qb_tensor_free(&w->tensors[i]);
    }
    free(w->names);
    free(w->tensors);
    memset(w, 0, sizeof *w);
}
