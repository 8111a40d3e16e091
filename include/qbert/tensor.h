/* qb_tensor: a typed, shaped block of memory on one device. Ownership is explicit:
 * `owned` tensors free their data in qb_tensor_free, views never do. */
#ifndef QBERT_TENSOR_H
#define QBERT_TENSOR_H

#include "qbert/core.h"

#ifdef __cplusplus
extern "C" {  /* the tests of the CUDA kernels (C++) use the half conversions */
#endif

typedef enum { QB_F32, QB_F16, QB_BF16, QB_I8, QB_U8, QB_I32, QB_I64, QB_I4 } qb_dtype;
typedef enum { QB_DEV_CPU, QB_DEV_CUDA } qb_device;

#define QB_MAX_DIMS 4

typedef struct {
    qb_dtype dtype;
    qb_device device;
    int ndim;
    int64_t shape[QB_MAX_DIMS];
    void *data;
    bool owned;
} qb_tensor;

const char *qb_dtype_name(qb_dtype t);
/* Bytes for n elements (QB_I4 packs two per byte, rounded up). */
size_t qb_dtype_bytes(qb_dtype t, int64_t n);
int64_t qb_tensor_numel(const qb_tensor *t);
size_t qb_tensor_nbytes(const qb_tensor *t);
/* Allocates an owned, zeroed CPU tensor. */
qb_status qb_tensor_alloc(qb_tensor *t, qb_dtype dtype, int ndim, const int64_t *shape);
void qb_tensor_free(qb_tensor *t);
/* Widens an F16 or BF16 tensor to F32 in place (exact); F32 is left as it is, any
 * other dtype is QB_EINVAL. */
qb_status qb_tensor_to_f32(qb_tensor *t);
/* "[768, 3072]" into buf. */
const char *qb_shape_str(const qb_tensor *t, char *buf, size_t cap);

/* IEEE half / bfloat16 <-> float (round to nearest even on the way down). */
float qb_f16_to_f32(uint16_t h);
uint16_t qb_f32_to_f16(float f);
float qb_bf16_to_f32(uint16_t h);
uint16_t qb_f32_to_bf16(float f);

/* The arithmetic of a GEMM's products. Every tensor stays FP32 in memory (master
 * weights, activations, gradients); TF32 / BF16 / FP16 round each GEMM input to
 * that format (to nearest) and sum the products in FP32: cuBLASLt's FAST compute
 * types on the GPU (torch: allow_tf32, autocast matmuls), emulated on the CPU. */
typedef enum { QB_MATH_FP32, QB_MATH_TF32, QB_MATH_BF16, QB_MATH_FP16 } qb_math;
const char *qb_math_name(qb_math m);  /* "fp32" ... */
/* "fp32" | "tf32" | "bf16" | "fp16" -> *m; QB_EINVAL naming the allowed values. */
qb_status qb_math_parse(const char *name, qb_math *m);
/* x rounded to m's input format (FP16: beyond 65504 becomes inf), as a float. */
float qb_math_round(float x, qb_math m);

/* A list of named tensors: what a weight file holds, in file order. */
typedef struct {
    int count, cap;
    char **names;
    qb_tensor *tensors;
} qb_weights;

/* Takes ownership of `t` (its data moves into the list); copies the name. */
qb_status qb_weights_add(qb_weights *w, const char *name, qb_tensor t);
/* Index of `name`, or -1. */
int qb_weights_find(const qb_weights *w, const char *name);
/* Moves tensor i out of the list into *t and removes its entry (later ones move up). */
void qb_weights_take(qb_weights *w, int i, qb_tensor *t);
void qb_weights_free(qb_weights *w);

#ifdef __cplusplus
}
#endif

#endif
