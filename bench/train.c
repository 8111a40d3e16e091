/* qbert-bench train: training throughput of the trainer's step on random data, the
 * figure to set beside PyTorch + transformers (bench/peers/torch_gpu.py) on the same
 * machine and config. A step is what the trainer does per batch: forward and backward
 * with dropout 0.1, the gradient norm, clipping to 1, AdamW and zeroing the gradients
 * queued as one pass (qb_model_train_step; with --graphs 1 recorded as one CUDA graph
 * per shape and replayed), one wait, then the loss and the norm read
 * (qb_activations_loss, qb_adamw_done); the model, gradients and moments live on the
 * device. With --qat, QAT with EMA observers. On CUDA the host's waits for the device
 * are counted (qb_cuda_waits) and reported per step. `warmup` untimed steps, then
 * `runs` timed ones between two syncs. Model FLOPs per step (step_flops): 6 per
 * parameter and row it multiplies, plus 12 x layers x B x T^2 x hidden for attention
 * (forward 2 matmuls of 2 B T^2 C each, backward twice that); MFU divides the achieved
 * rate by --ceiling (TFLOP/s: qbert-bench kernels' measured BF16 GEMM ceiling). */
#include "bench.h"

#include "backend/backend.h"
#include "qbert/metrics.h"
#include "qbert/model.h"
#include "qbert/train.h"

#ifdef QBERT_BENCH_CUDA
#include "cuda/qb_cuda.h"
#endif

#include <cjson/cJSON.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qbert-bench train [options]\n"
            "  --preset NAME      model shape, random weights (default indobert-base-p2)\n"
            "  --device NAME      cpu or cuda (default cuda)\n"
            "  --precision NAME   products: fp32, tf32, bf16 (default), fp16 (no loss scaling here)\n"
            "  --qat BITS         quantization-aware training, 8 or 4 bit weights (FP32 activations, EMA)\n"
            "  --graphs 0|1       record the step as one CUDA graph and replay it (default 0)\n"
            "  --batch N          (default 32)\n"
            "  --seq N            (default 128)\n"
            "  --ceiling TFLOPS   the device's measured BF16 ceiling, for MFU (qbert-bench kernels)\n"
            "  --warmup N         untimed steps (default 3)\n"
            "  --runs N           timed steps (default 20)\n"
            "  --threads N        OpenMP threads (CPU)\n"
            "  --json FILE        write the result as JSON\n");
}

typedef struct {
    const char *preset, *device;
    qb_math math;
    int batch, seq;
    double ceiling;
    int qat_bits;  /* 0: plain training */
    int graphs;
} train_options;

static int own_option(const char *name, const char *value, void *ctx, int *ok)
{
    train_options *t = ctx;
    if (strcmp(name, "--preset") == 0) t->preset = value;
    else if (strcmp(name, "--device") == 0) t->device = value;
    else if (strcmp(name, "--precision") == 0) *ok = value && qb_math_parse(value, &t->math) == QB_OK;
    else if (strcmp(name, "--batch") == 0) *ok = value && qb_bench_parse_int(value, 1, &t->batch);
    else if (strcmp(name, "--seq") == 0) *ok = value && qb_bench_parse_int(value, 2, &t->seq);
    else if (strcmp(name, "--ceiling") == 0) *ok = value && (t->ceiling = atof(value)) > 0;
    else if (strcmp(name, "--graphs") == 0) *ok = value && qb_bench_parse_int(value, 0, &t->graphs) && t->graphs <= 1;
    else if (strcmp(name, "--qat") == 0) *ok = value && qb_bench_parse_int(value, 4, &t->qat_bits) &&
                                                (t->qat_bits == 4 || t->qat_bits == 8);
    else return 0;
    return 1;
}

/* Model FLOPs of one step: 6 per parameter and row it multiplies (forward 2, backward
 * 4): the encoder's on every token, the pooler's and classifier's on the B first
 * tokens only, the embedding tables none; plus attention's two T x T products per head. */
