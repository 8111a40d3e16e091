/* Multi-head self-attention, forward and backward, computed the way Hugging Face
 * BERT's eager path does it, per (b, h):
 *   S (T, T) = Q K^T / sqrt(D) + (1 - mask) * finfo(float32).min
 *   P = softmax(S) row-wise in FP32,  P' = dropout(P),  O (T, D) = P' V.
 * The additive mask (not a "skip the key") is kept on purpose: a fully padded row
 * then has all scores equal to -FLT_MAX and attends uniformly to every key, exactly
 * like HF. Every product goes through the dispatched GEMM, reading the heads of q, k,
 * v (row stride ld: H*D, or 3 H*D for the thirds of a QKV product) and dout (row
 * stride H*D) in place and writing its head of the outputs in place;
 * the only scratch is a thread's T x T matrices. OpenMP runs over the B*H heads; the
 * GEMMs inside stay on their thread, and each head writes only its own slice of the
 * outputs, so results do not depend on the thread count.
 * The forward gives each row's log-sum-exp when asked (what a GPU's backward
 * recomputes P from); the backward here recomputes P exactly as the forward took it
 * (the same bits, so it needs neither out nor lse) and the dropout mask from its
 * Philox index:
 *   dV = P'^T dO,  dP' = dO V^T,  dP = dropout(dP'),
 *   dS = P * (dP - rowsum(P * dP)) / sqrt(D),  dQ = dS K,  dK = dS^T Q.
 * BF16 / FP16 math emulates the GPU's tensor-core attention: every operand of a
 * product (q, k, v, dout, P', dS) rounded to that format, sums and softmax in FP32.
 * FP32 and TF32 compute in FP32 (the GPU's attention has no TF32 path). */
#include "cpu/cpu.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* Scratch for `nt` threads of `per_thread` floats each, or NULL after logging. */
static float *head_scratch(const char *what, int B, int T, int H, int D, int heads, size_t per_thread,
                           int *nt)
{
    *nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (*nt > heads) *nt = heads;
    float *ws = qb_malloc((size_t)*nt * per_thread * sizeof *ws);
    if (!ws)
        qb_log(QB_LOG_ERROR, "%s B=%d T=%d H=%d D=%d: cannot allocate %zu bytes of scratch; output "
               "set to NaN", what, B, T, H, D, (size_t)*nt * per_thread * sizeof *ws);
    return ws;
}

static void fill_nan(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++) p[i] = NAN;
}

/* y (M, N; row stride ldy) = x (M, K) . w (N, K)^T on this thread, x and w read with
 * row stride ldx, ldw and stored transposed when x_t / w_t is set. */
static void head_gemm(float *y, size_t ldy, const float *x, size_t ldx, int x_t, const float *w,
                      size_t ldw, int w_t, int M, int N, int K)
{
    const qb_gemm_f32 g = {.y = y, .x = x, .w = w, .M = M, .N = N, .K = K, .ldy = ldy,
                           .ldx = ldx, .ldw = ldw, .x_t = x_t, .w_t = w_t};
    qb_cpu_gemm(&g);
}

/* The arithmetic of attention's products for a GEMM math: BF16 / FP16 round their
 * operands, everything else is FP32. */
static qb_math attention_math(qb_math m) { return m == QB_MATH_BF16 || m == QB_MATH_FP16 ? m : QB_MATH_FP32; }

static void round_to(float *x, size_t n, qb_math m)
{
    for (size_t i = 0; m != QB_MATH_FP32 && i < n; i++) x[i] = qb_math_round(x[i], m);
}

/* Copies of the k inputs ins (n[i] floats each) rounded to m, in one allocation
 * (*mem; NULL when out of memory); with m FP32 the inputs themselves. */
static bool rounded_inputs(const float **out, const float *const *ins, const size_t *n, int k, qb_math m,
                           float **mem)
{
    *mem = NULL;
    size_t all = 0;
    for (int i = 0; i < k; i++) out[i] = ins[i], all += n[i];
    if (m == QB_MATH_FP32) return true;
    if (!(*mem = qb_malloc(all * sizeof **mem))) return false;
    float *r = *mem;
    for (int i = 0; i < k; i++) {
        memcpy(r, ins[i], n[i] * sizeof *r);
        round_to(r, n[i], m);
        out[i] = r;
        r += n[i];
    }
    return true;
}

/* s (T, T) = the scores of head (b, h) from q and k (its rows at base, row stride
 * ld): Q K^T / sqrt(D) + the mask's bias, as HF forms them. */
static void head_scores(float *s, const float *q, const float *k, const int32_t *mb, size_t base, size_t ld, int T,
                        int D)
{
    /* HF divides the scores by math.sqrt(head_size). */
    const float sqrt_d = (float)sqrt((double)D);
    head_gemm(s, T, q + base, ld, 0, k + base, ld, 0, T, T, D);  /* S = Q K^T */
    for (int i = 0; i < T; i++) {
        float *si = s + (size_t)i * T;
        for (int j = 0; j < T; j++) si[j] = si[j] / sqrt_d + (1.0f - (float)mb[j]) * -FLT_MAX;
    }
}

/* lse[i] = log(sum_j exp(s[i][j])) of each row of s (T, T), taken as softmax_row
 * takes its sum (exp relative to the row maximum, in double). */
