/* The Linear layer and its backward through cuBLASLt, with cached plans: FP32
 * storage with products in FP32 or (qb_math) TF32 / BF16 / FP16, or FP16 / BF16
 * storage with products in that format, FP32 sums either way; and the INT8 x INT8 ->
 * INT32 product of the quantized Linears (cuda/qlinear.cu).
 *
 * cuBLASLt is column-major; a row-major (R, C) matrix is the column-major (C, R) one
 * with the same bytes, so every product below is the transposed one (shapes are
 * column-major (rows, cols), ld = rows):
 *   forward   y (N, M)  = W^T-op: W (K, N) op T  .  x (K, M)          + b (N) epilogue
 *   dx        dx (K, M) = W (K, N)  .  dy (N, M)
 *   dW        dW (K, N) += x (K, M)  .  dy (N, M) op T                 (beta 1)
 *   db        db (N, 1) += dy (N, M)  .  ones (M, 1)                  (beta 1)
 *   INT8      c (Np, M) = W (Kp, Np) op T  .  x (Kp, M)   int8 -> int32, IMMA: cuBLASLt's
 *             "TN" form with m, k and every ld a multiple of 4 (the caller pads)
 *   BF16      the same form on bf16 operands and output with FP32 sums: qbert-bench's
 *             measured tensor-core ceiling
 * The bias rides in the forward GEMM's epilogue (no extra pass over y). The bias
 * gradient is a GEMM against a vector of ones rather than the BGRADB epilogue,
 * because that epilogue overwrites db and the op adds to it; a GEMV is
 * deterministic, unlike an atomic column-sum kernel.
 *
 * Half storage: y, x, w, b, dx, dy are FP16 / BF16 (the bias too: cuBLASLt takes the
 * bias in D's type), dW and db stay FP32 (A and B half, C and D FP32), the ones
 * vector is in the storage type.
 *
 * Plans: a matmul descriptor, three layouts and the heuristic's best algorithm per
 * (transa, transb, m, n, k, epilogue, beta, operand types, compute type) — a BERT
 * step uses a dozen shapes, so a small table searched linearly is enough. The table
 * and the handle are shared by every stream, under qb_cuda_lock; each stream has its
 * own 32 MiB workspace (the calls of one stream are ordered; two streams' would race
 * on one). Compute type: CUBLAS_COMPUTE_32F for FP32 (no TF32) and half operands,
 * else the FAST type of the math, which rounds the FP32 inputs to TF32 / BF16 / FP16
 * inside the kernel and accumulates in FP32 (tests/test_cuda_gemm.c bounds it by
 * what that arithmetic guarantees). */
#include "cuda/common.cuh"

#include <cublasLt.h>
#include <stdio.h>

#define WORKSPACE_BYTES ((size_t)32 << 20)
#define MAX_PLANS 64

/* The types of a GEMM: A and B, C and D (in memory), and the compute type. */
typedef struct {
    cudaDataType_t ab, cd;
    cublasComputeType_t ct;
} types;

static bool same_types(types x, types y) { return x.ab == y.ab && x.cd == y.cd && x.ct == y.ct; }

typedef struct {
    cublasOperation_t ta, tb;
    int m, n, k;
    cublasLtEpilogue_t epilogue;
    bool accumulate;  /* beta = 1 */
    types ty;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} plan;

static struct {
    cublasLtHandle_t handle;
    plan plans[MAX_PLANS];
    int n_plans;
} lt;

/* Records a failed cuBLASLt call on s. */
static int lt_failed(qb_stream *s, cublasStatus_t e, const char *what)
{
    if (e == CUBLAS_STATUS_SUCCESS) return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "%s: cuBLASLt %s", what, cublasLtGetStatusName(e));
    return qb_cuda_note(s, cudaErrorUnknown, msg);
}

/* The handle, made on first use (under the lock). */
static int lt_ready(qb_stream *s)
{
    return lt.handle || !lt_failed(s, cublasLtCreate(&lt.handle), "cublasLtCreate");
}

/* s's workspace, made on first use; NULL after recording. */
static void *workspace(qb_stream *s)
{
    qb_cuda_scratch *c = qb_cuda_scratch_get(s);
    if (!c->workspace && qb_cuda_note(s, cudaMalloc(&c->workspace, WORKSPACE_BYTES), "cuBLASLt workspace (32 MiB)"))
        c->workspace = NULL;
    return c->workspace;
}

static void plan_destroy(plan *p)
{
    if (p->a) cublasLtMatrixLayoutDestroy(p->a);
    if (p->b) cublasLtMatrixLayoutDestroy(p->b);
    if (p->c) cublasLtMatrixLayoutDestroy(p->c);
    if (p->desc) cublasLtMatmulDescDestroy(p->desc);
}

static cudaDataType_t data_type(qb_dtype t) { return t == QB_F16 ? CUDA_R_16F : t == QB_BF16 ? CUDA_R_16BF : CUDA_R_32F; }

/* The types of a Linear's GEMM on storage t: A and B in t, C and D in t or (fp32_out:
 * dW, db) FP32; FP32 storage computes in math (its FAST type), half in FP32. */