static double step_flops(const qb_model *m, int B, int T)
{
    const qb_config *c = &m->cfg;
    const double C = c->hidden_size, emb = (c->vocab_size + c->max_position + c->type_vocab_size) * C;
    const double head = C * C + C + C * c->num_labels + c->num_labels;  /* pooler, classifier */
    const double encoder = (double)qb_model_param_count(m) - emb - head;
    return 6.0 * encoder * B * T + 6.0 * head * B + 12.0 * c->num_layers * (double)B * T * T * C;
}

/* The optimizer's part of the step, queued inside its pass. */
typedef struct {
    qb_adamw *opt;
    qb_model *model, *grads;
    const qb_backend *be;
} optimizer;

static void update(void *ctx)
{
    optimizer *u = ctx;
    qb_adamw_update(u->opt, NULL, u->model, u->grads);
    qb_model_zero(u->grads, u->be);
}

/* The host's waits for the GPU so far (CUDA builds; 0 otherwise). */
static unsigned long long host_waits(void)
{
#ifdef QBERT_BENCH_CUDA
    return qb_cuda_waits();
#else
    return 0;
#endif
}

int qb_bench_train(int argc, char **argv)
{
    train_options t = {"indobert-base-p2", "cuda", QB_MATH_BF16, 32, 128, 0, 0, 0};
    qb_bench_common o = {.warmup = 3, .runs = 20};
    const int parsed = qb_bench_options("train", argc, argv, &o, usage, own_option, &t);
    if (parsed >= 0) return parsed;
    if (o.threads > 0) omp_set_num_threads(o.threads);
    const int B = t.batch, T = t.seq;
    qb_config cfg;
    qb_model host = {0}, model = {0}, grads = {0};
    qb_adamw opt = {0};
    qb_activations *acts = NULL;
    const qb_backend *be = NULL;
    qb_optim_config oc;
    qb_optim_default_config(&oc);
    oc.total_steps = o.warmup + o.runs;
    int32_t *ids = malloc((size_t)B * T * 4), *labels = malloc((size_t)B * 4);
    struct { uint64_t *dev, *host; } streams = {NULL, NULL};  /* the step's dropout streams (drop.offset) */
    int rc = 1;
    if (!ids || !labels) {
        fprintf(stderr, "qbert-bench train: out of memory\n");
        goto done;
    }
    /* as the trainer: FP32 master weights, with half copies where the activations can be half */
    const qb_qat_settings qs = {.weight_bits = t.qat_bits, .act_bits = 8, .observer = QB_OBS_EMA, .ema = 0.01f,
                                .percentile = 99.99f, .group = t.qat_bits == 4 ? 64 : 0};
    if (qb_backend_by_name(t.device, "--device", &be) || qb_config_preset(t.preset, &cfg) ||
        qb_model_init_random(&cfg, 42, &host) || (t.qat_bits && qb_qat_new(&host.cfg, &qs, &host.qat))) {
        fprintf(stderr, "qbert-bench train: %s\n", qb_error());
        goto done;
    }
    const qb_dtype half = qb_model_half_type(&host, be, t.math);
    qb_status st = qb_model_to_backend(&host, be, half == QB_F32 ? QB_WEIGHTS_FP32 : QB_WEIGHTS_FP32_AND_HALF, half,
                                       &model);
    model.qat = host.qat;  /* borrowed, as the trainer does (before the activations: QAT keeps more) */
    if (st || qb_model_zeros_like(&model, &grads) || qb_adamw_init(&opt, &model, &oc) ||
        qb_activations_new(&model, be, true, &acts)) {
        fprintf(stderr, "qbert-bench train: %s\n", qb_error());
        goto done;
    }
    if (!(streams.dev = be->alloc(sizeof(uint64_t))) || !(streams.host = be->host_alloc(sizeof(uint64_t)))) {
        fprintf(stderr, "qbert-bench train: out of memory\n");
        goto done;
    }
    qb_activations_set_math(acts, t.math);
    qb_rng rng;
    qb_rng_init(&rng, 1234);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(qb_rng_u32(&rng) % (uint32_t)cfg.vocab_size);
    for (int b = 0; b < B; b++) labels[b] = (int32_t)(qb_rng_u32(&rng) % (uint32_t)cfg.num_labels);
    const qb_batch batch = {ids, NULL, NULL, labels, B, T};
    double t0 = 0;
    unsigned long long waits0 = 0;
    for (int step = 0; step < o.warmup + o.runs; step++) {
        if (step == o.warmup) {
            if (be->sync(NULL)) {
                fprintf(stderr, "qbert-bench train: %s\n", qb_error());
                goto done;
            }
            t0 = qb_now();
            waits0 = host_waits();
        }
        /* the trainer's step: the step's numbers to the device, the pass queued, one
         * wait, then the loss and the norm */
        *streams.host = (uint64_t)step * qb_dropout_sites(&cfg);
        be->to_device(NULL, streams.dev, streams.host, sizeof *streams.host);
        const qb_dropout_plan drop = {0.1f, 0.1f, 42, 0, streams.dev};
        float lr;
        double norm;
        if (model.qat) model.qat->stale = true;  /* the fake-quantized weights are remade after each update */
        qb_adamw_prepare(&opt, NULL, &lr);
        optimizer u = {&opt, &model, &grads, be};
        st = qb_model_train_step(&model, acts, &batch, &drop, 1.0f / B, &grads, update, &u, (uintptr_t)&opt, t.graphs);
        if (!st) st = be->sync(NULL);
        if (st || (st = qb_adamw_done(&opt, &norm))) {
            fprintf(stderr, "qbert-bench train: step %d: %s\n", step, qb_error());
            goto done;
        }
        fprintf(stderr, "  step %d / %d: loss %.4f\r", step + 1, o.warmup + o.runs, qb_activations_loss(acts));
    }
    const double waits = (double)(host_waits() - waits0) / o.runs;
    if (be->sync(NULL)) {
        fprintf(stderr, "qbert-bench train: %s\n", qb_error());
        goto done;
    }
    const double s = (qb_now() - t0) / o.runs;
    const double tflops = step_flops(&host, B, T) / s / 1e12, mfu = t.ceiling > 0 ? tflops / t.ceiling : 0;
    char qat[32] = "";
    if (t.qat_bits) snprintf(qat, sizeof qat, " | QAT INT%d", t.qat_bits);
    if (t.graphs) snprintf(qat + strlen(qat), sizeof qat - strlen(qat), " | graphs");
    printf("qbert-bench train: %s | %s | %s products%s | batch %d x seq %d | %d timed steps after %d\n", t.preset,
           be->device_name(), qb_math_name(t.math), qat, B, T, o.runs, o.warmup);
    printf("step %.2f ms | %.1f samples/s | %.3g model TFLOP/s", s * 1e3, B / s, tflops);
    if (mfu > 0) printf(" | MFU %.1f%% of %.1f TFLOP/s", 100 * mfu, t.ceiling);
    if (be->device == QB_DEV_CUDA) printf(" | %.1f host waits per step", waits);
    printf("\n");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "preset", t.preset);
    cJSON_AddStringToObject(root, "device", be->device_name());
    cJSON_AddStringToObject(root, "precision", qb_math_name(t.math));
    cJSON_AddNumberToObject(root, "batch", B);
    cJSON_AddNumberToObject(root, "seq", T);
    cJSON_AddNumberToObject(root, "qat_bits", t.qat_bits);
    cJSON_AddBoolToObject(root, "graphs", t.graphs);
    if (be->device == QB_DEV_CUDA) cJSON_AddNumberToObject(root, "host_waits_per_step", waits);
    cJSON_AddNumberToObject(root, "step_ms", s * 1e3);
    cJSON_AddNumberToObject(root, "samples_per_s", B / s);
    cJSON_AddNumberToObject(root, "model_tflops", tflops);
    if (mfu > 0) cJSON_AddNumberToObject(root, "mfu", mfu);
    rc = qb_bench_finish("train", 0, o.json, root);
done:
    qb_activations_free(acts);
    if (be && streams.dev) be->free(streams.dev);
    if (be && streams.host) be->host_free(streams.host);
    qb_adamw_free(&opt);
    qb_model_free(&grads);
    model.qat = NULL;  /* the host model's */
    qb_model_free(&model);
    qb_model_free(&host);
    free(ids), free(labels);
    return rc;
}
