/* CPU kernels (the reference backend). Each kernel family has a plain scalar
 * version; SIMD variants live beside it in their own files (compiled with their
 * own -m flags) and are chosen at run time by CPUID. QBERT_ISA=scalar|avx2|avx512
 * forces a path (read once; when the CPU lacks it, or the value is unknown, an
 * error is logged and the best available path is used). */
#ifndef QBERT_CPU_H
#define QBERT_CPU_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "qbert/core.h"

#ifdef __cplusplus
extern "C" {  /* the host emulation of the CUDA kernels (C++) checks against these */
#endif

typedef enum { QB_ISA_SCALAR, QB_ISA_AVX2, QB_ISA_AVX512 } qb_isa;

/* The FP32 GEMM path in use (QBERT_ISA or the best the CPU has), and a way to set
 * it (tests walk every available path). */
qb_isa qb_cpu_isa(void);
const char *qb_isa_name(qb_isa isa);
int qb_cpu_isa_available(qb_isa isa);
/* An ISA the CPU lacks logs an error and selects the best available one. */
void qb_cpu_set_isa(qb_isa isa);
/* "scalar" | "avx2" | "avx512" -> *isa; QB_EINVAL (message names the allowed values)
 * otherwise. */
qb_status qb_isa_parse(const char *name, qb_isa *isa);
/* The ISA that QBERT_ISA=value selects on this CPU: NULL or "" -> the best available;
 * an unknown name or one the CPU lacks -> an error is logged and the best available
 * is used. qb_cpu_isa() applies it once to getenv("QBERT_ISA"). */
qb_isa qb_cpu_isa_resolve(const char *value);

/* The FP32 GEMM behind linear, its backward and attention:
 *   y (M, N) = x (M, K) . w (N, K)^T + b (N)      (b may be NULL)
 *   y (M, N) += x (M, K) . w (N, K)^T             (accumulate; b must be NULL)
 * Matrices are row-major with their own leading dimensions (ldy >= N, ...), so a
 * head of a (B, T, H*D) tensor is used in place. x_t: x is stored transposed,
 * (K, M) with row stride ldx >= M; w_t likewise, stored (K, N) with ldw >= N.
 * Threaded with OpenMP (on the calling thread inside a parallel region); results do
 * not depend on the thread count. Should its packing memory not be available, an
 * error is logged and the scalar reference computes y. */
typedef struct {
    float *y;
    const float *x, *w, *b;
    int M, N, K;
    size_t ldy, ldx, ldw;
    int x_t, w_t, accumulate;
} qb_gemm_f32;
void qb_cpu_gemm(const qb_gemm_f32 *g);
/* The per-ISA kernels behind qb_cpu_gemm (same contract). */
void qb_gemm_f32_scalar(const qb_gemm_f32 *g);
void qb_gemm_f32_avx2(const qb_gemm_f32 *g);
void qb_gemm_f32_avx512(const qb_gemm_f32 *g);
/* The nn.Linear case: y (M, N) = x (M, K) . w (N, K)^T + b (N), all contiguous. */
void qb_cpu_linear(float *y, const float *x, const float *w, const float *b, int M, int N, int K);

/* Internal to the GEMM files: the cache-blocked, packed, OpenMP driver in gemm.c
 * and the per-ISA register tiles it runs (see gemm.c for the design). */
typedef struct {
    int mr, nr;  /* register tile: mr rows of x by nr rows of w (nr a multiple of 8,
                    mr * nr <= 512) */
    /* c (mr, nr; row stride ldc) += xp (kc, mr) . wp (kc, nr): both panels k-major. */
    void (*tile)(int kc, const float *xp, const float *wp, float *c, size_t ldc);
    /* wp (kc, nr) <- n <= nr rows of w (row stride ldw), columns [0, kc), zero-padded. */
    void (*pack_w)(float *wp, const float *w, size_t ldw, int n, int kc, int nr);
    /* xp (kc, mr) <- m <= mr rows of x (row stride ldx), columns [0, kc), zero-padded;
     * may write up to QB_GEMM_PACK_X_SLACK floats past the panel. */
    void (*pack_x)(float *xp, const float *x, size_t ldx, int m, int kc, int mr);
} qb_gemm_f32_kernel;
#define QB_GEMM_PACK_X_SLACK 8
void qb_gemm_f32_blocked(const qb_gemm_f32_kernel *kern, const qb_gemm_f32 *g);
/* The packers of both SIMD paths, with 8x8 AVX2 transposes (every AVX-512 CPU has
 * AVX2): wp[k * nr + j] = w[j * ldw + k], rows n..nr-1 zero, nr a multiple of 8;
 * xp[k * mr + i] = x[i * ldx + k], rows m..mr-1 zero, mr <= 8. */
void qb_gemm_f32_pack_w_avx2(float *wp, const float *w, size_t ldw, int n, int kc, int nr);
void qb_gemm_f32_pack_x_avx2(float *xp, const float *x, size_t ldx, int m, int kc, int mr);

/* AVX2 + libmvec loops (vmath_avx2.c) behind gelu, gelu_backward and softmax. */
void qb_gelu_avx2(float *y, const float *x, size_t n);
void qb_gelu_backward_avx2(float *dx, const float *dy, const float *x, size_t n);
/* One row r (n >= 1) in place. */
void qb_softmax_row_avx2(float *r, int n);

/* The mask of qb_cpu_dropout_at, scalar (the reference) and AVX2 (8 Philox blocks
 * at a time, the same bits); p > 0. */
void qb_dropout_scalar(float *x, size_t n, uint64_t first, const qb_dropout *d);
void qb_dropout_avx2(float *x, size_t n, uint64_t first, const qb_dropout *d);

/* ---- INT8 GEMM (gemm_s8.c: contract, scalar reference, packing, dispatch) ---- */

/* fmaxf / fminf for the quantizers, inlined (libm's are calls): a NaN `a` gives b,
 * as x86 maxps / minps do with b as their second operand, so SIMD paths match. */
static inline float qb_maxf(float a, float b) { return a > b ? a : b; }
static inline float qb_minf(float a, float b) { return a < b ? a : b; }

/* Symmetric quantization of w (N, K) per group of `group` columns of each row (group
 * divides K; group = K: per row), b = 4 or 8 bits: scales (N, K / group) = absmax /
 * qmax, values clamp(rint(w * (1 / scale)), -2^(b-1), qmax) (0 in an all-zero group),
 * written as integers to q and/or dequantized (value * scale) to y; either may be
 * NULL, and y may alias w. fake_quant_weight is this with y only. */
void qb_cpu_quantize_groups(int8_t *q, float *y, float *scales, const float *w, int N, int K,
                            int group, int bits);
/* The inverse: w (N, K) = q times the scale of its group (scales (N, K / group)). */
void qb_cpu_dequantize_groups(float *w, const int8_t *q, const float *scales, int N, int K, int group);
/* Static per-tensor quantization: q (n) = clamp(rint(x * (1 / scale)), -128, 127), the
 * integers of fake_quant with 8 bits. */
void qb_quantize_tensor_s8(int8_t *q, const float *x, size_t n, float scale);
/* The same on one thread with inv = 1 / scale, AVX2 unless QBERT_ISA=scalar (the
 * AVX2 variant gives the same bits). */
void qb_quantize_s8(int8_t *q, const float *x, size_t n, float inv);
void qb_quantize_s8_avx2(int8_t *q, const float *x, size_t n, float inv);
/* s8 weights (N, K) packed for the SIMD tile: panels of QB_S8_NR columns, k in pairs
 * (Kp = K rounded up to even), byte ((panel * Kp/2 + k/2) * NR + column) * 2 + k%2,
 * zero past N and K. */
#define QB_S8_NR 16
typedef struct {
    int N, K, Kp;
    int8_t *data;
} qb_s8_packed;
qb_status qb_s8_pack(qb_s8_packed *p, const int8_t *wq, int N, int K);
void qb_s8_packed_free(qb_s8_packed *p);
/* y (M, N) = (xq (M, K) . wq (N, K)^T, exact int32) * (sx[m] * sw[n]) + b[n] (b may be
 * NULL), then GELU when gelu is set. The SIMD path (any ISA but scalar) reads the
 * packed weights wp; the scalar one reads wq. Results are bit-identical across paths
 * without GELU. */
void qb_cpu_gemm_s8(float *y, const int8_t *xq, const float *sx, const int8_t *wq,
                    const qb_s8_packed *wp, const float *sw, const float *b, int M, int N, int K,
                    int gelu);
void qb_gemm_s8_scalar(float *y, const int8_t *xq, const float *sx, const int8_t *wq,
                       const float *sw, const float *b, int M, int N, int K, int gelu);
void qb_gemm_s8_avx2(float *y, const int8_t *xq, const float *sx, const qb_s8_packed *wp,
                     const float *sw, const float *b, int M, int N, int K, int gelu);
/* The activations of the SIMD tiles: xq (M, K) as (rows, (K + 1) / 2) int32 words,
 * word (m, kk) holding the s16 pair (xq[m, 2kk], xq[m, 2kk + 1]) (0 past K, and in
 * rows M .. rows - 1). qb_malloc'ed. Out of memory: logs (naming `what`), sets the
 * GEMM's output y (M, N) to NaN and returns NULL. */
int32_t *qb_widen_pairs_s8(const char *what, float *y, int N, const int8_t *xq, int M, int K, int rows);

/* The epilogue of every SIMD INT8 tile (gemm_s8_avx2.c): rows m0 .. m0 + rows - 1
 * and columns n0 .. min(n0 + 16, N) - 1 of y (M, N) from the tile's int32 sums acc
 * (minus zp[m] * colsum[j], the u8 path's zero points, when colsum is not NULL):
 * (float)(acc - zp colsum) * (sx[m] * sw[n]) + b[n], then GELU. */
void qb_q8_epilogue_avx2(float *y, int N, int m0, int rows, int n0, const int32_t acc[][16],
                         const int32_t *colsum, const int32_t *zp, const float *sx, const float *sw,
                         const float *b, int gelu);

/* ---- Dynamic INT8 GEMM (gemm_u8.c: 7-bit per-token activations, shifted to u8) ---- */

/* The per-token 7-bit asymmetric activation quantizer (formula in gemm_u8.c), one row:
 * x (K) -> *scale, *zp and u (ldu >= K bytes; u = zp for K <= k < ldu). The AVX2
 * variant gives the same bits; the first picks by qb_cpu_isa(). */
void qb_quantize_row_u7(uint8_t *u, int ldu, float *scale, int32_t *zp, const float *x, int K);
void qb_quantize_row_u7_avx2(uint8_t *u, int ldu, float *scale, int32_t *zp, const float *x, int K);
/* A row's scale (returned), 1 / scale (0 when the scale is not > 0) and zero point from
 * its lo = min(x, 0) and hi = max(x, 0): the scalar part both quantizers share. */
float qb_u7_row_params(float lo, float hi, float *inv, int32_t *z);
/* A qb_qinput (csrc/backend/backend.h) for M x K on the heap (qb_malloc); QB_ENOMEM. */
qb_status qb_qinput_alloc(qb_qinput *a, int M, int K);
void qb_qinput_free(qb_qinput *a);
/* a (laid out for M x K) = x (M, K) per token on the 7-bit grid, rows in parallel. */
void qb_qinput_quantize(qb_qinput *a, const float *x);
/* a = x with one static 8-bit scale s: u = clamp(rint(x / s), -128, 127) + 128, zp = 128
 * (for the W4A8 tile, exact with any u8; qb_quantize_tensor_s8's integers). */
void qb_qinput_quantize_static(qb_qinput *a, const float *x, float s);
/* Zeroes a's padding rows (M up to qb_qinput_rows(M)). */
void qb_qinput_pad(qb_qinput *a);
#define QB_U8_NR 16
#define QB_U8_MR_AVX2 4 /* 8 accumulators: vpmaddubsw + vpmaddwd need temporaries */
#define QB_U8_MR_AVXVNNI 6 /* 12 accumulators: vpdpbusd needs none */
#define QB_U8_MR_AVX512 8
#define QB_U8_MR_MAX 8
/* qb_qinput's rows are padded to a multiple of every tile's mr (4, 6 and 8), so that the
 * last row block of any tile reads inside the buffer. */
static_assert(QB_QINPUT_ROW_PAD % QB_U8_MR_AVX2 == 0 && QB_QINPUT_ROW_PAD % QB_U8_MR_AVXVNNI == 0 &&
                   QB_QINPUT_ROW_PAD % QB_U8_MR_AVX512 == 0,
               "the tiles' row blocks must divide the activation row padding");
/* s8 weights (N, K) packed for the u8 tiles (layout in gemm_u8.c), Kq = K rounded up
 * to 4, colsum (panels x NR) = each column's weight sum (0 past N). */
typedef struct {
    int N, K, Kq;
    int8_t *data;
    int32_t *colsum;
} qb_u8_packed;
qb_status qb_u8_pack(qb_u8_packed *p, const int8_t *wq, int N, int K);
void qb_u8_packed_free(qb_u8_packed *p);
/* A register tile: acc (mr x NR) = the int32 sums of mr rows of u (row stride ldu, kq
 * quads) with one packed panel. */
typedef void (*qb_u8_tile_fn)(int kq, const uint8_t *u, size_t ldu, const int8_t *wp, int32_t acc[][QB_U8_NR]);
typedef struct {
    const char *name;
    int mr;
    qb_u8_tile_fn tile;
} qb_u8_kernel;
void qb_u8_tile_avx2(int kq, const uint8_t *u, size_t ldu, const int8_t *wp, int32_t acc[][QB_U8_NR]);
void qb_u8_tile_avxvnni(int kq, const uint8_t *u, size_t ldu, const int8_t *wp, int32_t acc[][QB_U8_NR]);
void qb_u8_tile_avx512vnni(int kq, const uint8_t *u, size_t ldu, const int8_t *wp, int32_t acc[][QB_U8_NR]);
/* The tiles this CPU runs under the current QBERT_ISA (none under scalar), slowest
 * first: up to cap of them into out; returns the count. QBERT_VNNI=0 keeps only AVX2. */
int qb_u8_kernels(const qb_u8_kernel **out, int cap);
/* The fastest of them; NULL: use the scalar path (qb_gemm_s8_scalar). */
const qb_u8_kernel *qb_u8_kernel_best(void);
/* y (M, N) = the s8 product of q = u - zp (x: M x wp->K) with the packed weights,
 * epilogue and GELU as qb_cpu_gemm_s8: bit-identical to qb_gemm_s8_scalar on q (GELU
 * aside). */
void qb_gemm_u8(const qb_u8_kernel *kern, float *y, const qb_qinput *x, const qb_u8_packed *wp, const float *sw,
                const float *b, int N, int gelu);

/* ---- W4A8 GEMM (gemm_s4.c): INT4 weights per group, INT8 activations per token ---- */

/* Weights packed for the tile: per panel of QB_S4_NR columns and per k quad, 32 bytes
 * (byte 4c + k%4: column c's nibble low, column c + 8's high; zero past N); per panel
 * and group, each column's weight sum (colsum) and scale, as (groups, NR). group a
 * multiple of 4 dividing K (qb_s4_pack fails otherwise: the scalar path remains). */
#define QB_S4_NR 16
typedef struct {
    int N, K, group;
    uint8_t *data;
    int32_t *colsum;
    float *scales;
} qb_s4_packed;
/* wq (N, K) values in [-8, 7], sw (N, K / group). */
qb_status qb_s4_pack(qb_s4_packed *p, const int8_t *wq, const float *sw, int N, int K, int group);
void qb_s4_packed_free(qb_s4_packed *p);
/* y (M, N) = (sum over groups, in order, of (float)(int32 group sum) * sw[n, g]) * sx[m]
 * + b[n] (b may be NULL), on xq (M, K) s8. */
void qb_gemm_s4_scalar(float *y, const int8_t *xq, const float *sx, const int8_t *wq,
                       const float *sw, const float *b, int M, int N, int K, int group);
/* The same on x (M x wp->K), q = u - zp, with the packed weights: bit-identical. */
void qb_gemm_s4_avx2(float *y, const qb_qinput *x, const qb_s4_packed *wp, const float *b, int N);

/* Tile t (0 <= t < row_blocks x panels) of an integer GEMM's grid, in the order the
 * threads take them (static schedule): groups of QB_TILE_GROUP row blocks, panel-major
 * inside a group, so consecutive tiles of a thread share a weight panel (in L1) while
 * the group's activation rows (up to 16 x 8 rows of 3072 bytes) stay in L2; weights
 * are read from memory once per group. */
#define QB_TILE_GROUP 16
static inline void qb_tile_order(long t, int row_blocks, int panels, int *rb, int *pn)
{
    const long group_tiles = (long)QB_TILE_GROUP * panels;
    const int g = (int)(t / group_tiles), rem = (int)(t % group_tiles);
    const int left = row_blocks - g * QB_TILE_GROUP, size = left < QB_TILE_GROUP ? left : QB_TILE_GROUP;
    *rb = g * QB_TILE_GROUP + rem % size, *pn = rem / size;
}

/* Exact GELU over n elements with libm's erff (the reference loop). */
void qb_gelu_scalar(float *y, const float *x, size_t n);

/* The kernels behind the backend op table: see csrc/backend/backend.h for each
 * contract (shapes, aliasing, accumulation); the notes here are CPU specifics. */

/* Two passes in FP32 (see layernorm.c); the backward's parameter sums are in double.
 * outq: each row quantized while it is in L1 (qb_quantize_row_u7). */
void qb_cpu_layernorm(float *out, float *t_out, float *stats, qb_qinput *outq, const float *x, const float *res,
                      const float *g, const float *b, int M, int C, float eps);
void qb_cpu_layernorm_backward(float *dt, float *dg, float *db, const float *dout, const float *t,
                               const float *stats, const float *g, int M, int C);
void qb_cpu_gelu(float *y, const float *x, size_t n);
void qb_cpu_gelu_backward(float *dx, const float *dy, const float *x, size_t n);
void qb_cpu_tanh(float *x, size_t n);
void qb_cpu_tanh_backward(float *dx, const float *dy, const float *y, size_t n);
/* Logs an error and writes NaN to its outputs if its scratch memory cannot be
 * allocated (the ops have no error return). */
void qb_cpu_attention(float *out, float *lse, const float *q, const float *k, const float *v, int ld,
                      const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D, qb_math math);
void qb_cpu_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                               const float *k, const float *v, int ld, const float *out, const float *lse,
                               const int32_t *mask, const qb_dropout *drop, int B, int T, int H, int D,
                               qb_math math);
