/* The BERT sequence classifier: config, parameters with their Hugging Face names,
 * loading from a model directory, random initialisation, and the forward pass
 * (written once against the backend op table). */
#ifndef QBERT_MODEL_H
#define QBERT_MODEL_H

#include "qbert/tensor.h"

#define QB_MAX_LABELS 64

struct qb_backend;
struct qb_stream;

typedef struct {
    int vocab_size, hidden_size, num_layers, num_heads, intermediate_size;
    int max_position, type_vocab_size, num_labels, pad_token_id;
    float layer_norm_eps, initializer_range;
    float hidden_dropout, attention_dropout;
    char hidden_act[32];                  /* "gelu" only (exact erf) */
    char *id2label[QB_MAX_LABELS];        /* owned strings */
} qb_config;

/* Parses a HF config.json (model_type "bert"). Missing optional keys take HF
 * defaults; missing required keys or wrong types are errors naming the key. */
qb_status qb_config_parse(const char *json, size_t len, const char *path, qb_config *cfg);
qb_status qb_config_load(const char *path, qb_config *cfg);
/* Presets: "bert-tiny" (2 layers, 128 hidden), "indobert-base-p2" (12 x 768). */
qb_status qb_config_preset(const char *name, qb_config *cfg);
/* Serialises as a HF config.json that transformers can load. malloc'ed. */
char *qb_config_to_json(const qb_config *cfg);
void qb_config_free(qb_config *cfg);
/* Label id of a name, or -1. */
int qb_config_label_id(const qb_config *cfg, const char *name);

struct qb_qlinear;
/* w (out, in) as nn.Linear, b (out). A quantized Linear (a low-bit model file) has
 * w NULL and its weights in q (include/qbert/quant.h). A backend copy with half
 * weights (qb_model_to_backend) also has wh and bh, w and b in its half type (the
 * encoder's Linears); in QB_WEIGHTS_HALF w is then NULL. */
typedef struct {
    float *w, *b;
    const struct qb_qlinear *q;
    void *wh, *bh;
} qb_linear_params;
typedef struct { float *g, *b; } qb_ln_params;      /* (C) */

typedef struct {
    qb_linear_params q, k, v, attn_out;   /* (C, C) */
    /* q, k and v quantized alike joined into one (3C, C) Linear (qb_model_join_qkv), or
     * NULL: one GEMM for the three where their biases lie back to back (a backend copy) */
    const struct qb_qlinear *qkv;
    qb_ln_params ln_attn;
    qb_linear_params inter;               /* (I, C) */
    qb_linear_params out;                 /* (C, I) */
    qb_ln_params ln_out;
} qb_layer_params;

typedef struct {
    qb_config cfg;
    float *word_emb;   /* (V, C) */
    float *pos_emb;    /* (P, C) */
    float *type_emb;   /* (TV, C) */
    qb_ln_params ln_emb;
    qb_layer_params *layers;  /* (L) */
    qb_linear_params pooler;      /* (C, C) */
    qb_linear_params classifier;  /* (num_labels, C) */
    qb_weights weights;  /* owns every tensor above, under its HF name */
    struct qb_qlinear *qlinear;  /* (n_qlinear) the quantized Linears, owned */
    int n_qlinear;
    struct qb_qlinear *qkv;      /* (L) the joined ones the layers' qkv point at, owned; NULL */
    char scheme[32];     /* quantization scheme of a low-bit file; "" for FP32 */
    struct qb_qat *qat;  /* quantization-aware training state (fake quantization), or NULL */
    /* A model in backend memory (qb_model_to_backend): every tensor is a view into
     * mem, one allocation of mem_be; NULL for host models. */
    const struct qb_backend *mem_be;
    void *mem;
    /* Its half weights (qb_weight_copies): their type (QB_F32: none), the encoder's
     * embedding tables in it (word, position, type; NULL without), one allocation. */
    int copies;          /* qb_weight_copies */
    qb_dtype half;
    void *emb_h[3];
    void *half_mem;
    size_t mem_floats;   /* of the FP32 layout that half_mem mirrors */
} qb_model;