static types linear_types(qb_dtype t, qb_math math, bool fp32_out)
{
    cublasComputeType_t ct = CUBLAS_COMPUTE_32F;
    if (t == QB_F32 && math == QB_MATH_TF32) ct = CUBLAS_COMPUTE_32F_FAST_TF32;
    if (t == QB_F32 && math == QB_MATH_BF16) ct = CUBLAS_COMPUTE_32F_FAST_16BF;
    if (t == QB_F32 && math == QB_MATH_FP16) ct = CUBLAS_COMPUTE_32F_FAST_16F;
    return types{data_type(t), fp32_out ? CUDA_R_32F : data_type(t), ct};
}

/* Asks the heuristic for algorithms that take 64-byte aligned A, B, C and D: by
 * default it may pick one that assumes 256-byte pointers, and the activations are
 * carved from one allocation at 64 bytes (csrc/model/bert.c). false after recording. */
static bool prefer_alignment(qb_stream *s, cublasLtMatmulPreference_t pref, const char *what)
{
    static const cublasLtMatmulPreferenceAttributes_t attrs[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    const uint32_t align = 64;
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        if (lt_failed(s, cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &align, sizeof align), what))
            return false;
    return true;
}

/* The plan for D (m, n) = op(A) (m, k) . op(B) (k, n) (+ C), packed (ld = rows of
 * the stored matrix); NULL after recording the error. Under the lock, which the
 * caller holds until it has run the plan (another stream may start the table over). */
static plan *plan_get(qb_stream *s, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      cublasLtEpilogue_t epilogue, bool accumulate, types ty, const char *what)
{
    for (int i = 0; i < lt.n_plans; i++) {
        plan *p = &lt.plans[i];
        if (p->ta == ta && p->tb == tb && p->m == m && p->n == n && p->k == k && p->epilogue == epilogue &&
            p->accumulate == accumulate && same_types(p->ty, ty))
            return p;
    }
    if (!lt_ready(s)) return NULL;
    if (lt.n_plans == MAX_PLANS) {  /* a new shape mix: start over rather than grow */
        for (int i = 0; i < lt.n_plans; i++) plan_destroy(&lt.plans[i]);
        lt.n_plans = 0;
    }
    plan *p = &lt.plans[lt.n_plans];
    *p = plan{};
    p->ta = ta, p->tb = tb, p->m = m, p->n = n, p->k = k, p->epilogue = epilogue, p->accumulate = accumulate;
    p->ty = ty;
    const cudaDataType_t st = ty.ct == CUBLAS_COMPUTE_32I ? CUDA_R_32I : CUDA_R_32F;  /* alpha, beta */
    /* The stored matrices: A is (m, k) or, transposed, (k, m); B likewise (k, n). */
    const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
    const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t best;
    int found = 0;
    const size_t ws = WORKSPACE_BYTES;
    if (lt_failed(s, cublasLtMatmulDescCreate(&p->desc, ty.ct, st), what) ||
        lt_failed(s, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), what) ||
        lt_failed(s, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), what) ||
        lt_failed(s, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                    sizeof epilogue), what) ||
        lt_failed(s, cublasLtMatrixLayoutCreate(&p->a, ty.ab, a_rows, a_cols, a_rows), what) ||
        lt_failed(s, cublasLtMatrixLayoutCreate(&p->b, ty.ab, b_rows, b_cols, b_rows), what) ||
        lt_failed(s, cublasLtMatrixLayoutCreate(&p->c, ty.cd, m, n, m), what) ||
        lt_failed(s, cublasLtMatmulPreferenceCreate(&pref), what) ||
        lt_failed(s, cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                          sizeof ws), what) ||
        !prefer_alignment(s, pref, what) ||
        lt_failed(s, cublasLtMatmulAlgoGetHeuristic(lt.handle, p->desc, p->a, p->b, p->c, p->c, pref, 1, &best,
                                                    &found), what) ||
        (found < 1 && qb_cuda_note(s, cudaErrorNotSupported, what))) {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        plan_destroy(p);
        return NULL;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    p->algo = best.algo;
    lt.n_plans++;
    return p;
}

/* d = op(a) . op(b) (+ d when the plan accumulates), on s; bias (in D's type) for the
 * BIAS epilogue. alpha and beta have the scale type: int32 for INT8, else float. */
static void run(qb_stream *s, plan *p, void *d, const void *a, const void *b, const void *bias, const char *what)
{
    void *ws = workspace(s);
    if (!ws) return;
    const float one = 1.0f, zero = 0.0f;
    const int32_t ione = 1, izero = 0;
    const bool s8 = p->ty.ct == CUBLAS_COMPUTE_32I;
    const void *alpha = s8 ? (const void *)&ione : &one;
    const void *beta = p->accumulate ? alpha : s8 ? (const void *)&izero : &zero;
    if (bias && lt_failed(s, cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                            sizeof bias), what))
        return;
    lt_failed(s, cublasLtMatmul(lt.handle, p->desc, alpha, a, p->a, b, p->b, beta, d, p->c, d, p->c, &p->algo, ws,
                                WORKSPACE_BYTES, qb_cuda_stream(s)),
              what);
}