/* ids and types are NOT checked here: the caller (the model) validates them. */
void qb_cpu_embedding(float *out, const int32_t *ids, const int32_t *types,
                      const float *word, const float *pos, const float *type,
                      int B, int T, int C);
void qb_cpu_embedding_backward(float *dword, float *dpos, float *dtype, const float *dout,
                               const int32_t *ids, const int32_t *types, int pad_id,
                               int B, int T, int C);
void qb_cpu_linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                            const float *w, int M, int N, int K);
void qb_cpu_dropout(float *x, size_t n, const qb_dropout *drop);
/* The mask of elements first .. first + n - 1 of a site applied to x (n), on the
 * calling thread (attention uses it per head). drop NULL or p = 0: nothing. */
void qb_cpu_dropout_at(float *x, size_t n, uint64_t first, const qb_dropout *drop);
void qb_cpu_xent(float *losses, float *dlogits, const float *logits, const int32_t *labels,
                 int B, int K, float grad_scale);
/* The backend's adamw and loss_scale_update ops with the gradients' sum of squares
 * (and 1 / the loss scale) given by value. */
void qb_cpu_adamw(float *w, float *m, float *v, const float *g, const uint8_t *decay, size_t n,
                  const qb_adamw_args *s, double sumsq, double unscale);
