/* The backend op table. csrc/model/bert.c is written once against it; the CPU
 * backend (csrc/backend/cpu.c, kernels in csrc/cpu/) is the reference, and the CUDA
 * backend fills the same table. Pointers are device pointers of that backend.
 * Layouts are row-major; shapes in comments: B batch, T sequence, C hidden,
 * H heads, D head dim (C = H * D), N out features, K in features. */
#ifndef QBERT_BACKEND_H
#define QBERT_BACKEND_H

#include "qbert/core.h"
#include "qbert/tensor.h"

#ifdef __cplusplus
extern "C" {  /* the CUDA sources and C++ tests use the op table */
#endif

/* Dropout at one site of one step: element i of the site is kept (and scaled by
 * 1 / (1 - p)) when the 24-bit uniform of word i of Philox4x32(key = seed,
 * counter = (i / 4, stream)) is >= p, so a mask is a pure function of (seed, stream,
 * index): the backward pass recomputes it, and a GPU draws the same one. p = 0: off. */
typedef struct {
    float p;
    uint64_t seed, stream;
} qb_dropout;

/* AdamW for one tensor, as torch.optim.AdamW computes it (decoupled decay first):
 *   w *= 1 - lr * weight_decay;  g' = g * grad_scale (clipping)
 *   m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
 *   w -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - b_i^step. */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay, grad_scale;
    float bc1, bc2_sqrt;  /* 1 - beta1^step, sqrt(1 - beta2^step) */
} qb_adamw_args;

struct qb_qlinear;

/* Activations x (M, K) quantized for the u8 tiles of the quantized Linear: per token
 * on the 7-bit grid of its dynamic INT8 path (formula in csrc/cpu/gemm_u8.c), x ~
 * scale[m] (u - zp[m]). u (rows, ldu): rows = M rounded up to QB_QINPUT_ROW_PAD (the
 * padding rows are zero), ldu = K rounded up to 4 (u = zp past K). A LayerNorm
 * writes them once for every Linear that reads its output (q, k and v). The W4A8
 * path also takes a static 8-bit input this way: u = q + 128, zp = 128. */
#define QB_QINPUT_ROW_PAD 24
typedef struct {
    uint8_t *u;
    float *scale;  /* (M) */
    int32_t *zp;   /* (M) */
    int M, K, ldu;
} qb_qinput;
static inline int qb_qinput_rows(int M) { return (M + QB_QINPUT_ROW_PAD - 1) / QB_QINPUT_ROW_PAD * QB_QINPUT_ROW_PAD; }
static inline int qb_qinput_ldu(int K) { return (K + 3) / 4 * 4; }
/* Whether q is laid out for M x K activations. */
static inline bool qb_qinput_fits(const qb_qinput *q, int M, int K)
{
    return q->M == M && q->K == K && q->ldu == qb_qinput_ldu(K);
}

