/* INT4 weights: per-group quantization and the two-per-byte packing of the model
 * files (include/qbert/quant.h). */
#include "qbert/quant.h"

#include <math.h>

qb_status qb_quantize_groups_s4(int8_t *q, float *scales, const float *w, int N, int K, int group)
{
    if (group <= 0 || K % group != 0 || group % 2 != 0)
        return qb_fail(QB_EINVAL, "INT4 group size %d must be even and divide the row length %d", group, K);
    const int groups = K / group;
    for (int n = 0; n < N; n++) {
        for (int g = 0; g < groups; g++) {
            const size_t o = (size_t)n * K + (size_t)g * group;
            float amax = 0.0f;
            for (int k = 0; k < group; k++) amax = fmaxf(amax, fabsf(w[o + k]));
            const float s = amax / 7.0f, inv = s > 0.0f ? 1.0f / s : 0.0f;
            scales[(size_t)n * groups + g] = s;
            for (int k = 0; k < group; k++) q[o + k] = (int8_t)fminf(fmaxf(rintf(w[o + k] * inv), -8.0f), 7.0f);
        }
    }
    return QB_OK;
}

void qb_int4_pack(uint8_t *dst, const int8_t *q, size_t n)
{
    for (size_t i = 0; i < n; i += 2) {
        const unsigned lo = (unsigned)q[i] & 0xFu, hi = i + 1 < n ? (unsigned)q[i + 1] & 0xFu : 0u;
        dst[i / 2] = (uint8_t)(lo | hi << 4);
    }
}

void qb_int4_unpack(int8_t *q, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const int nib = i % 2 ? src[i / 2] >> 4 : src[i / 2] & 0xF;
        q[i] = (int8_t)(nib >= 8 ? nib - 16 : nib);
    }
}
