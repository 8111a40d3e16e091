/* Multi-head self-attention forward, computed the way Hugging Face BERT's eager path
 * does it, per (b, h):
 *   S (T, T) = Q K^T / sqrt(D) + (1 - mask) * finfo(float32).min
 *   P = softmax(S) row-wise in FP32,   O (T, D) = P V.
 * The additive mask (not a "skip the key") is kept on purpose: a fully padded row
 * then has all scores equal to -FLT_MAX and attends uniformly to every key, exactly
 * like HF. Both products go through the dispatched GEMM in its nn.Linear layout:
 * K is already (N = T, K = D); V is transposed to (D, T). A head is strided inside
 * (B, T, H*D), so it is first copied to contiguous per-thread scratch. OpenMP runs
 * over the B*H heads; the GEMMs inside stay on their thread. */
#include "cpu/cpu.h"

#include <float.h>
#include <math.h>
#include <omp.h>

void qb_cpu_attention(float *out, const float *q, const float *k, const float *v,
                      const int32_t *mask, int B, int T, int H, int D)
{
    const int heads = B * H;
    if (heads <= 0 || T <= 0 || D <= 0) return;
    const size_t C = (size_t)H * D, td = (size_t)T * D;
    const size_t per_thread = 4 * td + (size_t)T * T;  /* q, k, v^T, o heads + scores */
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    if (nt > heads) nt = heads;
    float *ws = qb_malloc((size_t)nt * per_thread * sizeof *ws);
    if (!ws) {
        qb_log(QB_LOG_ERROR, "attention B=%d T=%d H=%d D=%d: cannot allocate %zu bytes of "
               "scratch; output set to NaN", B, T, H, D, (size_t)nt * per_thread * sizeof *ws);
        for (size_t i = 0; i < (size_t)B * T * C; i++) out[i] = NAN;
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
        for (int t = 0; t < T; t++) {
            for (int d = 0; d < D; d++) {
                qh[(size_t)t * D + d] = q[base + t * C + d];
                kh[(size_t)t * D + d] = k[base + t * C + d];
                vt[(size_t)d * T + t] = v[base + t * C + d];
            }
        }
        qb_cpu_linear(s, qh, kh, NULL, T, T, D);
        const int32_t *mb = mask + (size_t)b * T;
        for (int i = 0; i < T; i++) {
            float *si = s + (size_t)i * T;
            for (int j = 0; j < T; j++) si[j] = si[j] / sqrt_d + (1.0f - (float)mb[j]) * -FLT_MAX;
        }
        qb_cpu_softmax(s, T, T);
        qb_cpu_linear(oh, s, vt, NULL, T, D, T);
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) out[base + t * C + d] = oh[(size_t)t * D + d];
    }
    qb_free(ws);
}
