/* The backend op table. csrc/model/bert.c is written once against it; the CPU
 * backend (csrc/backend/cpu.c, kernels in csrc/cpu/) is the reference, and the CUDA
 * backend fills the same table. Pointers are device pointers of that backend.
 * Layouts are row-major; shapes in comments: B batch, T sequence, C hidden,
 * H heads, D head dim (C = H * D), N out features, K in features. */
#ifndef QBERT_BACKEND_H
#define QBERT_BACKEND_H

#include "qbert/core.h"
#include "qbert/tensor.h"

#include <math.h>

#ifdef __cplusplus
extern "C" {  /* the CUDA sources and C++ tests use the op table */
#endif

/* Dropout at one site of one step: element i of the site is kept (and scaled by
 * 1 / (1 - p)) when the 24-bit uniform of word i of Philox4x32(key = seed,
 * counter = (i / 4, stream)) is >= p, so a mask is a pure function of (seed, stream,
 * index): the backward pass recomputes it, and a GPU draws the same one. p = 0: off.
 * offset, when not NULL, points to backend memory holding a number added to stream
 * (read when the op runs: a recorded training step takes each step's streams from
 * the device). */
typedef struct {
    float p;
    uint64_t seed, stream;
    const uint64_t *offset;
} qb_dropout;

/* AdamW over arrays of parameters, as torch.optim.AdamW computes it (decoupled
 * decay first), after clip_grad_norm_ over the gradients whose sum of squares the
 * sumsq op left in backend memory (so no value goes to the host and back), the
 * gradients being loss_scale times the true ones (fp16; unscale = 1 / loss_scale):
 *   norm = sqrt(sumsq) * unscale; nothing changes when norm is not finite;
 *   g' = g * grad_scale, grad_scale = unscale * min(1, max_norm / (norm + 1e-6))
 *        (max_norm 0: no clipping; qb_adamw_grad_scale)
 *   w *= 1 - lr * weight_decay (where the decay mask says so)
 *   m = b1 m + (1 - b1) g';  v = b2 v + (1 - b2) g'^2
 *   w -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps),  bc_i = 1 - b_i^step. */
typedef struct qb_adamw_args {
    float lr, beta1, beta2, eps, weight_decay, max_norm;
    float bc1, bc2_sqrt;  /* 1 - beta1^step, sqrt(1 - beta2^step) */
} qb_adamw_args;

/* Decay masks hold one byte per QB_DECAY_BLOCK elements: the tensors of a model's
 * arena start on 256-byte boundaries (csrc/model/weights.c), so a block belongs to
 * one tensor. */
#define QB_DECAY_BLOCK 64

#ifdef __CUDACC__
#define QB_HOST_DEVICE __host__ __device__
#else
#define QB_HOST_DEVICE
#endif
/* The factor on the gradients from their sum of squares, with the host's double
 * arithmetic on both sides (the same bits on a GPU); false when the norm is not
 * finite (the step is skipped). */
static inline QB_HOST_DEVICE bool qb_adamw_grad_scale(const qb_adamw_args *a, double sumsq, double unscale,
                                                       float *grad_scale)
{
    const double norm = sqrt(sumsq) * unscale;
    if (!(norm - norm == 0.0)) return false;  /* NaN or infinite (isfinite is not a device function in C) */
    float clip = 1.0f;
    if (a->max_norm > 0.0f) {
        const float coef = (float)(a->max_norm / (norm + 1e-6));
        if (coef < 1.0f) clip = coef;
    }
    *grad_scale = (float)(clip * unscale);
    return true;
}

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

/* Where a backend's ops run: one of its queues of work (CUDA: a stream, with its own
 * pending error and scratch), made by stream_new; NULL is the backend's default one.
 * Every op that works on backend memory takes the one it runs on, first. */
typedef struct qb_stream qb_stream;

/* What a backend can do beyond the ops every backend has (qb_backend.caps). */
enum {
    QB_CAN_GRAPHS = 1 << 0,   /* replay, graphs_free: passes recorded and relaunched */
    QB_CAN_STREAMS = 1 << 1,  /* stream_new, stream_free: streams beside the default */
    QB_CAN_HALF = 1 << 2,     /* activations stored as FP16 / BF16 (the ops' qb_dtype t) */
};

/* The op table. Activations: the ops that take a qb_dtype t store the tensors their
 * comment names in t: QB_F32 on every backend, QB_F16 or QB_BF16 on one with
 * QB_CAN_HALF (then every product of the op is in that format, with FP32 sums and
 * FP32 statistics, whatever math says). Parameters, their gradients, statistics
 * (LayerNorm's, the log-sum-exp), the head's (pooler, classifier) tensors and
 * everything else stay FP32. */
typedef struct qb_backend {
    const char *name;
    qb_device device;                /* where its memory is */
    unsigned caps;                   /* QB_CAN_* */
    const char *(*device_name)(void);/* for reports: "cpu", "NVIDIA H100 80GB HBM3 (sm_90)" */
    void *(*alloc)(size_t bytes);   /* NULL on failure */
    void (*free)(void *p);
    /* y (M, N) = x (M, K) . w (N, K)^T + b (N); b may be NULL (nn.Linear layout). y, x,
     * w, b in t. FP32 storage: the products in arithmetic math (qb_math: x and w
     * rounded, b added in FP32). */
    void (*linear)(qb_stream *s, void *y, const void *x, const void *w, const void *b, int M, int N, int K,
                   qb_math math, qb_dtype t);
    /* The quantized Linear q (include/qbert/quant.h): y (M, N) = x (M, K) . W^T + b,
     * then exact GELU when gelu is set. INT8 / W4A8: x is quantized per token (or with
     * q->act_scale, clamped to [-128, 127]), the product is exact in int32, scaled by
     * input x weight scales; weight-only (act_f32): x times the dequantized weights.
     * xq, when not NULL, is x already quantized per token (a dynamic q only,
     * qb_qlinear_dynamic); then x is not read. yq, when not NULL (laid out for
     * M x N), also receives y quantized per token: the bits a dynamic Linear reading
     * y would compute (the FFN's output Linear reads the GELU output so, quantized in
     * the epilogue that made it rather than in a second pass over it). The prepared
     * layout is used when present, else the scalar reference. x and y in t (half
     * storage: y computed in FP32 as with FP32 storage, then rounded; yq quantized
     * from y as stored; not weight-only Linears), b FP32. */
    void (*linear_q)(qb_stream *s, void *y, qb_qinput *yq, const void *x, const qb_qinput *xq,
                     const struct qb_qlinear *q, const float *b, int M, int gelu, qb_dtype t);
    /* Lays q's weights out for this backend once (q->prepared, q->release). */
    qb_status (*qlinear_prepare)(qb_stream *s, struct qb_qlinear *q);
    /* Backward of linear: dx (M, K) = dy (M, N) . w (N, K) (overwritten; NULL skips it),
     * dw (N, K) += dy^T x, db (N) += column sums of dy (db may be NULL); dx, dy, x, w
     * in t, dw and db FP32. FP32 storage: every product in arithmetic math (dy, x and w
     * rounded). */
    void (*linear_backward)(qb_stream *s, void *dx, float *dw, float *db, const void *dy, const void *x,
                            const void *w, int M, int N, int K, qb_math math, qb_dtype t);
    /* u = x + res (res may be NULL); out (M, C) = (u - mean) / sqrt(var + eps) * g + b.
     * For the backward pass u_out (M, C) receives u and stats (M, 2) the mean and
     * 1 / sqrt(var + eps); either may be NULL. out and u_out may alias x; out may alias
     * res. out, u_out, x, res in t. outq, when not NULL (laid out for M x C), also
     * receives out quantized per token (qb_qinput) as stored: the bits linear_q would
     * compute from out. */
    void (*layernorm)(qb_stream *s, void *out, void *u_out, float *stats, qb_qinput *outq, const void *x,
                      const void *res, const float *g, const float *b, int M, int C, float eps, qb_dtype t);
    /* du (M, C) = gradient wrt u from dout (M, C), given u and stats of the forward;
     * dg, db (C) += the parameter gradients. du may alias dout. du, dout, u in t. */
    void (*layernorm_backward)(qb_stream *s, void *du, float *dg, float *db, const void *dout, const void *u,
                               const float *stats, const float *g, int M, int C, qb_dtype t);
    /* y (n) = gelu(x), exact erf form; y may alias x; in t. */
    void (*gelu)(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t);
    /* dx (n) = dy * gelu'(x); dx may alias dy; in t. */
    void (*gelu_backward)(qb_stream *s, void *dx, const void *dy, const void *x, size_t n, qb_dtype t);
    /* x (n) = tanh(x), in place. */
    void (*tanh)(qb_stream *s, float *x, size_t n);
    /* dx (n) = dy * (1 - y^2) with y = tanh output; dx may alias dy. */
    void (*tanh_backward)(qb_stream *s, float *dx, const float *dy, const float *y, size_t n);
    /* out (B, T, H*D) = dropout(softmax(q k^T / sqrt(D) + maskbias)) v per head;
     * q, k, v (B, T, H*D) in rows of ld elements (H*D, or 3 H*D when they are the
     * thirds of one QKV product); mask (B, T) 1 = attend, 0 = padding (bias -inf-like: a
     * sequence with no key to attend to attends uniformly to all of them, as in HF).
     * lse (B, H, T), when not NULL (training), receives the log-sum-exp of each row's
     * scores, ln sum_j exp(score_ij), from which a backward may recompute the
     * probabilities (its value for a fully padded sequence is the backend's own).
     * drop may be NULL (off); element (b, h, i, j) of the probabilities is dropout
     * index ((b H + h) T + i) T + j. math BF16 / FP16 takes every product's operands
     * in that format, with FP32 sums and softmax (the GPU's tensor cores; emulated on
     * the CPU); FP32 and TF32 compute in FP32. out, q, k, v in t (FP16 / BF16 storage
     * needs D = 32, 64 or 128). */
    void (*attention)(qb_stream *s, void *out, float *lse, const void *q, const void *k, const void *v, int ld,
                      const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D, qb_math math,
                      qb_dtype t);
    /* dq, dk, dv (B, T, H*D; rows of ld, as q, k, v) from dout (B, T, H*D), the
     * forward's inputs (q, k, v, mask, drop, math) and its out and lse; every tensor but
     * lse in t. */
    void (*attention_backward)(qb_stream *s, void *dq, void *dk, void *dv, const void *dout, const void *q,
                               const void *k, const void *v, int ld, const void *out, const float *lse,
                               const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                               qb_math math, qb_dtype t);
    /* out (B*T, C) = word[ids] + pos[t] + type[types]; ids/types (B, T); out in t,
     * the tables in tables (FP32, or t). */
    void (*embedding)(qb_stream *s, void *out, const int32_t *ids, const int32_t *types, const void *word,
                      const void *pos, const void *type, int B, int T, int C, qb_dtype t, qb_dtype tables);
    /* dword, dpos, dtype += the scatter of dout (B*T, C; in t); the row of pad_id in
     * dword gets nothing (nn.Embedding's padding_idx). */
    void (*embedding_backward)(qb_stream *s, float *dword, float *dpos, float *dtype, const void *dout,
                               const int32_t *ids, const int32_t *types, int pad_id, int B, int T, int C,
                               qb_dtype t);
    /* x (n; in t) *= dropout mask (forward and backward alike). */
    void (*dropout)(qb_stream *s, void *x, size_t n, const qb_dropout *drop, qb_dtype t);
    /* Softmax cross-entropy over logits (B, K) with labels (B): losses (B) =
     * -log softmax(logits)[label], dlogits (B, K) = (softmax - onehot) * g with
     * g = grad_scale * *loss_scale (backend memory: fp16's scale, kept on the
     * device; NULL: g = grad_scale). */
    void (*xent)(qb_stream *s, float *losses, float *dlogits, const float *logits, const int32_t *labels, int B,
                 int K, float grad_scale, const float *loss_scale);
    /* One AdamW update of w, m, v (n) from g (n), clipped by the norm whose square
     * *sumsq holds, with g *loss_scale times the true gradient (NULL: 1)
     * (qb_adamw_args). decay (n / QB_DECAY_BLOCK rounded up): 1 where
     * a->weight_decay applies, 0 where not; NULL: everywhere. a, sumsq, loss_scale
     * and decay are in backend memory (read when the op runs: a recorded step takes
     * each step's rate and scale from there). A model's whole arena is one call
     * (csrc/train/optim.c). */
    void (*adamw)(qb_stream *s, float *w, float *m, float *v, const float *g, const uint8_t *decay, size_t n,
                  const qb_adamw_args *a, const double *sumsq, const float *loss_scale);
    /* fp16 loss scaling after a step, as torch's GradScaler (backend memory): a
     * non-finite *sumsq halves *scale when it is at least 2 and zeroes *good; a
     * finite one counts *good, doubling *scale at 2000 (and zeroing *good). */
    void (*loss_scale_update)(qb_stream *s, float *scale, int32_t *good, const double *sumsq);
    /* *out (backend memory) += the sum of x^2 over x (n), accumulated in double in a
     * fixed order (the same bits every run): the squared gradient norm, left on the
     * device. */
    void (*sumsq)(qb_stream *s, double *out, const float *x, size_t n);
    /* y (n) += x (n); in t. */
    void (*add)(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t);
    /* Row r of dst (rows, cols; in dt, row stride ldd elements) = row r of src (in st,
     * row stride lds), converted (rounded to nearest): the first tokens' rows of a
     * batch gathered for the pooler, their gradients scattered back, half copies of
     * FP32 weights. dst and src do not overlap. */
    void (*rows)(qb_stream *s, void *dst, qb_dtype dt, size_t ldd, const void *src, qb_dtype st, size_t lds,
                 int rows, int cols);
    /* Fake quantization (QAT), symmetric, b = 4 or 8 bits: qmin = -2^(b-1),
     * qmax = 2^(b-1) - 1, q(x) = clamp(rint(x / s), qmin, qmax) s, half to even.
     * Weights w (N, K): one scale per group of `group` columns of a row (group = K:
     * per output channel; group divides K), scales (N, K / group) = absmax / qmax,
     * y = q(w) (an all-zero group stays 0). Every weight is inside its clip range, so
     * the weight gradient passes unchanged (no backward op). y may alias w. */
    void (*fake_quant_weight)(qb_stream *s, float *y, float *scales, const float *w, int N, int K, int group,
                              int bits);
    /* Activations x (n), one scale *scale > 0 (backend memory: an observer's, which
     * stays on the device): y = q(x). y may alias x. */
    void (*fake_quant)(qb_stream *s, float *y, const float *x, size_t n, const float *scale, int bits);
    /* Clipped straight-through estimator: dx = dy where qmin <= rint(x / s) <= qmax,
     * else 0 (torch's rule). dx may alias dy. */
    void (*fake_quant_backward)(qb_stream *s, float *dx, const float *dy, const float *x, size_t n,
                                const float *scale, int bits);
    /* The activation observers' statistic of one batch, into backend memory (out, 2
     * floats: nothing waits for the host). minmax: out[0] = min, out[1] = max of x (n),
     * NaN ignored. abs_percentile: out = (-P, P) for P the p-th percentile
     * (0 < p <= 100) of |x| (n), to 1/2048 of the largest |x|: the upper edge of the
     * histogram bin where the count reaches p%; P = 0 for an all-zero x. */
    void (*minmax)(qb_stream *s, float *out, const float *x, size_t n);
    void (*abs_percentile)(qb_stream *s, float *out, const float *x, size_t n, double p);
    /* Folds a batch statistic (2) into an observer's range (2): the first finite one
     * is taken (the range is NaN until then), later ones by min / max (ema 0) or
     * range += ema * (batch - range); a non-finite batch changes nothing. Then
     * *scale = max(|min|, |max|) / (2^(bits-1) - 1), or 1 when that is 0 or not
     * finite. All in backend memory (qb_cpu_observe is the reference). */
    void (*observe)(qb_stream *s, float *range, float *scale, const float *batch, float ema, int bits);
    /* Sets bytes of backend memory to zero. */
    void (*zero)(qb_stream *s, void *p, size_t bytes);
    /* Copies between host and backend memory (plain memcpy on the CPU). */
    void (*to_device)(qb_stream *s, void *dst, const void *src, size_t bytes);
    void (*to_host)(qb_stream *s, void *dst, const void *src, size_t bytes);
    /* to_host without the wait: dst (host_alloc memory) holds the bytes once the
     * caller's next sync of s returns (values read back once per training step). */
    void (*to_host_async)(qb_stream *s, void *dst, const void *src, size_t bytes);
    /* Copies within backend memory. */
    void (*copy)(qb_stream *s, void *dst, const void *src, size_t bytes);
    /* Waits for the work queued on s so far; the first error of an op on s since the
     * last sync (ops return nothing: an asynchronous backend reports here). */
    qb_status (*sync)(qb_stream *s);
    /* Host memory for the copies to and from the backend: page-locked on a GPU (the
     * copies then run asynchronously, at full speed); plain memory on the CPU. NULL
     * when out of memory. */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
    /* QB_CAN_GRAPHS: runs queue(ctx), a pass that only queues ops on s, through a
     * graph of them kept in *graphs under key. The first time a key is seen the pass
     * runs as it is; the second time it is recorded, and from then on the record runs
     * in one launch. The caller frees *graphs with graphs_free, and must do so before
     * any buffer its passes use moves (the backend itself drops a record whose
     * internal scratch moved). The key must tell apart everything a record fixes: the
     * model's device buffers, the shapes, and values passed by value to ops (a QAT
     * model's input scales: so inference activations must not outlive a training
     * step of their QAT model). A record made on one stream is made again rather
     * than launched on another. If recording fails the pass runs as it is, with a
     * warning, and so do all later ones. */
    qb_status (*replay)(qb_stream *s, void **graphs, const uint64_t key[4], void (*queue)(void *ctx), void *ctx);
    void (*graphs_free)(void *graphs);
    /* QB_CAN_STREAMS: a stream orders the work given to it and has its own pending
     * error (what sync reports) and its own scratch, so work on two streams, from two
     * threads, runs side by side without disturbing the other (an engine has one:
     * csrc/engine/engine.c); only allocating or freeing device memory waits for the
     * whole device. stream_new gives NULL after recording why (qb_error);
     * stream_free waits for the stream's work, then frees it and its scratch. */
    qb_stream *(*stream_new)(void);
    void (*stream_free)(qb_stream *s);
} qb_backend;

/* Whether attention can store its activations in FP16 / BF16 at head dim D (the
 * tensor-core kernels' head dims). */
static inline bool qb_half_heads(int D) { return D == 32 || D == 64 || D == 128; }

/* Bytes of one element of activation storage t (QB_F32, QB_F16, QB_BF16). */
static inline size_t qb_store_bytes(qb_dtype t) { return t == QB_F32 ? 4 : 2; }

const qb_backend *qb_backend_cpu(void);
/* The CUDA backend on one device (csrc/backend/cuda.c); QB_EUNSUPPORTED naming the
 * reason when there is no usable GPU or the build has no CUDA. */
qb_status qb_backend_cuda(const qb_backend **out);
/* The device it takes: index modulo the devices present (default 0). Called before
 * the first qb_backend_cuda: a data-parallel process passes its local rank. */
void qb_backend_cuda_device(int index);
/* The backend called name ("cpu" or "cuda"); `what` names the setting it came from
 * in the error ("[device] type", "--device"). */
qb_status qb_backend_by_name(const char *name, const char *what, const qb_backend **out);

#ifdef __cplusplus
}
#endif

#endif
