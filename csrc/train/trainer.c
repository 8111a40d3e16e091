/* The trainer: fine-tuning as Hugging Face Trainer does it (see optim.c for the
 * optimizer), driven by a qb_train_config.
 *
 * A run (one seed) in OUT:
 *   config.ini          the effective configuration (written first: proves OUT is writable)
 *   model/              the best model so far, a Hugging Face directory (+ tokenizer files)
 *   checkpoints/        latest (a file naming the newest) and step-N/ (model, optimizer
 *                       moments, data order, state.json); a new one is complete before
 *                       `latest` points at it, and only then is the previous removed
 *   train_log.jsonl     one line per optimizer step, one per evaluation
 *   metrics.json        evaluations, per-epoch timings, the best, the test scores
 *   report.txt, test_metrics.json, confusion.svg   the test set with the best model
 * Resume restores weights, moments, step, epoch, position in the epoch's stored batch
 * order and the micro-batch counter (which numbers the dropout streams), so the
 * continued run computes exactly what the uninterrupted one would have. */
#include "train/internal.h"

#include "backend/backend.h"
#include "qbert/dist.h"
#include "qbert/io.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every path the trainer builds is an output or model directory (at most
 * QB_PATH_MAX bytes, from the config) plus a short file name. */
#define PATHBUF 4096

static void join(char *buf, const char *dir, const char *name)
{
    /* Cannot overflow PATHBUF (see above); qb_path_join would report it. */
    if (qb_path_join(buf, PATHBUF, dir, name)) buf[0] = '\0';
}

typedef struct {
    const qb_train_config *c;
    const qb_train_options *o;
    FILE *progress, *report;
    uint64_t seed;
    char dir[PATHBUF], model_dir[PATHBUF], ckpt_root[PATHBUF];
    const qb_backend *be;           /* where the steps run ([device] type) */
    /* data parallel (qb_train_run's comment): this process of how many; rank 0 leads
     * (evaluates, logs, prints, writes); the others print and log into sink */
    qb_dist *dist;
    qb_status comm_error;           /* the first failure of a collective inside a pass */
    struct { uint64_t *dev, *host; } streams;  /* the micro-batch's dropout streams (qb_dropout_plan.offset) */
    int rank, world;
    bool lead;
    FILE *sink;
    qb_tokenizer *tok;
    /* host: the model as loaded or built, with its labels and QAT state; what is saved.
     * model: its copy in be's memory that the steps train (on the CPU too, so that
     * the copies to and from the host run on every machine); grads alike. */
    qb_model host, model, grads;
    qb_adamw opt;
    qb_activations *acts;
    qb_split train, valid, test;
    const char *labels[QB_MAX_LABELS];  /* names for reports, or NULL */
    int pad_id;
    qb_epoch_plan plan;
    qb_batch_buf bb;
    /* position */
    int64_t step, total_steps, steps_per_epoch;
    int epochs, epoch, batch;
    int64_t micro;
    /* results */
    bool has_best;
    double best;
    int64_t best_step;
    int best_epoch, skipped;
    /* fp16 loss scaling (opt.loss_scale, opt.good_steps): how often the scale was
     * halved for an overflow */
    int backoffs;
    cJSON *history, *epoch_times;
    double train_seconds;
    FILE *log;
    char last_ckpt[PATHBUF];
    char *vocab_text;  /* a preset's vocab.txt (read or built), written beside the model */
    size_t vocab_len;
} run;

static qb_status remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? QB_OK : qb_fail(QB_EIO, "%s: cannot open: %s", dir, strerror(errno));
    struct dirent *e;
    char path[PATHBUF];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);  /* checkpoints hold plain files only */
    }
    closedir(d);
    return rmdir(dir) == 0 ? QB_OK : qb_fail(QB_EIO, "%s: cannot remove: %s", dir, strerror(errno));
}

/* A fresh run in an old output directory: its checkpoints belong to the old run. */
static void clear_checkpoints(const char *root)
{
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    char path[PATHBUF];
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "step-", 5) != 0) continue;
        join(path, root, e->d_name);
        remove_tree(path);
    }
    closedir(d);
    join(path, root, "latest");
    unlink(path);
}

/* ---- data ---- */

/* Labels by the names given (n_names of them: [data] labels, or the model's own
 * id2label), or integers (their range is checked against the model when the split is
 * built). */
static qb_status load_data(run *r, const char *path, const char *const *names, int n_names, qb_dataset *d)
{
    const qb_train_config *c = r->c;
    qb_data_options o;
    qb_data_default_options(&o);
    o.format = c->format;
    o.text_column = c->text_column;
    o.label_column = c->label_column;
    o.label_names = n_names ? names : NULL;
    o.n_labels = n_names;
    o.lowercase = c->lowercase;
    o.remove_non_alpha = c->remove_non_alpha;
    o.remove_stopwords = c->remove_stopwords;
    o.delimiter = "\0\t,;|"[c->delimiter];  /* the choices of data.delimiter, in order */
    o.skip_bad_rows = c->skip_bad_rows;
    o.label_map = c->label_map[0] ? c->label_map : NULL;
    return qb_dataset_load(path, &o, d);
}

static qb_status build_preset(run *r, const qb_dataset *train)
{
    const qb_train_config *c = r->c;
    qb_config cfg;
    qb_status st = qb_config_preset(c->preset, &cfg);
    if (st) return st;
    if (c->vocab[0]) /* a vocab.txt, or one built from the training texts (from scratch) */
        st = qb_read_file(c->vocab, &r->vocab_text, &r->vocab_len);
    else
        st = qb_vocab_build((const char *const *)train->texts, train->count, c->vocab_words, &r->vocab_text, &r->vocab_len);
    qb_tokenizer_options to;
    qb_tokenizer_default_options(&to);  /* lowercasing, as the tokenizer_config.json written beside it says */
    if (!st) st = qb_tokenizer_from_vocab(r->vocab_text, r->vocab_len, c->vocab[0] ? c->vocab : "built vocabulary", &to, &r->tok);
    if (!st) {
        cfg.vocab_size = qb_tokenizer_vocab_size(r->tok);
        for (int i = 0; i < QB_MAX_LABELS; i++) free(cfg.id2label[i]), cfg.id2label[i] = NULL;
        cfg.num_labels = c->n_labels ? c->n_labels : 2;
        for (int i = 0; i < c->n_labels && !st; i++)
            if (!(cfg.id2label[i] = qb_strdup(c->labels[i]))) st = qb_fail(QB_ENOMEM, "label names");
    }
    if (!st && !(st = qb_model_init_random(&cfg, r->seed, &r->host))) return QB_OK;
    qb_config_free(&cfg);
    return st;
}

/* The model and its tokenizer, in memory (nothing is written yet). */
static qb_status build_model(run *r, const qb_dataset *train)
{
    const qb_train_config *c = r->c;
    if (c->preset[0]) return build_preset(r, train);
    qb_status st = qb_model_load_labels(c->model_path, c->n_labels ? r->labels : NULL, c->n_labels, r->seed, &r->host);
    if (!st && r->host.n_qlinear)
        st = qb_fail(QB_EINVAL, "%s: a quantized (%s) model cannot be trained: start from the FP32 model (with "
                     "[qat] for quantization-aware training) and quantize the result", c->model_path, r->host.scheme);
    if (!st) st = qb_tokenizer_load(c->model_path, &r->tok);
    if (!st && !c->n_labels)
        for (int i = 0; i < r->host.cfg.num_labels; i++) r->labels[i] = r->host.cfg.id2label[i];
    return st;
}

