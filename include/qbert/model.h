/* The BERT sequence classifier: config, parameters with their Hugging Face names,
 * loading from a model directory, random initialisation, and the forward pass
 * (written once against the backend op table). */
#ifndef QBERT_MODEL_H
#define QBERT_MODEL_H

#include "qbert/tensor.h"

#define QB_MAX_LABELS 64

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

typedef struct { float *w, *b; } qb_linear_params;  /* w (out, in) as nn.Linear, b (out) */
typedef struct { float *g, *b; } qb_ln_params;      /* (C) */

typedef struct {
    qb_linear_params q, k, v, attn_out;   /* (C, C) */
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
} qb_model;

/* Loads config.json + model.safetensors (or pytorch_model.bin) from a directory.
 * Tensors the classifier does not use are listed once at info level; a missing
 * classifier is initialised from `seed` (normal(0, initializer_range), zero bias)
 * with a warning; any other missing tensor or a shape mismatch is an error. */
qb_status qb_model_load(const char *dir, uint64_t seed, qb_model *m);
/* The same with the labels given (fine-tuning a checkpoint for new classes): the
 * config's num_labels and id2label are replaced before the weights are bound, so a
 * checkpoint without a classifier gets one of n_labels rows; labels NULL: as saved. */
qb_status qb_model_load_labels(const char *dir, const char *const *labels, int n_labels, uint64_t seed,
                               qb_model *m);
/* Takes ownership of cfg and the tensors of w (moved into m). */
qb_status qb_model_from_weights(const qb_config *cfg, qb_weights *w, uint64_t seed,
                                const char *source, qb_model *m);
/* A zero-filled model with m's config and shapes (gradients, optimizer moments):
 * same tensor names, same pointer layout. Its config borrows nothing (no labels). */
qb_status qb_model_zeros_like(const qb_model *m, qb_model *out);
/* Random init as transformers does: normal(0, initializer_range) for linear and
 * embedding weights, zero biases, LayerNorm weight 1 bias 0, zero padding row. */
qb_status qb_model_init_random(const qb_config *cfg, uint64_t seed, qb_model *m);
/* Writes config.json + model.safetensors into dir (created if needed), atomically. */
qb_status qb_model_save(const qb_model *m, const char *dir);
void qb_model_free(qb_model *m);
size_t qb_model_param_count(const qb_model *m);

struct qb_backend;

/* Optional outputs of a forward pass, for tests and analysis (CPU pointers, NULL = skip):
 * hidden[l] (B, T, C) for l = 0 (embeddings) .. L, pooled (B, C). */
typedef struct {
    float **hidden;
    float *pooled;
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
 * probabilities, the attention output and the FFN output, then the pooled output. */
typedef struct {
    float hidden, attention;
    uint64_t seed, stream;
} qb_dropout_plan;
uint64_t qb_dropout_sites(const qb_config *cfg);

/* Activation memory on a backend, reused across batches (grown when a batch needs
 * more). Training activations keep what the backward pass needs. */
typedef struct qb_activations qb_activations;
qb_status qb_activations_new(const qb_model *m, const struct qb_backend *be, bool train,
                             qb_activations **out);
void qb_activations_free(qb_activations *a);

/* One forward and backward pass over a batch: *loss = mean cross-entropy over the
 * batch, logits (B, num_labels) to host memory when not NULL, and the gradient of
 * grad_scale * B * loss (i.e. dlogits = (softmax - onehot) * grad_scale) ADDED to
 * grads (from qb_model_zeros_like). Use grad_scale = 1 / (B * grad_accum) for
 * Trainer's mean loss divided by the accumulation steps. drop NULL: no dropout. */
qb_status qb_model_forward_backward(const qb_model *m, qb_activations *a, const qb_batch *batch,
                                    const qb_dropout_plan *drop, float grad_scale, qb_model *grads,
                                    float *loss, float *logits);

#endif
