/* The whole BERT graph on the CUDA backend against the CPU backend: a random
 * bert-tiny classifier (2 layers, hidden 128, 2 heads of 64) copied to the GPU
 * (qb_model_to_backend), then on the same padded batch
 *   - inference: logits and every layer's hidden state;
 *   - three training steps with dropout (the same Philox masks on both backends),
 *     AdamW with clipping: the loss of each step, every gradient of the first, and
 *     every weight after the last (copied back with qb_model_to_host); in FP32, and
 *     with TF32 and BF16 products against the CPU's emulation of them (in BF16 the
 *     GPU stores the activations in BF16 too, with BF16 copies of the FP32 masters,
 *     as the trainer does: gradients within 3e-2, as tests/test_half_model.c
 *     measured for that storage);
 *   - inference with BF16 and FP16 activations of the encoder's weights in half only
 *     (half_inference);
 * Tolerances: a whole forward and backward in FP32 in another summation order, so
 * relative L2 1e-4 per tensor (the CPU's bound against Hugging Face, tests/
 * test_train.c); weights after three Adam steps 1e-3, because Adam's first steps
 * move each weight by about lr * sign(gradient), which amplifies small gradient
 * differences. What is not stable is not compared: a gradient at rounding-noise
 * level (the attention key bias, see test_train.c) may take either sign, and so may
 * an element whose gradient at some step is within the arithmetic's noise (4 x tol
 * x its tensor's RMS: under compute-sanitizer, cuBLASLt picks other algorithms and
 * 2-4 such elements of the zero-initialised biases went the other way in TF32 /
 * BF16); there only the size of the move is bounded.
 * Whole training steps recorded as one CUDA graph against the same steps run
 * directly, bit for bit, with one host wait a step (recorded_steps). Then inference
 * through recorded CUDA graphs, FP32 and INT8 (graph_replays), and
 * on three streams from three threads at once (streams_apart); two engines, each on
 * its own stream, classifying from two threads at once (engines_apart). */
#include "cuda_check.h"
#include "model_check.h"

#include "qbert/engine.h"
#include "qbert/model.h"
#include "qbert/quant.h"
#include "qbert/train.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define B 4
#define T 23
#define STEPS 3
#define GRAD_TOL 1e-4
#define WEIGHT_TOL 1e-3

/* Marks in unsettled (one flag per parameter element, in tensor order) the elements
 * of the CPU's gradients g whose size is within the noise of an arithmetic whose
 * gradients agree within tol: |g| <= 4 tol RMS(g's tensor). */
static void mark_unsettled(const qb_model *g, double tol, bool *unsettled)
{
    for (int i = 0; i < g->weights.count; i++) {
        const qb_tensor *t = &g->weights.tensors[i];
        const float *d = t->data;
        const size_t n = (size_t)qb_tensor_numel(t);
        double ss = 0.0;
        for (size_t j = 0; j < n; j++) ss += (double)d[j] * d[j];
        const double noise = 4 * tol * sqrt(ss / (double)n);
        for (size_t j = 0; j < n; j++) unsettled[j] |= fabs(d[j]) <= noise;
        unsettled += n;
    }
}

/* Weights after the steps. Where the gradient was noise (a noisy tensor, an unsettled
 * element), Adam moved each weight by at most about lr (1 - b1) / sqrt(1 - b2) ~ 3.2 lr
 * per step, in either direction on either backend: the two may differ by twice that
 * per step, not more. The other elements of each tensor agree within tol. */
static void compare_weights(const qb_model *got, const qb_model *ref, const bool *noisy, const bool *unsettled,
                            float lr, double tol)
{
    for (int i = 0; i < ref->weights.count; i++) {
        const qb_tensor *r = &ref->weights.tensors[i];
        const float *gd = got->weights.tensors[i].data, *rd = r->data;
        const size_t n = (size_t)qb_tensor_numel(r);
        double moved = 0.0, e = 0.0, norm = 0.0;
        for (size_t j = 0; j < n; j++) {
            const double d = (double)gd[j] - rd[j];
            if (noisy[i] || unsettled[j]) {
                moved = fmax(moved, fabs(d));
            } else {
                e += d * d;
                norm += (double)rd[j] * rd[j];
            }
        }
        unsettled += n;
        CHECKF(moved <= 2 * STEPS * 3.2 * lr, "weight %s (noise gradient): differs by %.3g", ref->weights.names[i],
               moved);
        e = sqrt(e) / (norm > 0.0 ? sqrt(norm) : 1.0);
        CHECKF(e <= tol, "weight %s after %d steps: relative L2 error %.3g > %.1g", ref->weights.names[i], STEPS, e,
               tol);
    }
}