/* The Linear layers in graph order: per layer query, key, value, attention output,
 * intermediate, output; then the pooler and the classifier (6 L + 2 in all).
 * name is the HF prefix ("bert.encoder.layer.0.attention.self.query"); weight (N, K). */
typedef struct {
    char name[96];
    int N, K;
} qb_linear_info;
/* Fills out (when not NULL) and returns the count. */
int qb_config_linears(const qb_config *c, qb_linear_info *out);
/* Whether tensor `name` is the weight of Linear `linear` (linear + ".weight"). */
bool qb_is_weight_of(const char *name, const char *linear);
/* The parameters of Linear `index` of that order. */
const qb_linear_params *qb_model_linear(const qb_model *m, int index);

/* Loads config.json + model.safetensors (or pytorch_model.bin) from a directory.
 * Tensors the classifier does not use are listed once at info level; a missing
 * classifier is initialised from `seed` (normal(0, initializer_range), zero bias)
 * with a warning; any other missing tensor or a shape mismatch is an error. */
qb_status qb_model_load(const char *dir, uint64_t seed, qb_model *m);
/* Bytes of the weights file qb_model_load reads from dir (model.safetensors, else
 * pytorch_model.bin); -1 when there is neither. */
int64_t qb_model_weights_bytes(const char *dir);
/* The same with the labels given (fine-tuning a checkpoint for new classes): the
 * config's num_labels and id2label are replaced before the weights are bound, so a
 * checkpoint without a classifier gets one of n_labels rows; labels NULL: as saved. */
qb_status qb_model_load_labels(const char *dir, const char *const *labels, int n_labels, uint64_t seed,
                               qb_model *m);
/* Takes ownership of cfg and the tensors of w (moved into m). */
qb_status qb_model_from_weights(const qb_config *cfg, qb_weights *w, uint64_t seed,
                                const char *source, qb_model *m);
/* Lays out the quantized Linears' weights for the backend (CPU: packed INT8 / INT4
 * tiles) once, on stream s, the joined ones too; without it they run on the scalar
 * reference path. */
qb_status qb_model_prepare(qb_model *m, const struct qb_backend *be, struct qb_stream *s);
/* Joins each layer's query, key and value quantized Linears into one (3C, C) Linear
 * (their rows in turn) where the three quantize their input per token with the same
 * bits and group: a backend copy made afterwards (qb_model_to_backend, which keeps
 * the biases back to back) runs them as one GEMM, the same bits as three. The engine
 * does it for a device; on the CPU the host model's biases lie apart, and the joined
 * weights would only cost memory. A model without such Linears: nothing to do. */
qb_status qb_model_join_qkv(qb_model *m);
/* A zero-filled model with m's config and shapes (gradients, optimizer moments):
 * same tensor names, same pointer layout, in the same memory as m (host, or m's
 * backend for a qb_model_to_backend copy). Its config borrows nothing (no labels). */
qb_status qb_model_zeros_like(const qb_model *m, qb_model *out);
/* Sets every parameter of m (gradients, between steps) to zero, in be's memory. */
void qb_model_zero(qb_model *m, const struct qb_backend *be);
/* Which copies of its weights a model in backend memory holds. */
typedef enum {
    QB_WEIGHTS_FP32,          /* FP32, as on the host */
    QB_WEIGHTS_FP32_AND_HALF, /* FP32 master weights and half copies of the encoder's
                               * (training with half activations: the copies are
                               * remade from the masters before each pass) */
    QB_WEIGHTS_HALF,          /* the encoder's matrices (embedding tables, Linear
                               * weights) in half only, its biases in both, LayerNorm
                               * and the head FP32 (inference: what FP16 / BF16 files
                               * keep in device memory) */
} qb_weight_copies;
/* A copy of the FP32 host model m in backend memory (be->alloc; be->free when
 * qb_model_free'd): the same names, shapes and pointer layout, for running m on
 * that backend (the op table takes backend pointers); with half copies (half:
 * QB_F16 or QB_BF16) as `copies` says, for passes whose activations are stored in
 * that type. A model already in backend memory: an error. Quantized Linears are
 * borrowed from m. Its config borrows nothing (no labels). */