/* plan_get and run under the lock: the GEMM of every entry point below. */
static void gemm(qb_stream *s, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                 cublasLtEpilogue_t epilogue, bool accumulate, types ty, void *d, const void *a, const void *b,
                 const void *bias, const char *what)
{
    qb_cuda_lock();
    plan *p = plan_get(s, ta, tb, m, n, k, epilogue, accumulate, ty, what);
    if (p) run(s, p, d, a, b, bias, what);
    qb_cuda_unlock();
}

extern "C" void qb_cuda_linear(qb_stream *s, void *y, const void *x, const void *w, const void *b, int M, int N, int K,
                               qb_math math, qb_dtype t)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        qb_cuda_note(s, cudaErrorInvalidValue, "linear: K must be positive");
        return;
    }
    gemm(s, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, b ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT, false,
         linear_types(t, math, false), y, w, x, b, "linear");
}

template <typename T> __global__ void fill_ones(T *p, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = qb_from_float<T>(1.0f);
}

/* s's vectors of at least n ones in every storage type (grown on demand), the one of
 * t; NULL after recording. */
static const void *ones(qb_stream *s, size_t n, qb_dtype t)
{
    qb_cuda_scratch *c = qb_cuda_scratch_get(s);
    const int i = t == QB_F16 ? 1 : t == QB_BF16 ? 2 : 0;
    if (c->ones_len >= n) return c->ones[i];
    qb_cuda_wait(s, "bias gradient");  /* the old vectors may be in use */
    for (int j = 0; j < 3; j++) cudaFree(c->ones[j]), c->ones[j] = NULL;
    qb_cuda_scratch_moved(s);  /* graphs recorded with the old vectors are stale */
    c->ones_len = 0;
    for (int j = 0; j < 3; j++)
        if (qb_cuda_note(s, cudaMalloc(&c->ones[j], n * 4), "bias gradient: ones vectors")) return NULL;
    fill_ones<<<qb_cuda_blocks(n), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>((float *)c->ones[0], n);
    fill_ones<<<qb_cuda_blocks(n), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>((__half *)c->ones[1], n);
    fill_ones<<<qb_cuda_blocks(n), QB_CUDA_THREADS, 0, qb_cuda_stream(s)>>>((__nv_bfloat16 *)c->ones[2], n);
    if (qb_cuda_launched(s, "bias gradient: ones vectors")) return NULL;
    c->ones_len = n;
    return c->ones[i];
}

extern "C" void qb_cuda_linear_backward(qb_stream *s, void *dx, float *dw, float *db, const void *dy, const void *x,
                                        const void *w, int M, int N, int K, qb_math math, qb_dtype t)
{
    if (M <= 0 || N <= 0 || K <= 0) return;
    const cublasLtEpilogue_t plain = CUBLASLT_EPILOGUE_DEFAULT;
    if (dx) gemm(s, CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, plain, false, linear_types(t, math, false), dx, w, dy, NULL,
                 "linear dx");
    gemm(s, CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, plain, true, linear_types(t, math, true), dw, x, dy, NULL,
         "linear dW");
    const void *v;  /* ones are exact in every format, so db is the rounded dy's column sums */
    if (db && (v = ones(s, (size_t)M, t)))
        gemm(s, CUBLAS_OP_N, CUBLAS_OP_N, N, 1, M, plain, true, linear_types(t, math, true), db, dy, v, NULL,
             "linear db");
}

extern "C" void qb_cuda_gemm_s8(qb_stream *s, int32_t *c, const int8_t *w, const int8_t *x, int Np, int M, int Kp)
{
    if (Np <= 0 || M <= 0) return;
    if (Kp <= 0 || Np % 4 || Kp % 4) {
        qb_cuda_note(s, cudaErrorInvalidValue, "INT8 GEMM: N and K must be positive multiples of 4");
        return;
    }
    gemm(s, CUBLAS_OP_T, CUBLAS_OP_N, Np, M, Kp, CUBLASLT_EPILOGUE_DEFAULT, false,
         types{CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I}, c, w, x, NULL, "INT8 GEMM");
}

extern "C" void qb_cuda_gemm_bf16(qb_stream *s, void *c, const void *a, const void *b, int m, int n, int k)
{
    if (m <= 0 || n <= 0 || k <= 0) return;
    gemm(s, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, CUBLASLT_EPILOGUE_DEFAULT, false,
         types{CUDA_R_16BF, CUDA_R_16BF, CUBLAS_COMPUTE_32F}, c, a, b, NULL, "BF16 GEMM");
}

extern "C" void qb_cuda_gemm_release(void)
{
    qb_cuda_lock();
    for (int i = 0; i < lt.n_plans; i++) plan_destroy(&lt.plans[i]);
    lt.n_plans = 0;
    if (lt.handle) cublasLtDestroy(lt.handle);
    lt.handle = NULL;
    qb_cuda_unlock();
}