/* The host model takes the trained copy's parameters (before it is saved). */
static qb_status pull(run *r)
{
    qb_model_to_host(&r->model, &r->host);
    const qb_status st = r->be->sync(NULL);
    return st || !r->host.qat ? st : qb_qat_pull(r->host.qat);  /* the observers' ranges too */
}

/* The best model so far, with the tokenizer files that travel with it. */
static qb_status save_best(run *r)
{
    qb_status st = pull(r);
    if (!st) st = qb_model_save(&r->host, r->model_dir);
    if (!st) st = r->c->preset[0] ? qb_tokenizer_write_files(r->model_dir, r->vocab_text, r->vocab_len)
                                  : qb_tokenizer_copy_files(r->c->model_path, r->model_dir);
    /* eval / predict then cut texts where training did */
    return st ? st : qb_tokenizer_set_max_length(r->model_dir, r->c->max_length);
}

/* ---- checkpoints ---- */

static qb_status add_view(qb_weights *w, const char *prefix, const char *name, qb_tensor t)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    t.owned = false;
    return qb_weights_add(w, full, t);
}

static qb_tensor i32_view(int32_t *data, int64_t n)
{
    qb_tensor t = {.dtype = QB_I32, .device = QB_DEV_CPU, .ndim = 1, .shape = {n}, .data = data, .owned = false};
    return t;
}

static cJSON *state_json(const run *r)
{
    cJSON *s = cJSON_CreateObject();
    cJSON_AddNumberToObject(s, "step", (double)r->step);
    cJSON_AddNumberToObject(s, "epoch", r->epoch);
    cJSON_AddNumberToObject(s, "batch", r->batch);
    cJSON_AddNumberToObject(s, "micro_batches", (double)r->micro);
    cJSON_AddNumberToObject(s, "optimizer_step", (double)r->opt.step);
    cJSON_AddNumberToObject(s, "seed", (double)r->seed);  /* exact: seeds are at most 2^53 */
    cJSON_AddNumberToObject(s, "total_steps", (double)r->total_steps);
    cJSON_AddNumberToObject(s, "train_examples", r->train.n);
    cJSON_AddNumberToObject(s, "world_size", r->world);
    cJSON_AddNumberToObject(s, "batch_size", r->c->batch_size);
    cJSON_AddNumberToObject(s, "grad_accum", r->c->grad_accum);
    cJSON_AddBoolToObject(s, "has_best", r->has_best);
    cJSON_AddNumberToObject(s, "best", r->has_best ? r->best : 0);
    cJSON_AddNumberToObject(s, "best_step", (double)r->best_step);
    cJSON_AddNumberToObject(s, "best_epoch", r->best_epoch);
    cJSON_AddNumberToObject(s, "skipped_steps", r->skipped);
    cJSON_AddNumberToObject(s, "loss_scale", r->opt.loss_scale);
    cJSON_AddNumberToObject(s, "good_steps", r->opt.good_steps);
    cJSON_AddNumberToObject(s, "loss_scale_backoffs", r->backoffs);
    cJSON_AddNumberToObject(s, "train_seconds", r->train_seconds);
    cJSON_AddItemToObject(s, "history", cJSON_Duplicate(r->history, true));
    cJSON_AddItemToObject(s, "epoch_times", cJSON_Duplicate(r->epoch_times, true));
    return s;
}

/* Host zeros shaped like the optimizer's two moments (which live in be's memory),
 * for the checkpoint's copy of them. */
static qb_status host_moments(run *r, qb_model moments[2])
{
    qb_status st = qb_model_zeros_like(&r->host, &moments[0]);
    if (!st && (st = qb_model_zeros_like(&r->host, &moments[1]))) qb_model_free(&moments[0]);
    return st;
}

static qb_status checkpoint_save(run *r)
{
    if (!r->lead) return QB_OK;  /* every process holds the same state */
    char name[64], tmp[PATHBUF], final[PATHBUF], path[PATHBUF];
    snprintf(name, sizeof name, "step-%lld.tmp", (long long)r->step);
    join(tmp, r->ckpt_root, name);
    name[strlen(name) - 4] = '\0';  /* step-N */
    join(final, r->ckpt_root, name);
    remove_tree(tmp);
    qb_status st = qb_mkdirs(tmp);
    if (!st) st = pull(r);
    if (!st) st = qb_model_save(&r->host, tmp);
    qb_model moments[2];
    memset(moments, 0, sizeof moments);
    if (!st && !(st = host_moments(r, moments))) {
        qb_model_to_host(&r->opt.m, &moments[0]);
        qb_model_to_host(&r->opt.v, &moments[1]);
        st = r->be->sync(NULL);
    }
    qb_weights w = {0};
    for (int i = 0; i < moments[0].weights.count && !st; i++) {
        st = add_view(&w, "exp_avg.", moments[0].weights.names[i], moments[0].weights.tensors[i]);
        if (!st) st = add_view(&w, "exp_avg_sq.", moments[1].weights.names[i], moments[1].weights.tensors[i]);
    }
    if (!st) st = add_view(&w, "data.", "order", i32_view(r->plan.order, r->plan.n));
    if (!st) st = add_view(&w, "data.", "starts", i32_view(r->plan.starts, r->plan.n_batches + 1));
    join(path, tmp, "optimizer.safetensors");
    if (!st) st = qb_safetensors_save(path, &w, NULL);
    qb_weights_free(&w);
    qb_model_free(&moments[0]), qb_model_free(&moments[1]);
    cJSON *s = state_json(r);
    join(path, tmp, "state.json");
    if (!st) st = s ? qb_json_write_file(path, s) : qb_fail(QB_ENOMEM, "checkpoint state");
    cJSON_Delete(s);
    if (!st && strcmp(final, r->last_ckpt) == 0) st = remove_tree(final);  /* same step saved again */
    if (!st && rename(tmp, final) != 0) st = qb_fail(QB_EIO, "%s: cannot rename to %s: %s", tmp, final, strerror(errno));
    join(path, r->ckpt_root, "latest");
    if (!st) st = qb_write_file_atomic(path, name, strlen(name));
    if (st) return qb_fail_context(st, "writing checkpoint %s", final);
    /* The previous one goes, unless it is a resume source outside this run's directory. */
    if (r->last_ckpt[0] && strcmp(r->last_ckpt, final) != 0 &&
        strncmp(r->last_ckpt, r->ckpt_root, strlen(r->ckpt_root)) == 0)
        remove_tree(r->last_ckpt);
    snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", final);
    return QB_OK;
}

static qb_status json_int(const cJSON *s, const char *key, const char *where, double *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, key);
    if (!cJSON_IsNumber(v)) return qb_fail(QB_EFORMAT, "%s: \"%s\" is missing or not a number", where, key);
    *out = v->valuedouble;
    return QB_OK;
}