static void row_lse(float *lse, const float *s, int T)
{
    for (int i = 0; i < T; i++) {
        const float *si = s + (size_t)i * T;
        float mx = si[0];
        for (int j = 1; j < T; j++) mx = si[j] > mx ? si[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < T; j++) sum += si[j] - mx < -104.0f ? 0.0f : expf(si[j] - mx);
        lse[i] = (float)(mx + log(sum));
    }
}

/* The floats a (B*T, C) head slice spans at row stride ld: up to the last row's end. */
static size_t extent(int B, int T, size_t C, size_t ld) { return ((size_t)B * T - 1) * ld + C; }

void qb_cpu_attention(float *out, float *lse, const float *q, const float *k, const float *v, int ld,
                      const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D, qb_math math)
{
    const int heads = B * H;
    if (heads <= 0 || T <= 0 || D <= 0) return;
    const size_t C = (size_t)H * D, tt = (size_t)T * T, n = (size_t)B * T * C, nin = extent(B, T, C, (size_t)ld);
    const qb_math m = attention_math(math);
    int nt;
    float *ws = head_scratch("attention", B, T, H, D, heads, tt, &nt), *copies;
    const float *in[3];
    if (!ws || !rounded_inputs(in, (const float *const[]){q, k, v}, (const size_t[]){nin, nin, nin}, 3, m, &copies)) {
        fill_nan(out, n);
        qb_free(ws);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int bh = 0; bh < heads; bh++) {
        const int b = bh / H, h = bh % H;
        float *s = ws + (size_t)omp_get_thread_num() * tt;
        const size_t base = (size_t)b * T * C + (size_t)h * D;    /* element (b, 0, h*D) of out */
        const size_t at = (size_t)b * T * ld + (size_t)h * D;      /* and of q, k, v */
        head_scores(s, in[0], in[1], mask + (size_t)b * T, at, (size_t)ld, T, D);
        if (lse) row_lse(lse + (size_t)bh * T, s, T);
        qb_cpu_softmax(s, T, T);
        qb_cpu_dropout_at(s, tt, (uint64_t)bh * tt, drop);
        round_to(s, tt, m);
        head_gemm(out + base, C, s, T, 0, in[2] + at, (size_t)ld, 1, T, D, T);  /* O = P' V */
    }
    qb_free(copies);
    qb_free(ws);
}

void qb_cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, int ld, const float *out, const float *lse,
                               const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                               qb_math math)
{
    const int heads = B * H;
    if (heads <= 0 || T <= 0 || D <= 0) return;
    const size_t C = (size_t)H * D, tt = (size_t)T * T, n = (size_t)B * T * C, nin = extent(B, T, C, (size_t)ld);
    const size_t per_thread = 3 * tt;  /* P, P', dP */
    const qb_math m = attention_math(math);
    int nt;
    float *ws = head_scratch("attention backward", B, T, H, D, heads, per_thread, &nt), *copies;
    const float *in[4];
    if (!ws || !rounded_inputs(in, (const float *const[]){q, k, v, dout}, (const size_t[]){nin, nin, nin, n}, 4, m,
                               &copies)) {
        fill_nan(dq, nin);
        fill_nan(dk, nin);
        fill_nan(dv, nin);
        qb_free(ws);
        return;
    }
    const float inv_sqrt_d = 1.0f / (float)sqrt((double)D);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int bh = 0; bh < heads; bh++) {
        const int b = bh / H, h = bh % H;
        float *P = ws + (size_t)omp_get_thread_num() * per_thread, *pd = P + tt, *dp = pd + tt;
        const size_t base = (size_t)b * T * C + (size_t)h * D, at = (size_t)b * T * ld + (size_t)h * D;
        const size_t L = (size_t)ld;
        head_scores(P, in[0], in[1], mask + (size_t)b * T, at, L, T, D);
        qb_cpu_softmax(P, T, T);                                          /* P, as the forward */
        memcpy(pd, P, tt * sizeof *pd);
        qb_cpu_dropout_at(pd, tt, (uint64_t)bh * tt, drop);               /* P' */
        round_to(pd, tt, m);
        head_gemm(dv + at, L, pd, T, 1, in[3] + base, C, 1, T, D, T);     /* dV = P'^T dO */
        head_gemm(dp, T, in[3] + base, C, 0, in[2] + at, L, 0, T, T, D);  /* dP' = dO V^T */
        qb_cpu_dropout_at(dp, tt, (uint64_t)bh * tt, drop);                 /* dP */
        for (int i = 0; i < T; i++) {
            const float *pi = P + (size_t)i * T;
            float *di = dp + (size_t)i * T;
            double dot_pd = 0.0;
            for (int j = 0; j < T; j++) dot_pd += (double)pi[j] * di[j];
            for (int j = 0; j < T; j++) di[j] = pi[j] * (di[j] - (float)dot_pd) * inv_sqrt_d;
        }
        round_to(dp, tt, m);
        head_gemm(dq + at, L, dp, T, 0, in[1] + at, L, 1, T, D, T);       /* dQ = dS K */
        head_gemm(dk + at, L, dp, T, 1, in[0] + at, L, 1, T, D, T);       /* dK = dS^T Q */
    }
    qb_free(copies);
    qb_free(ws);
}
