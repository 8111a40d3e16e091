/* Training: AdamW with Hugging Face Trainer's defaults and schedule, and the
 * INI-driven trainer (csrc/train/). */
#ifndef QBERT_TRAIN_H
#define QBERT_TRAIN_H

#include <stdio.h>

#include "qbert/data.h"
#include "qbert/model.h"
#include "qbert/quant.h"

struct qb_backend;
struct qb_dist;

/* Optimizer and schedule, as Trainer sets them up by default: torch AdamW, weight
 * decay on every parameter except biases and LayerNorm weights, the learning rate
 * warmed up linearly from 0 over warmup_steps then decayed linearly to 0 at
 * total_steps, gradients clipped to a global L2 norm of max_grad_norm (0 = off). */
typedef struct {
    float lr, beta1, beta2, eps, weight_decay, max_grad_norm;
    int64_t warmup_steps, total_steps;
} qb_optim_config;

/* Trainer's defaults: lr 5e-5, betas 0.9 / 0.999, eps 1e-8, no decay, norm 1.0. */
void qb_optim_default_config(qb_optim_config *c);

/* Learning rate of optimizer step `step` (0-based), as get_linear_schedule_with_warmup:
 * lr * step / warmup before warm-up ends, then lr * (total - step) / (total - warmup). */
float qb_lr_at(const qb_optim_config *c, int64_t step);

/* Whether Trainer decays a parameter of this name: not a bias, not a LayerNorm. */
bool qb_param_decays(const char *name);

struct qb_stream;

typedef struct {
    qb_optim_config cfg;
    qb_model m, v;      /* first and second moments, zeros_like the model */
    int64_t step;       /* optimizer steps done */
    float loss_scale;   /* the gradients are this multiple of the true ones (fp16 loss
                         * scaling: qb_adamw_set_loss_scale; 0: none). The device holds it
                         * and changes it after each step, halving it on an overflow and
                         * doubling it after 2000 good steps (torch GradScaler's rule);
                         * qb_adamw_done copies it back here, with good_steps */
    int32_t good_steps;
    /* In the memory of be, the model's backend: the decay mask of its arena (one byte
     * per QB_DECAY_BLOCK floats; NULL for a host model, updated tensor by tensor), the
     * step's squared gradient norm and its arguments (with decay, without); host:
     * their host side (page-locked on a GPU) */
    const struct qb_backend *be;
    uint8_t *decay;
    struct qb_adamw_state *state;
    struct qb_adamw_args *args;
    struct qb_adamw_host *host;
} qb_adamw;

/* For a model in backend memory (qb_model_to_backend) the moments are too, and the
 * steps run there; for a host model on the CPU backend. No loss scaling. */
qb_status qb_adamw_init(qb_adamw *o, const qb_model *model, const qb_optim_config *cfg);
void qb_adamw_free(qb_adamw *o);
/* fp16 loss scaling from now on, at scale (> 0) after good_steps good steps (a
 * resume goes on where it was); one wait. */
qb_status qb_adamw_set_loss_scale(qb_adamw *o, float scale, int32_t good_steps);
/* Where the loss scale lives in backend memory (the loss's gradient is multiplied by
 * it: qb_activations_set_loss_scale), or NULL without loss scaling. */
const float *qb_adamw_loss_scale(const qb_adamw *o);

/* Queues one optimizer step on stream s of the model's backend, waiting for
 * nothing: the squared global norm of the gradients (one reduction over the arena of
 * a backend copy), unscaling (loss_scale) and clipping by it on the device, the
 * update of model and moments (one pass over the arenas), and the norm's copy for
 * qb_adamw_done. *lr receives the rate. Does not zero grads. It is two parts:
 * prepare copies the step's arguments (rate, bias corrections) to the device;
 * update queues only ops on device memory, the same every step, so that a
 * recorded training step can hold it (qb_model_train_step). */
void qb_adamw_queue(qb_adamw *o, struct qb_stream *s, qb_model *model, const qb_model *grads, float *lr);
void qb_adamw_prepare(qb_adamw *o, struct qb_stream *s, float *lr);
void qb_adamw_update(qb_adamw *o, struct qb_stream *s, qb_model *model, const qb_model *grads);
/* After the caller's sync of that stream: *grad_norm = the true norm before
 * clipping; loss_scale and good_steps as the device left them. A non-finite norm
 * means the device changed nothing but the loss scale: the step is undone and
 * QB_ENUMERIC returned. */
qb_status qb_adamw_done(qb_adamw *o, double *grad_norm);

/* qb_adamw_queue, the sync, qb_adamw_done (be: the model's backend). */
qb_status qb_adamw_step(qb_adamw *o, const struct qb_backend *be, qb_model *model,
                        const qb_model *grads, double *grad_norm, float *lr);


/* A training run, as the INI file describes it (shared/DESIGN.md section 6).
 * Strings are fixed buffers; "" means unset. */
#define QB_PATH_MAX 1024
#define QB_MAX_SEEDS 16
#define QB_MAX_SEED (1ull << 53)  /* seeds are JSON numbers in metrics.json: exact up to 2^53 */

typedef enum { QB_METRIC_F1, QB_METRIC_ACCURACY, QB_METRIC_PRECISION, QB_METRIC_RECALL,
               QB_METRIC_LOSS } qb_metric;