/* Copies tensor `name` of w into dst (n floats / ints), checking the size. */
static qb_status take(const qb_weights *w, const char *name, void *dst, int64_t n, qb_dtype dtype, const char *where)
{
    int i = qb_weights_find(w, name);
    if (i < 0) return qb_fail(QB_EFORMAT, "%s: no tensor %s", where, name);
    const qb_tensor *t = &w->tensors[i];
    if (t->dtype != dtype || qb_tensor_numel(t) != n)
        return qb_fail(QB_EFORMAT, "%s: %s has %lld elements of %s, expected %lld of %s", where, name,
                       (long long)qb_tensor_numel(t), qb_dtype_name(t->dtype), (long long)n, qb_dtype_name(dtype));
    memcpy(dst, t->data, qb_tensor_nbytes(t));
    return QB_OK;
}

/* Every tensor of host model m from w, a file's (path) tensors "PREFIX<name>". */
static qb_status take_model(const qb_weights *w, const char *prefix, qb_model *m, const char *path)
{
    qb_status st = QB_OK;
    char name[256];
    for (int i = 0; i < m->weights.count && !st; i++) {
        qb_tensor *t = &m->weights.tensors[i];
        snprintf(name, sizeof name, "%s%s", prefix, m->weights.names[i]);
        st = take(w, name, t->data, qb_tensor_numel(t), QB_F32, path);
    }
    return st;
}

/* Every parameter of the model from a model.safetensors (a checkpoint's, or the
 * best), into the host model and then the trained copy. */
static qb_status load_weights(run *r, const char *path)
{
    qb_weights w = {0};
    qb_status st = qb_safetensors_load(path, true, &w);
    if (!st) st = take_model(&w, "", &r->host, path);
    if (!st && r->host.qat) st = qb_qat_read_ranges(r->host.qat, &r->host.cfg, &w, path);
    qb_weights_free(&w);
    if (!st) qb_model_from_host(&r->host, &r->model);
    return st ? st : r->be->sync(NULL);
}

static qb_status checkpoint_load(run *r, const char *arg)
{
    char dir[PATHBUF], path[PATHBUF];
    snprintf(path, sizeof path, "%s/checkpoints/latest", arg);
    char *latest = NULL;
    size_t len;
    if (qb_file_exists(path) && !qb_read_file(path, &latest, &len)) {
        snprintf(dir, sizeof dir, "%s/checkpoints/%s", arg, latest);
        free(latest);
    } else {
        snprintf(dir, sizeof dir, "%s", arg);
    }
    join(path, dir, "state.json");
    char *text;
    qb_status st = qb_read_file(path, &text, &len);
    if (st) return qb_fail_context(st, "--resume %s: not a checkpoint (or an output directory with one)", arg);
    cJSON *s = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(s)) {
        cJSON_Delete(s);
        return qb_fail(QB_EFORMAT, "%s: not a JSON object", path);
    }
    double v[9];
    const char *keys[] = {"step", "epoch", "batch", "micro_batches", "optimizer_step", "train_examples",
                          "best", "best_step", "best_epoch"};
    for (int i = 0; i < 9 && !st; i++) st = json_int(s, keys[i], path, &v[i]);
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(s, "seed");  /* a number; a string before 2026-12-05 */
    const bool same = cJSON_IsNumber(seed) ? seed->valuedouble == (double)r->seed
                      : cJSON_IsString(seed) && strtoull(seed->valuestring, NULL, 10) == r->seed;
    if (!st && !same)
        st = qb_fail(QB_EINVAL, "%s: the checkpoint is of another seed than train.seed = %llu", path,
                     (unsigned long long)r->seed);
    if (!st && (int)v[5] != r->train.n)
        st = qb_fail(QB_EINVAL, "%s: the checkpoint was trained on %d examples, the training file has %d", path,
                     (int)v[5], r->train.n);
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(s, "world_size");
    const int world = cJSON_IsNumber(ws) ? ws->valueint : 1;  /* written before data parallel: one process */
    /* the stored order is cut into batches of the checkpoint's size: another would be ignored */
    for (int i = 0; i < 2 && !st; i++) {
        static const char *const keys2[] = {"batch_size", "grad_accum"};
        const int now = i ? r->c->grad_accum : r->c->batch_size;
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(s, keys2[i]);
        if (cJSON_IsNumber(b) && b->valueint != now)
            st = qb_fail(QB_EINVAL, "%s: the checkpoint was trained with train.%s = %d, this run has %d: resume "
                         "with the same value", path, keys2[i], b->valueint, now);
    }
    if (!st && world != r->world)
        st = qb_fail(QB_EINVAL, "%s: the checkpoint was written by %d process%s, this run has %d: resume with the "
                     "same world size (mpirun -np %d), which keeps its batches and data order", path, world,
                     world == 1 ? "" : "es", r->world, world);
    if (!st) {
        r->step = (int64_t)v[0], r->epoch = (int)v[1], r->batch = (int)v[2], r->micro = (int64_t)v[3];
        r->opt.step = (int64_t)v[4];
        r->has_best = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(s, "has_best"));
        r->best = v[6], r->best_step = (int64_t)v[7], r->best_epoch = (int)v[8];
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(s, "skipped_steps");
        r->skipped = cJSON_IsNumber(x) ? x->valueint : 0;
        if (r->opt.loss_scale > 0) {  /* fp16: the scale goes on where it was */
            x = cJSON_GetObjectItemCaseSensitive(s, "loss_scale");
            const float scale = cJSON_IsNumber(x) && x->valuedouble >= 1 ? (float)x->valuedouble : r->opt.loss_scale;
            x = cJSON_GetObjectItemCaseSensitive(s, "good_steps");
            const int good = cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble < 2000 ? x->valueint : 0;
            st = qb_adamw_set_loss_scale(&r->opt, scale, good);
            x = cJSON_GetObjectItemCaseSensitive(s, "loss_scale_backoffs");
            r->backoffs = cJSON_IsNumber(x) ? x->valueint : 0;
        }
        x = cJSON_GetObjectItemCaseSensitive(s, "train_seconds");
        r->train_seconds = cJSON_IsNumber(x) ? x->valuedouble : 0;
        cJSON *h = cJSON_DetachItemFromObjectCaseSensitive(s, "history");
        cJSON *e = cJSON_DetachItemFromObjectCaseSensitive(s, "epoch_times");
        if (cJSON_IsArray(h)) cJSON_Delete(r->history), r->history = h; else cJSON_Delete(h);
        if (cJSON_IsArray(e)) cJSON_Delete(r->epoch_times), r->epoch_times = e; else cJSON_Delete(e);
    }
    cJSON_Delete(s);
    if (st) return st;

    join(path, dir, "model.safetensors");
    st = load_weights(r, path);
    qb_weights w = {0};
    join(path, dir, "optimizer.safetensors");
    qb_model moments[2];
    memset(moments, 0, sizeof moments);
    if (!st && !(st = qb_safetensors_load(path, false, &w)) && !(st = host_moments(r, moments))) {
        st = take_model(&w, "exp_avg.", &moments[0], path);
        if (!st) st = take_model(&w, "exp_avg_sq.", &moments[1], path);
        if (!st) {
            qb_model_from_host(&moments[0], &r->opt.m);
            qb_model_from_host(&moments[1], &r->opt.v);
            st = r->be->sync(NULL);
        }
        int si = qb_weights_find(&w, "data.starts");
        if (!st && si < 0) st = qb_fail(QB_EFORMAT, "%s: no tensor data.starts", path);
        if (!st) {
            const int64_t nb1 = qb_tensor_numel(&w.tensors[si]);
            qb_epoch_plan_free(&r->plan);
            r->plan.order = malloc(sizeof(int32_t) * (size_t)r->train.n);
            r->plan.starts = malloc(sizeof(int32_t) * (size_t)(nb1 > 0 ? nb1 : 1));
            r->plan.n = r->train.n, r->plan.n_batches = (int)nb1 - 1;
            if (!r->plan.order || !r->plan.starts) st = qb_fail(QB_ENOMEM, "data order");
            if (!st) st = take(&w, "data.order", r->plan.order, r->train.n, QB_I32, path);
            if (!st) st = take(&w, "data.starts", r->plan.starts, nb1, QB_I32, path);
            /* A hostile file must not index outside the split. */
            for (int i = 0; i < r->plan.n && !st; i++)
                if (r->plan.order[i] < 0 || r->plan.order[i] >= r->train.n) st = qb_fail(QB_EFORMAT, "%s: bad data.order", path);
            for (int b = 0; b <= r->plan.n_batches && !st; b++)
                if (r->plan.starts[b] < 0 || r->plan.starts[b] > r->plan.n || (b && r->plan.starts[b] <= r->plan.starts[b - 1]))
                    st = qb_fail(QB_EFORMAT, "%s: bad data.starts", path);
            if (!st && (r->batch < 0 || r->batch > r->plan.n_batches)) st = qb_fail(QB_EFORMAT, "%s: bad batch index", dir);
        }
    }
    qb_weights_free(&w);
    qb_model_free(&moments[0]), qb_model_free(&moments[1]);
    if (!st) {
        snprintf(r->last_ckpt, sizeof r->last_ckpt, "%s", dir);
        fprintf(r->progress, "[train] resuming from %s: step %lld, epoch %d, batch %d\n", dir, (long long)r->step,
                r->epoch + 1, r->batch);
    }
    return st;
}