qb_status qb_model_to_backend(const qb_model *m, const struct qb_backend *be, qb_weight_copies copies, qb_dtype half,
                              qb_model *out);
/* The half type (QB_F16, QB_BF16) that be's copy of m needs for passes with products
 * in math to store their activations in half (csrc/model/bert.c); QB_F32 when they
 * cannot: a backend without QB_CAN_HALF, FP32 / TF32 math, a QAT model or one with
 * weight-only quantized Linears, a head dim attention cannot take in half. (INT8 and
 * W4A8 Linears read and write half activations; their products stay integer.) */
qb_dtype qb_model_half_type(const qb_model *m, const struct qb_backend *be, qb_math math);
/* Remakes the half copies of a QB_WEIGHTS_FP32_AND_HALF model from its FP32 weights
 * (one conversion on s; nothing for other models). */
void qb_model_refresh_half(const qb_model *m, struct qb_stream *s);
/* Copies every parameter of src (a qb_model_to_backend copy) into dst, a host model
 * of the same config (qb_model_zeros_like of the original). */
void qb_model_to_host(const qb_model *src, qb_model *dst);
/* The reverse: every parameter of the host model src into dst, a qb_model_to_backend
 * copy of the same config (a checkpoint's weights, loaded on the host). */
void qb_model_from_host(const qb_model *src, qb_model *dst);
/* Random init as transformers does: normal(0, initializer_range) for linear and
 * embedding weights, zero biases, LayerNorm weight 1 bias 0, zero padding row. */
qb_status qb_model_init_random(const qb_config *cfg, uint64_t seed, qb_model *m);
/* Writes config.json + model.safetensors into dir (created if needed), atomically.
 * FP32 models only (a quantized model is written by qb_quant_save). */
qb_status qb_model_save(const qb_model *m, const char *dir);
void qb_model_free(qb_model *m);
size_t qb_model_param_count(const qb_model *m);

/* Optional outputs of a forward pass, for tests and analysis (CPU pointers, NULL = skip):
 * hidden[l] (B, T, C) for l = 0 (embeddings) .. L, pooled (B, C). linear_input, when
 * set, sees the input x (M, K) of every Linear (index in qb_config_linears order)
 * before it runs, in backend memory (host memory on the CPU backend): calibration. */
typedef struct {
    float **hidden;
    float *pooled;
    void (*linear_input)(void *ctx, int index, const float *x, int M, int K);
    void *ctx;
} qb_forward_trace;

/* logits (B, num_labels) for a padded batch: ids / types / mask (B, T). */
qb_status qb_model_forward(const qb_model *m, const struct qb_backend *be,
                           const int32_t *ids, const int32_t *types, const int32_t *mask,
                           int B, int T, float *logits, qb_forward_trace *trace);

/* Training. A batch: ids / types / mask (B, T) as for qb_model_forward (types and
 * mask may be NULL), labels (B) in [0, num_labels). */
typedef struct {
    const int32_t *ids, *types, *mask, *labels;
    int B, T;
} qb_batch;

/* Dropout of one training step: rates (0 = off; the trainer takes them from the
 * config) and Philox (seed, stream). A step uses the qb_dropout_sites(cfg) streams
 * stream, stream + 1, ...: the embeddings, then per layer the attention
 * probabilities, the attention output and the FFN output, then the pooled output.
 * offset, when not NULL, points to backend memory whose value is added to stream
 * when the ops run (qb_dropout in csrc/backend/backend.h): a recorded step reads its
 * streams there (qb_model_train_step). */
