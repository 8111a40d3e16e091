/* BERT input embeddings, forward and backward. Forward: out (B*T, C) =
 * (word[ids] + type[types]) + pos[t], added in the order Hugging Face adds them so
 * the floats round the same way. Position ids are 0..T-1. ids and types are trusted: the model validates them against the
 * table sizes before calling, so nothing is checked (or clamped) here. */
#include "cpu/cpu.h"

void qb_cpu_embedding(float *out, const int32_t *ids, const int32_t *types,
                      const float *word, const float *pos, const float *type,
                      int B, int T, int C)
{
#pragma omp parallel for schedule(static) if ((double)B * T * C >= 65536.0)
    for (int bt = 0; bt < B * T; bt++) {
        const float *we = word + (size_t)ids[bt] * C;
        const float *te = type + (size_t)types[bt] * C;
        const float *pe = pos + (size_t)(bt % T) * C;
        float *o = out + (size_t)bt * C;
        for (int c = 0; c < C; c++) o[c] = (we[c] + te[c]) + pe[c];
    }
}

/* Backward: a scatter-add of dout rows into the three tables. Rows of a table may
 * repeat (the same token twice), so threads split the COLUMNS and each walks all
 * B*T rows in order: no two threads touch one element, and the sums are the same
 * for any thread count. */
void qb_cpu_embedding_backward(float *dword, float *dpos, float *dtype, const float *dout,
                               const int32_t *ids, const int32_t *types, int pad_id,
                               int B, int T, int C)
{
    const int blocks = (C + 15) / 16;
#pragma omp parallel for schedule(static) if ((double)B * T * C >= 65536.0)
    for (int blk = 0; blk < blocks; blk++) {
        const int c0 = blk * 16, c1 = c0 + 16 < C ? c0 + 16 : C;
        for (int bt = 0; bt < B * T; bt++) {
            const float *d = dout + (size_t)bt * C;
            float *dw = dword + (size_t)ids[bt] * C;
            float *dt = dtype + (size_t)types[bt] * C;
            float *dp = dpos + (size_t)(bt % T) * C;
            const int word = ids[bt] != pad_id;
            for (int c = c0; c < c1; c++) {
                if (word) dw[c] += d[c];
                dt[c] += d[c];
                dp[c] += d[c];
            }
        }
    }
}
