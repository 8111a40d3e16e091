/* Row-wise softmax in place, x (M, N), in FP32: subtract the row maximum (so exp
 * never overflows and a row of equal values, even -FLT_MAX, comes out uniform),
 * exponentiate, divide by the sum (accumulated in double). */
#include "cpu/cpu.h"

#include <math.h>

void qb_cpu_softmax(float *x, int M, int N)
{
    if (N <= 0) return;
#pragma omp parallel for schedule(static) if ((double)M * N >= 16384.0)
    for (int m = 0; m < M; m++) {
        float *r = x + (size_t)m * N;
        float mx = r[0];
        for (int n = 1; n < N; n++) mx = r[n] > mx ? r[n] : mx;
        double s = 0.0;
        for (int n = 0; n < N; n++) {
            /* expf rounds to exactly 0 below -104, but gets there through libm's slow
             * underflow (errno) path: every masked attention score would take it. */
            const float d = r[n] - mx;
            r[n] = d < -104.0f ? 0.0f : expf(d);
            s += r[n];
        }
        const float sf = (float)s;
        for (int n = 0; n < N; n++) r[n] /= sf;
    }
}
