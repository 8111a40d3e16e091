/* qb_engine: an inference session over one model directory (FP32, or any file
 * from qbert quantize) on one backend (the CPU, or CUDA): tokenizer + model +
 * batching. Texts are sorted by token length and batched with padding to the
 * longest in each batch (on a GPU, rounded up to a multiple of 16 tokens, for the
 * CUDA graphs of each shape), so a batch of short texts does not pay for the
 * longest one. */
#ifndef QBERT_ENGINE_H
#define QBERT_ENGINE_H

#include "qbert/model.h"
#include "qbert/tokenizer.h"

typedef struct qb_engine qb_engine;

typedef struct {
    int max_length;   /* tokens per text incl. [CLS]/[SEP]; longer texts are truncated. 0
                       * (the default): the model's (tokenizer_config.json model_max_length,
                       * which the trainer writes), else 128 */
    int batch_size;
    int threads;      /* 0 = OpenMP default */
    uint64_t seed;    /* for a classifier head missing from the checkpoint */
    const char *device;  /* "cpu" (default) or "cuda" */
    qb_math math;        /* of the FP32 Linears' products (default fp32; on the CPU an emulation) */
} qb_engine_options;

void qb_engine_default_options(qb_engine_options *o);
qb_status qb_engine_open(const char *model_dir, const qb_engine_options *o, qb_engine **out);
void qb_engine_close(qb_engine *e);
const qb_model *qb_engine_model(const qb_engine *e);
/* The tokens a text is cut to: the option, or the model's, within its positions. */
int qb_engine_max_length(const qb_engine *e);
/* Texts per forward pass from the next qb_engine_classify on (>= 1; the activations
 * grow on the first batch that needs more). */
void qb_engine_set_batch_size(qb_engine *e, int batch_size);
const qb_tokenizer *qb_engine_tokenizer(const qb_engine *e);

/* Called after each batch with the number of texts done so far. */
typedef void (*qb_progress_fn)(int done, int total, void *ctx);

/* probs (n, num_labels): softmax of the logits of each text, in input order. */
qb_status qb_engine_classify(qb_engine *e, const char *const *texts, int n, float *probs,
                             qb_progress_fn progress, void *ctx);

#endif
