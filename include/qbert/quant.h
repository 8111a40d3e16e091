/* Quantization formats shared by the quantizer, the model files and the kernels
 * (shared/DESIGN.md section 7): symmetric INT8 per output channel, symmetric INT4
 * [-8, 7] per group of columns, packed two per byte, low nibble first. */
#ifndef QBERT_QUANT_H
#define QBERT_QUANT_H

#include "qbert/core.h"

/* QB_OK when `group` can group rows of length K for INT4 (even, dividing K); else
 * QB_EINVAL naming both. */
qb_status qb_int4_check_group(int group, int K);
/* Per-group INT4 quantization of w (N, K), group dividing K: scales (N, K / group) =
 * absmax / 7 of each group, q (N, K) = clamp(rint(w / scale), -8, 7) (0 for an
 * all-zero group), the same numbers as fake_quant_weight with 4 bits. QB_EINVAL
 * (naming the sizes) when group does not divide K or is odd. */
qb_status qb_quantize_groups_s4(int8_t *q, float *scales, const float *w, int N, int K, int group);
/* n values in [-8, 7] -> (n + 1) / 2 bytes, value 2i in the low nibble of byte i and
 * 2i + 1 in the high one (0 when n is odd). */
void qb_int4_pack(uint8_t *dst, const int8_t *q, size_t n);
/* The inverse: n sign-extended values from (n + 1) / 2 bytes. */
void qb_int4_unpack(int8_t *q, const uint8_t *src, size_t n);

#endif
