/* Hybrid precision: which of FP16 / INT8 / INT4 each Linear gets
 * (include/qbert/quant.h). The choice is a multiple-choice knapsack: each Linear has
 * three (size, loss) options, and the losses are taken as additive. The greedy walk
 * over each Linear's lower convex hull of (bytes, loss) visits, at every size, a
 * choice with (close to) the least total loss for that size: a Linear whose INT8 loss
 * buys less per byte than going on to INT4 skips INT8 (it lies above the hull). */
#include "qbert/quant.h"

#include <stdlib.h>

int64_t qb_hybrid_weight_bytes(int N, int K, qb_qprec p, int group)
{
    const int64_t nk = (int64_t)N * K;
    switch (p) {
    case QB_Q_INT8: return nk + (int64_t)N * 4;                   /* one F32 scale per row */
    case QB_Q_INT4: return nk / 2 + (int64_t)N * (K / group) * 4;  /* one F32 scale per group */
    case QB_Q_F16:
    case QB_Q_BF16: return nk * 2;
    case QB_Q_F32: return nk * 4;
    }
    return nk * 4;
}

/* Loss per byte saved going from option a to option b of Linear i. */
static double ratio(const double *loss, const int64_t *bytes, int i, int a, int b)
{
    const double la = a ? loss[2 * i + a - 1] : 0.0, lb = loss[2 * i + b - 1];
    return (lb - la) / (double)(bytes[3 * i + a] - bytes[3 * i + b]);
}

int qb_hybrid_path(int n, const double *loss, const int64_t *bytes, qb_hybrid_step *steps)
{
    /* at[i]: the option Linear i is at (0 FP16, 1 INT8, 2 INT4). */
    int count = 0;
    int *at = calloc((size_t)n, sizeof *at);
    if (!at) return -1;
    for (;;) {
        int best = -1, best_to = 0;
        double best_r = 0.0;
        for (int i = 0; i < n; i++) {
            if (at[i] == 2) continue;
            /* From FP16, INT8 is on the hull only if its step is cheaper per byte than
             * the step from INT8 on to INT4 that would follow it. */
            int to = at[i] + 1;
            if (at[i] == 0 && !(ratio(loss, bytes, i, 0, 1) < ratio(loss, bytes, i, 1, 2))) to = 2;
            const double r = ratio(loss, bytes, i, at[i], to);
            if (best < 0 || r < best_r) best = i, best_to = to, best_r = r;
        }
        if (best < 0) break;
        at[best] = best_to;
        steps[count++] = (qb_hybrid_step){best, best_to == 1 ? QB_Q_INT8 : QB_Q_INT4};
    }
    free(at);
    return count;
}