/* STEPS training steps of copies of m on both backends with products in math: the
 * loss and gradient norm of each step and every gradient of the first within tol,
 * every weight after the last within wtol. */
static void train_steps(const qb_model *m0, const qb_batch *batch, qb_math math, double tol, double wtol, double noise)
{
    qb_model m, dm, gc, gg_host, gg, w_host;
    qb_activations *ac, *ag;
    qb_adamw oc, og;
    qb_optim_config oc_cfg;
    qb_optim_default_config(&oc_cfg);
    oc_cfg.lr = 1e-4f, oc_cfg.weight_decay = 0.01f, oc_cfg.total_steps = STEPS, oc_cfg.max_grad_norm = 1.0f;
    /* the GPU as the trainer has it: in BF16, FP32 masters with BF16 copies and BF16 activations */
    const qb_dtype half = qb_model_half_type(m0, gpu, math);
    if (qb_model_to_backend(m0, cpu, QB_WEIGHTS_FP32, QB_F32, &m) ||
        qb_model_to_backend(m0, gpu, half == QB_F32 ? QB_WEIGHTS_FP32 : QB_WEIGHTS_FP32_AND_HALF, half, &dm) ||
        qb_model_zeros_like(&m, &gc) ||
        qb_model_zeros_like(m0, &gg_host) || qb_model_zeros_like(m0, &w_host) || qb_model_zeros_like(&dm, &gg) ||
        qb_activations_new(&m, cpu, true, &ac) || qb_activations_new(&dm, gpu, true, &ag) ||
        qb_adamw_init(&oc, &m, &oc_cfg) || qb_adamw_init(&og, &dm, &oc_cfg)) {
        fprintf(stderr, "training setup: %s\n", qb_error());
        exit(1);
    }
    qb_activations_set_math(ac, math);
    qb_activations_set_math(ag, math);
    const char *name = qb_math_name(math);
    bool *noisy = calloc((size_t)m.weights.count, sizeof *noisy);
    bool *unsettled = calloc(qb_model_param_count(&m), sizeof *unsettled);
    for (int s = 0; s < STEPS; s++) {
        const qb_dropout_plan drop = {0.1f, 0.1f, 1234, (uint64_t)s * qb_dropout_sites(&m0->cfg), NULL};
        float loss_c, loss_g, lr;
        double norm_c, norm_g;
        qb_model_zero(&gc, cpu);
        qb_model_zero(&gg, gpu);
        CHECK(qb_model_forward_backward(&m, ac, batch, &drop, 1.0f / B, &gc, &loss_c, NULL) == QB_OK);
        CHECKF(qb_model_forward_backward(&dm, ag, batch, &drop, 1.0f / B, &gg, &loss_g, NULL) == QB_OK &&
                   qb_cuda_sync(NULL) == QB_OK, "%s: GPU step %d: %s", name, s, qb_error());
        CHECKF(fabs(loss_g - loss_c) <= tol * fabs(loss_c), "%s step %d: loss %.7g on the GPU, %.7g on the CPU",
               name, s, loss_g, loss_c);
        if (s == 0) {
            qb_model_to_host(&gg, &gg_host);
            CHECK(qb_cuda_sync(NULL) == QB_OK);
            compare_grads(&gg_host, &gc, noisy, tol, noise);
        }
        mark_unsettled(&gc, tol, unsettled);
        CHECK(qb_adamw_step(&oc, cpu, &m, &gc, &norm_c, &lr) == QB_OK);
        CHECKF(qb_adamw_step(&og, gpu, &dm, &gg, &norm_g, &lr) == QB_OK && qb_cuda_sync(NULL) == QB_OK,
               "%s: GPU AdamW step %d: %s", name, s, qb_error());
        CHECKF(fabs(norm_g - norm_c) <= tol * norm_c, "%s step %d: gradient norm %.7g vs %.7g", name, s, norm_g,
               norm_c);
    }
    qb_model_to_host(&dm, &w_host);
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    compare_weights(&w_host, &m, noisy, unsettled, oc_cfg.lr, wtol);
    free(noisy), free(unsettled);
    qb_adamw_free(&oc), qb_adamw_free(&og);
    qb_activations_free(ac), qb_activations_free(ag);
    qb_model_free(&gc), qb_model_free(&gg_host), qb_model_free(&gg), qb_model_free(&w_host);
    qb_model_free(&dm), qb_model_free(&m);
}

