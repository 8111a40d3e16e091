/* The Linear layer and its backward through cuBLASLt, with cached plans; FP32
 * storage, products in FP32 or (qb_math) TF32 / BF16 / FP16 with FP32 sums; and the
 * INT8 x INT8 -> INT32 product of the quantized Linears (cuda/qlinear.cu).
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
 * Plans: a matmul descriptor, three layouts and the heuristic's best algorithm per
 * (transa, transb, m, n, k, epilogue, beta, math) — a BERT step uses a dozen shapes,
 * so a small table searched linearly is enough. The table and the handle are shared
 * by every stream, under qb_cuda_lock; each stream has its own 32 MiB workspace (the
 * calls of one stream are ordered; two streams' would race on one). Compute type: CUBLAS_COMPUTE_32F
 * for FP32 (no TF32), else the FAST type of the math, which rounds the FP32 inputs
 * to TF32 / BF16 / FP16 inside the kernel and accumulates in FP32 (the CPU backend
 * emulates the same rounding: tests/test_cuda_gemm.c). */
#include "cuda/common.cuh"

#include <cublasLt.h>
#include <stdio.h>

#define WORKSPACE_BYTES ((size_t)32 << 20)
#define MAX_PLANS 64

/* What the operands are: FP32 throughout (products per qb_math); INT8 A and B into
 * INT32 C; BF16 A, B and C with FP32 sums (the benchmark's tensor-core ceiling). */
typedef enum { OPS_F32, OPS_S8, OPS_BF16 } operands;

typedef struct {
    cublasOperation_t ta, tb;
    int m, n, k;
    cublasLtEpilogue_t epilogue;
    bool accumulate;  /* beta = 1 */
    qb_math math;
    operands ops;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
} plan;

static struct {
    cublasLtHandle_t handle;
    plan plans[MAX_PLANS];
    int n_plans;
} lt;

static int lt_failed(cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "%s: cuBLASLt %s", what, cublasLtGetStatusName(s));
    return qb_cuda_note(cudaErrorUnknown, msg);
}

/* The handle, made on first use (under the lock). */
static int lt_ready(void)
{
    return lt.handle || !lt_failed(cublasLtCreate(&lt.handle), "cublasLtCreate");
}

/* The current stream's workspace, made on first use; NULL after recording. */
static void *workspace(void)
{
    qb_cuda_scratch *c = qb_cuda_scratch_get();
    if (!c->workspace && qb_cuda_note(cudaMalloc(&c->workspace, WORKSPACE_BYTES), "cuBLASLt workspace (32 MiB)"))
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

static cublasComputeType_t compute_type(qb_math math)
{
    switch (math) {
    case QB_MATH_TF32: return CUBLAS_COMPUTE_32F_FAST_TF32;
    case QB_MATH_BF16: return CUBLAS_COMPUTE_32F_FAST_16BF;
    case QB_MATH_FP16: return CUBLAS_COMPUTE_32F_FAST_16F;
    case QB_MATH_FP32: break;
    }
    return CUBLAS_COMPUTE_32F;
}

/* Asks the heuristic for algorithms that take 64-byte aligned A, B, C and D: by
 * default it may pick one that assumes 256-byte pointers, and the activations are
 * carved from one allocation at 64 bytes (csrc/model/bert.c). false after recording. */
static bool prefer_alignment(cublasLtMatmulPreference_t pref, const char *what)
{
    static const cublasLtMatmulPreferenceAttributes_t attrs[] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    const uint32_t align = 64;
    for (size_t i = 0; i < sizeof attrs / sizeof attrs[0]; i++)
        if (lt_failed(cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &align, sizeof align), what)) return false;
    return true;
}

/* The plan for D (m, n) = op(A) (m, k) . op(B) (k, n) (+ C), packed (ld = rows of
 * the stored matrix); NULL after recording the error. Under the lock, which the
 * caller holds until it has run the plan (another stream may start the table over). */
