/* The inference session: tokenise, sort by length, batch, forward, softmax. A
 * quantized model file's Linears are laid out for the backend once, at open; on a
 * device other than the CPU the model is copied into its memory once, and the
 * activations are kept across batches (grown for a longer one). On a GPU a batch is
 * padded to a multiple of SEQ_BUCKET tokens: each (batch, length) shape's pass is
 * recorded once as a CUDA graph and replayed (csrc/backend/cuda.c), and buckets keep
 * the shapes, hence the recordings, few (8 for max_length 128) for a few padded
 * tokens. On a backend with streams the engine has its own (backend.h's stream_new):
 * its work, errors and scratch are its own, so engines on different threads share
 * the GPU without waiting for one another. With BF16 / FP16 products on a backend
 * that stores activations in half, the device copy holds the encoder's weights in
 * half only (as an FP16 / BF16 file has them) and the passes store activations in
 * half (csrc/model/bert.c); quantized and QAT models keep FP32 activations. */
#include "qbert/engine.h"

#include "backend/backend.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

enum { SEQ_BUCKET = 16 };

struct qb_engine {
    qb_engine_options opt;
    qb_model model;   /* on the host: what qb_engine_model shows (quantize, labels) */
    qb_model copy;    /* its copy in the device's memory; unused on the CPU */
    const qb_model *run;  /* the one the forward pass reads */
    qb_activations *acts;
    qb_tokenizer *tok;
    const qb_backend *be;
    qb_stream *stream;  /* the engine's own; NULL (the default one) on a backend without streams */
};


void qb_engine_default_options(qb_engine_options *o)
{
    o->max_length = 0;  /* the model's */
    o->batch_size = 32;
    o->threads = 0;
    o->seed = 42;
    o->device = "cpu";
    o->math = QB_MATH_FP32;
}

qb_status qb_engine_open(const char *model_dir, const qb_engine_options *o, qb_engine **out)
{
    *out = NULL;
    if ((o->max_length && o->max_length < 2) || o->batch_size < 1)
        return qb_fail(QB_EINVAL, "max_length must be 0 (the model's) or >= 2, and batch_size >= 1 (got %d, %d)",
                       o->max_length, o->batch_size);
    qb_engine *e = calloc(1, sizeof *e);
    if (!e) return qb_fail(QB_ENOMEM, "cannot allocate an engine");
    e->opt = *o;
    qb_status st = qb_backend_by_name(o->device ? o->device : "cpu", "device", &e->be);
    if (st) {
        free(e);
        return st;
    }
    if (o->threads > 0) omp_set_num_threads(o->threads);
    if ((st = qb_model_load(model_dir, o->seed, &e->model))) {
        free(e);
        return st;
    }
    e->run = &e->model;
    if ((e->be->caps & QB_CAN_STREAMS) && !(e->stream = e->be->stream_new())) st = QB_ENOMEM;
    const qb_dtype half = qb_model_half_type(&e->model, e->be, o->math);
    if (!st && e->be->device != QB_DEV_CPU && !(st = qb_model_join_qkv(&e->model)) &&
        !(st = qb_model_to_backend(&e->model, e->be, half == QB_F32 ? QB_WEIGHTS_FP32 : QB_WEIGHTS_HALF, half,
                                   &e->copy))) {
        e->copy.qat = e->model.qat;  /* borrowed (a QAT checkpoint's observed ranges) */
        e->run = &e->copy;
    }
    if (st || (st = qb_model_prepare(&e->model, e->be, e->stream)) ||
        (st = qb_activations_new(e->run, e->be, false, &e->acts)) || (st = qb_tokenizer_load(model_dir, &e->tok))) {
        const char *device = e->be->name;
        qb_engine_close(e);
        return qb_fail_context(st, "%s on %s", model_dir, device);
    }
    qb_activations_set_math(e->acts, o->math);
    qb_activations_set_stream(e->acts, e->stream);
    const bool asked = e->opt.max_length != 0;
    if (!asked) {  /* what the model was trained with, else BERT fine-tuning's usual 128 */
        const int trained = qb_tokenizer_model_max_length(e->tok);
        e->opt.max_length = trained ? trained : 128;
    }
    if (e->opt.max_length > e->model.cfg.max_position) {
        if (asked)
            qb_log(QB_LOG_WARN, "max_length %d is above the model's max_position_embeddings %d; using %d",
                   e->opt.max_length, e->model.cfg.max_position, e->model.cfg.max_position);
        e->opt.max_length = e->model.cfg.max_position;
    }
    *out = e;
    return QB_OK;
}

