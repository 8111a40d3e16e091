/* The CUDA backend's internal interface (C and CUDA C++ alike): the runtime shared by
 * every kernel file (one device; streams, each keeping its first error until someone
 * asks, and its own scratch) and the launchers of the .cu files of cuda/. Every
 * qb_cuda_<op> has the signature and contract of the op of the same name in
 * csrc/backend/backend.h, with device pointers; host pointers only where that
 * contract says so (qb_dropout but its offset). csrc/backend/cuda.c
 * puts them into the op table.
 *
 * Ordering: every launcher enqueues on the stream it is given (qb_stream; NULL: the
 * default one) and returns; an op that hands a value to the host (to_host) waits
 * for that stream first. Errors: a failed launch or
 * call is recorded on the op's stream (qb_cuda_note) and the op does nothing more;
 * qb_cuda_sync(s) waits for s and reports its first one. Threads: streams can be
 * driven from several threads at once, each its own; what the streams share (the
 * cuBLASLt handle and plans) is guarded by qb_cuda_lock.
 *
 * Storage: the ops' qb_dtype t (backend.h) is QB_F32, QB_F16 or QB_BF16 here (the
 * backend has QB_CAN_HALF); a kernel is instantiated for each (qb_cuda_storage in
 * common.cuh). */
#ifndef QBERT_CUDA_H
#define QBERT_CUDA_H

#include <cuda_runtime_api.h>

#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Selects device 0 and creates the default stream (once; later calls return the
 * first call's result; cuda/gemm.cu makes its cuBLASLt handle on first use).
 * QB_EUNSUPPORTED naming the reason when there is no usable device. */
qb_status qb_cuda_init(void);
/* The CUDA stream of s (NULL: the default stream). */
cudaStream_t qb_cuda_stream(qb_stream *s);
/* Records e (when not cudaSuccess) as s's pending error, with what was being done,
 * unless an earlier error is still pending. Returns e != cudaSuccess. */
int qb_cuda_note(qb_stream *s, cudaError_t e, const char *what);
/* Records the error of the kernel launch that just happened on s, if any. */
int qb_cuda_launched(qb_stream *s, const char *what);
/* Waits for s; returns its pending error (and clears it) as a qb_status message
 * "CUDA: <what>: <cuda error text>". */
qb_status qb_cuda_sync(qb_stream *s);
/* Waits for s, noting a failure as `what`: every wait of the host for the device
 * goes through here (or qb_cuda_sync), so that they can be counted. */
int qb_cuda_wait(qb_stream *s, const char *what);
/* How many times the host has waited for a stream so far (the training benchmark's
 * host synchronizations per step). */
unsigned long long qb_cuda_waits(void);
/* The device's name and compute capability, for reports ("NVIDIA H100 (sm_90)"). */
const char *qb_cuda_device_name(void);
/* The one lock of what every stream shares. */
void qb_cuda_lock(void);
void qb_cuda_unlock(void);

/* Streams (backend.h's stream_new, stream_free). */
qb_stream *qb_cuda_stream_new(void);
void qb_cuda_stream_free(qb_stream *s);
/* The scratch of a stream: device buffers that its ops reuse from call to call,
 * grown on demand by their owners, freed with the stream. Whoever frees or moves
 * one calls qb_cuda_scratch_moved (recorded graphs may read it). */
typedef struct {
    void *workspace;       /* cuda/gemm.cu: cuBLASLt's workspace */
    void *ones[3];         /* cuda/gemm.cu: (ones_len) 1.0 in FP32, FP16, BF16: the bias gradient's vector */
    size_t ones_len;
    int8_t *v;             /* cuda/qlinear.cu: quantized activations, */
    float *rows;           /*   their scales then int32 zero points, */
    int32_t *acc;          /*   the IMMA GEMM's int32 products */
    size_t v_cap, rows_cap, acc_cap;  /* bytes */
} qb_cuda_scratch;
/* s's scratch. */
qb_cuda_scratch *qb_cuda_scratch_get(qb_stream *s);
/* Frees s's scratch once its work is done (tests, at exit: the buffers grow again on
 * demand). */
void qb_cuda_scratch_release(qb_stream *s);

/* Memory and copies (backend.h's alloc, free, zero, to_device, to_host, copy).
 * qb_cuda_alloc returns NULL when the device is out of memory (the caller names
 * what it wanted and how much). */
