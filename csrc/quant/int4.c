/* INT4 weights: per-group quantization and the two-per-byte packing of the model
 * files (include/qbert/quant.h). */
#include "qbert/quant.h"

#include "cpu/cpu.h"

qb_status qb_int4_check_group(int group, int K)
{
    if (group <= 0 || group % 2 != 0 || K % group != 0)
        return qb_fail(QB_EINVAL, "INT4 group size %d must be even and divide the row length %d", group, K);
    return QB_OK;
}

qb_status qb_quantize_groups_s4(int8_t *q, float *scales, const float *w, int N, int K, int group)
{
    const qb_status st = qb_int4_check_group(group, K);
    if (!st) qb_cpu_quantize_groups(q, NULL, scales, w, N, K, group, 4);
    return st;
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
