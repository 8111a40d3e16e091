/* Multi-head self-attention, forward and backward, computed the way Hugging Face
 * BERT's eager path does it, per (b, h):
 *   S (T, T) = Q K^T / sqrt(D) + (1 - mask) * finfo(float32).min
 *   P = softmax(S) row-wise in FP32,  P' = dropout(P),  O (T, D) = P' V.
 * The additive mask (not a "skip the key") is kept on purpose: a fully padded row
 * then has all scores equal to -FLT_MAX and attends uniformly to every key, exactly
 * like HF. Every product goes through the dispatched GEMM, reading the heads of q, k,
 * v, dout (row stride H*D) in place and writing its head of the outputs in place;
 * the only scratch is a thread's T x T score matrices. OpenMP runs over the B*H
 * heads; the GEMMs inside stay on their thread, and each head writes only its own
 * slice of the outputs, so results do not depend on the thread count.
 * Backward keeps P from the forward (B*H*T*T floats) and recomputes the dropout
 * mask from its Philox index:
 *   dV = P'^T dO,  dP' = dO V^T,  dP = dropout(dP'),
 *   dS = P * (dP - rowsum(P * dP)) / sqrt(D),  dQ = dS K,  dK = dS^T Q. */
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

void qb_cpu_attention(float *out, float *probs, const float *q, const float *k, const float *v,
                      const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D)
{
    const int heads = B * H;
    if (heads <= 0 || T <= 0 || D <= 0) return;
    const size_t C = (size_t)H * D, tt = (size_t)T * T;
    const size_t per_thread = tt;  /* scores */
    int nt;
    float *ws = head_scratch("attention", B, T, H, D, heads, per_thread, &nt);
    if (!ws) {
        fill_nan(out, (size_t)B * T * C);
        return;
    }
    /* HF divides the scores by math.sqrt(head_size). */
    const float sqrt_d = (float)sqrt((double)D);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int bh = 0; bh < heads; bh++) {
        const int b = bh / H, h = bh % H;
        float *s = ws + (size_t)omp_get_thread_num() * per_thread;
        const size_t base = (size_t)b * T * C + (size_t)h * D;  /* element (b, 0, h*D) */
        head_gemm(s, T, q + base, C, 0, k + base, C, 0, T, T, D);      /* S = Q K^T */
        const int32_t *mb = mask + (size_t)b * T;
        for (int i = 0; i < T; i++) {
            float *si = s + (size_t)i * T;
            for (int j = 0; j < T; j++) si[j] = si[j] / sqrt_d + (1.0f - (float)mb[j]) * -FLT_MAX;
        }
        qb_cpu_softmax(s, T, T);
        if (probs) memcpy(probs + (size_t)bh * tt, s, tt * sizeof *s);
        qb_cpu_dropout_at(s, tt, (uint64_t)bh * tt, drop);
        head_gemm(out + base, C, s, T, 0, v + base, C, 1, T, D, T);    /* O = P' V */
    }
    qb_free(ws);
}

void qb_cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, const float *probs,
                               const qb_dropout *drop, int B, int T, int H, int D)
{
    const int heads = B * H;
    if (heads <= 0 || T <= 0 || D <= 0) return;
    const size_t C = (size_t)H * D, tt = (size_t)T * T;
    const size_t per_thread = 2 * tt;  /* P', dP */
    int nt;
    float *ws = head_scratch("attention backward", B, T, H, D, heads, per_thread, &nt);
    if (!ws) {
        fill_nan(dq, (size_t)B * T * C);
        fill_nan(dk, (size_t)B * T * C);
        fill_nan(dv, (size_t)B * T * C);
        return;
    }
    const float inv_sqrt_d = 1.0f / (float)sqrt((double)D);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
    for (int bh = 0; bh < heads; bh++) {
        const int b = bh / H, h = bh % H;
        float *pd = ws + (size_t)omp_get_thread_num() * per_thread, *dp = pd + tt;
        const size_t base = (size_t)b * T * C + (size_t)h * D;
        const float *P = probs + (size_t)bh * tt;
        memcpy(pd, P, tt * sizeof *pd);
        qb_cpu_dropout_at(pd, tt, (uint64_t)bh * tt, drop);                 /* P' */
        head_gemm(dv + base, C, pd, T, 1, dout + base, C, 1, T, D, T);      /* dV = P'^T dO */
        head_gemm(dp, T, dout + base, C, 0, v + base, C, 0, T, T, D);       /* dP' = dO V^T */
        qb_cpu_dropout_at(dp, tt, (uint64_t)bh * tt, drop);                 /* dP */
        for (int i = 0; i < T; i++) {
            const float *pi = P + (size_t)i * T;
            float *di = dp + (size_t)i * T;
            double dot_pd = 0.0;
            for (int j = 0; j < T; j++) dot_pd += (double)pi[j] * di[j];
            for (int j = 0; j < T; j++) di[j] = pi[j] * (di[j] - (float)dot_pd) * inv_sqrt_d;
        }
        head_gemm(dq + base, C, dp, T, 0, k + base, C, 1, T, D, T);         /* dQ = dS K */
        head_gemm(dk + base, C, dp, T, 1, q + base, C, 1, T, D, T);         /* dK = dS^T Q */
    }
    qb_free(ws);
}