/* ---- evaluation and logging ---- */

static double metric_value(const qb_train_config *c, const qb_metrics *m, double loss)
{
    switch (c->metric_for_best) {
    case QB_METRIC_ACCURACY: return m->accuracy;
    case QB_METRIC_PRECISION: return m->weighted_p;
    case QB_METRIC_RECALL: return m->weighted_r;
    case QB_METRIC_LOSS: return loss;
    case QB_METRIC_F1: break;
    }
    return m->weighted_f1;
}

static const char *metric_name(qb_metric m)
{
    static const char *const names[] = {"f1", "accuracy", "precision", "recall", "loss"};
    return names[m];
}

static qb_status evaluate(run *r)
{
    if (!r->valid.n) return QB_OK;
    qb_metrics m = {0};
    double loss;
    qb_status st = qb_evaluate_split(&r->model, r->be, &r->valid, r->c->batch_size, r->pad_id, &m, &loss);
    if (st) return st;
    const double v = metric_value(r->c, &m, loss);
    const bool lower = r->c->metric_for_best == QB_METRIC_LOSS;
    const bool better = !r->has_best || (lower ? v < r->best : v > r->best);
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "step", (double)r->step);
    cJSON_AddNumberToObject(e, "epoch", r->epoch + 1);
    cJSON_AddNumberToObject(e, "loss", loss);
    cJSON_AddNumberToObject(e, "accuracy", m.accuracy);
    cJSON_AddNumberToObject(e, "precision", m.weighted_p);
    cJSON_AddNumberToObject(e, "recall", m.weighted_r);
    cJSON_AddNumberToObject(e, "f1", m.weighted_f1);
    cJSON_AddItemToArray(r->history, e);
    char *line = cJSON_PrintUnformatted(e);
    if (line) fprintf(r->log, "{\"eval\":\"valid\",%s\n", line + 1), free(line);
    fflush(r->log);
    fprintf(r->progress, "[train] eval  step %lld (epoch %d): loss %.4f  accuracy %.4f  precision %.4f  recall %.4f  f1 %.4f%s\n",
            (long long)r->step, r->epoch + 1, loss, m.accuracy, m.weighted_p, m.weighted_r, m.weighted_f1,
            better ? "  (best so far)" : "");
    qb_metrics_free(&m);
    if (better) {
        r->has_best = true, r->best = v, r->best_step = r->step, r->best_epoch = r->epoch + 1;
        if ((st = save_best(r))) return st;
    }
    return QB_OK;
}

static void format_eta(double s, char *buf, size_t cap)
{
    if (!isfinite(s) || s < 0) snprintf(buf, cap, "?");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
}

/* ---- the loop ---- */

static qb_status stop_for_nan(run *r, const char *what, double value)
{
    return qb_fail(QB_ENUMERIC, "step %lld (epoch %d, batch %d): %s is %g; stopped (train.on_nan = stop); %s%s",
                   (long long)r->step + 1, r->epoch + 1, r->batch, what, value,
                   r->last_ckpt[0] ? "the last good checkpoint is " : "no checkpoint had been written yet",
                   r->last_ckpt);
}

/* Data parallel: a global batch with fewer examples than processes would leave one
 * without rows, so it joins a neighbour (the one before; the first joins the next). */
static qb_status join_small_batches(qb_epoch_plan *p, int world)
{
    int out = 1;  /* boundaries kept; starts[0] stays */
    for (int b = 1; b < p->n_batches; b++) {
        const int current = p->starts[b] - p->starts[out - 1], next = p->starts[b + 1] - p->starts[b];
        if (current >= world && next >= world) p->starts[out++] = p->starts[b];
    }
    p->starts[out] = p->starts[p->n_batches];
    p->n_batches = out;
    if (p->starts[out] - p->starts[out - 1] < world)
        return qb_fail(QB_EINVAL, "%d processes need at least %d training examples, there are %d", world, world, p->n);
    return QB_OK;
}

/* The epoch's order and its global batches (batch_size per process). */
static qb_status make_plan(run *r, int epoch)
{
    qb_epoch_plan_free(&r->plan);
    qb_status st = qb_epoch_plan_make(&r->train, r->c->batch_size * r->world, r->c->group_by_length, r->seed, epoch,
                                      &r->plan);
    return st || r->world == 1 ? st : join_small_batches(&r->plan, r->world);
}

static void grads_final(void *dist, const float *from) { qb_dist_grads_final(dist, from); }

/* The optimizer's part of a step, queued inside its pass (qb_model_train_step): the
 * gradients' sums over the processes first (data parallel; nothing otherwise),
 * then the update and the zeroing. */
static void step_update(void *run_)
{
    run *r = run_;
    const qb_status st = qb_dist_grads_end(r->dist);
    if (st && !r->comm_error) r->comm_error = st;
    qb_adamw_update(&r->opt, NULL, &r->model, &r->grads);
    qb_model_zero(&r->grads, r->be);
}