void qb_engine_close(qb_engine *e)
{
    if (!e) return;
    qb_activations_free(e->acts);
    e->copy.qat = NULL;
    qb_model_free(&e->copy);
    qb_model_free(&e->model);
    if (e->stream) e->be->stream_free(e->stream);
    qb_tokenizer_free(e->tok);
    free(e);
}

int qb_engine_max_length(const qb_engine *e) { return e->opt.max_length; }

const qb_model *qb_engine_model(const qb_engine *e) { return &e->model; }
void qb_engine_set_batch_size(qb_engine *e, int batch_size) { e->opt.batch_size = batch_size > 0 ? batch_size : 1; }
const qb_tokenizer *qb_engine_tokenizer(const qb_engine *e) { return e->tok; }

typedef struct { int len, index; } by_length;

static int cmp_length(const void *a, const void *b)
{
    const by_length *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->index - y->index;  /* stable: ties keep input order */
}

static void softmax_row(float *p, const float *logits, int K)
{
    float mx = logits[0];
    for (int k = 1; k < K; k++) mx = fmaxf(mx, logits[k]);
    double sum = 0;
    for (int k = 0; k < K; k++) sum += (p[k] = expf(logits[k] - mx));
    for (int k = 0; k < K; k++) p[k] = (float)(p[k] / sum);
}

qb_status qb_engine_classify(qb_engine *e, const char *const *texts, int n, float *probs,
                             qb_progress_fn progress, void *ctx)
{
    const int K = e->model.cfg.num_labels, bs = e->opt.batch_size;
    by_length *order = malloc((size_t)(n > 0 ? n : 1) * sizeof *order);
    const char **batch_texts = malloc((size_t)bs * sizeof *batch_texts);
    float *logits = malloc((size_t)bs * K * sizeof *logits);
    qb_status st = QB_OK;
    if (!order || !batch_texts || !logits) {
        st = qb_fail(QB_ENOMEM, "cannot allocate batching buffers for %d texts", n);
        goto done;
    }
    for (int i = 0; i < n && !st; i++) {
        int32_t *ids = NULL;
        int n_ids = 0;
        st = qb_tokenize(e->tok, texts[i], strlen(texts[i]), &ids, &n_ids, NULL);
        free(ids);
        order[i].len = n_ids;
        order[i].index = i;
    }
    if (st) goto done;
    qsort(order, (size_t)n, sizeof *order, cmp_length);
    for (int start = 0; start < n && !st; start += bs) {
        int b = n - start < bs ? n - start : bs;
        for (int j = 0; j < b; j++) batch_texts[j] = texts[order[start + j].index];
        qb_encoding enc;
        const int pad = e->be->caps & QB_CAN_GRAPHS ? SEQ_BUCKET : 1;
        if ((st = qb_encode_batch(e->tok, batch_texts, b, e->opt.max_length, pad, &enc))) break;
        st = qb_model_infer(e->run, e->acts, enc.input_ids, enc.token_type_ids, enc.attention_mask, enc.batch,
                            enc.seq, logits, NULL);
        qb_encoding_free(&enc);
        if (st) break;
        for (int j = 0; j < b; j++) softmax_row(probs + (size_t)order[start + j].index * K, logits + (size_t)j * K, K);
        if (progress) progress(start + b, n, ctx);
    }
done:
    free(order);
    free(batch_texts);
    free(logits);
    return st;
}