typedef struct qb_backend {
    const char *name;
    qb_device device;                /* where its memory is */
    const char *(*device_name)(void);/* for reports: "cpu", "NVIDIA H100 80GB HBM3 (sm_90)" */
    void *(*alloc)(size_t bytes);   /* NULL on failure */
    void (*free)(void *p);
    /* y (M, N) = x (M, K) . w (N, K)^T + b (N); b may be NULL (nn.Linear layout).
     * The products in arithmetic math (qb_math: x and w rounded, b added in FP32). */
    void (*linear)(float *y, const float *x, const float *w, const float *b, int M, int N, int K, qb_math math);
    /* The quantized Linear q (include/qbert/quant.h): y (M, N) = x (M, K) . W^T + b,
     * then exact GELU when gelu is set. INT8 / W4A8: x is quantized per token (or with
     * q->act_scale, clamped to [-128, 127]), the product is exact in int32, scaled by
     * input x weight scales; weight-only (act_f32): x times the dequantized weights.
     * xq, when not NULL, is x already quantized per token (a dynamic q only,
     * qb_qlinear_dynamic); then x is not read. yq, when not NULL (laid out for
     * M x N), also receives y quantized per token: the bits a dynamic Linear reading
     * y would compute (the FFN's output Linear reads the GELU output so, quantized in
     * the epilogue that made it rather than in a second pass over it). The prepared
     * layout is used when present, else the scalar reference. */
    void (*linear_q)(float *y, qb_qinput *yq, const float *x, const qb_qinput *xq, const struct qb_qlinear *q,
                     const float *b, int M, int gelu);
    /* Lays q's weights out for this backend once (q->prepared, q->release). */
    qb_status (*qlinear_prepare)(struct qb_qlinear *q);
    /* Backward of linear: dx (M, K) = dy (M, N) . w (N, K) (overwritten; NULL skips it),
     * dw (N, K) += dy^T x, db (N) += column sums of dy (db may be NULL); every
     * product in arithmetic math (dy, x and w rounded). */
    void (*linear_backward)(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int M, int N, int K, qb_math math);
    /* t = x + res (res may be NULL); out (M, C) = (t - mean) / sqrt(var + eps) * g + b.
     * For the backward pass t_out (M, C) receives t and stats (M, 2) the mean and
     * 1 / sqrt(var + eps); either may be NULL. out and t_out may alias x; out may alias res.
     * outq, when not NULL (laid out for M x C), also receives out quantized per token
     * (qb_qinput), the bits linear_q would compute from out. */
    void (*layernorm)(float *out, float *t_out, float *stats, qb_qinput *outq, const float *x,
                      const float *res, const float *g, const float *b, int M, int C, float eps);
    /* dt (M, C) = gradient wrt t from dout (M, C), given t and stats of the forward;
     * dg, db (C) += the parameter gradients. dt may alias dout. */
    void (*layernorm_backward)(float *dt, float *dg, float *db, const float *dout, const float *t,
                               const float *stats, const float *g, int M, int C);
    /* y (n) = gelu(x), exact erf form; y may alias x. */
    void (*gelu)(float *y, const float *x, size_t n);
    /* dx (n) = dy * gelu'(x); dx may alias dy. */
    void (*gelu_backward)(float *dx, const float *dy, const float *x, size_t n);
    /* x (n) = tanh(x), in place. */
    void (*tanh)(float *x, size_t n);
    /* dx (n) = dy * (1 - y^2) with y = tanh output; dx may alias dy. */
    void (*tanh_backward)(float *dx, const float *dy, const float *y, size_t n);
    /* out (B, T, H*D) = dropout(softmax(q k^T / sqrt(D) + maskbias)) v per head;
     * q, k, v (B, T, H*D); mask (B, T) 1 = attend, 0 = padding (bias -inf-like: a
     * sequence with no key to attend to attends uniformly to all of them, as in HF).
     * lse (B, H, T), when not NULL (training), receives the log-sum-exp of each row's
     * scores, ln sum_j exp(score_ij), from which a backward may recompute the
     * probabilities (its value for a fully padded sequence is the backend's own).
     * drop may be NULL (off); element (b, h, i, j) of the probabilities is dropout
     * index ((b H + h) T + i) T + j. math BF16 / FP16 takes every product's operands
     * in that format, with FP32 sums and softmax (the GPU's tensor cores; emulated on
     * the CPU); FP32 and TF32 compute in FP32. */
    void (*attention)(float *out, float *lse, const float *q, const float *k, const float *v,
                      const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D, qb_math math);
    /* dq, dk, dv (B, T, H*D) from dout (B, T, H*D), the forward's inputs (q, k, v,
     * mask, drop, math) and its out and lse. */
    void (*attention_backward)(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, const float *out, const float *lse,
                               const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                               qb_math math);
    /* out (B*T, C) = word[ids] + pos[t] + type[types]; ids/types (B, T). */
    void (*embedding)(float *out, const int32_t *ids, const int32_t *types,
                      const float *word, const float *pos, const float *type,
                      int B, int T, int C);
    /* dword, dpos, dtype += the scatter of dout (B*T, C); the row of pad_id in dword
     * gets nothing (nn.Embedding's padding_idx). */
    void (*embedding_backward)(float *dword, float *dpos, float *dtype, const float *dout,
                               const int32_t *ids, const int32_t *types, int pad_id,
                               int B, int T, int C);
    /* x (n) *= dropout mask (forward and backward alike). */
    void (*dropout)(float *x, size_t n, const qb_dropout *drop);
    /* Softmax cross-entropy over logits (B, K) with labels (B): losses (B) =
     * -log softmax(logits)[label], dlogits (B, K) = (softmax - onehot) * grad_scale. */
    void (*xent)(float *losses, float *dlogits, const float *logits, const int32_t *labels,
                 int B, int K, float grad_scale);
    /* One AdamW update of w, m, v (n) from g (n). */
    void (*adamw)(float *w, float *m, float *v, const float *g, size_t n, const qb_adamw_args *s);
    /* Sum of squares of x (n), accumulated in double (for the global gradient norm). */
    double (*sumsq)(const float *x, size_t n);
    /* y (n) += x (n). */
    void (*add)(float *y, const float *x, size_t n);
    /* Fake quantization (QAT), symmetric, b = 4 or 8 bits: qmin = -2^(b-1),
     * qmax = 2^(b-1) - 1, q(x) = clamp(rint(x / s), qmin, qmax) s, half to even.
     * Weights w (N, K): one scale per group of `group` columns of a row (group = K:
     * per output channel; group divides K), scales (N, K / group) = absmax / qmax,
     * y = q(w) (an all-zero group stays 0). Every weight is inside its clip range, so
     * the weight gradient passes unchanged (no backward op). y may alias w. */
    void (*fake_quant_weight)(float *y, float *scales, const float *w, int N, int K, int group,
                              int bits);
    /* Activations x (n), one scale s > 0: y = q(x). y may alias x. */
    void (*fake_quant)(float *y, const float *x, size_t n, float scale, int bits);
    /* Clipped straight-through estimator: dx = dy where qmin <= rint(x / s) <= qmax,
     * else 0 (torch's rule). dx may alias dy. */
    void (*fake_quant_backward)(float *dx, const float *dy, const float *x, size_t n, float scale,
                                int bits);
    /* out[0] = min, out[1] = max of x (n): the statistic of the activation observers. */
    void (*minmax)(float out[2], const float *x, size_t n);
    /* The p-th percentile (0 < p <= 100) of |x| (n), to 1/2048 of the largest |x|:
     * the upper edge of the histogram bin where the count reaches p% (the percentile
     * observer's statistic). 0 for an all-zero x. */
    float (*abs_percentile)(const float *x, size_t n, double p);
    /* Sets bytes of backend memory to zero. */
    void (*zero)(void *p, size_t bytes);
    /* Copies between host and backend memory (plain memcpy on the CPU). */
    void (*to_device)(void *dst, const void *src, size_t bytes);
    void (*to_host)(void *dst, const void *src, size_t bytes);
    /* Copies within backend memory. */
    void (*copy)(void *dst, const void *src, size_t bytes);
    /* Waits for the work queued so far; the first error of an op since the last
     * sync (ops return nothing: an asynchronous backend reports here). */
    qb_status (*sync)(void);
    /* Host memory for the copies to and from the backend: page-locked on a GPU (the
     * copies then run asynchronously, at full speed); plain memory on the CPU. NULL
     * when out of memory. */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    /* Optional (NULL on the CPU, whose ops run at once): runs queue(ctx), a pass that
     * only queues ops, through a graph of them kept in *graphs under key. The first
     * time a key is seen the pass runs as it is; the second time it is recorded, and
     * from then on the record runs in one launch. The caller frees *graphs with
     * graphs_free, and must do so before any buffer its passes use moves (the backend
     * itself drops a record whose internal scratch moved). The key must tell apart
     * everything a record fixes: the model's device buffers, the shapes, and values
     * passed by value to ops (a QAT model's input scales: so inference activations
     * must not outlive a training step of their QAT model). If recording fails the
     * pass runs as it is, with a warning, and so do all later ones. */
    qb_status (*replay)(void **graphs, const uint64_t key[4], void (*queue)(void *ctx), void *ctx);
    void (*graphs_free)(void *graphs);
    /* Optional (NULL on the CPU): streams. A stream orders the work given to it and has
     * its own pending error (what sync reports) and its own scratch, so work on two
     * streams, from two threads, runs side by side without disturbing the other (an
     * engine has one: csrc/engine/engine.c); only allocating or freeing device memory
     * waits for the whole device. The ops a thread calls go to its current stream:
     * the backend's default one until stream_use(s) makes s current (NULL: the
     * default again); stream_use returns the one it replaces. stream_new gives NULL
     * after recording why (qb_error); stream_free waits for the stream's work, then
     * frees it and its scratch, and makes the default current again for the calling
     * thread: no other thread may still have it current, and graphs recorded on it
     * are made again if their activations are used on another stream. */
    void *(*stream_new)(void);
    void *(*stream_use)(void *s);
    void (*stream_free)(void *s);
} qb_backend;

const qb_backend *qb_backend_cpu(void);
/* The CUDA backend on device 0 (csrc/backend/cuda.c); QB_EUNSUPPORTED naming the
 * reason when there is no usable GPU or the build has no CUDA. */
qb_status qb_backend_cuda(const qb_backend **out);
/* The backend called name ("cpu" or "cuda"); `what` names the setting it came from
 * in the error ("[device] type", "--device"). */
qb_status qb_backend_by_name(const char *name, const char *what, const qb_backend **out);

#ifdef __cplusplus
}
#endif

#endif