/* Forward and backward of this process's share [lo, lo + n) of a global batch of
 * `global` examples (the gradients of the global mean loss, over grad_accum
 * micro-batches), with the dropout streams of micro-batch r->micro (through device
 * memory: a recorded step reads them there). The step's last micro-batch is the
 * whole step: it also all-reduces the gradients, bucket by bucket as the backward
 * finishes them, and queues the optimizer (*lr: its rate), all one pass that
 * [device] graphs records; it waits for nothing, its loss is read after the caller's
 * sync (qb_activations_loss). Other micro-batches give *loss. */
static qb_status micro_batch(run *r, const qb_dropout_plan *drop, int lo, int n, int global, bool last, float *loss,
                             float *lr)
{
    const qb_train_config *c = r->c;
    qb_status st = qb_batch_fill(&r->bb, &r->train, r->plan.order + lo, n, c->pad_to_max_length ? c->max_length : 0,
                                 r->pad_id);
    if (st) return st;
    if (r->model.qat) r->model.qat->observe = !c->qat_freeze_after || r->step < c->qat_freeze_after;
    /* each process its own dropout streams; one process: micro x sites */
    *r->streams.host = ((uint64_t)r->micro * r->world + r->rank) * qb_dropout_sites(&r->model.cfg);
    r->be->to_device(NULL, r->streams.dev, r->streams.host, sizeof(uint64_t));
    const float scale = 1.0f / ((float)global * c->grad_accum);  /* and fp16's loss scale, on the device */
    if (!last) return qb_model_forward_backward(&r->model, r->acts, &r->bb.b, drop, scale, &r->grads, loss, NULL);
    if ((st = qb_dist_grads_begin(r->dist, r->be, NULL, r->grads.mem, r->grads.mem_floats,
                                  (size_t)(c->bucket_mb * 1048576.0))))
        return st;
    qb_adamw_prepare(&r->opt, NULL, lr);
    /* under a launcher the all-reduce runs host code in the pass: never recorded */
    if (qb_dist_launched(r->dist)) qb_activations_set_grads_hook(r->acts, grads_final, r->dist);
    st = qb_model_train_step(&r->model, r->acts, &r->bb.b, drop, scale, &r->grads, step_update, r,
                             (uintptr_t)&r->opt, c->graphs);
    qb_activations_set_grads_hook(r->acts, NULL, NULL);
    if (!st && r->comm_error) st = qb_fail(r->comm_error, "data parallel: a collective failed in the step");
    return st;
}

static qb_status train_loop(run *r)
{
    const qb_train_config *c = r->c;
    const qb_config *mc = &r->model.cfg;
    qb_dropout_plan drop = {c->dropout ? mc->hidden_dropout : 0, c->dropout ? mc->attention_dropout : 0, r->seed, 0,
                            r->streams.dev};
    qb_status st = QB_OK;
    double loss_sum = 0;  /* this process's part of the sum of the step's micro-batch mean losses */
    int loss_n = 0, group = 0, samples = 0;
    const bool tty = r->lead && isatty(fileno(r->progress));
    for (; r->epoch < r->epochs && r->step < r->total_steps; r->epoch++, r->batch = 0) {
        /* a fresh epoch (on resume, the stored plan is used) */
        if (r->batch == 0 && (st = make_plan(r, r->epoch))) return st;
        double t_epoch = qb_now(), t_last = t_epoch;
        int epoch_samples = 0;
        /* r->batch is the next batch to run: a checkpoint taken between steps resumes there. */
        while (r->batch < r->plan.n_batches) {
            const int bi = r->batch++;
            const int lo = r->plan.starts[bi], n = r->plan.starts[bi + 1] - lo;
            /* this process's contiguous share of the global batch */
            const int mine = lo + (int)((int64_t)n * r->rank / r->world);
            const int mine_n = lo + (int)((int64_t)n * (r->rank + 1) / r->world) - mine;
            /* An optimizer step after grad_accum micro-batches, or at the end of the epoch. */
            const bool epoch_end = r->batch == r->plan.n_batches, last = group + 1 == c->grad_accum || epoch_end;
            float loss = 0, lr = 0;
            if ((st = micro_batch(r, &drop, mine, mine_n, n, last, &loss, &lr))) return st;
            r->micro++;
            group++, samples += n, epoch_samples += n, loss_n++;
            if (!last) {
                loss_sum += (double)loss * mine_n / n;
                continue;
            }
            group = 0;
            /* The step, queued behind the backward pass: norm, clipping, the update and
             * its skip when the norm is not finite all on the device; then one wait. A
             * non-finite loss comes with a non-finite norm (its logits make dlogits and
             * so the classifier's gradient non-finite), so such a step is skipped there. */
            double norm = 0;
            qb_status dev = r->be->sync(NULL);  /* an error of the backward pass or the update */
            if (dev) return dev;
            if (r->model.qat) r->model.qat->stale = true;  /* the fake-quantized weights are remade */
            loss_sum += (double)qb_activations_loss(r->acts) * mine_n / n;
            /* the step's loss over all processes, and whether any of them was asked to stop */
            double shared[2] = {loss_sum, r->o->stop && *r->o->stop};
            if ((st = qb_dist_sum(r->dist, shared, 2))) return st;
            const double step_loss = shared[0] / loss_n;
            const bool bad_loss = !isfinite(step_loss);
            const float scale_used = r->opt.loss_scale;
            st = qb_adamw_done(&r->opt, &norm);
            /* A dropped step still ends its epoch (evaluation, checkpoint, stop). */
            bool dropped = false;
            if (!bad_loss && st == QB_ENUMERIC && scale_used >= 2) {
                /* fp16: the scaled gradients overflowed; the device dropped the step and
                 * halved the scale, as torch's GradScaler does (down to 1: below that a
                 * non-finite gradient is a real one, for on_nan) */
                r->backoffs++;
                qb_log(QB_LOG_INFO, "step %lld: gradient overflow in fp16; step skipped, loss scale now %g",
                       (long long)r->step + 1, r->opt.loss_scale);
                st = QB_OK;
                dropped = true;
            } else if (bad_loss || st == QB_ENUMERIC) {
                if (!c->skip_nan)
                    return stop_for_nan(r, bad_loss ? "the loss" : "the gradient norm", bad_loss ? step_loss : norm);
                qb_log(QB_LOG_WARN, "step %lld (epoch %d, batch %d): non-finite %s; step skipped (train.on_nan = skip)",
                       (long long)r->step + 1, r->epoch + 1, r->batch, bad_loss ? "loss" : "gradient norm");
                r->skipped++;
                st = QB_OK;
                dropped = true;
            }
            if (!dropped) {
                r->step++;
                const double now = qb_now(), dt = now - t_last;
                r->train_seconds += dt;
                t_last = now;
                const double sps = samples / (dt > 0 ? dt : 1e-9);
                char scale_field[48] = "";
                if (r->opt.loss_scale > 0) snprintf(scale_field, sizeof scale_field, ",\"loss_scale\":%.9g", r->opt.loss_scale);
                fprintf(r->log, "{\"step\":%lld,\"epoch\":%.4f,\"loss\":%.6g,\"lr\":%.6g,\"grad_norm\":%.6g,\"samples_per_second\":%.4g%s}\n",
                        (long long)r->step, r->epoch + (double)r->batch / r->plan.n_batches, step_loss, lr,
                        norm, sps, scale_field);
                fflush(r->log);
                if (r->step % c->log_every == 0 || r->step == r->total_steps) {
                    const double spent = now - t_epoch, rate = epoch_samples / (spent > 0 ? spent : 1e-9);
                    char eta[32];
                    format_eta(r->train_seconds / (double)r->step * (double)(r->total_steps - r->step), eta, sizeof eta);
                    fprintf(r->progress, "%s[train] epoch %d/%d  step %lld/%lld  loss %.4f  lr %.3g  %.1f samples/s  ETA %s%s",
                            tty ? "\r" : "", r->epoch + 1, r->epochs, (long long)r->step, (long long)r->total_steps,
                            step_loss, lr, rate, eta, tty ? "   " : "\n");
                    fflush(r->progress);
                }
            }
            loss_sum = 0, loss_n = 0, samples = 0;  /* the next step's, dropped or not */
            const bool at_end = r->step == r->total_steps;
            bool eval_now = !dropped && c->eval_every > 0 && (r->step % c->eval_every == 0 || at_end);
            if (epoch_end || at_end) {
                /* Epoch time: training only (evaluation and checkpoints excluded). */
                cJSON *e = cJSON_CreateObject();
                const double spent = qb_now() - t_epoch;
                cJSON_AddNumberToObject(e, "epoch", r->epoch + 1);
                cJSON_AddNumberToObject(e, "train_seconds", spent);
                cJSON_AddNumberToObject(e, "samples", epoch_samples);
                cJSON_AddNumberToObject(e, "samples_per_second", epoch_samples / (spent > 0 ? spent : 1e-9));
                cJSON_AddItemToArray(r->epoch_times, e);
                eval_now = eval_now || c->eval_every == 0;
            }
            if (eval_now || (!dropped && c->checkpoint_every && r->step % c->checkpoint_every == 0)) {
                if (tty) fputc('\n', r->progress);
                if (eval_now && r->lead && (st = evaluate(r))) return st;
                if ((st = checkpoint_save(r))) return st;
                t_last = qb_now();
            }
            const bool stop = shared[1] > 0 || (r->o->stop_after > 0 && r->step >= r->o->stop_after);
            if (stop && !at_end) {
                if (tty) fputc('\n', r->progress);
                if (!(st = checkpoint_save(r)))
                    st = qb_fail(QB_EINTERRUPTED, "stopped at step %lld; resume with --resume %s", (long long)r->step, r->dir);
                return st;
            }
            if (at_end) break;
        }
    }
    return QB_OK;
}