void *qb_cuda_alloc(size_t bytes);
void qb_cuda_free(void *p);
void qb_cuda_zero(qb_stream *s, void *p, size_t bytes);
void qb_cuda_to_device(qb_stream *s, void *dst, const void *src, size_t bytes);
void qb_cuda_to_host(qb_stream *s, void *dst, const void *src, size_t bytes);
void qb_cuda_to_host_async(qb_stream *s, void *dst, const void *src, size_t bytes);
void qb_cuda_copy(qb_stream *s, void *dst, const void *src, size_t bytes);
/* Page-locked host memory (backend.h's host_alloc, host_free). */
void *qb_cuda_host_alloc(size_t bytes);
void qb_cuda_host_free(void *p);

/* CUDA Graphs (backend.h's replay, graphs_free). A recorded graph holds the device
 * pointers of its pass, its stream's scratch among them; qb_cuda_scratch_moved(s)
 * marks every record made on s as stale, and must be called by whoever frees or
 * moves a buffer of s's qb_cuda_scratch. A record made on one stream is not launched
 * on another (it is made again). QBERT_CUDA_GRAPHS=0 turns recording off (every pass
 * runs as it is). */
qb_status qb_cuda_replay(qb_stream *s, void **graphs, const uint64_t key[4], void (*queue)(void *ctx), void *ctx);
void qb_cuda_graphs_free(void *graphs);
void qb_cuda_scratch_moved(qb_stream *s);
/* Since the process started: passes recorded, passes run through a record (the
 * first right after its recording), and recordings that failed (the pass then ran
 * as it is): for tests and benchmarks. */
typedef struct {
    long recorded, replayed, failed;
} qb_cuda_graph_counts;
qb_cuda_graph_counts qb_cuda_graph_stats(void);

/* cuda/gemm.cu (cuBLASLt: FP32 storage with FP32 / TF32 / BF16 / FP16 products, or
 * FP16 / BF16 storage with products in that format) */
void qb_cuda_linear(qb_stream *s, void *y, const void *x, const void *w, const void *b, int M, int N, int K,
                    qb_math math, qb_dtype t);
void qb_cuda_linear_backward(qb_stream *s, void *dx, float *dw, float *db, const void *dy, const void *x,
                             const void *w, int M, int N, int K, qb_math math, qb_dtype t);
/* c (M, Np) int32 = x (M, Kp) . w (Np, Kp)^T, int8 operands (IMMA): row-major, Np
 * and Kp multiples of 4, zero-padded by the caller. */
void qb_cuda_gemm_s8(qb_stream *s, int32_t *c, const int8_t *w, const int8_t *x, int Np, int M, int Kp);
/* c (n, m) = b (n, k) . a (m, k)^T, all BF16 row-major, FP32 sums: the plain
 * tensor-core GEMM whose rate qbert-bench takes as the device's ceiling. */
void qb_cuda_gemm_bf16(qb_stream *s, void *c, const void *a, const void *b, int m, int n, int k);
/* Releases the cached plans and the handle (at exit; tests). */
void qb_cuda_gemm_release(void);

/* cuda/qlinear.cu (backend.h's linear_q and qlinear_prepare) */
qb_status qb_cuda_qlinear_prepare(qb_stream *s, struct qb_qlinear *q);
void qb_cuda_linear_q(qb_stream *s, void *y, qb_qinput *yq, const void *x, const qb_qinput *xq,
                      const struct qb_qlinear *q, const float *b, int M, int gelu, qb_dtype t);
/* The kernels of the quantized Linears, the same bits whichever runs. W4A8: the
 * pipelined mma.sync GEMM on the values widened to int8 (cuda/qgemm.cuh; the
 * default), mma.sync on nibbles unpacked in shared memory, or dp4a on the CUDA cores.
 * INT8: the pipelined GEMM (the default), or cuBLASLt's IMMA GEMM and an epilogue
 * kernel. A shape the pipelined GEMM cannot take (K not a multiple of 16, INT4 groups
 * not of 32) goes to the second. QBERT_CUDA_W4A8 = pipelined | mma | dp4a and
 * QBERT_CUDA_INT8 = pipelined | cublaslt set them at qb_cuda_init; qbert-bench
 * kernels and the tests switch between them (on linear_q called directly: a recorded
 * graph keeps the kernel it was recorded with). Each setter returns the kernel it
 * replaces. */
typedef enum { QB_W4A8_PIPELINED, QB_W4A8_MMA, QB_W4A8_DP4A } qb_cuda_w4a8;
qb_cuda_w4a8 qb_cuda_set_w4a8(qb_cuda_w4a8 kernel);
typedef enum { QB_INT8_PIPELINED, QB_INT8_CUBLASLT } qb_cuda_int8;
qb_cuda_int8 qb_cuda_set_int8(qb_cuda_int8 kernel);