/* The optimizer's part of a recorded step (qb_model_train_step's after). */
typedef struct {
    qb_adamw *opt;
    qb_model *model, *grads;
} update_ctx;

static void update(void *ctx)
{
    update_ctx *u = ctx;
    qb_adamw_update(u->opt, NULL, u->model, u->grads);
    qb_model_zero(u->grads, gpu);
}

/* Five training steps (qb_model_train_step, dropout streams from device memory, AdamW
 * and zeroing inside the pass) of two GPU copies of m0, one run directly, one
 * recorded (the second step records, the later ones replay the graph): the same
 * losses, norms and weights bit for bit, and from the third step on the host waits
 * once per step (qb_cuda_waits), QAT included (its observers stay on the device). */
static void recorded_steps(const qb_model *m0, const qb_batch *batch, qb_math math, int qat_bits)
{
    enum { N = 5 };
    char what[64];
    snprintf(what, sizeof what, "recorded steps %s%s", qb_math_name(math), qat_bits ? " QAT" : "");
    qb_model host[2], dm[2], g[2], w[2];
    qb_activations *a[2];
    qb_adamw o[2];
    qb_optim_config oc;
    qb_optim_default_config(&oc);
    oc.lr = 1e-4f, oc.weight_decay = 0.01f, oc.total_steps = N, oc.max_grad_norm = 1.0f;
    const qb_qat_settings qs = {qat_bits, 8, 0, QB_OBS_EMA, 0.01f, 99.99f, false};
    float loss[2][N];
    double norm[2][N];
    uint64_t *streams = dev_from(NULL, sizeof *streams), step_stream;
    for (int r = 0; r < 2; r++) {
        if (qb_model_zeros_like(m0, &host[r]) || qb_model_zeros_like(m0, &w[r])) exit(1);
        for (int i = 0; i < m0->weights.count; i++)
            memcpy(host[r].weights.tensors[i].data, m0->weights.tensors[i].data,
                   qb_tensor_nbytes(&m0->weights.tensors[i]));
        if (qat_bits && qb_qat_new(&host[r].cfg, &qs, &host[r].qat)) exit(1);
        const qb_dtype half = qb_model_half_type(&host[r], gpu, math);
        if (qb_model_to_backend(&host[r], gpu, half == QB_F32 ? QB_WEIGHTS_FP32 : QB_WEIGHTS_FP32_AND_HALF, half,
                                &dm[r]))
            exit(1);
        dm[r].qat = host[r].qat;
        if (qb_model_zeros_like(&dm[r], &g[r]) || qb_activations_new(&dm[r], gpu, true, &a[r]) ||
            qb_adamw_init(&o[r], &dm[r], &oc)) {
            fprintf(stderr, "%s: setup: %s\n", what, qb_error());
            exit(1);
        }
        qb_activations_set_math(a[r], math);
        update_ctx u = {&o[r], &dm[r], &g[r]};
        for (int s = 0; s < N; s++) {
            step_stream = (uint64_t)s * qb_dropout_sites(&m0->cfg);
            gpu->to_device(NULL, streams, &step_stream, sizeof step_stream);
            const qb_dropout_plan drop = {0.1f, 0.1f, 1234, 0, streams};
            float lr;
            if (dm[r].qat) dm[r].qat->stale = true;
            const unsigned long long waits = qb_cuda_waits();
            qb_adamw_prepare(&o[r], NULL, &lr);
            CHECKF(qb_model_train_step(&dm[r], a[r], batch, &drop, 1.0f / B, &g[r], update, &u, 1, r == 1) == QB_OK &&
                       qb_cuda_sync(NULL) == QB_OK && qb_adamw_done(&o[r], &norm[r][s]) == QB_OK,
                   "%s: step %d (%s): %s", what, s, r ? "recorded" : "direct", qb_error());
            if (s >= 2)
                CHECKF(qb_cuda_waits() - waits == 1, "%s: step %d (%s): the host waited %llu times", what, s,
                       r ? "recorded" : "direct", qb_cuda_waits() - waits);
            loss[r][s] = qb_activations_loss(a[r]);
        }
        qb_model_to_host(&dm[r], &w[r]);
        CHECK(qb_cuda_sync(NULL) == QB_OK);
    }
    CHECKF(memcmp(loss[0], loss[1], sizeof loss[0]) == 0 && memcmp(norm[0], norm[1], sizeof norm[0]) == 0,
           "%s: losses or norms differ (first step %.9g / %.9g)", what, loss[1][0], loss[0][0]);
    for (int i = 0; i < w[0].weights.count; i++)
        CHECKF(memcmp(w[0].weights.tensors[i].data, w[1].weights.tensors[i].data,
                      qb_tensor_nbytes(&w[0].weights.tensors[i])) == 0,
               "%s: %s differs after %d steps", what, w[0].weights.names[i], N);
    for (int r = 0; r < 2; r++) {
        dm[r].qat = NULL;  /* the host model's */
        qb_adamw_free(&o[r]), qb_activations_free(a[r]);
        qb_model_free(&g[r]), qb_model_free(&dm[r]), qb_model_free(&w[r]), qb_model_free(&host[r]);
    }
    gpu->free(streams);
}