/* ---- outputs ---- */

static cJSON *scores_json(const qb_metrics *m, double loss)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "accuracy", m->accuracy);
    cJSON_AddNumberToObject(o, "precision", m->weighted_p);
    cJSON_AddNumberToObject(o, "recall", m->weighted_r);
    cJSON_AddNumberToObject(o, "f1", m->weighted_f1);
    cJSON_AddNumberToObject(o, "loss", loss);
    return o;
}

/* Test with the best model, reports, metrics.json. *test_out gets the scores. */
static qb_status finish(run *r, cJSON **test_out)
{
    char path[PATHBUF];
    qb_status st = QB_OK;
    if (!r->has_best) {
        if ((st = save_best(r))) return st;  /* no validation set: the last model */
    } else {
        join(path, r->model_dir, "model.safetensors");
        if ((st = load_weights(r, path))) return st;
    }
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "seed", (double)r->seed);
    cJSON_AddNumberToObject(root, "steps", (double)r->step);
    cJSON_AddNumberToObject(root, "skipped_steps", r->skipped);
    cJSON_AddNumberToObject(root, "train_examples", r->train.n);
    cJSON_AddNumberToObject(root, "train_seconds", r->train_seconds);
    cJSON_AddStringToObject(root, "device", r->be->name);
    cJSON_AddStringToObject(root, "precision", qb_math_name((qb_math)r->c->precision));
    if (r->opt.loss_scale > 0) cJSON_AddNumberToObject(root, "loss_scale_backoffs", r->backoffs);
    cJSON_AddNumberToObject(root, "threads", omp_get_max_threads());
    cJSON *best = cJSON_AddObjectToObject(root, "best");
    cJSON_AddStringToObject(best, "metric", metric_name(r->c->metric_for_best));
    if (r->has_best) {
        cJSON_AddNumberToObject(best, "value", r->best);
        cJSON_AddNumberToObject(best, "step", (double)r->best_step);
        cJSON_AddNumberToObject(best, "epoch", r->best_epoch);
    }
    cJSON_AddItemToObject(root, "valid_history", cJSON_Duplicate(r->history, true));
    cJSON_AddItemToObject(root, "epochs", cJSON_Duplicate(r->epoch_times, true));
    if (r->test.n) {
        qb_metrics m = {0};
        double loss;
        if (!(st = qb_evaluate_split(&r->model, r->be, &r->test, r->c->batch_size, r->pad_id, &m, &loss))) {
            cJSON_AddItemToObject(root, "test", scores_json(&m, loss));
            *test_out = scores_json(&m, loss);
            fprintf(r->report, "\ntest set (%d examples), best model (step %lld):\n", r->test.n, (long long)r->best_step);
            qb_metrics_print(r->report, &m, r->labels);
            join(path, r->dir, "report.txt");
            FILE *f = fopen(path, "w");
            if (f) qb_metrics_print(f, &m, r->labels), fclose(f);
            else st = qb_fail(QB_EIO, "%s: cannot write: %s", path, strerror(errno));
            cJSON *tm = qb_metrics_to_json(&m, r->labels);
            join(path, r->dir, "test_metrics.json");
            if (!st) st = tm ? qb_json_write_file(path, tm) : qb_fail(QB_ENOMEM, "test metrics");
            cJSON_Delete(tm);
            char *svg = qb_confusion_svg(&m, r->labels, "test set, best model");
            join(path, r->dir, "confusion.svg");
            if (!st) st = svg ? qb_svg_write(path, svg) : qb_fail(QB_ENOMEM, "confusion svg");
            free(svg);
        }
        qb_metrics_free(&m);
    }
    join(path, r->dir, "metrics.json");
    if (!st) st = qb_json_write_file(path, root);
    cJSON_Delete(root);
    return st;
}

static void run_free(run *r)
{
    qb_split_free(&r->train), qb_split_free(&r->valid), qb_split_free(&r->test);
    qb_epoch_plan_free(&r->plan);
    qb_batch_buf_free(&r->bb);
    qb_activations_free(r->acts);
    if (r->be) r->be->free(r->streams.dev), r->be->host_free(r->streams.host);
    qb_adamw_free(&r->opt);
    qb_model_free(&r->grads);
    r->model.qat = NULL;  /* borrowed from the host model */
    qb_model_free(&r->model);
    qb_model_free(&r->host);
    qb_tokenizer_free(r->tok);
    free(r->vocab_text);
    cJSON_Delete(r->history);
    cJSON_Delete(r->epoch_times);
    if (r->log && r->log != r->sink) fclose(r->log);
    if (r->sink) fclose(r->sink);
}

