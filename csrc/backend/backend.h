/* The backend op table. csrc/model/bert.c is written once against it; the CPU
 * backend (csrc/backend/cpu.c, kernels in csrc/cpu/) is the reference, and the CUDA
 * backend fills the same table. Pointers are device pointers of that backend.
 * Layouts are row-major; shapes in comments: B batch, T sequence, C hidden,
 * H heads, D head dim (C = H * D), N out features, K in features. */
#ifndef QBERT_BACKEND_H
#define QBERT_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef struct qb_backend {
    const char *name;
    void *(*alloc)(size_t bytes);   /* NULL on failure */
    void (*free)(void *p);
    /* y (M, N) = x (M, K) . w (N, K)^T + b (N); b may be NULL (nn.Linear layout). */
    void (*linear)(float *y, const float *x, const float *w, const float *b, int M, int N, int K);
    /* out (M, C) = LayerNorm(x + res) * g + b; res may be NULL; out may alias x. */
    void (*layernorm)(float *out, const float *x, const float *res, const float *g,
                      const float *b, int M, int C, float eps);
    /* x (n) = gelu(x), exact erf form, in place. */
    void (*gelu)(float *x, size_t n);
    /* x (n) = tanh(x), in place. */
    void (*tanh)(float *x, size_t n);
    /* out (B, T, H*D) = softmax(q k^T / sqrt(D) + maskbias) v per head;
     * q, k, v (B, T, H*D); mask (B, T) 1 = attend, 0 = padding (bias -inf-like). */
    void (*attention)(float *out, const float *q, const float *k, const float *v,
                      const int32_t *mask, int B, int T, int H, int D);
    /* out (B*T, C) = word[ids] + pos[t] + type[types]; ids/types (B, T). */
    void (*embedding)(float *out, const int32_t *ids, const int32_t *types,
                      const float *word, const float *pos, const float *type,
                      int B, int T, int C);
    /* Copies between host and backend memory (plain memcpy on the CPU). */
    void (*to_device)(void *dst, const void *src, size_t bytes);
    void (*to_host)(void *dst, const void *src, size_t bytes);
    /* Copies within backend memory. */
    void (*copy)(void *dst, const void *src, size_t bytes);
} qb_backend;

const qb_backend *qb_backend_cpu(void);

#endif