/* A random padded batch (B, T): ids, and a mask with 1 to T real tokens per row. */
static void random_batch(int32_t *ids, int32_t *mask, int Bn, int Tn, int vocab)
{
    for (int b = 0; b < Bn; b++) {
        const int real = 1 + (int)(qb_rng_u32(&cuda_rng) % (uint32_t)Tn);
        for (int t = 0; t < Tn; t++) {
            ids[b * Tn + t] = t < real ? (int32_t)(qb_rng_u32(&cuda_rng) % (uint32_t)vocab) : 0;
            mask[b * Tn + t] = t < real;
        }
    }
}

/* Inference passes on one set of activations, each on a fresh batch, must give the
 * bits of the same pass run as it is (qb_model_forward: fresh activations, where
 * every pass is a first sight): a graph runs the same kernels on the same pointers.
 * Each step says whether its pass must run through a graph: a shape seen before,
 * unless the records went since (the activations grew for a larger batch) or went
 * stale (an INT8 model's quantized-Linear scratch grew for a larger batch on other
 * activations); a first sight runs as it is. The counts are exact: a recording that
 * silently failed, a stale record launched, or a shape never recorded fails here. */
static void graph_replays(const qb_model *dm, const char *what, bool quantized)
{
    const struct {
        int rows, len;    /* the batch shape */
        bool on_a;        /* false: only the pass on fresh activations (it grows scratch) */
        bool graph;       /* whether the pass on the kept activations runs through a graph */
    } steps[] = {
        {4, 23, true, false}, {4, 23, true, true}, {1, 9, true, false}, {1, 9, true, true}, {4, 23, true, true},
        {8, 48, false, false},
        {4, 23, true, !quantized},  /* INT8: its record went stale with the scratch */
        {4, 23, true, true},
        {8, 48, true, false},       /* the activations grow: every record goes */
        {8, 48, true, true}, {1, 9, true, false}, {1, 9, true, true},
    };
    const char *env = getenv("QBERT_CUDA_GRAPHS");
    if (env && strcmp(env, "0") == 0) {
        printf("test_cuda_model: graph replays not checked (QBERT_CUDA_GRAPHS=0)\n");
        return;
    }
    qb_activations *a;
    if (qb_activations_new(dm, gpu, false, &a)) {
        fprintf(stderr, "activations: %s\n", qb_error());
        exit(1);
    }
    enum { BM = 8, TM = 48 };
    int32_t ids[BM * TM], mask[BM * TM];
    float got[BM * 3], want[BM * 3];
    const long failed = qb_cuda_graph_stats().failed;
    for (size_t s = 0; s < sizeof steps / sizeof *steps; s++) {
        const int Bn = steps[s].rows, Tn = steps[s].len;
        random_batch(ids, mask, Bn, Tn, dm->cfg.vocab_size);
        if (steps[s].on_a) {
            const long replayed = qb_cuda_graph_stats().replayed;
            CHECKF(qb_model_infer(dm, a, ids, NULL, mask, Bn, Tn, got, NULL) == QB_OK, "%s step %zu: %s", what, s,
                   qb_error());
            const long n = qb_cuda_graph_stats().replayed - replayed;
            CHECKF(n == steps[s].graph, "%s step %zu (%d x %d): %ld passes through a graph, want %d", what, s, Bn,
                   Tn, n, steps[s].graph);
        }
        CHECKF(qb_model_forward(dm, gpu, ids, NULL, mask, Bn, Tn, want, NULL) == QB_OK, "%s step %zu: %s", what, s,
               qb_error());
        if (steps[s].on_a)
            CHECKF(memcmp(got, want, (size_t)Bn * 3 * sizeof *got) == 0,
                   "%s step %zu (%d x %d): logits through the graph differ from the pass run as it is", what, s, Bn,
                   Tn);
    }
    CHECKF(qb_cuda_graph_stats().failed == failed, "%s: a graph recording failed (see the warning above)", what);
    qb_activations_free(a);
}