/* Everything that can fail on bad input happens here, before the first step, and
 * before anything is written: a failed start leaves an old run's directory as it was. */
/* Data parallel QAT: one batch statistic for all processes (qb_qat.combine). An
 * error (NCCL's) is kept for the step's end, where the trainer looks. */
static void combine_stats(void *run_, float *batch, qb_stream *s)
{
    run *r = run_;
    const qb_status st = qb_dist_min_max(r->dist, r->be, s, batch);
    if (st && !r->comm_error) r->comm_error = st;
}

/* [qat]: a fresh QAT state on the model, or the one of a QAT checkpoint being
 * trained further with the same settings (its observed ranges are kept). Without
 * [qat] a QAT checkpoint fine-tunes as a plain FP32 model. */
static qb_status qat_setup(run *r)
{
    const qb_train_config *c = r->c;
    qb_model *m = &r->host;
    if (!c->qat_enabled) {
        qb_qat_free(m->qat);
        m->qat = NULL;
        return QB_OK;
    }
    qb_qat_settings s = c->qat;
    const bool group = c->qat_granularity == 2 || (c->qat_granularity == 0 && s.weight_bits == 4);
    s.group = group ? c->qat_group_size : 0;
    if (m->qat && qb_qat_settings_equal(&m->qat->set, &s)) {
        m->qat->observe = true;
        return QB_OK;
    }
    qb_qat_free(m->qat);
    m->qat = NULL;
    qb_status st = qb_qat_new(&m->cfg, &s, &m->qat);
    if (st) return qb_fail_context(st, "[qat]");
    char gran[32] = "per output channel", freeze[48] = "";
    if (group) snprintf(gran, sizeof gran, "per group of %d", s.group);
    if (c->qat_freeze_after) snprintf(freeze, sizeof freeze, ", frozen after step %lld", (long long)c->qat_freeze_after);
    fprintf(r->progress, "[train] qat: INT%d weights %s, INT%d inputs per tensor (%s observer%s)%s\n", s.weight_bits, gran,
            s.act_bits, s.observer == QB_OBS_EMA ? "EMA" : s.observer == QB_OBS_MINMAX ? "min/max" : "percentile",
            freeze, s.embeddings ? "; embedding tables too" : "");
    return QB_OK;
}

static qb_status setup(run *r)
{
    const qb_train_config *c = r->c;
    char path[PATHBUF];
    join(r->model_dir, r->dir, "model");
    join(r->ckpt_root, r->dir, "checkpoints");
    for (int i = 0; i < c->n_labels; i++) r->labels[i] = c->labels[i];
    /* Without [data] labels a model's own names (its config.json's id2label, as eval
     * reads them) are accepted besides integer ids. A config that does not load is
     * build_model's to report. */
    qb_config own = {0};
    const char *const *names = c->n_labels ? r->labels : NULL;
    int n_names = c->n_labels;
    join(path, c->model_path, "config.json");
    if (!n_names && c->model_path[0] && qb_config_load(path, &own) == QB_OK) {
        n_names = own.num_labels;
        for (int i = 0; i < own.num_labels; i++) n_names = own.id2label[i] ? n_names : 0;
        names = (const char *const *)own.id2label;
    }
    qb_dataset d[3] = {{0}};
    const char *files[3] = {c->train, c->valid, c->test};
    qb_split *splits[3] = {&r->train, &r->valid, &r->test};
    qb_status st = QB_OK;
    for (int i = 0; i < 3 && !st; i++)
        if (files[i][0]) st = load_data(r, files[i], names, n_names, &d[i]);
    qb_config_free(&own);
    if (!st) st = build_model(r, &d[0]);
    for (int i = 0; i < 3 && !st; i++)
        if (files[i][0]) st = qb_split_build(r->tok, &d[i], c->max_length, r->host.cfg.num_labels, splits[i]);
    for (int i = 0; i < 3; i++) qb_dataset_free(&d[i]);
    if (st) return st;
    r->pad_id = qb_tokenizer_pad_id(r->tok);
    if (c->max_length > r->host.cfg.max_position)
        return qb_fail(QB_EINVAL, "data.max_length = %d exceeds the model's max_position_embeddings %d",
                       c->max_length, r->host.cfg.max_position);
    if ((st = qat_setup(r))) return st;
    /* bf16 / fp16 on a GPU: FP32 master weights and half copies, half activations */
    const qb_dtype half = qb_model_half_type(&r->host, r->be, (qb_math)c->precision);
    if ((st = qb_model_to_backend(&r->host, r->be, half == QB_F32 ? QB_WEIGHTS_FP32 : QB_WEIGHTS_FP32_AND_HALF, half,
                                  &r->model)))
        return st;
    r->model.qat = r->host.qat;  /* borrowed: the host model owns it and saves its ranges */
    if (r->model.qat && r->world > 1) r->model.qat->combine = combine_stats, r->model.qat->combine_ctx = r;
    if ((st = qb_model_zeros_like(&r->model, &r->grads))) return st;
    if ((st = qb_activations_new(&r->model, r->be, true, &r->acts))) return st;
    if (!(r->streams.dev = r->be->alloc(sizeof(uint64_t))) || !(r->streams.host = r->be->host_alloc(sizeof(uint64_t))))
        return qb_fail(QB_ENOMEM, "%s backend: out of memory", r->be->name);
    /* Steps: from the first epoch's batch count (length grouping can add a few). */
    if ((st = make_plan(r, 0))) return st;
    r->steps_per_epoch = (r->plan.n_batches + c->grad_accum - 1) / c->grad_accum;
    r->total_steps = c->max_steps > 0 ? c->max_steps : (int64_t)c->epochs * r->steps_per_epoch;
    r->epochs = c->max_steps > 0 ? (int)((c->max_steps + r->steps_per_epoch - 1) / r->steps_per_epoch) : c->epochs;
    qb_optim_config oc = c->optim;
    oc.total_steps = r->total_steps;
    oc.warmup_steps = c->warmup_steps > 0 ? c->warmup_steps : (int64_t)ceil(c->warmup_ratio * (double)r->total_steps);
    if ((st = qb_adamw_init(&r->opt, &r->model, &oc))) return st;
    if (c->precision == QB_MATH_FP16 && (st = qb_adamw_set_loss_scale(&r->opt, c->loss_scale, 0))) return st;
    qb_activations_set_loss_scale(r->acts, qb_adamw_loss_scale(&r->opt));
    qb_activations_set_math(r->acts, (qb_math)c->precision);
    r->history = cJSON_CreateArray();
    r->epoch_times = cJSON_CreateArray();
    if (!r->history || !r->epoch_times) return qb_fail(QB_ENOMEM, "history");
    if (r->o->resume && (st = checkpoint_load(r, r->o->resume))) return st;
    /* Only now, with every input checked (a refused --resume included), is anything
     * written; only the lead process writes. */
    if (r->lead) {
        st = qb_mkdirs(r->dir);
        if (!st) st = qb_mkdirs(r->model_dir);
        if (!st) st = qb_mkdirs(r->ckpt_root);
        char *ini = st ? NULL : qb_train_config_to_ini(c);
        join(path, r->dir, "config.ini");
        if (!st) st = ini ? qb_write_file_atomic(path, ini, strlen(ini)) : qb_fail(QB_ENOMEM, "config.ini");
        free(ini);
        if (st) return qb_fail_context(st, "output directory %s is not writable", r->dir);
    }
    if (!r->o->resume && r->lead) clear_checkpoints(r->ckpt_root);
    char threads[32] = "";
    if (r->be->device == QB_DEV_CPU) snprintf(threads, sizeof threads, ", %d threads", omp_get_max_threads());
    join(path, r->dir, "train_log.jsonl");
    if (!r->lead) r->log = r->sink;
    else if (!(r->log = fopen(path, r->o->resume ? "a" : "w")))
        return qb_fail(QB_EIO, "%s: cannot write: %s", path, strerror(errno));
    if (r->world > 1)
        fprintf(r->progress, "[train] data parallel: %d processes x batch %d = global batch %d, gradients all-reduced in "
                "buckets of %g MiB (%s)\n", r->world, c->batch_size, c->batch_size * r->world, c->bucket_mb,
                r->be->device == QB_DEV_CUDA ? "NCCL" : "MPI");
    fprintf(r->progress, "[train] %d examples, %d batches of up to %d, %lld steps (%d epochs), warm-up %lld; "
            "valid %d, test %d; model %s (%zu parameters), seed %llu, %s%s, %s products\n",
            r->train.n, r->plan.n_batches, c->batch_size, (long long)r->total_steps, r->epochs,
            (long long)oc.warmup_steps, r->valid.n, r->test.n, c->preset[0] ? c->preset : c->model_path,
            qb_model_param_count(&r->host), (unsigned long long)r->seed, r->be->name, threads,
            qb_math_name((qb_math)c->precision));
    return QB_OK;
}

