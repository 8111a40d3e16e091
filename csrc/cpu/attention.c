/* Multi-head self-attention, forward and backward, computed the way Hugging Face
 * BERT's eager path does it, per (b, h):
 *   S (T, T) = Q K^T / sqrt(D) + (1 - mask) * finfo(float32).min
 *   P = softmax(S) row-wise in FP32,  P' = dropout(P),  O (T, D) = P' V.
 * The additive mask (not a "skip the key") is kept on purpose: a fully padded row
 * then has all scores equal to -FLT_MAX and attends uniformly to every key, exactly
 * like HF. Every product goes through the dispatched GEMM in its nn.Linear layout
 * (x (M, K) . w (N, K)^T), so operands are gathered per head into contiguous
 * per-thread scratch, transposed where the layout asks for it. OpenMP runs over the
 * B*H heads; the GEMMs inside stay on their thread, and each head writes only its
 * own slice of the outputs, so results do not depend on the thread count.
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

/* Head (b, h) of x (B, T, H*D) -> row-major (T, D) in dst and, when dst_t is not
 * NULL, its transpose (D, T) in dst_t. */
static void gather(float *dst, float *dst_t, const float *x, size_t base, int T, int D, size_t C)
{
    for (int t = 0; t < T; t++) {
        for (int d = 0; d < D; d++) {
            const float val = x[base + t * C + d];
            if (dst) dst[(size_t)t * D + d] = val;
            if (dst_t) dst_t[(size_t)d * T + t] = val;
        }
    }
}

static void scatter(float *x, const float *src, size_t base, int T, int D, size_t C)
{
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++) x[base + t * C + d] = src[(size_t)t * D + d];
}

void qb_cpu_attention(float *out, float *probs, const float *q, const float *k, const float *v,
                      const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D)
{
    const int heads = B * H;
    if (heads <= 0 || T <= 0 || D <= 0) return;
    const size_t C = (size_t)H * D, td = (size_t)T * D, tt = (size_t)T * T;
    const size_t per_thread = 4 * td + tt;  /* q, k, v^T, o heads + scores */
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
        float *qh = ws + (size_t)omp_get_thread_num() * per_thread;
        float *kh = qh + td, *vt = kh + td, *oh = vt + td, *s = oh + td;
        const size_t base = (size_t)b * T * C + (size_t)h * D;  /* element (b, 0, h*D) */
        gather(qh, NULL, q, base, T, D, C);
        gather(kh, NULL, k, base, T, D, C);
        gather(NULL, vt, v, base, T, D, C);
        qb_cpu_linear(s, qh, kh, NULL, T, T, D);
        const int32_t *mb = mask + (size_t)b * T;
        for (int i = 0; i < T; i++) {
            float *si = s + (size_t)i * T;
            for (int j = 0; j < T; j++) si[j] = si[j] / sqrt_d + (1.0f - (float)mb[j]) * -FLT_MAX;
        }
        qb_cpu_softmax(s, T, T);
        if (probs) memcpy(probs + (size_t)bh * tt, s, tt * sizeof *s);
        qb_cpu_dropout_at(s, tt, (uint64_t)bh * tt, drop);
        qb_cpu_linear(oh, s, vt, NULL, T, D, T);
        scatter(out, oh, base, T, D, C);
    }
    qb_free(ws);
}

void qb_cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, const float *probs,
                               const qb_dropout *drop, int B, int T, int H, int D)
{
    const int heads = B * H;
    if (heads <= 0 || T <= 0 || D <= 0) return;
    const size_t C = (size_t)H * D, td = (size_t)T * D, tt = (size_t)T * T;
    /* Per thread: q, k, v, dO heads; q^T, k^T, dO^T; dq, dk, dv heads; P', P'^T, dP, dS^T. */
    const size_t per_thread = 10 * td + 4 * tt;
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
        float *qh = ws + (size_t)omp_get_thread_num() * per_thread;
        float *kh = qh + td, *vh = kh + td, *doh = vh + td, *qt = doh + td, *kt = qt + td;
        float *dot = kt + td, *dqh = dot + td, *dkh = dqh + td, *dvh = dkh + td;
        float *pd = dvh + td, *pdt = pd + tt, *dp = pdt + tt, *dst = dp + tt;
        const size_t base = (size_t)b * T * C + (size_t)h * D;
        const float *P = probs + (size_t)bh * tt;
        gather(qh, qt, q, base, T, D, C);
        gather(kh, kt, k, base, T, D, C);
        gather(vh, NULL, v, base, T, D, C);
        gather(doh, dot, dout, base, T, D, C);

        memcpy(pd, P, tt * sizeof *pd);
        qb_cpu_dropout_at(pd, tt, (uint64_t)bh * tt, drop);        /* P' */
        qb_cpu_transpose(pdt, pd, T, T);
        qb_cpu_linear(dvh, pdt, dot, NULL, T, D, T);                /* dV = P'^T dO */
        qb_cpu_linear(dp, doh, vh, NULL, T, T, D);                  /* dP' = dO V^T */
        qb_cpu_dropout_at(dp, tt, (uint64_t)bh * tt, drop);        /* dP */
        for (int i = 0; i < T; i++) {
            const float *pi = P + (size_t)i * T;
            float *di = dp + (size_t)i * T;
            double dot_pd = 0.0;
            for (int j = 0; j < T; j++) dot_pd += (double)pi[j] * di[j];
            for (int j = 0; j < T; j++) di[j] = pi[j] * (di[j] - (float)dot_pd) * inv_sqrt_d;
        }
        qb_cpu_linear(dqh, dp, kt, NULL, T, D, T);                  /* dQ = dS K */
        qb_cpu_transpose(dst, dp, T, T);
        qb_cpu_linear(dkh, dst, qt, NULL, T, D, T);                 /* dK = dS^T Q */
        scatter(dq, dqh, base, T, D, C);
        scatter(dk, dkh, base, T, D, C);
        scatter(dv, dvh, base, T, D, C);
    }
    qb_free(ws);
}