void qb_cpu_loss_scale_update(float *scale, int32_t *good, double sumsq);
double qb_cpu_sumsq(const float *x, size_t n);
void qb_cpu_fake_quant_weight(float *y, float *scales, const float *w, int N, int K, int group,
                              int bits);
void qb_cpu_fake_quant(float *y, const float *x, size_t n, float scale, int bits);
void qb_cpu_fake_quant_backward(float *dx, const float *dy, const float *x, size_t n, float scale,
                                int bits);
void qb_cpu_minmax(float out[2], const float *x, size_t n);
float qb_cpu_abs_percentile(const float *x, size_t n, double p);
/* The backend's observe op (csrc/backend/backend.h): a batch statistic folded into
 * an observer's range, and the input scale of that range. */
void qb_cpu_observe(float range[2], float *scale, const float batch[2], float ema, int bits);
/* Quantized Linear (linear_q.c): the INT8 / W4A8 / weight-only paths above behind one
 * op; prepare packs the weights for the SIMD tiles (or dequantizes a weight-only
 * Linear's) once. */
void qb_cpu_linear_q(float *y, qb_qinput *yq, const float *x, const qb_qinput *xq, const struct qb_qlinear *q,
                     const float *b, int M, int gelu);
qb_status qb_cpu_qlinear_prepare(struct qb_qlinear *q);
void qb_cpu_add(float *y, const float *x, size_t n);
/* Row-wise softmax in place, x (M, N), max-subtracted in FP32. */
void qb_cpu_softmax(float *x, int M, int N);

#ifdef __cplusplus
}
#endif

#endif
