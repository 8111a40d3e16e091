/* Quantization formats shared by the quantizer, the model files and the kernels
 * (shared/DESIGN.md section 7): symmetric INT8 per output channel, symmetric INT4
 * [-8, 7] per group of columns, packed two per byte, low nibble first. */
#ifndef QBERT_QUANT_H
#define QBERT_QUANT_H

#include "qbert/io.h"
#include "qbert/model.h"
#include "qbert/tokenizer.h"

#ifdef __cplusplus
extern "C" {  /* cuda/qlinear.cu packs INT4 weights with qb_int4_pack */
#endif

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

/* ---- Schemes ---- */

typedef enum { QB_Q_F32, QB_Q_F16, QB_Q_BF16, QB_Q_INT8, QB_Q_INT4 } qb_qprec;
typedef enum { QB_ACT_DYNAMIC, QB_ACT_STATIC, QB_ACT_F32 } qb_qact;

/* What a scheme does to the Linear layers, the embedding tables and the Linear inputs:
 *   fp16, bf16       every float tensor stored in half precision (run in FP32)
 *   int8-dynamic     Linear weights INT8 per output channel, inputs INT8 per token
 *                    (scale at run time); embedding tables INT8 per row
 *   int8-static      the same with one input scale per Linear from calibration
 *   int4             Linear weights INT4 per group of `group` columns (default 64),
 *                    inputs INT8 per token (W4A8), or FP32 (act = QB_ACT_F32);
 *                    embedding tables INT4 per group of each row
 *   int4-tensor      INT4 with one absmax scale per Linear weight (the research
 *                    notes' per-tensor PTQ); embeddings as int4
 *   hybrid           per Linear INT4 / INT8 / FP16 (chosen by sensitivity); INT8
 *                    per-token inputs, embeddings INT8 per row
 *   qat-int8         a QAT checkpoint's: INT8 weights per channel, static inputs with
 *                    the scales its observers learned; embeddings INT8 per row
 *   qat-int4         the same with INT4 weights per group (W4A8, static inputs)
 * LayerNorm parameters and biases stay FP32 (fp16/bf16: half). */
typedef struct {
    char name[32];
    qb_qprec linear, embedding;
    int group;          /* INT4 columns per scale (Linears and embedding rows) */
    bool tensor_scale;  /* INT4 Linears: one absmax scale per tensor instead */
    qb_qact act;
} qb_qscheme;

/* The scheme called `name` (the list above); group 0 takes the default (64). Unknown
 * names: QB_EINVAL listing the valid ones. */
qb_status qb_qscheme_get(const char *name, int group, qb_qscheme *out);
/* "fp32" "fp16" "bf16" "int8" "int4", and back (-1 for an unknown name). */
const char *qb_qprec_name(qb_qprec p);
int qb_qprec_parse(const char *name);
const char *qb_qact_name(qb_qact a);

/* ---- Hybrid precision: FP16 / INT8 / INT4 per Linear ---- */

/* Bytes of an (N, K) Linear weight stored at precision p: the values and their F32
 * scales (INT8 one per row, INT4 one per group of `group` columns). */
int64_t qb_hybrid_weight_bytes(int N, int K, qb_qprec p, int group);

typedef struct {
    int linear;      /* qb_config_linears index */
    qb_qprec prec;   /* what it moves to: QB_Q_INT8 or QB_Q_INT4 */
} qb_hybrid_step;

/* The order in which to lower n Linears from FP16 towards INT4, cheapest loss per byte
 * saved first: loss (n, 2) is each Linear's sensitivity at INT8 and INT4 (FP16 counts
 * as 0), bytes (n, 3) its weight bytes at FP16, INT8, INT4 (decreasing). A Linear
 * whose INT8 step costs more per byte than its INT4 step after it goes to INT4 in one
 * step. steps (capacity 2 n) gets the moves; returns their count (-1: out of memory).
 * Every prefix of the path is a hybrid choice; the full path ends all INT4. */
int qb_hybrid_path(int n, const double *loss, const int64_t *bytes, qb_hybrid_step *steps);

/* ---- Quantized Linear layers: what a low-bit file's Linear becomes when loaded ---- */

typedef struct qb_qlinear {
    int bits;               /* 8: one scale per output channel; 4: per group */
    int N, K, group;        /* weight (N, K); group: columns per scale (K: per channel) */
    int8_t *wq;             /* (N, K) integers; INT4 unpacked one per byte, in [-8, 7] */
    float *scales;          /* (N, K / group) */
    float act_scale;        /* > 0: static per-tensor INT8 input scale; 0: per token */
    bool act_f32;           /* weight-only: FP32 inputs times the dequantized weights */
    void *prepared;         /* the backend's layout (CPU: packed tiles); NULL: reference path */
    void (*release)(struct qb_qlinear *q);  /* frees `prepared` */
} qb_qlinear;

void qb_qlinear_free(qb_qlinear *q);

/* Whether q quantizes its input per token at run time (int8-dynamic, W4A8 dynamic):
 * such Linears can share one quantized input (backend op linear_q's xq). */
static inline bool qb_qlinear_dynamic(const qb_qlinear *q) { return q && !q->act_f32 && !(q->act_scale > 0.0f); }

/* The quantized Linears of a file being loaded, by name, handed to the model. */
typedef struct {
    int count;
    char **names;           /* "bert.encoder.layer.0.attention.self.query" (no ".weight") */
    qb_qlinear *q;
} qb_qlinears;

void qb_qlinears_free(qb_qlinears *l);

/* ---- Calibration: static per-tensor input scales ---- */

typedef enum { QB_CALIB_MINMAX, QB_CALIB_PERCENTILE, QB_CALIB_MSE } qb_calib_method;

typedef struct {
    qb_calib_method method;
    double percentile;   /* PERCENTILE: the clip is this percentile of |x| (e.g. 99.99) */
    int batch_size, max_length;
    /* called after each batch of a pass (the CLI prints its progress line), or NULL */
    void (*progress)(void *ctx, int pass, int done, int total);
    void *ctx;
} qb_calib_options;

/* "minmax" "percentile" "mse" -> method; -1 for another name. */
int qb_calib_method_parse(const char *name);
const char *qb_calib_method_name(qb_calib_method m);

/* Runs the FP32 model m on the CPU over the n texts and sets scales[i] (one per
 * Linear, qb_config_linears order) = clip_i / 127, where clip_i is chosen from the
 * |x| of the Linear's inputs (padding positions left out):
 *   minmax      the largest |x|
 *   percentile  the given percentile of |x| (a 2048-bin histogram up to the max)
 *   mse         the clip minimising the expected squared error over that histogram:
 *               rounding noise s^2 / 12 inside the range, (|x| - clip)^2 beyond it.
 * An input that is all zero gets scale 1. */
qb_status qb_calibrate(const qb_model *m, const qb_tokenizer *tok, const char *const *texts, int n,
                       const qb_calib_options *o, float *scales);

/* ---- Quantization-aware training (fake quantization with a straight-through
 * estimator; shared/DESIGN.md section 7) ---- */

typedef enum { QB_OBS_EMA, QB_OBS_MINMAX, QB_OBS_PERCENTILE } qb_observer;

/* What QAT fake-quantizes and how: every Linear's weight (per output channel, or
 * per group of `group` columns) and input (per tensor, from an observer), and, with
 * embeddings, the embedding tables (per row, or per group of a row). */
typedef struct {
    int weight_bits, act_bits;  /* 4 or 8; 8 */
    int group;                  /* columns per weight scale; 0: one per output channel */
    qb_observer observer;
    float ema;                  /* EMA: the weight of a new batch (torch's averaging constant) */
    float percentile;           /* PERCENTILE: of |x| per batch, then averaged like EMA */
    bool embeddings;
} qb_qat_settings;

/* A model's QAT state (qb_model.qat): the settings, the observed input range of every
 * Linear (qb_config_linears order), and backend buffers for the fake-quantized
 * weights, remade after the weights change (stale). */
typedef struct qb_qat {
    qb_qat_settings set;
    int n;                      /* Linears */
    float *range;               /* (n, 2) min, max of each Linear's input; NaN until observed */
    bool observe;               /* training forward passes update the ranges */
    bool stale;                 /* the weights changed since wfq was made */
    const struct qb_backend *be;/* the buffers' backend (NULL until the first forward pass) */
    float **wfq;                /* (n) fake-quantized weights (N, K) */
    float *efq[3];              /* fake-quantized word, position, type tables (embeddings) */
    float *scales;              /* scratch for the weight scales */
    /* The observers where the passes run (backend memory of be, made with the other
     * buffers): the ranges (n, 2) (the array `range` itself on the CPU backend, a
     * mirror on a GPU: qb_qat_pull), the input scales (n) and the batch statistics
     * (n, 2). Training passes update them there, without waiting for the host. */
    float *dev_range, *dev_scale, *dev_batch;
    bool host_newer;            /* range was set on the host (new, loaded): copied over at the next pass */
    /* Data parallel: makes one batch statistic (min, max; 2 floats of backend memory,
     * on stream s) of every process's before it is folded in (the smallest min, the
     * largest max: the whole global batch's for min/max and EMA; the largest of the
     * processes' percentiles), or NULL. */
    void (*combine)(void *ctx, float *batch, struct qb_stream *s);
    void *combine_ctx;
} qb_qat;

/* A fresh state for a model of config c (observe on, stale), after checking the
 * settings (INT4 groups must divide every row). */
qb_status qb_qat_new(const qb_config *c, const qb_qat_settings *s, qb_qat **out);
void qb_qat_free(qb_qat *q);
/* Field by field (the struct has padding: no memcmp). */
bool qb_qat_settings_equal(const qb_qat_settings *a, const qb_qat_settings *b);
/* The input scale of Linear i: max(|min|, |max|) / qmax of its range (1 when it is
 * unobserved or zero), the scale its static INT8 file stores. */
float qb_qat_act_scale(const qb_qat *q, int i);
/* range = the ranges the passes left in backend memory (a wait; nothing to do on
 * the CPU backend or before the first pass). */
qb_status qb_qat_pull(qb_qat *q);

/* In model files: X.input_range F32 (2) per Linear and __metadata__ qbert.qat.*
 * (weight_bits, act_bits, group_size, observer, embeddings, ema_constant, percentile).
 * write appends views of
 * the ranges to w and the settings to meta (owned copies); read_settings finds them in
 * a file's metadata (*found false when the file has none); read_ranges moves the
 * ranges of w into q (the tensors leave w). */
qb_status qb_qat_write(const qb_qat *q, const qb_config *c, qb_weights *w, qb_meta *meta);
qb_status qb_qat_read_settings(const qb_meta *meta, const char *path, qb_qat_settings *s, bool *found);
qb_status qb_qat_read_ranges(qb_qat *q, const qb_config *c, qb_weights *w, const char *path);

/* ---- Quantized model files (shared/DESIGN.md section 5) ----
 * One safetensors file. Per Linear X: X.weight is I8 (N, K) with X.weight_scale F32
 * (N), or U8 (N, K / 2) packed INT4 with X.weight_scale F32 (N, K / group) or (1) per
 * tensor, or F32 / F16 / BF16 (N, K); X.input_scale F32 (1) with static inputs. The
 * embedding tables E.weight likewise (INT8: scale per row; INT4: per group of a row).
 * __metadata__: qbert.format "qbert-quant/1", qbert.scheme, qbert.activations
 * (dynamic-int8 | static-int8 | fp32), qbert.group_size (of INT4 tensors; int4-tensor
 * uses it for the embedding tables only), and optionally qbert.calibration and
 * qbert.layers (per-Linear precision, hybrid). */
#define QB_QUANT_FORMAT "qbert-quant/1"

/* What to write: the scheme, per-Linear precision (qb_config_linears order; NULL: the
 * scheme's for all), per-Linear static input scales (NULL unless act is STATIC), and
 * a note on the calibration (may be NULL). */
typedef struct {
    qb_qscheme scheme;
    const qb_qprec *linear;
    const float *act_scale;
    const char *calibration;
} qb_qplan;

/* Quantizes the FP32 model m by plan into the file `path` (atomic write). */
qb_status qb_quant_save(const qb_model *m, const qb_qplan *plan, const char *path);

/* The plan that writes a QAT model as trained: scheme qat-int8 or qat-int4 and one
 * static input scale per Linear (act_scale, n of them, filled here). QB_EINVAL when
 * the QAT granularity has no file layout (INT8 per group, INT4 per channel). */
qb_status qb_qat_plan(const qb_model *m, qb_qplan *plan, float *act_scale);

/* Loading: turns the tensors of a quantized file (loaded with to_f32 false) into what
 * qb_model_from_weights binds: embedding tables and half-precision tensors become F32
 * in place, quantized Linear weights move (with their scales) into *out. Every
 * disagreement between the metadata, the config and the tensors is QB_EFORMAT naming
 * the file and the tensor. */
qb_status qb_quant_unpack(const qb_config *cfg, const qb_meta *meta, const char *path, qb_weights *w,
                          qb_qlinears *out);

#ifdef __cplusplus
}
#endif

#endif