enum { SA_THREADS = 3, SA_PASSES = 12, SA_B = 8, SA_T = 48 };

typedef struct {
    const qb_model *dm;
    pthread_barrier_t *start;
    int32_t ids[SA_B * SA_T], mask[SA_B * SA_T];
    float want[SA_B * 3];  /* the logits of the pass alone on the default stream */
    int bad;               /* 0, the first pass whose logits differ, or -1: an error */
    char err[200];
} stream_job;

/* A thread's passes on its own stream and activations, from the moment every
 * thread is ready. */
static void *stream_passes(void *p)
{
    stream_job *j = p;
    qb_stream *s = gpu->stream_new();
    qb_activations *a = NULL;
    float got[SA_B * 3];
    if (!s || qb_activations_new(j->dm, gpu, false, &a)) j->bad = -1;
    else qb_activations_set_stream(a, s);
    pthread_barrier_wait(j->start);
    for (int i = 0; i < SA_PASSES && !j->bad; i++) {
        if (qb_model_infer(j->dm, a, j->ids, NULL, j->mask, SA_B, SA_T, got, NULL) != QB_OK) j->bad = -1;
        else if (memcmp(got, j->want, sizeof got) != 0) j->bad = i + 1;
    }
    if (j->bad < 0) snprintf(j->err, sizeof j->err, "%s", qb_error());
    qb_activations_free(a);
    if (s) gpu->stream_free(s);
    return NULL;
}

/* Three threads, each on its own stream (backend.h's stream_new) with its own
 * activations, run passes at the same time, over the FP32 model and twice over the
 * INT8 one, all but the first of each through a graph recorded on its stream: every
 * pass must give the bits of the same pass run alone on the default stream. The INT8
 * passes' quantized activations and int32 products are in their stream's scratch;
 * shared scratch would mix the threads' batches. */
static void streams_apart(const qb_model *fp32, const qb_model *int8)
{
    stream_job jobs[SA_THREADS];
    pthread_t threads[SA_THREADS];
    pthread_barrier_t start;
    CHECK(pthread_barrier_init(&start, NULL, SA_THREADS) == 0);
    for (int t = 0; t < SA_THREADS; t++) {
        jobs[t] = (stream_job){.dm = t == 0 ? fp32 : int8, .start = &start};
        random_batch(jobs[t].ids, jobs[t].mask, SA_B, SA_T, jobs[t].dm->cfg.vocab_size);
        CHECKF(qb_model_forward(jobs[t].dm, gpu, jobs[t].ids, NULL, jobs[t].mask, SA_B, SA_T, jobs[t].want, NULL) ==
                   QB_OK, "streams: %s", qb_error());
    }
    const qb_cuda_graph_counts before = qb_cuda_graph_stats();
    int made = 0;
    while (made < SA_THREADS && pthread_create(&threads[made], NULL, stream_passes, &jobs[made]) == 0) made++;
    CHECKF(made == SA_THREADS, "streams: could only start %d threads", made);
    if (made < SA_THREADS) exit(check_summary("test_cuda_model"));  /* the started ones wait at the barrier */
    for (int t = 0; t < SA_THREADS; t++) pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&start);
    for (int t = 0; t < SA_THREADS; t++) {
        CHECKF(jobs[t].bad >= 0, "streams, thread %d: %s", t, jobs[t].err);
        CHECKF(jobs[t].bad <= 0, "streams, thread %d: pass %d gave other logits than alone", t, jobs[t].bad);
    }
    const char *env = getenv("QBERT_CUDA_GRAPHS");
    if (env && strcmp(env, "0") == 0) return;
    const qb_cuda_graph_counts after = qb_cuda_graph_stats();
    CHECKF(after.recorded - before.recorded == SA_THREADS && after.failed == before.failed &&
               after.replayed - before.replayed == SA_THREADS * (SA_PASSES - 1),
           "streams: %ld recorded, %ld replayed, %ld failed; want %d, %d, 0", after.recorded - before.recorded,
           after.replayed - before.replayed, after.failed - before.failed, SA_THREADS, SA_THREADS * (SA_PASSES - 1));
}