static plan *plan_get(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                      cublasLtEpilogue_t epilogue, bool accumulate, qb_math math, operands ops, const char *what)
{
    if (ops != OPS_F32) math = QB_MATH_FP32;  /* math only qualifies FP32 operands */
    for (int i = 0; i < lt.n_plans; i++) {
        plan *p = &lt.plans[i];
        if (p->ta == ta && p->tb == tb && p->m == m && p->n == n && p->k == k && p->epilogue == epilogue &&
            p->accumulate == accumulate && p->math == math && p->ops == ops)
            return p;
    }
    if (!lt_ready()) return NULL;
    if (lt.n_plans == MAX_PLANS) {  /* a new shape mix: start over rather than grow */
        for (int i = 0; i < lt.n_plans; i++) plan_destroy(&lt.plans[i]);
        lt.n_plans = 0;
    }
    plan *p = &lt.plans[lt.n_plans];
    *p = plan{};
    p->ta = ta, p->tb = tb, p->m = m, p->n = n, p->k = k, p->epilogue = epilogue, p->accumulate = accumulate;
    p->math = math, p->ops = ops;
    const cudaDataType_t ab = ops == OPS_S8 ? CUDA_R_8I : ops == OPS_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    const cudaDataType_t cd = ops == OPS_S8 ? CUDA_R_32I : ops == OPS_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    const cublasComputeType_t ct = ops == OPS_S8 ? CUBLAS_COMPUTE_32I : compute_type(math);
    const cudaDataType_t st = ops == OPS_S8 ? CUDA_R_32I : CUDA_R_32F;  /* alpha, beta */
    /* The stored matrices: A is (m, k) or, transposed, (k, m); B likewise (k, n). */
    const int a_rows = ta == CUBLAS_OP_N ? m : k, a_cols = ta == CUBLAS_OP_N ? k : m;
    const int b_rows = tb == CUBLAS_OP_N ? k : n, b_cols = tb == CUBLAS_OP_N ? n : k;
    cublasLtMatmulPreference_t pref = NULL;
    cublasLtMatmulHeuristicResult_t best;
    int found = 0;
    const size_t ws = WORKSPACE_BYTES;
    if (lt_failed(cublasLtMatmulDescCreate(&p->desc, ct, st), what) ||
        lt_failed(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), what) ||
        lt_failed(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), what) ||
        lt_failed(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                                 sizeof epilogue), what) ||
        lt_failed(cublasLtMatrixLayoutCreate(&p->a, ab, a_rows, a_cols, a_rows), what) ||
        lt_failed(cublasLtMatrixLayoutCreate(&p->b, ab, b_rows, b_cols, b_rows), what) ||
        lt_failed(cublasLtMatrixLayoutCreate(&p->c, cd, m, n, m), what) ||
        lt_failed(cublasLtMatmulPreferenceCreate(&pref), what) ||
        lt_failed(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                       sizeof ws), what) ||
        !prefer_alignment(pref, what) ||
        lt_failed(cublasLtMatmulAlgoGetHeuristic(lt.handle, p->desc, p->a, p->b, p->c, p->c, pref, 1, &best,
                                                 &found), what) ||
        (found < 1 && qb_cuda_note(cudaErrorNotSupported, what))) {
        if (pref) cublasLtMatmulPreferenceDestroy(pref);
        plan_destroy(p);
        return NULL;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    p->algo = best.algo;
    lt.n_plans++;
    return p;
}

/* d = op(a) . op(b) (+ d when the plan accumulates), on the current stream; bias for
 * the BIAS epilogue. alpha and beta have the scale type: int32 for INT8, else float. */
static void run(plan *p, void *d, const void *a, const void *b, const float *bias, const char *what)
{
    void *ws = workspace();
    if (!ws) return;
    const float one = 1.0f, zero = 0.0f;
    const int32_t ione = 1, izero = 0;
    const bool s8 = p->ops == OPS_S8;
    const void *alpha = s8 ? (const void *)&ione : &one;
    const void *beta = p->accumulate ? alpha : s8 ? (const void *)&izero : &zero;
    if (bias && lt_failed(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                         sizeof bias), what))
        return;
    lt_failed(cublasLtMatmul(lt.handle, p->desc, alpha, a, p->a, b, p->b, beta, d, p->c, d, p->c, &p->algo, ws,
                             WORKSPACE_BYTES, qb_cuda_stream()),
              what);
}