typedef struct {
    float hidden, attention;
    uint64_t seed, stream;
    const uint64_t *offset;
} qb_dropout_plan;
uint64_t qb_dropout_sites(const qb_config *cfg);

/* Activation memory on a backend, reused across batches (grown when a batch needs
 * more). Training activations keep what the backward pass needs. */
typedef struct qb_activations qb_activations;
qb_status qb_activations_new(const qb_model *m, const struct qb_backend *be, bool train,
                             qb_activations **out);
void qb_activations_free(qb_activations *a);
/* The arithmetic of the products in passes over a (default FP32). On a backend that
 * stores activations in half (QB_CAN_HALF), BF16 / FP16 with a model that has half
 * weights of that type (qb_model_to_backend) also stores the activations in it. */
void qb_activations_set_math(qb_activations *a, qb_math math);
/* fp16 loss scaling: the training passes over a multiply the loss's gradient by
 * *scale, read in backend memory when they run (qb_adamw_loss_scale); NULL: 1. */
void qb_activations_set_loss_scale(qb_activations *a, const float *scale);
/* The stream passes over a run on (default NULL: the backend's default one). */
void qb_activations_set_stream(qb_activations *a, struct qb_stream *s);

/* qb_model_forward on activations the caller keeps (an engine's, reused across
 * batches; made with train = false or true), on their backend. */
qb_status qb_model_infer(const qb_model *m, qb_activations *a, const int32_t *ids, const int32_t *types,
                         const int32_t *mask, int B, int T, float *logits, qb_forward_trace *trace);

/* One forward and backward pass over a batch: *loss = mean cross-entropy over the
 * batch, logits (B, num_labels) to host memory when not NULL, and the gradient of
 * grad_scale * B * loss (i.e. dlogits = (softmax - onehot) * grad_scale) ADDED to
 * grads (from qb_model_zeros_like). Use grad_scale = 1 / (B * grad_accum) for
 * Trainer's mean loss divided by the accumulation steps. drop NULL: no dropout.
 * With loss or logits it waits for the pass; with neither it only queues it. */
qb_status qb_model_forward_backward(const qb_model *m, qb_activations *a, const qb_batch *batch,
                                    const qb_dropout_plan *drop, float grad_scale, qb_model *grads,
                                    float *loss, float *logits);
/* A whole training step as one pass: qb_model_forward_backward (waiting for nothing;
 * the loss is read with qb_activations_loss after the caller's sync), then
 * after(ctx), which only queues ops on the pass's stream (the optimizer's update:
 * qb_adamw_update, zeroing the gradients). With record set, on a backend that
 * records passes (QB_CAN_GRAPHS: one CUDA graph per key, launched at once from the
 * third step of a key on) unless a grads hook is set. The key is the model, the
 * gradients, the batch shape, the math, grad_scale, the dropout plan (its stream
 * too: what changes from step to step must reach the ops through drop->offset),
 * whether QAT observes, and after_key for what after's ops fix. */
qb_status qb_model_train_step(const qb_model *m, qb_activations *a, const qb_batch *batch,
                              const qb_dropout_plan *drop, float grad_scale, qb_model *grads,
                              void (*after)(void *ctx), void *ctx, uint64_t after_key, bool record);
/* The mean loss of the last training pass over a, once the caller has
 * synced a's stream (a pass given neither loss nor logits waits for nothing: the
 * trainer reads the loss after the optimizer step, one wait per step). */
float qb_activations_loss(const qb_activations *a);
/* Calls fn(ctx, from) as the backward passes over a finish the gradients' arena
 * (a qb_model_zeros_like copy in backend memory) from `from` to its end: after the
 * head, after each layer, after the embeddings (queued work, on an asynchronous
 * backend). Data-parallel training starts its all-reduce buckets there. fn NULL:
 * none. */
void qb_activations_set_grads_hook(qb_activations *a, void (*fn)(void *ctx, const float *from), void *ctx);

#endif