typedef struct {
    /* [model] */
    char model_path[QB_PATH_MAX];  /* HF directory, or "" with a preset */
    char preset[32];               /* bert-tiny | indobert-base-p2: a randomly initialised model */
    char vocab[QB_PATH_MAX];       /* with a preset: vocab.txt, or "" to build one from train */
    int vocab_words;               /* words kept when the vocabulary is built (3000) */
    /* [data]: paths, or "embedded:NAME" for the sample set inside the binary */
    char train[QB_PATH_MAX], valid[QB_PATH_MAX], test[QB_PATH_MAX];
    qb_data_format format;
    char text_column[64], label_column[64];
    char labels[QB_MAX_LABELS][32];  /* names, id = index; n_labels 0: from the model's config */
    int n_labels;
    int max_length;
    bool lowercase, remove_non_alpha, remove_stopwords;
    int delimiter;                 /* auto (0: the format's), tab, comma, semicolon, pipe */
    bool skip_bad_rows;            /* skip rows with an unknown label or no text (counted) */
    char label_map[512];           /* "0=negative,1=positive": the files' labels as the model's; "" none */
    /* [train] */
    qb_optim_config optim;         /* lr, weight decay, max_grad_norm (betas/eps: defaults) */
    float warmup_ratio;            /* used when warmup_steps is 0 */
    int64_t warmup_steps;
    int batch_size, epochs, grad_accum;
    int64_t max_steps;             /* > 0: stop after this many optimizer steps (overrides epochs) */
    uint64_t seeds[QB_MAX_SEEDS];  /* seed = S is seeds = S */
    int n_seeds;
    int eval_every;                /* 0: each epoch; N: every N optimizer steps (and at the end) */
    qb_metric metric_for_best;
    bool pad_to_max_length;        /* padding = max_length (else dynamic, to the longest row) */
    bool group_by_length;          /* length-bucketed batches (default on) */
    bool dropout;                  /* dropout rates from config.json (on), or all off */
    bool skip_nan;                 /* on_nan = skip: drop a non-finite step; stop (default) */
    int checkpoint_every;          /* N > 0: also every N optimizer steps */
    int log_every;                 /* progress/log line every N optimizer steps (JSONL: every step) */
    int precision;                 /* qb_math of the Linears' products: fp32 (default), tf32, bf16,
                                    * fp16 (with dynamic loss scaling); storage stays FP32. On the
                                    * CPU an emulation (rounded copies): slower, for checking */
    float loss_scale;              /* fp16: the first loss scale (65536), halved on an overflow,
                                    * doubled after 2000 steps without one (torch GradScaler) */
    float bucket_mb;               /* data parallel: the gradient all-reduce's buckets (MiB) */
    /* [qat]: quantization-aware training (fake quantization of every Linear's weight
     * and input, and optionally of the embedding tables) */
    bool qat_enabled;
    qb_qat_settings qat;           /* bits, observer, EMA constant, percentile, embeddings */
    int qat_granularity;           /* auto (per channel at 8 bits, per group at 4), channel, group */
    int qat_group_size;            /* columns per weight scale with per-group granularity (64) */
    int64_t qat_freeze_after;      /* observers stop after this many optimizer steps (0: never) */
    /* [device] */
    int device;                    /* type = cpu (0) or cuda (1): the backend the steps run on */
    int threads;                   /* 0: OpenMP default */
    bool graphs;                   /* record each (batch, length) step as one CUDA graph and replay it
                                    * (one process; the CPU ignores it) */
    /* [output] */
    char output_dir[QB_PATH_MAX];
} qb_train_config;

void qb_train_default_config(qb_train_config *c);
/* Reads an INI file over the current contents of c. Unknown sections or keys, bad
 * values and syntax errors fail with "FILE:LINE: ..." naming the allowed values. */
qb_status qb_train_config_load(const char *path, qb_train_config *c);
qb_status qb_train_config_parse(const char *text, const char *name, qb_train_config *c);
/* One "section.key=value" override (qbert train --set). */
qb_status qb_train_config_set(qb_train_config *c, const char *assignment);
/* Checks the combination (a model source, a train file, an output dir ...). */
qb_status qb_train_config_validate(const qb_train_config *c);
/* The effective configuration as INI text (written beside the outputs). malloc'ed. */
char *qb_train_config_to_ini(const qb_train_config *c);

/* How to run (not part of the INI: the same config trains the same model). */
typedef struct {
    const char *resume;           /* a checkpoint directory, or an output dir (its latest) */
    int64_t stop_after;           /* > 0: checkpoint and stop after this many optimizer steps */
    volatile const int *stop;     /* set asynchronously (SIGINT): checkpoint at the next step, stop */
    FILE *progress;               /* progress lines (stderr when NULL) */
    FILE *report;                 /* reports and the summary (stdout when NULL) */
    struct qb_dist *dist;         /* data parallel: this process's world (qb_dist_init), or NULL */
} qb_train_options;

/* Runs the configured training: one run per seed (in OUTPUT/seed-S when there are
 * several, then summary.json / summary.md with mean and std), each writing the best
 * model as a Hugging Face directory, metrics.json, train_log.jsonl, the test report
 * and confusion matrix, and checkpoints. Returns QB_EINTERRUPTED when stopped by
 * options->stop or stop_after (a checkpoint was written), QB_ENUMERIC when a
 * non-finite loss or gradient stopped it.
 *
 * Data parallel (o->dist of more than one process, csrc/dist): as Hugging Face
 * Trainer under DDP. batch_size is per process; the epoch's order is cut into global
 * batches of size x batch_size (a last one with fewer examples than processes joins
 * the one before), and process r takes its own contiguous share of each; the
 * gradients are summed over the processes before clipping (the same model on every
 * one), the schedule counts global steps, the QAT observers see the whole global
 * batch. Process 0 alone evaluates, logs, prints and writes; a checkpoint resumes
 * only with the world size that wrote it. With dropout each process draws its own
 * masks; without, N processes compute what one does with the global batch, but for
 * the order of the sums. */
qb_status qb_train_run(const qb_train_config *c, const qb_train_options *o);

#endif