/* plan_get and run under the lock: the GEMM of every entry point below. */
static void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, cublasLtEpilogue_t epilogue,
                 bool accumulate, qb_math math, operands ops, void *d, const void *a, const void *b,
                 const float *bias, const char *what)
{
    qb_cuda_lock();
    plan *p = plan_get(ta, tb, m, n, k, epilogue, accumulate, math, ops, what);
    if (p) run(p, d, a, b, bias, what);
    qb_cuda_unlock();
}

extern "C" void qb_cuda_linear(float *y, const float *x, const float *w, const float *b, int M, int N, int K,
                               qb_math math)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        qb_cuda_note(cudaErrorInvalidValue, "linear: K must be positive");
        return;
    }
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, b ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT, false, math,
         OPS_F32, y, w, x, b, "linear");
}

__global__ void fill_ones(float *p, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        p[i] = 1.0f;
}

/* The current stream's vector of at least n ones (grown on demand); NULL after
 * recording. */
static const float *ones(size_t n)
{
    qb_cuda_scratch *c = qb_cuda_scratch_get();
    if (c->ones_len >= n) return c->ones;
    qb_cuda_note(cudaStreamSynchronize(qb_cuda_stream()), "bias gradient");  /* the old vector may be in use */
    cudaFree(c->ones);
    qb_cuda_scratch_moved();  /* graphs recorded with the old vector are stale */
    c->ones = NULL, c->ones_len = 0;
    if (qb_cuda_note(cudaMalloc(&c->ones, n * sizeof *c->ones), "bias gradient: ones vector")) return NULL;
    fill_ones<<<qb_cuda_blocks(n), QB_CUDA_THREADS, 0, qb_cuda_stream()>>>(c->ones, n);
    if (qb_cuda_launched("bias gradient: ones vector")) return NULL;
    c->ones_len = n;
    return c->ones;
}

extern "C" void qb_cuda_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                                        const float *w, int M, int N, int K, qb_math math)
{
    if (M <= 0 || N <= 0 || K <= 0) return;
    const cublasLtEpilogue_t plain = CUBLASLT_EPILOGUE_DEFAULT;
    if (dx) gemm(CUBLAS_OP_N, CUBLAS_OP_N, K, M, N, plain, false, math, OPS_F32, dx, w, dy, NULL, "linear dx");
    gemm(CUBLAS_OP_N, CUBLAS_OP_T, K, N, M, plain, true, math, OPS_F32, dw, x, dy, NULL, "linear dW");
    const float *v;  /* ones are exact in every format, so db is the rounded dy's column sums */
    if (db && (v = ones((size_t)M)))
        gemm(CUBLAS_OP_N, CUBLAS_OP_N, N, 1, M, plain, true, math, OPS_F32, db, dy, v, NULL, "linear db");
}

extern "C" void qb_cuda_gemm_s8(int32_t *c, const int8_t *w, const int8_t *x, int Np, int M, int Kp)
{
    if (Np <= 0 || M <= 0) return;
    if (Kp <= 0 || Np % 4 || Kp % 4) {
        qb_cuda_note(cudaErrorInvalidValue, "INT8 GEMM: N and K must be positive multiples of 4");
        return;
    }
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, Np, M, Kp, CUBLASLT_EPILOGUE_DEFAULT, false, QB_MATH_FP32, OPS_S8, c, w, x, NULL,
         "INT8 GEMM");
}

extern "C" void qb_cuda_gemm_bf16(void *c, const void *a, const void *b, int m, int n, int k)
{
    if (m <= 0 || n <= 0 || k <= 0) return;
    gemm(CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, CUBLASLT_EPILOGUE_DEFAULT, false, QB_MATH_FP32, OPS_BF16, c, a, b, NULL,
         "BF16 GEMM");
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
