/* BERT input embeddings: out (B*T, C) = (word[ids] + type[types]) + pos[t], added
 * in the order Hugging Face adds them so the floats round the same way. Position
 * ids are 0..T-1. ids and types are trusted: the model validates them against the
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