static qb_status run_one(const qb_train_config *c, const qb_train_options *o, uint64_t seed, const char *dir,
                         cJSON **test_out)
{
    run r;
    memset(&r, 0, sizeof r);
    r.c = c, r.o = o, r.seed = seed;
    r.progress = o->progress ? o->progress : stderr;
    r.report = o->report ? o->report : stdout;
    snprintf(r.dir, sizeof r.dir, "%s", dir);
    r.dist = o->dist, r.rank = qb_dist_rank(o->dist), r.world = qb_dist_size(o->dist), r.lead = r.rank == 0;
    qb_status st = QB_OK;
    if (!r.lead && !(r.sink = fopen("/dev/null", "w"))) st = qb_fail(QB_EIO, "/dev/null: %s", strerror(errno));
    if (!r.lead) r.progress = r.sink;
    if (c->device == 1) qb_backend_cuda_device(qb_dist_local_rank(o->dist));  /* one GPU per process of a machine */
    if (!st) st = qb_backend_by_name(c->device == 1 ? "cuda" : "cpu", "[device] type", &r.be);
    if (!st) st = setup(&r);
    if (!st) st = train_loop(&r);
    if (!st && r.lead) st = finish(&r, test_out);
    if (!st && r.lead)
        fprintf(r.report, "\nwrote %s: model/ (best: %s %.4f at step %lld), metrics.json, train_log.jsonl, report.txt, confusion.svg\n",
                r.dir, metric_name(c->metric_for_best), r.best, (long long)r.best_step);
    run_free(&r);
    return st;
}

/* mean and sample std of every test score over the seeds -> summary.json / .md */
static qb_status summarize(const qb_train_config *c, cJSON **tests, FILE *report)
{
    static const char *const keys[] = {"accuracy", "precision", "recall", "f1", "loss"};
    cJSON *root = cJSON_CreateObject();
    char md[4096];
    int n = 0;
    n += snprintf(md + n, sizeof md - n, "| metric | mean ± std |");
    for (int s = 0; s < c->n_seeds; s++) n += snprintf(md + n, sizeof md - n, " seed %llu |", (unsigned long long)c->seeds[s]);
    n += snprintf(md + n, sizeof md - n, "\n|---|---|");
    for (int s = 0; s < c->n_seeds; s++) n += snprintf(md + n, sizeof md - n, "---|");
    n += snprintf(md + n, sizeof md - n, "\n");
    for (int k = 0; k < 5; k++) {
        double sum = 0, sq = 0, v[QB_MAX_SEEDS];
        for (int s = 0; s < c->n_seeds; s++) {
            const cJSON *x = tests[s] ? cJSON_GetObjectItemCaseSensitive(tests[s], keys[k]) : NULL;
            v[s] = cJSON_IsNumber(x) ? x->valuedouble : NAN;
            sum += v[s];
        }
        const double mean = sum / c->n_seeds;
        for (int s = 0; s < c->n_seeds; s++) sq += (v[s] - mean) * (v[s] - mean);
        const double sd = c->n_seeds > 1 ? sqrt(sq / (c->n_seeds - 1)) : 0;
        cJSON *e = cJSON_AddObjectToObject(root, keys[k]);
        cJSON_AddNumberToObject(e, "mean", mean);
        cJSON_AddNumberToObject(e, "std", sd);
        cJSON *per = cJSON_AddArrayToObject(e, "per_seed");
        for (int s = 0; s < c->n_seeds; s++) cJSON_AddItemToArray(per, cJSON_CreateNumber(v[s]));
        n += snprintf(md + n, sizeof md - n, "| %s | %.4f ± %.4f |", keys[k], mean, sd);
        for (int s = 0; s < c->n_seeds; s++) n += snprintf(md + n, sizeof md - n, " %.4f |", v[s]);
        n += snprintf(md + n, sizeof md - n, "\n");
    }
    fprintf(report, "\ntest set over %d seeds (sample std):\n%s", c->n_seeds, md);
    char path[PATHBUF];
    join(path, c->output_dir, "summary.json");
    qb_status st = qb_json_write_file(path, root);
    join(path, c->output_dir, "summary.md");
    if (!st) st = qb_write_file_atomic(path, md, strlen(md));
    cJSON_Delete(root);
    return st;
}

qb_status qb_train_run(const qb_train_config *c, const qb_train_options *opts)
{
    qb_train_options o = opts ? *opts : (qb_train_options){0};
    qb_status st = qb_train_config_validate(c);
    if (st) return st;
    if (o.resume && c->n_seeds > 1)
        return qb_fail(QB_EINVAL, "--resume continues one run: pick its seed and directory with "
                       "--set train.seed=S --set output.dir=%s/seed-S", c->output_dir);
    if (c->threads > 0) omp_set_num_threads(c->threads);
    cJSON *tests[QB_MAX_SEEDS] = {0};
    for (int s = 0; s < c->n_seeds && !st; s++) {
        char dir[PATHBUF];
        if (c->n_seeds > 1) snprintf(dir, sizeof dir, "%s/seed-%llu", c->output_dir, (unsigned long long)c->seeds[s]);
        else snprintf(dir, sizeof dir, "%s", c->output_dir);
        st = run_one(c, &o, c->seeds[s], dir, &tests[s]);
    }
    if (!st && c->n_seeds > 1 && qb_dist_rank(o.dist) == 0) st = summarize(c, tests, o.report ? o.report : stdout);
    for (int s = 0; s < c->n_seeds; s++) cJSON_Delete(tests[s]);
    return st;
}