enum { EA_TEXTS = 24, EA_RUNS = 3 };

typedef struct {
    const char *dir;
    const char *const *texts;
    pthread_barrier_t *start;  /* NULL: alone */
    float probs[EA_TEXTS * 3];
    qb_status st;
    char err[200];
} engine_job;

/* An engine on the GPU (its own stream) classifying the texts EA_RUNS times (so
 * that its batches' shapes are recorded into graphs and replayed). */
static void *engine_classify(void *p)
{
    engine_job *j = p;
    qb_engine_options o;
    qb_engine_default_options(&o);
    o.device = "cuda", o.batch_size = 8;
    qb_engine *e = NULL;
    j->st = qb_engine_open(j->dir, &o, &e);
    if (j->start) pthread_barrier_wait(j->start);
    for (int r = 0; r < EA_RUNS && !j->st; r++) j->st = qb_engine_classify(e, j->texts, EA_TEXTS, j->probs, NULL, NULL);
    if (j->st) snprintf(j->err, sizeof j->err, "%s", qb_error());
    qb_engine_close(e);
    return NULL;
}

/* Two engines on one model directory (m saved with a small vocabulary), classifying
 * from two threads at once, must give the probabilities of one engine alone, bit for
 * bit: the same kernels on the same shapes, each engine on its own stream. */