/* cuda/layernorm.cu */
void qb_cuda_layernorm(qb_stream *s, void *out, void *u_out, float *stats, qb_qinput *outq, const void *x,
                       const void *res, const float *g, const float *b, int M, int C, float eps, qb_dtype t);
void qb_cuda_layernorm_backward(qb_stream *s, void *du, float *dg, float *db, const void *dout, const void *u,
                                const float *stats, const float *g, int M, int C, qb_dtype t);

/* cuda/elementwise.cu */
void qb_cuda_gelu(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t);
void qb_cuda_gelu_backward(qb_stream *s, void *dx, const void *dy, const void *x, size_t n, qb_dtype t);
void qb_cuda_tanh(qb_stream *s, float *x, size_t n);
void qb_cuda_tanh_backward(qb_stream *s, float *dx, const float *dy, const float *y, size_t n);
void qb_cuda_add(qb_stream *s, void *y, const void *x, size_t n, qb_dtype t);
void qb_cuda_rows(qb_stream *s, void *dst, qb_dtype dt, size_t ldd, const void *src, qb_dtype st, size_t lds,
                  int rows, int cols);
void qb_cuda_sumsq(qb_stream *s, double *out, const float *x, size_t n);

/* cuda/attention.cu (BF16 / FP16 products at head dims 32, 64, 128 go on to
 * cuda/flash_attention.cu; FP16 / BF16 storage only there) */
void qb_cuda_attention(qb_stream *s, void *out, float *lse, const void *q, const void *k, const void *v, int ld,
                       const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D, qb_math math,
                       qb_dtype t);
void qb_cuda_attention_backward(qb_stream *s, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                const void *k, const void *v, int ld, const void *out, const float *lse,
                                const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                                qb_math math, qb_dtype t);
/* cuda/flash_attention.cu: the same on the tensor cores, math BF16 or FP16 (the
 * operand type; storage t FP32 or that type), D 32, 64 or 128, 16-byte aligned
 * buffers, drop not NULL (p = 0: off). */
void qb_cuda_flash_attention(qb_stream *s, void *out, float *lse, const void *q, const void *k, const void *v,
                             int ld, const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D, qb_math math,
                             qb_dtype t);
void qb_cuda_flash_attention_backward(qb_stream *s, void *dq, void *dk, void *dv, const void *dout, const void *q,
                                      const void *k, const void *v, int ld, const void *out, const float *lse,
                                      const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                                      qb_math math, qb_dtype t);

/* cuda/embedding.cu */
void qb_cuda_embedding(qb_stream *s, void *out, const int32_t *ids, const int32_t *types, const void *word,
                       const void *pos, const void *type, int B, int T, int C, qb_dtype t, qb_dtype tables);
void qb_cuda_embedding_backward(qb_stream *s, float *dword, float *dpos, float *dtype, const void *dout,
                                const int32_t *ids, const int32_t *types, int pad_id, int B, int T, int C,
                                qb_dtype t);

/* cuda/dropout.cu */
void qb_cuda_dropout(qb_stream *s, void *x, size_t n, const qb_dropout *drop, qb_dtype t);

/* cuda/xent.cu */
void qb_cuda_xent(qb_stream *s, float *losses, float *dlogits, const float *logits, const int32_t *labels, int B,
                  int K, float grad_scale, const float *loss_scale);

/* cuda/adamw.cu */
void qb_cuda_adamw(qb_stream *s, float *w, float *m, float *v, const float *g, const uint8_t *decay, size_t n,
                   const qb_adamw_args *a, const double *sumsq, const float *loss_scale);
void qb_cuda_loss_scale_update(qb_stream *s, float *scale, int32_t *good, const double *sumsq);

/* cuda/fake_quant.cu */
void qb_cuda_fake_quant_weight(qb_stream *s, float *y, float *scales, const float *w, int N, int K, int group,
                               int bits);
void qb_cuda_fake_quant(qb_stream *s, float *y, const float *x, size_t n, const float *scale, int bits);
void qb_cuda_fake_quant_backward(qb_stream *s, float *dx, const float *dy, const float *x, size_t n,
                                 const float *scale, int bits);
void qb_cuda_minmax(qb_stream *s, float *out, const float *x, size_t n);
void qb_cuda_abs_percentile(qb_stream *s, float *out, const float *x, size_t n, double p);
void qb_cuda_observe(qb_stream *s, float *range, float *scale, const float *batch, float ema, int bits);

#ifdef __cplusplus
}
#endif

#endif
