/* Internal to csrc/train: tokenized splits, epoch batch order, padded batches and
 * evaluation (batches.c), used by the trainer loop (trainer.c). */
#ifndef QBERT_TRAIN_INTERNAL_H
#define QBERT_TRAIN_INTERNAL_H

#include "qbert/data.h"
#include "qbert/metrics.h"
#include "qbert/tokenizer.h"
#include "qbert/train.h"

struct qb_backend;

typedef struct {
    int32_t *ids;  /* [CLS] pieces [SEP], truncated to max_length */
    int len;
    int label;
} qb_example;

typedef struct {
    qb_example *ex;
    int n;
    char name[QB_PATH_MAX];
} qb_split;

/* Tokenizes every text of d (in parallel); labels must be in [0, num_labels). */
qb_status qb_split_build(const qb_tokenizer *tok, const qb_dataset *d, int max_length, int num_labels,
                         qb_split *out);
void qb_split_free(qb_split *s);

/* One epoch's batches: order (n) holds example indices, batch b is
 * order[starts[b] .. starts[b + 1]). */
typedef struct {
    int32_t *order, *starts;
    int n, n_batches;
} qb_epoch_plan;

/* A seeded shuffle of the split (a Philox stream per (seed, epoch)); with group
 * set, as transformers' LengthGroupedSampler: mega-batches of 50 batches are sorted
 * by length (longest first) and cut into batches, whose order is then shuffled. */
qb_status qb_epoch_plan_make(const qb_split *s, int batch_size, bool group, uint64_t seed, int epoch,
                             qb_epoch_plan *p);
void qb_epoch_plan_free(qb_epoch_plan *p);

/* A padded batch in host memory, reused (grown) across calls. */
typedef struct {
    int32_t *ids, *types, *mask, *labels;
    int cap_tokens, cap_rows;
    qb_batch b;
} qb_batch_buf;

/* Pads examples idx[0..n) to their longest (fixed_len 0) or to fixed_len. */
qb_status qb_batch_fill(qb_batch_buf *bb, const qb_split *s, const int32_t *idx, int n, int fixed_len,
                        int pad_id);
void qb_batch_buf_free(qb_batch_buf *bb);

/* Classifies a split with the model (length-sorted batches): metrics, mean loss. */
qb_status qb_evaluate_split(const qb_model *m, const struct qb_backend *be, const qb_split *s, int batch_size,
                            int pad_id, qb_metrics *metrics, double *loss);

#endif