static void engines_apart(const qb_model *m)
{
    static const char *const words[] = {"bagus", "sekali", "tidak", "enak", "pelayanan", "buruk", "mahal", "murah"};
    char dir[] = "/tmp/qbert-cuda-engines-XXXXXX", path[80], texts_buf[EA_TEXTS][400];
    const char *texts[EA_TEXTS];
    if (!mkdtemp(dir)) exit(1);
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    FILE *f = fopen(path, "w");
    CHECKF(f && qb_model_save(m, dir) == QB_OK, "engines: %s", qb_error());
    if (!f) exit(1);
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", f);
    for (size_t w = 0; w < sizeof words / sizeof *words; w++) fprintf(f, "%s\n", words[w]);
    fclose(f);
    for (int i = 0; i < EA_TEXTS; i++) {  /* 1 to 60 words: batches of several padded lengths */
        const int n = 1 + (int)(qb_rng_u32(&cuda_rng) % 60);
        texts_buf[i][0] = '\0';
        for (int w = 0; w < n; w++) {
            strcat(texts_buf[i], words[qb_rng_u32(&cuda_rng) % (sizeof words / sizeof *words)]);
            strcat(texts_buf[i], " ");
        }
        texts[i] = texts_buf[i];
    }
    engine_job alone = {.dir = dir, .texts = texts}, jobs[2];
    engine_classify(&alone);
    CHECKF(!alone.st, "engine alone: %s", alone.err);
    pthread_barrier_t start;
    pthread_t threads[2];
    CHECK(pthread_barrier_init(&start, NULL, 2) == 0);
    for (int t = 0; t < 2; t++) jobs[t] = (engine_job){.dir = dir, .texts = texts, .start = &start};
    if (pthread_create(&threads[0], NULL, engine_classify, &jobs[0]) ||
        pthread_create(&threads[1], NULL, engine_classify, &jobs[1])) {
        CHECKF(false, "engines: cannot start two threads");
        exit(check_summary("test_cuda_model"));
    }
    for (int t = 0; t < 2; t++) pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&start);
    for (int t = 0; t < 2; t++) {
        CHECKF(!jobs[t].st, "engine on thread %d: %s", t, jobs[t].err);
        CHECKF(jobs[t].st || memcmp(jobs[t].probs, alone.probs, sizeof alone.probs) == 0,
               "engine on thread %d: other probabilities than an engine alone", t);
    }
    static const char *const files[] = {"vocab.txt", "config.json", "model.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* An error on one stream is that stream's: the default stream's sync does not see
 * it, its own reports it once. */
static void stream_errors(void)
{
    qb_stream *s = gpu->stream_new();
    CHECKF(s != NULL, "stream_new: %s", qb_error());
    if (!s) return;
    qb_cuda_note(s, cudaErrorInvalidValue, "a fault on the second stream");
    CHECK(qb_cuda_sync(NULL) == QB_OK);
    CHECK(qb_cuda_sync(s) != QB_OK && strstr(qb_error(), "a fault on the second stream"));
    CHECK(qb_cuda_sync(s) == QB_OK);
    gpu->stream_free(s);
}

/* Inference with half activations (BF16 or FP16 as math says): m's encoder weights
 * in half only on the GPU (QB_WEIGHTS_HALF, what the engine makes for an FP16 / BF16
 * run), every hidden state and the logits against the CPU's FP32-storage pass with
 * the same products, relative L2 <= 1e-2 (shared/DESIGN.md); through a recorded
 * graph too. */
static void half_inference(const qb_model *m, const int32_t *ids, const int32_t *types, const int32_t *mask,
                           qb_math math)
{
    const int L = m->cfg.num_layers, C = m->cfg.hidden_size;
    const qb_dtype half = math == QB_MATH_BF16 ? QB_BF16 : QB_F16;
    qb_model hm;
    qb_activations *ac, *ag;
    CHECK(qb_model_half_type(m, gpu, math) == half);
    if (qb_model_to_backend(m, gpu, QB_WEIGHTS_HALF, half, &hm) || qb_activations_new(m, cpu, false, &ac) ||
        qb_activations_new(&hm, gpu, false, &ag)) {
        fprintf(stderr, "half inference setup: %s\n", qb_error());
        exit(1);
    }
    CHECK(hm.layers[0].q.w == NULL && hm.layers[0].q.wh != NULL && hm.word_emb == NULL && hm.pooler.w != NULL);
    qb_activations_set_math(ac, math);
    qb_activations_set_math(ag, math);
    float logits_c[B * 3], logits_g[B * 3], *hidden_c[8], *hidden_g[8];
    for (int l = 0; l <= L; l++) hidden_c[l] = host_alloc(B * T * C * 4), hidden_g[l] = host_alloc(B * T * C * 4);
    qb_forward_trace tc = {.hidden = hidden_c}, tg = {.hidden = hidden_g};
    CHECK(qb_model_infer(m, ac, ids, types, mask, B, T, logits_c, &tc) == QB_OK);
    CHECKF(qb_model_infer(&hm, ag, ids, types, mask, B, T, logits_g, &tg) == QB_OK, "%s: %s", qb_math_name(math),
           qb_error());
    for (int l = 0; l <= L; l++) {
        const double e = rel_l2(hidden_g[l], hidden_c[l], (size_t)B * T * C);
        CHECKF(e <= 1e-2, "%s storage: hidden state %d: relative L2 error %.3g", qb_math_name(math), l, e);
    }
    CHECKF(rel_l2(logits_g, logits_c, B * 3) <= 1e-2, "%s storage: logits: relative L2 error %.3g",
           qb_math_name(math), rel_l2(logits_g, logits_c, B * 3));
    /* again, the second and third time through a graph: the same bits */
    float again[B * 3];
    for (int r = 0; r < 2; r++) {
        CHECKF(qb_model_infer(&hm, ag, ids, types, mask, B, T, again, NULL) == QB_OK, "%s: %s", qb_math_name(math),
               qb_error());
        CHECKF(memcmp(again, logits_g, sizeof again) == 0, "%s storage: pass %d: other logits", qb_math_name(math),
               r + 2);
    }
    /* FP32 products on half-only weights: refused, naming the math to use */
    qb_activations_set_math(ag, QB_MATH_FP32);
    CHECK(qb_model_infer(&hm, ag, ids, types, mask, B, T, again, NULL) == QB_EINVAL &&
          strstr(qb_error(), half == QB_BF16 ? "math bf16" : "math fp16"));
    for (int l = 0; l <= L; l++) free(hidden_c[l]), free(hidden_g[l]);
    qb_activations_free(ac), qb_activations_free(ag);
    qb_model_free(&hm);
}

/* m written as an int8-dynamic file and loaded back, its query, key and value joined
 * and prepared for the GPU (as the engine does), and its device copy in dq (host
 * model in q: the copy borrows its quantized Linears). */
static void int8_copy(const qb_model *m, qb_model *q, qb_model *dq)
{
    char dir[] = "/tmp/qbert-cuda-model-XXXXXX", path[64];
    qb_qplan plan = {0};
    if (!mkdtemp(dir)) exit(1);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (qb_model_save(m, dir) || qb_qscheme_get("int8-dynamic", 0, &plan.scheme) || qb_quant_save(m, &plan, path) ||
        qb_model_load(dir, 1, q) || qb_model_join_qkv(q) || qb_model_to_backend(q, gpu, QB_WEIGHTS_FP32, QB_F32, dq) ||
        qb_model_prepare(q, gpu, NULL)) {
        fprintf(stderr, "INT8 model: %s\n", qb_error());
        exit(1);
    }
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    if (!cuda_or_skip("test_cuda_model")) return QB_TEST_SKIPPED;
    qb_config cfg;
    qb_model m, dm;
    if (qb_config_preset("bert-tiny", &cfg) || qb_model_init_random(&cfg, qb_rng_u32(&cuda_rng), &m) ||
        qb_model_to_backend(&m, gpu, QB_WEIGHTS_FP32, QB_F32, &dm)) {
        fprintf(stderr, "setup: %s\n", qb_error());
        return 1;
    }

    /* A padded batch: row b has T - 5 b real tokens, the rest is padding. */
    int32_t ids[B * T], types[B * T], mask[B * T], labels[B];
    for (int b = 0; b < B; b++) {
        labels[b] = (int32_t)(qb_rng_u32(&cuda_rng) % 3);
        for (int t = 0; t < T; t++) {
            const int real = t < T - 5 * b;
            ids[b * T + t] = real ? (int32_t)(qb_rng_u32(&cuda_rng) % (uint32_t)cfg.vocab_size) : 0;
            types[b * T + t] = real && t > T / 2;
            mask[b * T + t] = real;
        }
    }

    /* Inference. */
    const int L = cfg.num_layers, C = cfg.hidden_size;
    float logits_c[B * 3], logits_g[B * 3], *hidden_c[8], *hidden_g[8];
    for (int l = 0; l <= L; l++) hidden_c[l] = host_alloc(B * T * C * 4), hidden_g[l] = host_alloc(B * T * C * 4);
    qb_forward_trace tc = {.hidden = hidden_c}, tg = {.hidden = hidden_g};
    CHECK(qb_model_forward(&m, cpu, ids, types, mask, B, T, logits_c, &tc) == QB_OK);
    CHECKF(qb_model_forward(&dm, gpu, ids, types, mask, B, T, logits_g, &tg) == QB_OK && qb_cuda_sync(NULL) == QB_OK,
           "GPU forward: %s", qb_error());
    for (int l = 0; l <= L; l++) {
        const double e = rel_l2(hidden_g[l], hidden_c[l], (size_t)B * T * C);
        CHECKF(e <= GRAD_TOL, "hidden state %d: relative L2 error %.3g", l, e);
    }
    CHECKF(rel_l2(logits_g, logits_c, B * 3) <= GRAD_TOL, "logits: relative L2 error %.3g",
           rel_l2(logits_g, logits_c, B * 3));

    half_inference(&m, ids, types, mask, QB_MATH_BF16);
    half_inference(&m, ids, types, mask, QB_MATH_FP16);

    /* Training: the same steps on both backends, in FP32, then with TF32 and BF16
     * products against the CPU's emulation of them (the same rounding, other sums;
     * a rounding that falls the other way moves a value by the format's roundoff,
     * hence the looser bounds; BF16 activations on the GPU add their rounding). */
    const qb_batch batch = {ids, types, mask, labels, B, T};
    train_steps(&m, &batch, QB_MATH_FP32, GRAD_TOL, WEIGHT_TOL, 1e-6);
    train_steps(&m, &batch, QB_MATH_TF32, 1e-3, 1e-2, 1e-6);
    train_steps(&m, &batch, QB_MATH_BF16, 3e-2, 5e-2, 0x1p-8);
    recorded_steps(&m, &batch, QB_MATH_FP32, 0);
    recorded_steps(&m, &batch, QB_MATH_BF16, 0);
    recorded_steps(&m, &batch, QB_MATH_FP32, 8);

    graph_replays(&dm, "FP32", false);
    qb_model q, dq;
    int8_copy(&m, &q, &dq);
    graph_replays(&dq, "INT8", true);
    streams_apart(&dm, &dq);
    stream_errors();
    engines_apart(&m);
    qb_model_free(&dq), qb_model_free(&q);
    for (int l = 0; l <= L; l++) free(hidden_c[l]), free(hidden_g[l]);
    qb_model_free(&dm), qb_model_free(&m);
    qb_cuda_scratch_release(NULL);
    qb_cuda_gemm_release();
    return check_summary("test_cuda_model");
}
